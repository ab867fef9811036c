"""The runner: records, cache skips, atomic stage dirs, nothing half-written on failure."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import run_stages
from torchship.errors import TorchshipError
from torchship.pipeline import Runner, SilentReporter, Stage, remove_abandoned_temp_dirs
from torchship.spec import load_spec
from torchship.stages import STAGES


def test_fetch_records_inputs_outputs_and_duration(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    [outcome] = run_stages(spec, settings, until="fetch")
    assert outcome.status == "ran"
    stage_dir = settings.stage_root(spec.name, spec.version) / "fetch"
    record = json.loads((stage_dir / "stage.json").read_text())
    assert record["status"] == "ok" and record["duration_s"] >= 0
    assert {"spec", "torchship", "source"} <= set(record["inputs"])
    assert "model/config.json" in record["outputs"]
    copied = stage_dir / "model" / "config.json"
    assert record["outputs"]["model/config.json"] == {
        "sha256": hashlib.sha256(copied.read_bytes()).hexdigest(),
        "bytes": copied.stat().st_size,
    }
    assert copied.read_bytes() == (Path(spec.source) / "config.json").read_bytes()


def test_unchanged_inputs_skip_and_changed_inputs_rerun(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    first = run_stages(spec, settings, until="validate")
    assert [o.status for o in first] == ["ran", "ran", "ran"]
    second = run_stages(spec, settings, until="validate")
    assert [o.status for o in second] == ["skipped", "skipped", "skipped"]
    # New examples change validate's inputs only.
    examples = tiny_spec_path.parent / "examples.jsonl"
    examples.write_text(examples.read_text() + '{"text": "a new example"}\n')
    third = run_stages(spec, settings, until="validate")
    assert [o.status for o in third] == ["skipped", "skipped", "ran"]
    forced = run_stages(spec, settings, until="fetch", force=True)
    assert forced[0].status == "ran"


def test_tampered_output_is_not_trusted(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="fetch")
    config = settings.stage_root(spec.name, spec.version) / "fetch" / "model" / "config.json"
    config.write_text(config.read_text() + " ")
    assert run_stages(spec, settings, until="fetch")[0].status == "ran"


def test_out_of_date_dependency_is_refused(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="compile")
    text = tiny_spec_path.read_text().replace("max_length: 64", "max_length: 32")
    tiny_spec_path.write_text(text)
    changed = load_spec(tiny_spec_path)
    runner = Runner(changed, settings, STAGES, SilentReporter())
    [outcome] = runner.run(["validate"])
    assert outcome.status == "failed"
    assert isinstance(outcome.error, TorchshipError) and "out of date" in str(outcome.error)


def test_failed_stage_leaves_no_output_and_no_temp_dir(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)

    def half_then_fail(ctx):
        (ctx.out_dir / "partial.bin").write_bytes(b"x" * 100)
        raise RuntimeError("disk on fire")

    stages = [Stage("broken", "fails half-way", half_then_fail)]
    [outcome] = Runner(spec, settings, stages, SilentReporter()).run(["broken"])
    assert outcome.status == "failed" and "disk on fire" in str(outcome.error)
    root = settings.stage_root(spec.name, spec.version)
    # Only the run's bookkeeping: the state (which records the failure) and the lock file.
    assert sorted(p.name for p in root.iterdir()) == [".lock", "state.json"]
    assert "disk on fire" in json.loads((root / "state.json").read_text())["failed"]["broken"]["error"]


def test_a_failed_rerun_keeps_the_last_good_outputs_and_marks_them_stale(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    calls = {"n": 0}

    def flaky(ctx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("second run fails")
        (ctx.out_dir / "out.txt").write_text("ok")
        return {}

    def later(ctx):
        (ctx.out_dir / "later.txt").write_text("made from the first output")
        return {}

    stages = [Stage("first", "", flaky), Stage("second", "", later, ("first",))]
    runner = Runner(spec, settings, stages, SilentReporter())
    assert [o.status for o in runner.run(["first", "second"])] == ["ran", "ran"]
    outcomes = runner.run(["first", "second"], force=True)
    assert [o.status for o in outcomes] == ["failed"]
    root = settings.stage_root(spec.name, spec.version)
    assert (root / "first" / "out.txt").read_text() == "ok"
    assert (root / "second" / "later.txt").is_file()
    with pytest.raises(TorchshipError, match="stale: the last run of stage 'first' failed"):
        runner.require_current("second")
    # The same inputs are not trusted after a failure: the next run re-runs the stage, then clears the mark.
    assert [o.status for o in runner.run(["first", "second"])] == ["ran", "skipped"]
    assert runner.require_current("second")["status"] == "ok"


def test_abandoned_temp_dirs_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".compile.tmp-abcd1234-999999999"
    alive = tmp_path / f".compile.tmp-abcd1234-{__import__('os').getpid()}"
    for d in (dead, alive):
        d.mkdir()
    remove_abandoned_temp_dirs(tmp_path)
    assert not dead.exists() and alive.exists()


def test_stage_before_its_dependency_is_refused(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    [outcome] = Runner(spec, settings, STAGES, SilentReporter()).run(["package"])
    assert outcome.status == "failed"
    assert "has not run" in str(outcome.error)


def test_outputs_belong_to_one_spec_file_until_it_is_gone(tmp_path, tiny_spec_path, settings):
    from torchship.errors import SpecError

    def write(ctx):
        (ctx.out_dir / "out.txt").write_text(ctx.spec.description)
        return {}

    stages = [Stage("only", "", write, spec_keys=("description",))]
    first = load_spec(tiny_spec_path)
    assert Runner(first, settings, stages, SilentReporter()).run(["only"])[0].status == "ran"
    other_path = tmp_path / "other" / "model.yaml"
    other_path.parent.mkdir()
    other_path.write_text(tiny_spec_path.read_text() + "description: another model\n")
    shutil.copy(tiny_spec_path.parent / "examples.jsonl", other_path.parent)
    other = load_spec(other_path)
    with pytest.raises(SpecError, match="both claim"):
        Runner(other, settings, stages, SilentReporter()).run(["only"])
    root = settings.stage_root(first.name, first.version)
    assert (root / "only" / "out.txt").read_text() == ""
    tiny_spec_path.unlink()  # the first spec is gone (moved or deleted): the other may take over
    assert Runner(other, settings, stages, SilentReporter()).run(["only"])[0].status == "ran"
    assert (root / "only" / "out.txt").read_text() == "another model"
