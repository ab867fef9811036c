"""Fixed-shape compilation (the Neuron backend's shape plan), with TorchScript standing in for Neuron:
one module per (batch, bucket); partial batches padded and sliced back; lengths padded to the bucket."""

import json

import pytest
import torch

from conftest import run_stages
from tiny_models import LengthDependent
from torchship.compile.common import example_batch
from torchship.compile.fixed_shape import compile_fixed_shapes, plan_shapes
from torchship.compile.torchscript import trace_frozen
from torchship.handlers.loading import FixedShapeForward, load_compiled
from torchship.handlers.model_io import pad_features
from torchship.modeling import load_source_model, load_tokenizer
from torchship.spec import load_spec
from torchship.synthetic import feature_rows


def test_plan_covers_every_bucket_and_batch_size():
    assert plan_shapes([16, 64], [1, 8]) == [(1, 64), (8, 64), (1, 16), (8, 16)]
    assert plan_shapes([32, 32], [4, 4, 1]) == [(1, 32), (4, 32)]


@pytest.fixture(scope="module")
def fixed(tiny_model_dir, tmp_path_factory):
    eager = load_source_model(tiny_model_dir, "embeddings")
    tokenizer = load_tokenizer(tiny_model_dir)
    out = tmp_path_factory.mktemp("fixed")
    manifest = compile_fixed_shapes(
        trace_frozen, eager, tokenizer, [8, 32], [1, 4], out, atol=1e-5, rtol=1e-4, progress=lambda m: None
    )
    return eager, tokenizer, out, manifest


def test_one_module_per_shape_is_written(fixed):
    _, _, out, manifest = fixed
    assert {(s["batch"], s["length"]) for s in manifest["shapes"]} == {(1, 8), (4, 8), (1, 32), (4, 32)}
    assert all((out / s["file"]).is_file() for s in manifest["shapes"])
    assert all(p["ok"] for p in manifest["probes"])


class _Recording:
    """A compiled module that records (its shape, the input shape) of each call."""

    def __init__(self, shape, module, calls):
        self.shape, self.module, self.calls = shape, module, calls

    def __call__(self, *inputs):
        self.calls.append((self.shape, tuple(inputs[0].shape)))
        return self.module(*inputs)


@pytest.mark.parametrize("rows", [1, 2, 4, 5, 9])
@pytest.mark.parametrize("length", [3, 8, 9, 20, 32])
def test_partial_batches_and_lengths_match_the_eager_model(fixed, rows, length):
    eager, tokenizer, out, manifest = fixed
    modules = {(s["batch"], s["length"]): torch.jit.load(str(out / s["file"])) for s in manifest["shapes"]}
    calls = []
    runtime = FixedShapeForward(
        {shape: _Recording(shape, m, calls) for shape, m in modules.items()}, eager.io, pad_id=0
    )
    lengths = [length] + [max(3, length - k) for k in range(1, rows)]
    features = pad_features(feature_rows(tokenizer, lengths, seed=rows * 100 + length), eager.io.inputs, 0)
    with torch.inference_mode():
        got, want = runtime(features)["last_hidden_state"], eager.named(features)["last_hidden_state"]
    assert got.shape == want.shape
    real = features["attention_mask"].bool()
    assert torch.allclose(got[real], want[real], atol=1e-5)
    # Every call ran at a compiled shape: batch padded up (or split), length padded to the bucket.
    bucket = 8 if length <= 8 else 32
    assert all(shape == (call[0], call[1]) and call[1] == bucket for shape, call in calls)
    # Compiled batch sizes 1 and 4: the smallest that holds the rows, else chunks of 4 (worked by hand).
    assert [call[0] for _, call in calls] == {1: [1], 2: [4], 4: [4], 5: [4, 1], 9: [4, 4, 1]}[rows]


def test_longer_than_the_largest_bucket_is_an_error(fixed):
    _, tokenizer, out, _ = fixed
    eager = fixed[0]
    features = example_batch(tokenizer, eager.io, 1, 40)
    with pytest.raises(ValueError, match="exceed the largest compiled length 32"):
        load_forward_from(out, eager.io).forward(features)


def load_forward_from(out, io):
    from torchship.compile.common import write_manifest

    manifest = {
        "format": "fixed-shape",
        "shapes": [{"batch": b, "length": n, "file": f"model-b{b}-l{n}.pt"} for b in (1, 4) for n in (8, 32)],
    }
    write_manifest(out, manifest, io)
    return load_compiled(out)


def test_per_bucket_pipeline_serves_a_length_dependent_model_correctly(
    tiny_spec_path, settings, monkeypatch, tmp_path
):
    """The dynamic trace of this model is wrong above 16 tokens; with buckets the backend traces one module
    per bucket, the gate passes, and the packaged handler pads to the buckets and answers like the source."""
    import zipfile

    import yaml

    from test_handler import FakeContext
    from torchship.archiver.package import handler_config
    from torchship.handlers.requests import ParsedRequest
    from torchship.handlers.service import TextHandler, build_task, predict

    length_dependent = lambda model_dir, task, *_: LengthDependent(load_source_model(model_dir, task))  # noqa: E731
    monkeypatch.setattr("torchship.compile.load_source_model", length_dependent)
    monkeypatch.setattr("torchship.validate.gate.load_source_model", length_dependent)
    tiny_spec_path.write_text(
        tiny_spec_path.read_text().replace("batch_size: 4}", "batch_size: 4, buckets: [16]}", 1)
    )
    spec = load_spec(tiny_spec_path)
    outcomes = run_stages(spec, settings, until="package")
    assert [o.status for o in outcomes] == ["ran"] * 4, outcomes[-1].error
    assert outcomes[1].record["details"]["mode"] == "per-bucket"
    mar = settings.stage_root(spec.name, spec.version) / "package" / f"{spec.name}.mar"
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(tmp_path / "mar")
    config = yaml.safe_load((tmp_path / "mar" / "model-config.yaml").read_text())
    assert config["handler"]["buckets"] == [16, 64]
    handler = TextHandler()
    handler.initialize(FakeContext(tmp_path / "mar", config, 0))
    texts = ["ok", "the cat sat on the mat and the dog ran fast to the city of london with john and mary ."]
    ctx = FakeContext(tmp_path / "mar", config, 1)
    [served] = map(json.loads, handler.handle([{"body": {"texts": texts}}], ctx))
    model_dir = settings.stage_root(spec.name, spec.version) / "fetch" / "model"
    source = build_task(
        model_dir,
        {**handler_config(spec, model_dir), "tokenizer_dir": "."},
        model=length_dependent(model_dir, spec.task).as_model(),
    )
    [expected] = predict(source, [ParsedRequest(texts, single=False)])
    assert torch.allclose(torch.tensor(served), torch.tensor(expected), atol=1e-5)
