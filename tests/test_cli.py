"""The `torchship` command as a user runs it: one-line errors, exit codes, nothing half-written."""

import os
import subprocess
import sys

from tiny_models import write_spec


def torchship(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "torchship.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_broken_spec_exits_2_naming_file_and_key(tmp_path):
    spec = tmp_path / "model.yaml"
    spec.write_text("name: m\nversion: 1.0.0\ntask: translation\nsource: x\ncompile: {dynamic: true}\n")
    result = torchship("run", spec, cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {spec}: " in result.stderr
    assert "key 'task'" in result.stderr and "unknown key 'compile.dynamic'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_exits_1_and_writes_no_stage(tmp_path):
    spec = write_spec(tmp_path / "spec", "no/such/dir")
    result = torchship("run", spec, cwd=tmp_path, env={"TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out")})
    assert result.returncode == 1
    assert "source directory" in result.stderr and "does not exist" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    stage_root = tmp_path / "out" / "tiny-embeddings" / "0.1.0"
    # Only the run's bookkeeping (the lock, the state recording the failure): no stage dir, no temp dir.
    assert not stage_root.exists() or sorted(p.name for p in stage_root.iterdir()) == [".lock", "state.json"]


def test_debug_shows_the_traceback(tmp_path):
    spec = write_spec(tmp_path / "spec", "no/such/dir")
    result = torchship(
        "--debug", "run", spec, cwd=tmp_path, env={"TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "o")}
    )
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_unknown_stage_for_until(tmp_path):
    spec = write_spec(tmp_path / "spec", "x")
    result = torchship("run", spec, "--until", "deploy")
    assert result.returncode == 2 and "not a stage" in result.stderr


def test_run_until_then_skip(tmp_path, tiny_model_dir):
    spec = write_spec(tmp_path / "spec", str(tiny_model_dir))
    env = {"TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out")}
    first = torchship("run", spec, "--until", "compile", env=env)
    assert first.returncode == 0, first.stderr
    assert "fetch" in first.stderr and "✓ ran" in first.stderr
    second = torchship("run", spec, "--until", "compile", env=env)
    assert second.returncode == 0 and second.stderr.count("skipped (inputs unchanged)") == 2
