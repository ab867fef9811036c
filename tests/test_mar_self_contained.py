"""The `.mar` is self-contained: its handler answers in a Python where `import torchship` fails.

TorchServe loads a .mar into a plain Python with torch and transformers; torchship is not installed there.
A static look at the handler sources (test_stages) misses an import done lazily or by a helper, so here
each package of the session (one per task) is extracted, and its entry file is initialized and asked in
a subprocess whose sys.meta_path refuses `torchship` and `torchship.*`. The answers must equal what the
validation gate computes in-process for the same compiled model.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from torchship.archiver.package import ENTRY_FILE, HANDLER_PACKAGE, handler_config
from torchship.handlers.requests import BadRequest
from torchship.handlers.service import answer_bodies, build_task
from torchship.sources import MODEL_DIRNAME

TEXTS = {
    "embeddings": ["the cat sat on the mat", "hello world", "ok"],
    "text-classification": ["a great movie , i love it !", "this film was terrible", "ok"],
    "token-classification": ["john lives in paris", "mary works at google in london", "ok"],
    "keywords": [
        "TorchServe batches requests, scales workers and serves PyTorch models over HTTP.",
        "Fresh basil, ripe tomatoes and olive oil make a simple summer pasta sauce.",
    ],
}
PACKAGES = {
    "embeddings": "tiny_package",
    "text-classification": "sentiment_package",
    "token-classification": "ner_package",
    "keywords": "keywords_package",
}
BAD_REQUEST = {"texts": "not a list"}

# Runs in the child. It first proves torchship WOULD be importable (so the blocker is what makes the
# test meaningful), then installs the blocker, loads each extracted archive the way TorchServe's worker
# does (archive root on sys.path, entry module imported by name, handle(None, ctx) to initialize), and
# prints one JSON line per model. Handler modules are dropped between models: TorchServe gives each
# model its own worker process.
CHILD = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, os, sys, traceback

    assert importlib.util.find_spec("torchship") is not None, "torchship must be importable before blocking"

    class RefuseTorchship(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torchship" or name.startswith("torchship."):
                raise ImportError(f"torchship is not installed in this TorchServe: import {name} refused")
            return None

    sys.meta_path.insert(0, RefuseTorchship())
    for name in [m for m in sys.modules if m == "torchship" or m.startswith("torchship.")]:
        del sys.modules[name]

    class Context:
        def __init__(self, model_dir, config, n):
            self.system_properties = {"model_dir": model_dir}
            self.model_yaml_config = config
            self.status = {}
            self.n = n

        def set_response_status(self, code, phrase, idx):
            self.status[idx] = code

        def set_response_content_type(self, idx, value):
            pass

        def get_all_request_header(self, idx):
            return {"content-type": "application/json"}

    for job in json.loads(sys.stdin.read()):
        model_dir = job["model_dir"]
        result = {"task": job["task"]}
        try:
            sys.path.insert(0, model_dir)
            os.chdir(model_dir)
            import torchship_entry
            import torchship_handlers

            result["handler_file"] = torchship_handlers.__file__
            ctx = Context(model_dir, job["config"], len(job["bodies"]))
            assert torchship_entry.handle(None, ctx) is None
            data = [{"body": json.dumps(b).encode()} for b in job["bodies"]]
            result["answers"] = [json.loads(r) for r in torchship_entry.handle(data, ctx)]
            result["status"] = ctx.status
        except BaseException:
            result["error"] = traceback.format_exc()
        finally:
            sys.path.remove(model_dir)
            for name in [m for m in sys.modules if m.split(".")[0] in ("torchship_entry", "torchship_handlers")]:
                del sys.modules[name]
        result["torchship_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "torchship")
        print("RESULT " + json.dumps(result), flush=True)
    """
)


def extract(mar: Path, target: Path) -> tuple[Path, dict[str, Any]]:
    import yaml

    with zipfile.ZipFile(mar) as archive:
        archive.extractall(target)
    return target, yaml.safe_load((target / "model-config.yaml").read_text())


def gate_answers(package, texts: list[str]) -> list[Any]:
    """What the validate stage computes for these texts: the compiled model loaded from the compile
    stage's outputs with the handler settings package writes, each text sent alone."""
    spec, settings, _ = package
    root = settings.stage_root(spec.name, spec.version)
    model_dir, compiled_dir = root / "fetch" / MODEL_DIRNAME, root / "compile"
    config = {**handler_config(spec, model_dir, compiled_dir), "tokenizer_dir": "."}
    task = build_task(model_dir, config, compiled_dir=compiled_dir)
    computed = answer_bodies(task, [{"text": t} for t in texts])
    assert not any(isinstance(a, BadRequest) for a in computed), computed
    return json.loads(json.dumps(computed))  # as JSON carries it: tuples become lists


def assert_close(served: Any, expected: Any, where: str = "") -> None:
    """Equal structure, equal strings and ints; floats within 1e-5 (the child runs on one thread)."""
    if isinstance(expected, float):
        assert isinstance(served, (int, float)) and math.isclose(served, expected, abs_tol=1e-5), (
            where,
            served,
            expected,
        )
    elif isinstance(expected, dict):
        assert isinstance(served, dict) and served.keys() == expected.keys(), (where, served, expected)
        for key in expected:
            assert_close(served[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(served, list) and len(served) == len(expected), (where, served, expected)
        for i, (s, e) in enumerate(zip(served, expected, strict=True)):
            assert_close(s, e, f"{where}[{i}]")
    else:
        assert served == expected, (where, served, expected)


@pytest.fixture(scope="module")
def isolated_runs(request, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Every task's .mar answered in ONE child process (a Python start and a torch import are most of
    the cost); each model still loads from its own extracted archive."""
    jobs = []
    for task, fixture in PACKAGES.items():
        _, _, mar = request.getfixturevalue(fixture)
        model_dir, config = extract(mar, tmp_path_factory.mktemp(f"extracted-{task}"))
        bodies = [{"text": t} for t in TEXTS[task]] + [BAD_REQUEST]
        jobs.append({"task": task, "model_dir": str(model_dir), "config": config, "bodies": bodies})
    run = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    results = [json.loads(line[7:]) for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    return {r["task"]: {**r, "model_dir": job["model_dir"]} for r, job in zip(results, jobs, strict=True)}


@pytest.mark.parametrize("task", list(PACKAGES))
def test_handler_answers_without_torchship(task, isolated_runs, request):
    run = isolated_runs[task]
    assert "error" not in run, run["error"]
    # The handler came from the archive, and torchship never got in.
    assert Path(run["handler_file"]).is_relative_to(run["model_dir"]), run["handler_file"]
    assert Path(run["handler_file"]).parent.name == HANDLER_PACKAGE
    assert (Path(run["model_dir"]) / ENTRY_FILE).is_file()
    assert run["torchship_loaded"] == []

    texts = TEXTS[task]
    *served, refused = run["answers"]
    expected = gate_answers(request.getfixturevalue(PACKAGES[task]), texts)
    assert len(served) == len(texts)
    assert_close(served, expected, task)
    # The malformed request in the same batch got its own 400; the others were answered (no status set).
    assert run["status"] == {str(len(texts)): 400}
    assert refused["code"] == 400 and "texts" in refused["message"]


def test_the_blocker_refuses_torchship(tmp_path):
    """The child's finder really makes `import torchship` fail (else the test above proves nothing)."""
    probe = CHILD.split("for job in")[0] + textwrap.dedent(
        """
        try:
            import torchship.handlers.service
        except ImportError as exc:
            print("refused:", exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "refused: torchship is not installed in this TorchServe" in run.stdout
