"""Two versions served side by side in one real TorchServe (diff/run.py), without publishing: embeddings of a
re-initialised encoder are reported incompatible, with the cosines a test computes itself in transformers;
the very same archive under two version numbers changes nothing. And what cannot be compared says so."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import packaged
from tiny_models import EXAMPLES, save_tiny_bert, write_spec
from torchship.diff.run import check_comparable, run_diff
from torchship.diff.versions import VersionFiles
from torchship.errors import TorchshipError
from torchship.tasks import task_definition

pytestmark = pytest.mark.torchserve


def _files(version: str, mar, task: str = "embeddings") -> VersionFiles:
    return VersionFiles(version=version, origin=f"test {version}", mar=mar, task=task, sheet=None)


def _sentence_vectors(model_dir, texts: list[str]) -> torch.Tensor:
    """Mean of the last hidden states over real tokens, L2-normalised: the tiny model's pooling config."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    vectors = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, return_tensors="pt")
            hidden = model(**batch).last_hidden_state[0]
            mask = batch["attention_mask"][0].unsqueeze(-1).float()
            vectors.append(torch.nn.functional.normalize((hidden * mask).sum(0) / mask.sum(), dim=0))
    return torch.stack(vectors)


@pytest.fixture(scope="module")
def reinitialised(tmp_path_factory):
    root = tmp_path_factory.mktemp("reinit")
    model_dir = save_tiny_bert(root / "model", seed=1)
    return packaged(write_spec(root / "spec", str(model_dir)), root / "outputs"), model_dir


def test_a_reinitialised_encoder_is_reported_incompatible(tiny_package, tiny_model_dir, reinitialised):
    spec, settings, old_mar = tiny_package
    (_, _, new_mar), new_dir = reinitialised
    record = run_diff(spec, settings, _files("0.1.0", old_mar), _files("0.2.0", new_mar), lambda _: None)
    task = record.task_diff
    assert task.compatible is False and "Do not mix the two versions' vectors in one index" in task.note
    want = (_sentence_vectors(tiny_model_dir, EXAMPLES) * _sentence_vectors(new_dir, EXAMPLES)).sum(dim=1)
    assert [r["text"] for r in record.requests] == EXAMPLES
    assert task.cosines == pytest.approx(want.tolist(), abs=1e-4)
    assert task.measure("min_cosine").value == pytest.approx(min(want.tolist()), abs=1e-4)
    assert record.latency is not None and record.latency.old.requests == record.latency.new.requests > 0


def test_the_same_archive_under_two_versions_changes_nothing(tiny_package):
    spec, settings, mar = tiny_package
    record = run_diff(spec, settings, _files("0.1.0", mar), _files("0.1.1", mar), lambda _: None)
    task = record.task_diff
    assert task.compatible is True and task.changed == []
    assert task.measure("min_cosine").value == pytest.approx(1.0, abs=1e-6)
    assert task.measure("neighbour_overlap").value == 1.0


def test_versions_of_other_tasks_or_the_same_version_are_not_compared(tiny_package):
    spec, _, mar = tiny_package
    with pytest.raises(
        TorchshipError, match="is a text-classification model and the spec's task is embeddings"
    ):
        check_comparable(spec, _files("0.1.0", mar, "text-classification"), _files("0.2.0", mar))
    with pytest.raises(TorchshipError, match="nothing to compare"):
        check_comparable(spec, _files("0.1.0", mar), _files("0.1.0", mar))


def test_classification_label_sets_that_differ_are_said_and_still_compared():
    old = [[{"label": "neg", "score": 0.9}, {"label": "pos", "score": 0.1}]] * 2
    new = [
        [{"label": "negative", "score": 0.8}, {"label": "pos", "score": 0.2}],
        [{"label": "pos", "score": 0.7}, {"label": "negative", "score": 0.3}],
    ]
    diff = task_definition("text-classification").diff([{"text": "a"}, {"text": "b"}], old, new)
    assert (
        "only the old version has ['neg']" in diff.note and "only the new one has ['negative']" in diff.note
    )
    assert diff.measure("flip_rate").value == 1.0  # a renamed label is a flip to a client reading it


def test_a_version_that_no_longer_gives_its_recorded_answers_is_said(tiny_package):
    from torchship.diff.answers import AnswerSheet
    from torchship.diff.run import sheet_note

    spec, _, mar = tiny_package
    requests = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    recorded = AnswerSheet(
        name=spec.name, version="0.1.0", task="embeddings", inputs_origin=["examples.jsonl"],
        requests=requests, answers=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
    )  # fmt: skip
    files = VersionFiles(version="0.1.0", origin="test", mar=mar, task="embeddings", sheet=recorded)
    assert sheet_note(files, requests, [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], spec) is None
    note = sheet_note(files, requests, [[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]], spec)
    assert note is not None and "answered 1 of 3 inputs differently from its answer sheet" in note


def test_promote_limits_are_checked_against_the_task_s_measures(tmp_path, tiny_model_dir):
    from torchship.diff.limits import check_limit_names
    from torchship.errors import SpecError
    from torchship.spec import load_spec

    def spec_with(promote: str):
        return load_spec(write_spec(tmp_path / "s", str(tiny_model_dir), extra=f"promote: {promote}\n"))

    good = spec_with("{min_neighbour_overlap: 0.9, max_p99_ratio: 1.5}")
    assert check_limit_names(good, task_definition("embeddings")) == {
        "min_neighbour_overlap": 0.9, "max_p99_ratio": 1.5,
    }  # fmt: skip
    with pytest.raises(SpecError, match="the embeddings diff has no measure 'flip_rate'") as caught:
        check_limit_names(spec_with("{max_flip_rate: 0.1}"), task_definition("embeddings"))
    assert "neighbour_overlap" in (caught.value.hint or "")
    with pytest.raises(SpecError, match="unknown key 'flip_rate'"):
        spec_with("{flip_rate: 0.1}")
    with pytest.raises(SpecError, match="must be a number >= 0"):
        spec_with("{max_flip_rate: -1}")


def test_a_live_diff_replays_traffic_against_two_running_torchserves(tiny_package, reinitialised, tmp_path):
    """`torchship diff --live`: the stable and the canary are two real TorchServes (each its own token)."""
    import json
    import os
    import subprocess
    import sys

    from torchship.serving.ports import free_port
    from torchship.serving.torchserve import TorchServe

    spec, settings, old_mar = tiny_package
    (_, _, new_mar), _ = reinitialised
    replay = tmp_path / "requests.jsonl"
    lines = [json.dumps({"text": t}) for t in EXAMPLES]
    lines += ["{not json", json.dumps({"texts": ["a", "b"]}), json.dumps({"text": "word " * 300_000})]
    replay.write_text("\n".join(lines) + "\n")

    def torchship(*args):
        return subprocess.run(
            [sys.executable, "-m", "torchship.cli", "diff", spec.spec_path, *map(str, args)],
            capture_output=True, text=True, env=os.environ, timeout=300,
        )  # fmt: skip

    with (
        TorchServe({spec.name: old_mar}, settings) as stable,
        TorchServe({spec.name: new_mar}, settings) as canary,
    ):
        urls = [stable.inference_url, canary.inference_url]
        tokens = ["--token", stable.inference_token, "--canary-token", canary.inference_token]
        done = torchship("--live", *urls, "--replay", replay, *tokens, "--out", tmp_path / "live")
        nowhere = f"http://127.0.0.1:{free_port()}"
        unreachable = torchship("--live", urls[0], nowhere, "--replay", replay, *tokens)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "live" / "diff.json").read_text())
    assert [r["text"] for r in record["requests"]] == EXAMPLES
    assert record["task_diff"]["compatible"] is False
    skipped = {s["where"]: s["reason"] for s in record["skipped"]}
    assert set(skipped) == {"requests.jsonl:6", "requests.jsonl:7", "requests.jsonl:8"}
    assert (
        "items in a list" in skipped["requests.jsonl:7"]
        and "over the limit of 1048576 bytes" in skipped["requests.jsonl:8"]
    )
    assert record["old"]["origin"] == urls[0] and record["new"]["origin"] == urls[1]
    assert (
        unreachable.returncode != 0 and f"the canary endpoint {nowhere} is unreachable" in unreachable.stderr
    )
    assert "nothing was sent" in unreachable.stderr and "Traceback" not in unreachable.stderr


def test_each_task_s_one_request_one_answer_rule():
    from torchship.diff.inputs import one_answer_problem

    one = {
        "embeddings": {"text": "a"},
        "reranking": {"query": "q", "texts": ["a", "b", "c"]},  # one ranking of three texts
        "question-answering": {"question": "q", "context": "c"},
    }
    many = {
        "embeddings": {"texts": ["a", "b"]},
        "question-answering": [{"question": "q", "context": "c"}, {"question": "r", "context": "d"}],
    }
    for task, body in one.items():
        assert one_answer_problem(task_definition(task), body) is None, task
    for task, body in many.items():
        assert "items in a list" in (one_answer_problem(task_definition(task), body) or ""), task
