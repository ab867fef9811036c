"""compile.backend: onnx — exported with dynamic axes, gated like every backend, served by a real TorchServe
with the source model's answers (verify's served parity), for each task's tiny model."""

from __future__ import annotations

import json
import sys
import zipfile

import pytest

from conftest import run_stages
from tiny_models import save_tiny_classifier, write_spec
from torchship.archiver.package import mar_path
from torchship.errors import CompileError
from torchship.handlers.loading import load_compiled
from torchship.modeling import load_source_model
from torchship.settings import Settings
from torchship.spec import load_spec


def onnx_spec(directory, source, fusion=False, **kwargs):
    path = write_spec(directory, str(source), **kwargs)
    backend = "backend: onnx, onnx_fusion: true" if fusion else "backend: onnx"
    path.write_text(path.read_text().replace("backend: torchscript", backend))
    return load_spec(path)


def stage_dir(spec, settings, stage):
    return settings.stage_root(spec.name, spec.version) / stage


@pytest.mark.torchserve
def test_embeddings_onnx_passes_the_gate_and_serves_the_source_models_answers(tmp_path, tiny_model_dir):
    spec = onnx_spec(tmp_path / "spec", tiny_model_dir, fusion=True)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="verify")
    assert [o.status for o in outcomes] == ["ran"] * 5, outcomes[-1].error
    compiled = stage_dir(spec, settings, "compile")
    assert json.loads((compiled / "compiled.json").read_text()) == {
        "format": "onnx",
        "file": "model.onnx",
        "inputs": [
            "input_ids",
            "attention_mask",
            "token_type_ids",
        ],  # a BERT: its tokenizer gives token types
        "outputs": ["last_hidden_state"],
    }
    details = outcomes[1].record["details"]
    assert details["backend"] == "onnx" and details["serve_requirements"] == ["onnxruntime"]
    assert all(p["ok"] for p in details["probes"]) and len(details["probes"]) == 4
    # ONNX Runtime's transformer optimizer fused the graph: per layer of the tiny BERT (2 layers) one
    # attention and two skip + LayerNorm, one embedding + LayerNorm; counted here in the file itself.
    import onnx

    ops = [node.op_type for node in onnx.load(str(compiled / "model.onnx")).graph.node]
    layers = json.loads((stage_dir(spec, settings, "fetch") / "model" / "config.json").read_text())[
        "num_hidden_layers"
    ]
    assert (ops.count("Attention"), ops.count("SkipLayerNormalization"), ops.count("EmbedLayerNormalization")) == (
        layers, 2 * layers, 1,
    )  # fmt: skip
    assert details["fusion"]["applied"] and details["fusion"]["fused"]["Attention"] == layers
    assert not (compiled / "model-plain.onnx").exists()
    with zipfile.ZipFile(mar_path(stage_dir(spec, settings, "package"), spec)) as archive:
        assert "compiled/model.onnx" in archive.namelist()
    # verify compared the served answers with the source model's (served parity in a real TorchServe).
    served = json.loads((stage_dir(spec, settings, "verify") / "report.json").read_text())
    assert served["verdict"] == "pass"


def test_onnx_forward_equals_the_eager_model_at_unseen_shapes(tmp_path, tiny_model_dir):
    """Independent of the gate: the exported graph run by ONNX Runtime vs transformers' own model."""
    import torch

    spec = onnx_spec(tmp_path / "spec", tiny_model_dir)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    assert run_stages(spec, settings, until="compile")[-1].status == "ran"
    compiled = load_compiled(stage_dir(spec, settings, "compile"))
    eager = load_source_model(stage_dir(spec, settings, "fetch") / "model", "embeddings", spec.spec_path)
    assert compiled.io == eager.io
    import onnx

    # By default the plain export is served (ONNX Runtime optimizes it at load; fused was slower batched).
    ops = {
        node.op_type
        for node in onnx.load(str(stage_dir(spec, settings, "compile") / "model.onnx")).graph.node
    }
    assert "Attention" not in ops and "MatMul" in ops
    generator = torch.Generator().manual_seed(3)
    for batch, length in [(1, 3), (7, 41), (3, 64)]:
        ids = torch.randint(5, 90, (batch, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[-1, length // 2 :] = 0
        features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
        with torch.inference_mode():
            expected = eager.model(**features).last_hidden_state  # transformers' own model, called by name
        got = compiled.forward(features)["last_hidden_state"]
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize("task", ["text-classification", "token-classification"])
def test_classification_heads_pass_the_gate_with_onnx(tmp_path, task):
    model_dir = save_tiny_classifier(tmp_path / "model", "bert")
    if task == "token-classification":
        from test_ner import BIO_LABELS, save_roberta

        model_dir = save_roberta(tmp_path / "ner-model", 0, BIO_LABELS)
    spec = onnx_spec(tmp_path / "spec", model_dir, name=f"tiny-{task}", task=task)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="package")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    report = json.loads((stage_dir(spec, settings, "validate") / "report.json").read_text())
    assert report["verdict"] == "pass"


def test_without_onnxruntime_the_compile_stage_says_what_to_install(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    spec = onnx_spec(tmp_path / "spec", tiny_model_dir)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    failed = run_stages(spec, settings, until="compile")[-1]
    assert failed.status == "failed" and isinstance(failed.error, CompileError)
    assert "onnxruntime is not installed" in str(failed.error)
    assert "pip install onnx onnxruntime" in failed.error.hint


def test_an_architecture_the_optimizer_does_not_know_keeps_the_plain_graph(tmp_path):
    from torchship.compile.onnx_fusion import fuse_graph

    fusion = fuse_graph(tmp_path / "plain.onnx", tmp_path / "fused.onnx", {"model_type": "albert"})
    assert not fusion.applied and "no fusions for albert" in fusion.note
    assert not (tmp_path / "fused.onnx").exists()
