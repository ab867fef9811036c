"""`torchship init`: the files it writes into a user repository, what a second run does, and every refusal
(exit code, message, nothing written)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from init_helpers import REPO
from tiny_models import (
    save_tiny_bert,
    save_tiny_classifier,
    save_tiny_cross_encoder,
    save_tiny_labelled,
    save_tiny_qa,
)
from torchship import __version__
from torchship.cli import app
from torchship.examples import load_examples
from torchship.modeling import load_source_model
from torchship.spec import load_spec
from torchship.tasks import task_definition

runner = CliRunner()
SHARED = [
    ".gitignore",
    "buildspec.yml",
    "infra/pipeline.yaml",
    "requirements/torchship-lock.txt",
    "requirements/torchship.txt",
    "torchship.toml",
]
RECORD = ".torchship/init.json"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Saved checkpoints, outside any repository (each test copies what it needs into its own)."""
    root = tmp_path_factory.mktemp("checkpoints")
    save_tiny_classifier(root / "Sentiment_v2")
    save_tiny_bert(root / "encoder")
    save_tiny_labelled(root / "ner", "bert", "token", {0: "O", 1: "B-PER", 2: "I-PER"}, 0, lambda m: None)
    save_tiny_classifier(root / "unnamed", labels={0: "LABEL_0", 1: "LABEL_1"})
    save_tiny_cross_encoder(root / "cross-encoder")
    save_tiny_qa(root / "squad", "electra")
    return root


@pytest.fixture
def repo(tmp_path, checkpoints) -> Path:
    """A user repository holding its checkpoints (as a team would, e.g. with git lfs)."""
    repo = tmp_path / "repo"
    shutil.copytree(checkpoints, repo / "checkpoints")
    return repo


def init(repo: Path, *args: str):
    return runner.invoke(app, ["init", str(repo), *args])


def snapshot(repo: Path) -> dict[str, tuple[bytes, int]]:
    """Every file outside checkpoints/: its bytes and mtime (ns), to prove what changed and what did not."""
    return {
        p.relative_to(repo).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(repo.rglob("*"))
        if p.is_file() and "checkpoints" not in p.relative_to(repo).parts
    }


def test_init_writes_a_repository_that_ships_the_classifier(repo):
    result = init(repo, "--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert result.exit_code == 0, result.output
    written = set(snapshot(repo))
    model = ["models/sentiment-v2/examples.jsonl", "models/sentiment-v2/model.yaml"]
    assert written == {*SHARED, *model, RECORD}
    # The name comes from the folder, made a valid Kubernetes name; the task from config.json's head.
    spec = load_spec(repo / "models" / "sentiment-v2" / "model.yaml")
    assert (spec.name, spec.version, spec.task) == ("sentiment-v2", "0.1.0", "text-classification")
    assert spec.resolve(spec.source) == (repo / "checkpoints" / "Sentiment_v2").resolve()
    assert yaml.safe_load((repo / "models/sentiment-v2/model.yaml").read_text())["source"] == (
        "../../checkpoints/Sentiment_v2"
    )  # relative, so the repository works wherever it is cloned
    text = (repo / "models" / "sentiment-v2" / "model.yaml").read_text()
    for label in ("0: negative", "1: neutral", "2: positive"):
        assert f"#   {label}\n" in text
    assert "compile.max_length defaults to 128 tokens (what it accepts: max_position_embeddings 128" in text
    # The gate's own source check accepts the checkpoint for the chosen task (no random weights, labels).
    load_source_model(spec.resolve(spec.source), spec.task, spec.spec_path)
    examples = load_examples(spec)
    assert len(examples) >= 5 and "replace them with real inputs" in text

    settings = tomllib.loads((repo / "torchship.toml").read_text())
    assert set(settings) == {"publish_uri", "registry", "image_repository", "environments"}
    assert set(settings["environments"]) == {"staging", "production"}
    for name, env in settings["environments"].items():
        assert env["namespace"] == f"ml-{name}" and 1 <= env["replicas"] <= env["max_replicas"]
        assert env["publish_uri"] == f"s3://CHANGE-ME-bucket/{name}"
        assert env["image_repository"].startswith("CHANGE-ME.") and env["image_repository"].endswith(
            f"/{name}"
        )
    ignored = (repo / ".gitignore").read_text().splitlines()
    assert {"outputs/", ".venv/", "__pycache__/", "k8s-rendered/", "imageDetail.json"} <= set(ignored)
    record = json.loads((repo / RECORD).read_text())
    assert record["torchship_version"] == __version__ and set(record["files"]) == {*SHARED, *model}
    # Then the next commands, as the user types them.
    for command in (
        "torchship run models/sentiment-v2/model.yaml",
        "torchship render models/sentiment-v2/model.yaml --env staging --check",
        "aws cloudformation deploy --template-file infra/pipeline.yaml",
        "git add -A && git commit",
    ):
        assert command in result.output


@pytest.mark.parametrize(
    ("folder", "args", "task"),
    [
        ("encoder", [], "embeddings"),
        ("encoder", ["--task", "keywords"], "keywords"),
        ("ner", [], "token-classification"),
        ("cross-encoder", [], "reranking"),  # a one-logit head without label names
        ("squad", [], "question-answering"),
    ],
)
def test_the_task_comes_from_the_checkpoint_and_task_chooses_among_what_it_can_serve(
    repo, folder, args, task
):
    result = init(repo, "--model", str(repo / "checkpoints" / folder), "--name", "m", *args)
    assert result.exit_code == 0, result.output
    spec = load_spec(repo / "models" / "m" / "model.yaml")
    assert spec.task == task
    load_source_model(spec.resolve(spec.source), spec.task, spec.spec_path)
    # The examples init writes are requests of the task's own schema (load_examples refuses others).
    assert load_examples(spec) == list(task_definition(task).builtin_examples)


def test_the_same_arguments_again_change_nothing_and_say_so(repo):
    args = ("--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert init(repo, *args).exit_code == 0
    before = snapshot(repo)
    again = init(repo, *args)
    assert again.exit_code == 0, again.output
    assert snapshot(repo) == before  # byte-identical, mtimes untouched (the record too)
    assert "nothing to do" in again.output


def test_another_model_adds_its_files_and_touches_nothing_else(repo):
    assert init(repo, "--model", str(repo / "checkpoints" / "Sentiment_v2")).exit_code == 0
    before = snapshot(repo)
    result = init(repo, "--model", str(repo / "checkpoints" / "encoder"), "--name", "search")
    assert result.exit_code == 0, result.output
    after = snapshot(repo)
    added = sorted(set(after) - set(before))
    assert added == ["models/search/examples.jsonl", "models/search/model.yaml"]
    changed = sorted(path for path in before if after[path] != before[path])
    assert changed == [RECORD]  # which now lists the new model's files too
    assert {"models/search/model.yaml", "models/sentiment-v2/model.yaml"} <= set(
        json.loads((repo / RECORD).read_text())["files"]
    )


def test_shared_files_the_user_changed_are_kept_when_adding_a_model(repo):
    assert init(repo, "--model", str(repo / "checkpoints" / "Sentiment_v2")).exit_code == 0
    settings = repo / "torchship.toml"
    edited = settings.read_text().replace("CHANGE-ME-bucket", "acme-models")
    settings.write_text(edited)
    result = init(repo, "--model", str(repo / "checkpoints" / "encoder"))
    assert result.exit_code == 0, result.output
    assert settings.read_text() == edited
    assert "kept      torchship.toml  (changed since torchship init wrote it: yours now)" in result.output
    assert (repo / "models" / "encoder" / "model.yaml").is_file()


def test_a_model_file_the_user_changed_is_refused_and_force_overwrites_it(repo):
    args = ("--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert init(repo, *args).exit_code == 0
    spec = repo / "models" / "sentiment-v2" / "model.yaml"
    spec.write_text(spec.read_text().replace('version: "0.1.0"', 'version: "0.2.0"'))
    before = snapshot(repo)
    refused = init(repo, *args)
    assert refused.exit_code == 2
    assert (
        "would overwrite 1 file(s): models/sentiment-v2/model.yaml (changed since torchship init wrote it)"
        in (refused.stderr)
    )
    assert "--force" in refused.stderr and snapshot(repo) == before
    forced = init(repo, *args, "--force")
    assert forced.exit_code == 0, forced.output
    assert (
        'version: "0.1.0"' in spec.read_text() and "replaced  models/sentiment-v2/model.yaml" in forced.output
    )


def test_a_first_init_over_the_repository_s_own_buildspec_is_refused(repo):
    (repo / "buildspec.yml").write_text("version: 0.2\nphases: {build: {commands: [make]}}\n")
    before = snapshot(repo)
    result = init(repo, "--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert result.exit_code == 2
    assert "buildspec.yml (not written by torchship init)" in result.stderr and "--force" in result.stderr
    assert snapshot(repo) == before  # no models/, no record, nothing


def test_an_existing_gitignore_gets_only_the_lines_it_lacks(repo):
    (repo / ".gitignore").write_text("outputs/\n*.ckpt\n")
    result = init(repo, "--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert result.exit_code == 0, result.output
    lines = (repo / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["outputs/", "*.ckpt"] and lines.count("outputs/") == 1
    assert ".venv/" in lines and "k8s-rendered/" in lines


def test_a_file_init_wrote_and_nobody_changed_is_updated(repo):
    """e.g. requirements/torchship.txt written by an older torchship: the upgrade rewrites the pin."""
    args = ("--model", str(repo / "checkpoints" / "Sentiment_v2"))
    assert init(repo, *args).exit_code == 0
    requirement = repo / "requirements" / "torchship.txt"
    older = "torchship==0.0.9\n-c torchship-lock.txt\n"
    requirement.write_text(older)
    record = json.loads((repo / RECORD).read_text())
    import hashlib

    record["files"]["requirements/torchship.txt"] = {
        "sha256": hashlib.sha256(older.encode()).hexdigest(), "torchship_version": "0.0.9",
    }  # fmt: skip
    (repo / RECORD).write_text(json.dumps(record))
    result = init(repo, *args)
    assert result.exit_code == 0, result.output
    assert f"torchship=={__version__}\n" in requirement.read_text()
    assert "written by torchship init 0.0.9 and unchanged since" in result.output


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["config.json"], "no config.json"),
        (["model.safetensors"], "no weights (model.safetensors or pytorch_model.bin)"),
        (
            ["vocab.txt", "tokenizer.json", "tokenizer_config.json"],
            "no tokenizer files (one of tokenizer.json",
        ),
    ],
)
def test_a_model_folder_that_is_not_a_saved_checkpoint_is_refused_naming_what_is_missing(repo, remove, named):
    model = repo / "checkpoints" / "encoder"
    for name in remove:
        (model / name).unlink(missing_ok=True)
    before = snapshot(repo)
    result = init(repo, "--model", str(model))
    assert result.exit_code == 2
    assert (
        f"is not a saved checkpoint: it has {named}" in result.stderr and "save_pretrained" in result.stderr
    )
    assert snapshot(repo) == before == {}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--model", "checkpoints/Sentiment_v2", "--task", "token-classification"],
            3,
            "BertForSequenceClassification checkpoint, made for text-classification; it cannot serve "
            "--task token-classification (it can serve: text-classification)",
        ),
        (
            ["--model", "checkpoints/encoder", "--task", "text-classification"],
            3,
            "made for embeddings or keywords",
        ),
        (
            ["--model", "checkpoints/encoder", "--task", "translation"],
            2,
            "--task 'translation' is not a task",
        ),
        (["--model", "checkpoints/unnamed"], 3, "has no label names"),
        (
            ["--model", "checkpoints/cross-encoder", "--task", "text-classification"],
            3,
            "made for reranking; it cannot serve --task text-classification (it can serve: reranking)",
        ),
        (["--model", "checkpoints/encoder", "--name", "My_Model"], 2, "Use --name my-model"),
        (["--model", "checkpoints/missing"], 2, "checkpoints/missing: no such directory"),
    ],
)
def test_bad_arguments_are_refused_with_nothing_written(repo, args, code, message):
    resolved = [str(repo / a) if a.startswith("checkpoints/") else a for a in args]
    result = init(repo, *resolved)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert snapshot(repo) == {}


def test_dir_must_be_an_existing_directory(tmp_path, checkpoints):
    (tmp_path / "file").write_text("x")
    for target, what in ((tmp_path / "file", "is not a directory"), (tmp_path / "nowhere", "does not exist")):
        result = init(target, "--model", str(checkpoints / "encoder"))
        assert result.exit_code == 2 and what in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_help_shows_an_example():
    result = runner.invoke(app, ["init", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "torchship init --model checkpoints/sentiment" in result.output and "--force" in result.output


def test_torchship_s_own_buildspec_and_pipeline_are_renderings_of_the_init_templates():
    from torchship.scaffold.own_checkout import own_checkout_files

    for relative, text in own_checkout_files().items():
        assert (REPO / relative).read_text() == text, (
            f"{relative} is stale: run `python -m torchship.scaffold.own_checkout` from the checkout's root"
        )


def test_init_run_from_another_directory_writes_into_dir_and_starts_the_next_commands_there(
    repo, monkeypatch
):
    monkeypatch.chdir(repo / "checkpoints")
    result = init(repo, "--model", "Sentiment_v2")
    assert result.exit_code == 0, result.output
    assert (repo / "models" / "sentiment-v2" / "model.yaml").is_file() and not (
        repo / "checkpoints" / "models"
    ).exists()
    assert "cd .." in result.output  # the next commands start from the repository root
