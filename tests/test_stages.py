"""Each stage on its own: fetch, compile, validate, package (verify is in test_torchserve.py)."""

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import torchship.handlers
from conftest import run_stages
from tiny_models import write_spec
from torchship.errors import CompileError, SourceError
from torchship.handlers.model_io import ModelIO, NamedIO
from torchship.spec import load_spec


def stage_dir(settings, spec, stage):
    return settings.stage_root(spec.name, spec.version) / stage


def fail_of(outcomes):
    assert outcomes[-1].status == "failed", [o.status for o in outcomes]
    return outcomes[-1].error


# --- fetch -----------------------------------------------------------------------------------------


def test_fetch_copies_a_directory_source(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="fetch")
    model = stage_dir(settings, spec, "fetch") / "model"
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()


def test_fetch_resolves_a_packaged_model(tmp_path, settings, tiny_model_dir, monkeypatch):
    package = tmp_path / "site" / "shipped_model"
    shutil.copytree(tiny_model_dir, package / "weights")
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = load_spec(write_spec(tmp_path / "spec", "pkg:shipped_model/weights"))
    [outcome] = run_stages(spec, settings, until="fetch")
    assert outcome.status == "ran"
    assert outcome.record["details"]["model_type"] == "bert"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("does/not/exist", "does not exist"),
        ("pkg:no_such_module_here/model", "is not installed"),
    ],
)
def test_fetch_rejects_missing_sources_and_writes_nothing(tmp_path, settings, source, message):
    spec = load_spec(write_spec(tmp_path / "spec", source))
    error = fail_of(run_stages(spec, settings, until="fetch"))
    assert isinstance(error, SourceError) and message in str(error)
    assert not stage_dir(settings, spec, "fetch").exists()


def test_fetch_rejects_a_directory_without_config(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    spec = load_spec(write_spec(tmp_path / "spec", str(tmp_path / "empty")))
    error = fail_of(run_stages(spec, settings, until="fetch"))
    assert "no config.json" in str(error)


# --- compile ---------------------------------------------------------------------------------------


def test_compile_traces_a_shape_dynamic_module(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    outcome = run_stages(spec, settings, until="compile")[-1]
    details = outcome.record["details"]
    assert details["mode"] == "dynamic" and details["dynamic_shapes"] is True
    assert details["traced_shape"] == [2, 16] and "optimized" in details
    assert all(p["ok"] for p in details["probes"])
    assert {p["length"] for p in details["probes"]} - {16}, "probed only the traced length"
    compiled = stage_dir(settings, spec, "compile")
    assert json.loads((compiled / "compiled.json").read_text()) == {
        "format": "torchscript",
        "file": "model.pt",
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "outputs": ["last_hidden_state"],
    }
    module = torch.jit.load(str(compiled / "model.pt"))
    ids = torch.tensor([[2, 10, 11, 3]])
    [out] = module(ids, torch.ones(1, 4, dtype=torch.long), torch.zeros_like(ids))
    assert out.shape == (1, 4, 32)


_IDS_AND_MASK = ModelIO(("input_ids", "attention_mask"), ("last_hidden_state",))


class _ShapeDependent(NamedIO):
    """Python control flow on the sequence length: a trace bakes in the branch taken."""

    def __init__(self):
        super().__init__(torch.nn.Identity(), _IDS_AND_MASK)

    def forward(self, input_ids, attention_mask):
        x = input_ids.float().unsqueeze(-1).repeat(1, 1, 4)
        if input_ids.shape[1] > 16:
            return (x * 2,)
        return (x,)


class _DictOutput(NamedIO):
    def __init__(self):
        super().__init__(torch.nn.Identity(), _IDS_AND_MASK)

    def forward(self, input_ids, attention_mask):
        return {"oops": input_ids}.items()


def test_compile_refuses_a_trace_that_bakes_in_the_length(tiny_spec_path, settings, monkeypatch):
    monkeypatch.setattr("torchship.compile.load_source_model", lambda *a: _ShapeDependent())
    spec = load_spec(tiny_spec_path)
    error = fail_of(run_stages(spec, settings, until="compile"))
    assert isinstance(error, CompileError) and "not shape-dynamic" in str(error)
    assert "compile.buckets" in error.hint
    assert not stage_dir(settings, spec, "compile").exists()


def test_with_buckets_a_length_dependent_model_gets_one_trace_per_bucket(
    tiny_spec_path, settings, monkeypatch
):
    monkeypatch.setattr("torchship.compile.load_source_model", lambda *a: _ShapeDependent())
    spec = load_spec(tiny_spec_path)
    spec = spec.model_copy(update={"compile": spec.compile.model_copy(update={"buckets": [16, 64]})})
    outcome = run_stages(spec, settings, until="compile")[-1]
    assert outcome.status == "ran", outcome.error
    details = outcome.record["details"]
    assert details["mode"] == "per-bucket" and "length 37" in details["dynamic_failure"]
    assert {(s["batch"], s["length"]) for s in details["shapes"]} == {(1, 16), (4, 16), (1, 64), (4, 64)}
    assert all(p["ok"] for p in details["bucket_probes"])


def test_compile_reports_a_model_that_cannot_trace(tiny_spec_path, settings, monkeypatch):
    monkeypatch.setattr("torchship.compile.load_source_model", lambda *a: _DictOutput())
    spec = load_spec(tiny_spec_path)
    error = fail_of(run_stages(spec, settings, until="compile"))
    assert isinstance(error, CompileError) and "torch.jit.trace tracing failed" in str(error)
    assert "compile.backend: eager" in error.hint
    assert not stage_dir(settings, spec, "compile").exists()


def test_eager_backend_saves_the_model_for_from_pretrained(tmp_path, tiny_model_dir, settings):
    spec = load_spec(write_spec(tmp_path / "spec", str(tiny_model_dir)))
    spec = spec.model_copy(update={"compile": spec.compile.model_copy(update={"backend": "eager"})})
    outcomes = run_stages(spec, settings, until="package")
    assert [o.status for o in outcomes] == ["ran"] * 4, outcomes[-1].error
    compiled = stage_dir(settings, spec, "compile")
    assert json.loads((compiled / "compiled.json").read_text())["format"] == "eager"
    assert (compiled / "hf" / "config.json").is_file()


def test_neuron_backend_without_the_neuron_sdk_says_how_to_install(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    spec = spec.model_copy(update={"compile": spec.compile.model_copy(update={"backend": "neuron"})})
    error = fail_of(run_stages(spec, settings, until="compile"))
    assert isinstance(error, CompileError) and "needs torch_neuronx, which is not installed" in str(error)
    assert "pip install torch-neuronx" in error.hint and "pip.repos.neuron.amazonaws.com" in error.hint


# --- package ---------------------------------------------------------------------------------------


def test_package_is_self_contained(tiny_package):
    spec, settings, mar = tiny_package
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(archive.read("model-config.yaml"))
        handler_sources = [archive.read(n).decode() for n in names if n.startswith("torchship_handlers/")]
    assert manifest["model"]["modelName"] == spec.name and manifest["model"]["modelVersion"] == spec.version
    assert manifest["model"]["handler"] == "torchship_entry.py"
    assert {
        "compiled/compiled.json",
        "compiled/model.pt",
        "torchship.json",
        "torchship_entry.py",
        "torchship_handlers/service.py",
        "tokenizer/tokenizer_config.json",
        "config.json",
    } <= names
    # The handler must run in a TorchServe without torchship installed.
    assert handler_sources and not any(
        "import torchship" in s or "from torchship" in s for s in handler_sources
    )
    assert config["batchSize"] == 4 and config["minWorkers"] == config["maxWorkers"] == 1
    assert config["handler"]["threads"] == 1 and config["handler"]["settings"]["pooling"] == "mean"
    with zipfile.ZipFile(mar) as archive:
        gate = json.loads(archive.read("torchship.json"))["gate"]
    assert gate["verdict"] == "pass" and {c["name"] for c in gate["checks"]} >= {"parity", "agreement"}
    # The record is the validate stage's report as it lies on disk: its checks and its bytes' sha256.
    report = settings.stage_root(spec.name, spec.version) / "validate" / "report.json"
    assert gate["checks"] == json.loads(report.read_text())["checks"]
    assert gate["report_sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    # The handler package inside is byte for byte the torchship/handlers this code ships.
    handlers_src = Path(torchship.handlers.__file__).parent
    with zipfile.ZipFile(mar) as archive:
        for source in handlers_src.glob("*.py"):
            assert archive.read(f"torchship_handlers/{source.name}") == source.read_bytes(), source.name
    assert config["handler"]["settings"]["normalize"] is True
