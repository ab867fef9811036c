"""Each stage on its own: fetch, compile, validate, package (verify is in test_torchserve.py)."""

import json
import shutil
import zipfile

import pytest
import torch
import yaml

from conftest import run_stages
from tiny_models import write_spec
from torchship.errors import CompileError, SourceError, ValidationFailed
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
        ("s3://bucket/model", "not supported"),
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
    assert details["dynamic_shapes"] is True and details["traced_shape"] == [2, 16]
    assert all(p["ok"] for p in details["probes"])
    assert {p["length"] for p in details["probes"]} - {16}, "probed only the traced length"
    module = torch.jit.load(str(stage_dir(settings, spec, "compile") / "model.pt"))
    out = module(torch.tensor([[2, 10, 11, 3]]), torch.ones(1, 4, dtype=torch.long))
    assert out.shape == (1, 4, 32)


class _ShapeDependent(torch.nn.Module):
    """Python control flow on the sequence length: a trace bakes in the branch taken."""

    def forward(self, input_ids, attention_mask):
        x = input_ids.float().unsqueeze(-1).repeat(1, 1, 4)
        if input_ids.shape[1] > 16:
            return x * 2
        return x


class _DictOutput(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        return {"oops": input_ids}.items()


def test_compile_refuses_a_trace_that_bakes_in_the_length(tiny_spec_path, settings, monkeypatch):
    monkeypatch.setattr("torchship.compile.torchscript.load_source_model", lambda *a: _ShapeDependent())
    spec = load_spec(tiny_spec_path)
    error = fail_of(run_stages(spec, settings, until="compile"))
    assert isinstance(error, CompileError) and "not shape-dynamic" in str(error)
    assert not stage_dir(settings, spec, "compile").exists()


def test_compile_reports_a_model_that_cannot_trace(tiny_spec_path, settings, monkeypatch):
    monkeypatch.setattr("torchship.compile.torchscript.load_source_model", lambda *a: _DictOutput())
    spec = load_spec(tiny_spec_path)
    error = fail_of(run_stages(spec, settings, until="compile"))
    assert isinstance(error, CompileError) and "torch.jit.trace failed" in str(error)
    assert not stage_dir(settings, spec, "compile").exists()


# --- validate --------------------------------------------------------------------------------------


def test_validate_covers_examples_lengths_and_batch_sizes(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="validate")
    report = json.loads((stage_dir(settings, spec, "validate") / "report.json").read_text())
    assert report["verdict"] == "pass"
    names = [c["case"] for c in report["cases"]]
    assert any(n.startswith("examples[") for n in names)
    lengths = {c["length"] for c in report["cases"]}
    assert {3, 16, 64} <= lengths  # one token ([CLS] x [SEP]), short, max_length
    assert {c["batch"] for c in report["cases"]} >= {1, 3, 4}
    for output in ("model_output", "task_output"):
        assert report["outputs"][output]["max_abs"] <= spec.validate.atol


def test_validate_fails_beyond_tolerance_and_nothing_is_packaged(tiny_spec_path, settings, monkeypatch):
    from torchship.modeling import load_source_model

    def perturbed(model_dir, task):
        model = load_source_model(model_dir, task)
        with torch.no_grad():
            model.model.encoder.layer[0].output.dense.weight.mul_(1.01)
        return model

    spec = load_spec(tiny_spec_path)
    run_stages(spec, settings, until="compile")
    monkeypatch.setattr("torchship.validate.parity.load_source_model", perturbed)
    error = fail_of(run_stages(spec, settings, until="package"))
    assert isinstance(error, ValidationFailed) and error.exit_code != 0
    assert "differs from the source" in str(error) and "by up to" in str(error)
    assert not stage_dir(settings, spec, "validate").exists()
    assert not stage_dir(settings, spec, "package").exists()


# --- package ---------------------------------------------------------------------------------------


def test_package_is_self_contained(tiny_package):
    spec, _, mar = tiny_package
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(archive.read("model-config.yaml"))
        handler_sources = [archive.read(n).decode() for n in names if n.startswith("torchship_handlers/")]
    assert manifest["model"]["modelName"] == spec.name and manifest["model"]["modelVersion"] == spec.version
    assert manifest["model"]["handler"] == "torchship_entry.py"
    assert {
        "model.pt",
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
    assert config["handler"]["threads"] == 1 and config["handler"]["pooling"] == "mean"
    assert config["handler"]["normalize"] is True
