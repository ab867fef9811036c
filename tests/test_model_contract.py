"""The named model contract through every compile backend: token types reach the compiled model and
matter (a BERT cross-encoder), a model with two outputs compiles and is checked per output (extractive
question answering), and a compiled model that drops token types is caught by the gate's parity check."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from conftest import run_stages
from tiny_models import save_tiny_cross_encoder, save_tiny_qa, write_spec
from torchship.compile.onnx import compile_onnx
from torchship.compile.torchscript import compile_torchscript
from torchship.handlers.encoder import Encoder
from torchship.handlers.loading import load_compiled
from torchship.handlers.model_io import NamedIO, pad_features
from torchship.modeling import load_source_model, load_tokenizer
from torchship.settings import Settings
from torchship.spec import load_spec
from torchship.validate.parity import build_cases, compare, parity_failure

QUERIES = ["who lives in paris", "a great movie", "the cat", "where does john work", "ok"]
PASSAGES = [
    "john lives in paris and works for google .",
    "a great movie , i love it !",
    "the dog sat on the mat .",
    "mary works for apple in london , john works for google .",
    "yes",
]


def pair_rows(tokenizer, queries=QUERIES, passages=PASSAGES):
    """(query, passage) pairs as the tokenizer encodes them: token type 1 on the passage."""
    encoding = tokenizer(queries, passages, truncation=True, max_length=64)
    names = ("input_ids", "token_type_ids") if "token_type_ids" in encoding else ("input_ids",)
    return [{name: encoding[name][i] for name in names} for i in range(len(queries))]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / "model")


def test_the_tiny_cross_encoders_token_types_change_its_logits(cross_encoder):
    """The premise of the tests below: without its token types the model answers differently."""
    model = load_source_model(cross_encoder, "reranking")
    features = pad_features(pair_rows(load_tokenizer(cross_encoder)), model.io.inputs, 0)
    assert features["token_type_ids"].sum() > 0
    with torch.inference_mode():
        with_types = model.named(features)["logits"]
        without = model.named({**features, "token_type_ids": torch.zeros_like(features["input_ids"])})[
            "logits"
        ]
    assert (with_types - without).abs().max() > 0.5


@pytest.mark.parametrize("backend", ["torchscript", "onnx", "eager"])
def test_a_cross_encoder_compiles_with_token_types_and_equals_the_eager_model(
    tmp_path, cross_encoder, backend
):
    path = write_spec(tmp_path / "spec", str(cross_encoder), name="tiny-cross-encoder", task="reranking")
    # The gate's examples as reranking requests: its parity rows are then real (query, passage) pairs.
    bodies = [{"query": query, "texts": PASSAGES} for query in QUERIES]
    (path.parent / "examples.jsonl").write_text("".join(json.dumps(body) + "\n" for body in bodies))
    path.write_text(path.read_text().replace("backend: torchscript", f"backend: {backend}"))
    spec = load_spec(path)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="validate")
    assert [o.status for o in outcomes] == ["ran"] * 3, outcomes[-1].error
    root = settings.stage_root(spec.name, spec.version)
    report = json.loads((root / "validate" / "report.json").read_text())
    assert report["verdict"] == "pass" and set(report["parity"]["outputs"]) == {"logits", "task_output"}
    assert any(case["case"].startswith("examples[") for case in report["parity"]["cases"])
    compiled_dir = root / "compile"
    manifest = json.loads((compiled_dir / "compiled.json").read_text())
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["outputs"] == ["logits"]
    if backend == "eager":  # loaded by from_pretrained with the task's Auto class
        assert manifest["auto_class"] == "AutoModelForSequenceClassification"
    compiled = load_compiled(compiled_dir)
    tokenizer = load_tokenizer(cross_encoder)
    eager = load_source_model(cross_encoder, "reranking")
    # Shapes the compile stage neither traced (2 x 16) nor probed, as a client's pairs would come.
    for count in (1, 3, 5):
        queries = [q + " and" * (3 * k) for k, q in enumerate(QUERIES[:count])]
        features = pad_features(pair_rows(tokenizer, queries, PASSAGES[:count]), compiled.io.inputs, 0)
        with torch.inference_mode():
            expected = eager.model(**features).logits  # transformers' own model, called by name
            got = compiled.forward(features)["logits"]
        assert got.shape == expected.shape == (count, 1)
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), (got - expected).abs().max()


def qa_model(model_dir) -> NamedIO:
    return load_source_model(model_dir, "question-answering")


def start_and_end(outputs, mask):
    """A stand-in task output: both logits side by side."""
    return torch.stack([outputs["start_logits"], outputs["end_logits"]], dim=-1)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_a_two_output_model_compiles_and_parity_is_checked_per_output(tmp_path, arch, backend):
    model_dir = save_tiny_qa(tmp_path / "model", arch)
    spec = load_spec(write_spec(tmp_path / "spec", str(model_dir)))
    tokenizer = load_tokenizer(model_dir)
    source = qa_model(model_dir)
    assert source.io.token_types == (arch == "bert")  # RoBERTa's tokenizer gives no token types
    out_dir = tmp_path / "compiled"
    out_dir.mkdir()
    ctx = SimpleNamespace(spec=spec, out_dir=out_dir, progress=lambda message: None)
    details = {"torchscript": compile_torchscript, "onnx": compile_onnx}[backend](ctx, source, tokenizer)
    assert all(set(p["outputs"]) == {"start_logits", "end_logits"} and p["ok"] for p in details["probes"])
    compiled = load_compiled(out_dir, tokenizer.pad_token_id)
    assert compiled.io == source.io
    assert json.loads((out_dir / "compiled.json").read_text())["outputs"] == ["start_logits", "end_logits"]

    encoder = Encoder(compiled.forward, tokenizer, compiled.io.inputs, max_length=64, max_batch=4)
    cases = build_cases(spec, tokenizer, pair_rows(tokenizer), compiled.io.inputs)
    parity = compare(encoder, source, start_and_end, cases, spec.validate.atol, spec.validate.rtol)
    assert set(parity["outputs"]) == {"start_logits", "end_logits", "task_output"}
    assert all(output["ok"] for output in parity["outputs"].values()) and parity_failure(parity) is None

    # The end logits alone perturbed: the check names that output, and only that one fails.
    def perturbed_end(features):
        outputs = compiled.forward(features)
        return outputs | {"end_logits": outputs["end_logits"] + 0.01}

    encoder.forward = perturbed_end
    parity = compare(encoder, source, start_and_end, cases, spec.validate.atol, spec.validate.rtol)
    assert parity["outputs"]["start_logits"]["ok"] and not parity["outputs"]["end_logits"]["ok"]
    assert parity["outputs"]["end_logits"]["max_abs"] == pytest.approx(0.01, abs=1e-4)
    assert parity_failure(parity).startswith("output 'end_logits' of the compiled model differs")


def test_a_compiled_model_that_drops_token_types_fails_parity(tmp_path, cross_encoder):
    spec = load_spec(write_spec(tmp_path / "spec", str(cross_encoder), task="reranking"))
    tokenizer = load_tokenizer(cross_encoder)
    source = load_source_model(cross_encoder, "reranking")
    out_dir = tmp_path / "compiled"
    out_dir.mkdir()
    compile_torchscript(
        SimpleNamespace(spec=spec, out_dir=out_dir, progress=lambda m: None), source, tokenizer
    )
    compiled = load_compiled(out_dir)

    def dropping_token_types(features):  # what a backend feeding only ids and mask would compute
        return compiled.forward({**features, "token_type_ids": torch.zeros_like(features["input_ids"])})

    def sigmoid(outputs, mask):
        return outputs["logits"].sigmoid()

    atol, rtol = spec.validate.atol, spec.validate.rtol
    for rows in (pair_rows(tokenizer), []):  # the examples as pairs; and the generated pair rows alone
        cases = build_cases(spec, tokenizer, rows, compiled.io.inputs)
        honest = Encoder(compiled.forward, tokenizer, compiled.io.inputs, max_length=64, max_batch=4)
        assert parity_failure(compare(honest, source, sigmoid, cases, atol, rtol)) is None
        dropping = Encoder(dropping_token_types, tokenizer, compiled.io.inputs, max_length=64, max_batch=4)
        parity = compare(dropping, source, sigmoid, cases, atol, rtol)
        assert not parity["outputs"]["logits"]["ok"] and not parity["outputs"]["task_output"]["ok"]
        assert parity_failure(parity).startswith("output 'logits' of the compiled model differs")


class _FakeNeuronx:
    """Stands in for torch_neuronx (AWS's index only): `trace` is a TorchScript trace at the exact example
    shape, and records what each call was given, so the neuron backend's fixed-shape path runs here."""

    __name__ = "torch_neuronx"

    def __init__(self):
        self.calls: list[tuple[int, tuple[int, int]]] = []

    def trace(self, module, example_inputs, compiler_args=None):
        self.calls.append((len(example_inputs), tuple(example_inputs[0].shape)))
        with torch.no_grad():
            return torch.jit.freeze(torch.jit.trace(module, example_inputs, check_trace=False).eval())


def test_the_neuron_backend_traces_every_input_and_pads_token_types(tmp_path, cross_encoder, monkeypatch):
    import sys

    from torchship.compile.neuron import compile_neuron

    neuronx = _FakeNeuronx()
    monkeypatch.setitem(sys.modules, "torch_neuronx", neuronx)
    path = write_spec(tmp_path / "spec", str(cross_encoder), task="reranking")
    path.write_text(path.read_text().replace("backend: torchscript", "backend: neuron, buckets: [16, 64]"))
    spec = load_spec(path)
    tokenizer = load_tokenizer(cross_encoder)
    source = load_source_model(cross_encoder, "reranking")
    out_dir = tmp_path / "compiled"
    out_dir.mkdir()
    details = compile_neuron(
        SimpleNamespace(spec=spec, out_dir=out_dir, progress=lambda m: None), source, tokenizer
    )
    # One trace per (batch, bucket), each given ids, mask and token types at that exact shape.
    assert sorted(neuronx.calls) == sorted((3, (b, n)) for b in (1, 4) for n in (16, 64))
    assert details["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(p["ok"] for p in details["bucket_probes"])
    compiled = load_compiled(out_dir, tokenizer.pad_token_id, tokenizer.pad_token_type_id)
    # 3 pairs of ~20 tokens: padded to bucket 64 and batch 4 inside, sliced back to 3 rows.
    features = pad_features(pair_rows(tokenizer, QUERIES[:3], PASSAGES[:3]), compiled.io.inputs, 0)
    with torch.inference_mode():
        expected = source.model(**features).logits
        got = compiled.forward(features)["logits"]
    assert got.shape == expected.shape == (3, 1)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
