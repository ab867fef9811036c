"""Version against version, end to end: three versions of a tiny classifier through verify (answer sheets),
published to moto's real S3 server, then `torchship diff`, the promotion gate and the history through the
command line (in-process).

1.0.1 has 1.0.0's weights exactly: nothing changes and promotion goes through. 1.1.0 swaps the head's rows of
the first two labels: every input whose top label was one of them flips, and no other does; the expected flip
rate is counted here from the source model in transformers, not from torchship's answers."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from conftest import run_stages
from moto_server import moto_server
from tiny_models import EXAMPLES, SENTIMENT_LABELS, WORDS, save_tiny_classifier, write_spec
from torchship.cli import app
from torchship.publish import make_client
from torchship.settings import Settings
from torchship.spec import load_spec

pytestmark = pytest.mark.torchserve

NAME = "tiny-promoted"
# Real-looking traffic beside the examples: 40 sentences of the tiny vocabulary, deterministic.
TRAFFIC = [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 6)) for i in range(40)]
LIMITS = "promote: {max_flip_rate: 0.05, max_p99_ratio: 50, latency_passes: 2}\n"


def _spread_labels(model_dir: Path, texts: list[str]) -> None:
    """A random tiny head gives every text the same top label; centring its logits over these texts (and
    scaling them up) spreads the top labels over all three, so a swap of two rows flips some inputs only."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        pooled = torch.cat([model.bert(**tokenizer(t, return_tensors="pt")).pooler_output for t in texts])
        logits = pooled @ model.classifier.weight.T
        scale = 8.0 / logits.std(dim=0)
        model.classifier.weight.mul_(scale[:, None])
        model.classifier.bias.copy_(-(logits * scale).mean(dim=0))
    model.save_pretrained(str(model_dir))


def _swap_first_two_labels(model_dir: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    with torch.no_grad():
        for tensor in (model.classifier.weight, model.classifier.bias):
            tensor[[0, 1]] = tensor[[1, 0]].clone()
    model.save_pretrained(str(model_dir))


def _top_labels(model_dir: Path, texts: list[str]) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return [
            model.config.id2label[int(model(**tokenizer(text, return_tensors="pt")).logits[0].argmax())]
            for text in texts
        ]


def _version(root: Path, model_dir: Path, version: str, outputs: Path) -> Path:
    spec_path = write_spec(
        root / version, str(model_dir), name=NAME, task="text-classification", extra=LIMITS
    )
    # The spread head's logits reach ~±20: float32 traces differ there by up to ~5e-4.
    text = spec_path.read_text().replace("version: 0.1.0", f"version: {version}")
    spec_path.write_text(text.replace("atol: 1.0e-5, rtol: 1.0e-4", "atol: 2.0e-3, rtol: 1.0e-4"))
    (spec_path.parent / "diff.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in TRAFFIC) + "not json\n" + '{"texts": ["a", "b"]}\n'
    )
    outcomes = run_stages(load_spec(spec_path), Settings(outputs_dir=outputs))
    assert outcomes[-1].status == "ran", outcomes[-1].error
    return spec_path


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("promote")
    outputs = root / "outputs"
    base = save_tiny_classifier(root / "model-base", "bert", seed=3)
    _spread_labels(base, [*EXAMPLES, *TRAFFIC])
    same = shutil.copytree(base, root / "model-same")
    swapped = shutil.copytree(base, root / "model-swapped")
    _swap_first_two_labels(swapped)
    specs = {
        "1.0.0": _version(root, base, "1.0.0", outputs),
        "1.0.1": _version(root, same, "1.0.1", outputs),
        "1.1.0": _version(root, swapped, "1.1.0", outputs),
    }
    return specs, outputs, base


@pytest.fixture(scope="module")
def env(tmp_path_factory, versions):
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    bucket = f"ts-{uuid.uuid4().hex[:10]}"
    with (
        moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(key, "testing")
        make_client(url, "us-east-1").create_bucket(Bucket=bucket)
        yield {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_CONFIG_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true", "TORCHSHIP_AWS_ENDPOINT_URL": url,
            "TORCHSHIP_OUTPUTS_DIR": str(versions[1]), "TORCHSHIP_PUBLISH_URI": f"s3://{bucket}/models",
            "GITHUB_ACTOR": "release-bot",
        }  # fmt: skip


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def torchship(*args, env) -> Ran:
    """The real command line, in this process (a subprocess per call would import torch a dozen times)."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_the_answer_sheet_is_published_and_hashed(versions, env, tmp_path):
    specs, _, _ = versions
    done = torchship("publish", specs["1.0.0"], env=env)
    assert done.returncode == 0, done.stderr
    pulled = torchship("pull", NAME, "1.0.0", "--to", tmp_path / "pulled", env=env)
    assert pulled.returncode == 0, pulled.stderr
    manifest = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    assert "answers.json" in manifest["files"]
    sheet = json.loads((tmp_path / "pulled" / "answers.json").read_text())
    # The examples, then the 40 traffic lines; the two bad lines are on record with their line numbers.
    assert [r["text"] for r in sheet["requests"]] == [*EXAMPLES, *TRAFFIC]
    assert sorted(s["where"] for s in sheet["skipped"]) == ["diff.jsonl:41", "diff.jsonl:42"]
    labels = [answer[0]["label"] for answer in sheet["answers"]]
    assert labels == _top_labels(versions[2], [*EXAMPLES, *TRAFFIC])


def test_diff_counts_the_flips_and_promotion_is_refused_then_accepted(versions, env):
    specs, outputs, base = versions
    for version in ("1.0.1", "1.1.0"):
        published = torchship("publish", specs[version], env=env)
        assert published.returncode == 0, published.stderr
    first = torchship("promote", specs["1.0.0"], "--stage", "production", env=env)
    assert first.returncode == 0 and "production → 1.0.0" in first.stdout, first.stderr
    assert "nothing to compare" in first.stderr

    texts = [*EXAMPLES, *TRAFFIC]
    old_labels = _top_labels(base, texts)
    flipped = [i for i, label in enumerate(old_labels) if label in (SENTIMENT_LABELS[0], SENTIMENT_LABELS[1])]
    assert 0 < len(flipped) < len(texts)  # the seed gives both kinds of input

    diffed = torchship("diff", specs["1.1.0"], "--against", "production", env=env)
    assert diffed.returncode == 1, diffed.stderr  # max_flip_rate broken
    record = json.loads((outputs / NAME / "1.1.0" / "diff" / "against-1.0.0" / "diff.json").read_text())
    measures = {m["name"]: m["value"] for m in record["task_diff"]["measures"]}
    assert measures["flip_rate"] == pytest.approx(len(flipped) / len(texts))
    assert sorted(c["index"] for c in record["task_diff"]["changed"]) == flipped
    assert [b["measure"] for b in record["breaches"]] == ["flip_rate"]
    assert record["notes"] == []  # both versions, served again, gave the answers their sheets recorded
    assert record["latency"]["old"]["requests"] == record["latency"]["new"]["requests"] == 2 * len(texts)
    assert "diff.jsonl:41" in {s["where"] for s in record["skipped"]}
    assert "flip_rate" in diffed.stdout and "BREACH" in diffed.stdout
    html = (outputs / NAME / "1.1.0" / "diff" / "against-1.0.0" / "diff.html").read_text()
    assert "<svg" in html and "confusion heat map" in html

    refused = torchship("promote", specs["1.1.0"], "--stage", "production", env=env)
    assert (
        refused.returncode != 0 and "refusing to promote" in refused.stderr and "flip_rate" in refused.stderr
    )
    assert "--accept-diff --reason" in refused.stderr

    same = torchship("promote", specs["1.0.1"], "--stage", "production", env=env)
    assert same.returncode == 0 and "production → 1.0.1 (was 1.0.0)" in same.stdout, same.stderr
    assert "flip_rate" in same.stderr and "no promotion limit broken" in same.stderr
    unchanged = json.loads((outputs / NAME / "1.0.1" / "diff" / "against-1.0.0" / "diff.json").read_text())
    assert unchanged["task_diff"]["changed"] == [] and unchanged["breaches"] == []
    assert {m["name"]: m["value"] for m in unchanged["task_diff"]["measures"]}["flip_rate"] == 0.0

    no_reason = torchship("promote", specs["1.1.0"], "--stage", "production", "--accept-diff", env=env)
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    accepted = torchship(
        "promote", specs["1.1.0"], "--stage", "production", "--accept-diff",
        "--reason", "labels 0 and 1 were swapped in the training data", env=env,
    )  # fmt: skip
    assert accepted.returncode == 0 and "accepted with a reason" in accepted.stdout, accepted.stderr

    history = torchship("history", NAME, env=env)
    assert history.returncode == 0, history.stderr
    entries = [line for line in history.stdout.splitlines() if " production " in line]
    assert len(entries) == 3 and all("by release-bot (github)" in line for line in entries)
    for line, moved, decision in zip(
        entries,
        ("→ 1.0.0", "1.0.0 → 1.0.1", "1.0.1 → 1.1.0"),
        ("promoted", "promoted", "accepted"),
        strict=True,
    ):
        assert moved in line and f" {decision} " in line, line
    assert "reason: labels 0 and 1 were swapped in the training data" in history.stdout
    assert history.stdout.count("breach: flip_rate") == 1


def test_diff_against_a_version_that_is_not_published_names_the_ones_there_are(versions, env):
    specs, _, _ = versions
    missing = torchship("diff", specs["1.1.0"], "--against", "9.9.9", env=env)
    assert missing.returncode != 0 and "9.9.9 is not a published version" in missing.stderr
    assert "1.0.0" in missing.stderr and "Traceback" not in missing.stderr
