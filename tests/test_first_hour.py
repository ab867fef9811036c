"""Issue 9, "the first hour with your own model": each test is one thing a new user ran into.

Nothing wrong shipped (source-model integrity before compile), nothing lost (failed or refused runs
keep the last good outputs, marked stale), every error helpful (exit codes, hints with real paths,
plain text outside a terminal, --debug tracebacks, --version, defaults that fit the model).
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_stages
from test_cli import torchship
from test_ner import BIO_LABELS
from tiny_models import (
    save_tiny_classifier,
    save_tiny_cross_encoder,
    save_tiny_labelled,
    save_tiny_qa,
    write_spec,
)
from torchship.errors import SpecError, TorchshipError, ValidationFailed
from torchship.handlers.requests import Limits, parse_request
from torchship.modeling import fit_to_model, load_source_model, token_limit
from torchship.pipeline import Runner, SilentReporter
from torchship.runstate import RunLock
from torchship.settings import Settings
from torchship.spec import load_spec
from torchship.stages import STAGES

MARKUP = ("[bold", "[/]", "[red]", "[yellow]")


def _env(tmp_path) -> dict[str, str]:
    return {"TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out")}


@pytest.fixture(scope="module")
def sequence_checkpoint(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("seq") / "model", "bert")


@pytest.fixture(scope="module")
def token_checkpoint(tmp_path_factory):
    return save_tiny_labelled(
        tmp_path_factory.mktemp("tok") / "model", "bert", "token", BIO_LABELS, 0, lambda m: None
    )


# --- nothing wrong shipped -------------------------------------------------------------------------


def test_a_sequence_classifier_is_refused_for_token_classification(tmp_path, sequence_checkpoint):
    """Before: exit 0, sentiment labels served as "entities" (the token head loaded the sequence head)."""
    spec = write_spec(tmp_path / "spec", str(sequence_checkpoint), name="ner", task="token-classification")
    result = torchship("run", spec, "--until", "compile", env=_env(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "BertForSequenceClassification" in result.stderr
    assert "made for text-classification" in result.stderr
    assert f"set `task: text-classification` in {spec}" in result.stderr
    assert not (tmp_path / "out" / "ner" / "0.1.0" / "compile").exists()


def test_a_token_classifier_is_refused_for_text_classification(tmp_path, token_checkpoint):
    spec = write_spec(tmp_path / "spec", str(token_checkpoint), name="sent", task="text-classification")
    result = torchship("run", spec, "--until", "compile", env=_env(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "made for token-classification" in result.stderr


def test_randomly_initialised_weights_are_named_even_without_architectures(tmp_path, token_checkpoint):
    """No config.architectures to go by: the loading report still shows the pooler a sequence head
    needs is not in the checkpoint (it would be random at every load) — whatever TRANSFORMERS_VERBOSITY."""
    model_dir = tmp_path / "model"
    shutil.copytree(token_checkpoint, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("architectures")
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValidationFailed) as caught:
        load_source_model(model_dir, "text-classification")
    assert "bert.pooler.dense.weight" in caught.value.message and "randomly" in caught.value.message
    assert caught.value.exit_code == 3


def test_a_classifier_checkpoint_is_not_an_embedding_model(sequence_checkpoint):
    with pytest.raises(ValidationFailed, match="made for text-classification"):
        load_source_model(sequence_checkpoint, "embeddings")


def test_placeholder_labels_are_refused(tmp_path):
    model_dir = save_tiny_classifier(tmp_path / "model", labels={0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValidationFailed, match="no label names"):
        load_source_model(model_dir, "text-classification")


def test_a_labelled_classifier_is_not_a_reranker_and_a_cross_encoder_is_not_a_classifier(
    tmp_path, sequence_checkpoint
):
    with pytest.raises(ValidationFailed, match="has a head with 3 outputs; reranking needs a cross-encoder"):
        load_source_model(sequence_checkpoint, "reranking")
    cross_encoder = save_tiny_cross_encoder(tmp_path / "cross-encoder")
    with pytest.raises(ValidationFailed, match="no label names"):
        load_source_model(cross_encoder, "text-classification")
    assert load_source_model(cross_encoder, "reranking").io.outputs == ("logits",)


def test_a_span_head_serves_question_answering_only(tmp_path, sequence_checkpoint):
    squad = save_tiny_qa(tmp_path / "squad", "roberta")
    with pytest.raises(
        ValidationFailed, match="ForQuestionAnswering checkpoint, made for question-answering"
    ):
        load_source_model(squad, "embeddings")
    with pytest.raises(ValidationFailed, match="needs a question-answering"):
        load_source_model(sequence_checkpoint, "question-answering")
    model = load_source_model(squad, "question-answering")
    assert model.io.outputs == ("start_logits", "end_logits") and "token_type_ids" not in model.io.inputs


def test_matching_checkpoints_load(sequence_checkpoint, token_checkpoint, tiny_model_dir):
    load_source_model(sequence_checkpoint, "text-classification")
    load_source_model(token_checkpoint, "token-classification")
    load_source_model(tiny_model_dir, "keywords")


# --- nothing verified lost -------------------------------------------------------------------------


def test_a_second_spec_or_a_refused_stage_never_removes_the_package(tmp_path, tiny_model_dir):
    """Before: a second spec with the same name/version and a typo in `source` removed outputs/<name>/
    <version>/ entirely, the .mar included; a refused `package` after a spec edit removed the .mar."""
    first = write_spec(tmp_path / "a", str(tiny_model_dir))
    spec = load_spec(first)
    settings = Settings(outputs_dir=tmp_path / "out")
    assert run_stages(spec, settings, until="package")[-1].status == "ran"
    root = settings.stage_root(spec.name, spec.version)
    mar = root / "package" / "tiny-embeddings.mar"
    mar_bytes = mar.read_bytes()

    second = write_spec(tmp_path / "b", str(tiny_model_dir) + "-typo")
    clash = torchship("run", second, env=_env(tmp_path))
    assert clash.returncode == 2, clash.stderr
    assert "both claim tiny-embeddings 0.1.0" in clash.stderr and str(first) in clash.stderr
    assert mar.read_bytes() == mar_bytes

    first.write_text(first.read_text().replace("max_length: 64", "max_length: 32"))
    refused = torchship("package", first, env=_env(tmp_path))
    assert refused.returncode == 1 and "out of date" in refused.stderr
    assert f"torchship run {first} --until package" in refused.stderr  # the real path, a real fix
    assert mar.read_bytes() == mar_bytes
    stale = torchship("serve", first, env=_env(tmp_path))
    assert stale.returncode == 1 and "stale" in stale.stderr
    assert f"torchship run {first} --until package" in stale.stderr


def test_a_second_run_of_the_same_spec_is_refused_while_one_runs(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    root = tmp_path / "out" / spec.name / spec.version
    root.mkdir(parents=True)
    leftover = root / f".fetch.tmp-abcd1234-{__import__('os').getpid()}"  # the holder's temp dir
    leftover.mkdir()
    with RunLock(root, spec.spec_path):
        result = torchship("run", tiny_spec_path, "--until", "fetch", env=_env(tmp_path))
    assert result.returncode == 1
    assert "another torchship process is working on" in result.stderr and "pid" in result.stderr
    assert leftover.is_dir() and not (root / "fetch").exists()


def test_verify_with_a_stale_upstream_names_the_command_that_fixes_it(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="compile")
    runner = Runner(spec, settings, STAGES, SilentReporter())
    with pytest.raises(TorchshipError) as caught:
        runner.require_current("verify")
    assert caught.value.hint == f"Run `torchship run {tiny_spec_path}`: it runs every stage up to verify."
    [outcome] = runner.run(["package"])
    assert f"torchship run {tiny_spec_path} --until package" in outcome.error.hint


# --- every error helpful ---------------------------------------------------------------------------


def test_debug_prints_the_real_traceback(tmp_path):
    """Before: `ValueError: Value for 'trace' required if not called in except: block`."""
    spec = write_spec(tmp_path / "spec", "no/such/dir")
    result = torchship("--debug", "run", spec, env=_env(tmp_path))
    assert result.returncode == 1
    assert "Value for 'trace'" not in result.stderr
    assert "Traceback" in result.stderr and "resolve_source" in result.stderr
    assert "error: source directory" in result.stderr


def test_max_length_beyond_the_model_is_a_spec_error_in_plain_text(tmp_path, tiny_model_dir):
    """Before: `unexpected RuntimeError: The expanded size of the tensor (1024)...`, exit 1, and the line
    printed as raw `[bold red]error:[/]` outside a terminal."""
    spec = write_spec(tmp_path / "spec", str(tiny_model_dir))
    spec.write_text(spec.read_text().replace("max_length: 64", "max_length: 1024"))
    result = torchship("run", spec, "--until", "compile", env=_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "compile.max_length" in result.stderr and "1024" in result.stderr
    assert "(128: max_position_embeddings 128" in result.stderr
    assert not any(tag in result.stderr for tag in MARKUP)


def test_max_length_defaults_to_what_the_model_supports(tmp_path, tiny_model_dir):
    roberta = save_tiny_classifier(tmp_path / "roberta", "roberta")
    assert token_limit(roberta).limit == 128  # 130 positions, 2 reserved (padding_idx + 1)
    for model_dir, expected in (
        (roberta, 128),
        (tiny_model_dir, 64),
    ):  # 64: sentence-transformers' max_seq_length
        spec_path = tmp_path / f"spec-{expected}" / "model.yaml"
        spec_path.parent.mkdir()
        spec_path.write_text(f"name: m\nversion: 1.0.0\ntask: embeddings\nsource: {model_dir}\n")
        spec = load_spec(spec_path)
        assert spec.compile.max_length is None
        (tmp_path / "fetch").mkdir(exist_ok=True)
        shutil.rmtree(tmp_path / "fetch" / "model", ignore_errors=True)
        shutil.copytree(model_dir, tmp_path / "fetch" / "model")
        assert fit_to_model(spec, {"fetch": tmp_path / "fetch"}).compile.max_length == expected


def test_a_minimal_spec_runs_with_the_builtin_examples(tmp_path, tiny_model_dir):
    """Before: stopped for want of examples.jsonl."""
    spec = tmp_path / "spec" / "model.yaml"
    spec.parent.mkdir()
    spec.write_text(f"name: minimal\nversion: 1.0.0\ntask: embeddings\nsource: {tiny_model_dir}\n")
    result = torchship("run", spec, "--until", "validate", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "examples: built-in (8 requests; no examples file)" in result.stderr
    assert "built-in examples" in result.stderr


def test_version_flag():
    """Before: "Missing command."."""
    result = torchship("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("torchship ")


def test_a_yaml_float_version_gets_a_hint_to_quote_it(tmp_path):
    spec = tmp_path / "model.yaml"
    spec.write_text("name: m\nversion: 1.0\ntask: embeddings\nsource: x\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert "YAML read 1.0 as a number" in caught.value.message and 'version: "1.0.0"' in caught.value.message


def test_a_json_body_without_content_type_is_json():
    """Before: the JSON text itself was embedded as if it were plain text."""
    parsed = parse_request(b'{"text": "hello world"}', {}, Limits())
    assert parsed.items == ["hello world"] and parsed.single
    plain = parse_request(b"hello {world}", {}, Limits())
    assert plain.items == ["hello {world}"]
