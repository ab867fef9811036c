"""compile.precision: int8 ONNX (dynamic, static QDQ) and bf16 TorchScript, gated on the task's own measures.

The measured values in the gate's report are checked against values computed here without torchship:
transformers' own model against the int8 graph run directly by ONNX Runtime. A candidate that breaks a task
limit is refused and never packaged; the supported combinations come from the CPU's flags."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_stages
from tiny_models import EXAMPLES, SENTIMENT_LABELS, save_tiny_classifier, save_tiny_labelled, write_spec
from torchship.archiver.package import mar_path
from torchship.compile.precision import (
    PRECISIONS,
    cpu_flags,
    native_bf16,
    supported_combinations,
    this_cpu_flags,
    unsupported_reason,
)
from torchship.errors import SpecError
from torchship.settings import Settings
from torchship.spec import CompileSpec, load_spec
from torchship.tasks import task_definition
from torchship.validate.precision import precision_limits, read_precision_check

# Eval-set texts beside the examples: the precision check compares on both.
EVAL_TEXTS = ["the dog ran fast", "mary works for apple", "a bad film , i hate it"]
X86_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nmodel name\t: x\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def precision_spec(
    directory: Path,
    source: Path,
    backend: str,
    precision: str,
    *,
    task: str,
    limits: str = "",
    compile_: str = "",
):
    """A tiny model's spec at `precision`, with a labelled eval set (classification) beside the examples."""
    path = write_spec(directory, str(source), name="tiny-precision", task=task)
    text = path.read_text().replace(
        "backend: torchscript", f"backend: {backend}, precision: {precision}{compile_}"
    )
    validate = "validate: {examples: examples.jsonl, atol: 1.0e-5, rtol: 1.0e-4"
    if task == "text-classification":
        (directory / "eval.jsonl").write_text(
            "".join(json.dumps({"text": t, "label": "positive"}) + "\n" for t in EVAL_TEXTS)
        )
        validate += ", eval_set: eval.jsonl"
    text = text.replace(
        "validate: {examples: examples.jsonl, atol: 1.0e-5, rtol: 1.0e-4}", validate + limits + "}"
    )
    path.write_text(text)
    return load_spec(path)


def stage_dir(spec, settings: Settings, stage: str) -> Path:
    return settings.stage_root(spec.name, spec.version) / stage


def onnx_outputs(graph: Path, model_dir: Path, texts: list[str], output: str) -> list[np.ndarray]:
    """The graph run by ONNX Runtime itself, one text at a time (no handler, no torchship)."""
    import onnxruntime
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    fed = [i.name for i in session.get_inputs()]
    results = []
    for text in texts:
        encoded = tokenizer(text, return_tensors="np")
        results.append(session.run([output], {name: encoded[name].astype(np.int64) for name in fed})[0][0])
    return results


def transformers_logits(model_dir: Path, texts: list[str], dtype=torch.float32) -> list[np.ndarray]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(dtype).eval()
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt")).logits[0].float().numpy() for t in texts]


def mean_pooled(model_dir: Path, texts: list[str], hidden: list[np.ndarray] | None = None) -> np.ndarray:
    """Unit-length mean-pooled vectors: from transformers' BertModel, or from given hidden states."""
    from transformers import AutoModel

    if hidden is None:
        from transformers import AutoTokenizer

        tokenizer, model = (
            AutoTokenizer.from_pretrained(str(model_dir)),
            AutoModel.from_pretrained(str(model_dir)),
        )
        with torch.inference_mode():
            hidden = [model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].numpy() for t in texts]
    vectors = np.stack([h.mean(axis=0) for h in hidden])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def linear_layers(model_dir: Path) -> int:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    return sum(isinstance(m, torch.nn.Linear) for m in model.modules())


# ------------------------------------------------------------------------------------------ the support table


def test_the_spec_literal_and_the_table_name_the_same_precisions():
    assert typing.get_args(CompileSpec.model_fields["precision"].annotation) == PRECISIONS
    assert CompileSpec().precision == "fp32"


def test_bf16_support_is_read_from_the_cpu_flags():
    assert cpu_flags(X86_CPUINFO) >= {"avx2", "avx512_vnni"} and not native_bf16(cpu_flags(X86_CPUINFO))
    assert native_bf16(cpu_flags(ARM_CPUINFO))
    assert native_bf16(cpu_flags(X86_CPUINFO.replace("avx512_vnni", "avx512_vnni amx_bf16")))
    why = unsupported_reason("torchscript", "bf16", cpu_flags(X86_CPUINFO))
    assert why is not None and "no native bf16" in why and "/proc/cpuinfo" in why
    assert unsupported_reason("torchscript", "bf16", {"avx512_bf16"}) is None
    assert unsupported_reason("torchscript", "bf16", cpu_flags(ARM_CPUINFO)) is None
    # fp32 everywhere; int8 from onnx; nothing else from neuron or eager, whatever the CPU.
    for backend in ("torchscript", "onnx", "neuron", "eager"):
        assert unsupported_reason(backend, "fp32", set()) is None
    assert unsupported_reason("onnx", "int8-dynamic", set()) is None
    assert unsupported_reason("onnx", "int8-static", set()) is None
    assert "bf16" in (unsupported_reason("onnx", "bf16", {"avx512_bf16"}) or "")
    assert "onnx" in (unsupported_reason("torchscript", "int8-dynamic", set()) or "")
    assert unsupported_reason("neuron", "int8-static", set()) and unsupported_reason(
        "eager", "bf16", {"bf16"}
    )
    assert supported_combinations(set()) == [
        "torchscript + fp32", "onnx + fp32", "onnx + int8-dynamic", "onnx + int8-static", "neuron + fp32",
        "eager + fp32",
    ]  # fmt: skip
    assert "torchscript + bf16" in supported_combinations({"amx_bf16"})


def test_a_spec_asking_for_onnx_bf16_fails_naming_what_is_supported(tmp_path, tiny_model_dir):
    spec = precision_spec(tmp_path / "spec", tiny_model_dir, "onnx", "bf16", task="embeddings")
    failed = run_stages(spec, Settings(outputs_dir=tmp_path / "outputs"), until="compile")[-1]
    assert failed.status == "failed" and isinstance(failed.error, SpecError)
    assert "compile.backend onnx with compile.precision bf16 is not supported" in str(failed.error)
    assert "onnx + int8-dynamic" in failed.error.hint and "torchscript + fp32" in failed.error.hint
    assert not (
        stage_dir(spec, Settings(outputs_dir=tmp_path / "outputs"), "compile") / "compiled.json"
    ).exists()


def test_precision_limits_are_named_like_promote_limits(tmp_path, tiny_model_dir):
    with pytest.raises(SpecError, match=r"validate\.precision_limits\.cosine"):
        precision_spec(tmp_path / "a", tiny_model_dir, "onnx", "int8-dynamic", task="embeddings",
                       limits=", precision_limits: {cosine: 0.9}")  # fmt: skip
    spec = precision_spec(tmp_path / "b", tiny_model_dir, "onnx", "int8-dynamic", task="embeddings",
                          limits=", precision_limits: {max_flip_rate: 0.1}")  # fmt: skip
    with pytest.raises(SpecError, match="the embeddings diff has no measure 'flip_rate'") as raised:
        precision_limits(spec, task_definition("embeddings"))
    assert "mean_cosine, min_cosine, neighbour_overlap" in raised.value.hint
    with pytest.raises(SpecError, match=r"compile\.int8_keep_fp32 applies to the int8 precisions"):
        precision_spec(tmp_path / "d", tiny_model_dir, "torchscript", "bf16", task="embeddings",
                       compile_=", int8_keep_fp32: [ffn-output]")  # fmt: skip
    # The spec's keys lie over the task's defaults, key by key.
    spec = precision_spec(tmp_path / "c", tiny_model_dir, "onnx", "int8-dynamic", task="embeddings",
                          limits=", precision_limits: {min_mean_cosine: 0.5, min_min_cosine: 0.4}")  # fmt: skip
    assert precision_limits(spec, task_definition("embeddings")) == {
        "min_mean_cosine": (0.5, "spec"),
        "min_neighbour_overlap": (0.9, "default"),
        "min_min_cosine": (0.4, "spec"),
    }


def test_every_task_has_default_limits_on_its_own_measures():
    from torchship.tasks import TASKS

    for definition in TASKS.values():
        assert definition.precision_limits, definition.name
        for key in definition.precision_limits:
            assert key.split("_", 1)[1] in definition.diff_measures, (definition.name, key)


# ------------------------------------------------------------------------------------------ int8 ONNX


@pytest.mark.torchserve
def test_int8_dynamic_classifier_passes_and_torchserve_serves_the_quantized_graph(tmp_path):
    model_dir = save_tiny_classifier(tmp_path / "model", "bert")
    spec = precision_spec(tmp_path / "spec", model_dir, "onnx", "int8-dynamic", task="text-classification")
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="verify")
    assert [o.status for o in outcomes] == ["ran"] * 5, outcomes[-1].error
    compiled = stage_dir(spec, settings, "compile")
    manifest = json.loads((compiled / "compiled.json").read_text())
    assert manifest["format"] == "onnx" and manifest["precision"] == "int8-dynamic"
    details = outcomes[1].record["details"]
    # Every nn.Linear of the model is a weight product in the graph, and each was quantized (MatMulInteger);
    # the attention's products of two activations (2 per layer) stayed fp32.
    import onnx

    ops = [node.op_type for node in onnx.load(str(compiled / "model.onnx")).graph.node]
    assert (
        sum(details["quantization"]["quantized"].values())
        == linear_layers(model_dir)
        == ops.count("MatMulInteger")
    )
    assert details["quantization"]["kept_fp32"] == {"MatMul": 2 * 2}
    assert ops.count("LayerNormalization") and ops.count("Softmax") and ops.count("Erf")  # kept fp32

    texts = EXAMPLES + EVAL_TEXTS
    source = transformers_logits(model_dir, texts)
    int8 = onnx_outputs(compiled / "model.onnx", model_dir, texts, "logits")
    labels = [SENTIMENT_LABELS[int(np.argmax(x))] for x in int8]
    flips = sum(int(np.argmax(a) != np.argmax(b)) for a, b in zip(source, int8, strict=True))
    check = read_precision_check(stage_dir(spec, settings, "validate"))
    assert check is not None and check.passed and check.precision == "int8-dynamic"
    assert check.inputs == len(texts) and check.value("flip_rate") == flips / len(texts) == 0.0
    assert [(r.key, r.limit, r.origin, r.ok) for r in check.limits] == [
        ("max_flip_rate", 0.01, "default", True)
    ]
    report = json.loads((stage_dir(spec, settings, "validate") / "report.json").read_text())
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["precision"] == "pass" and "agreement" not in statuses
    parity = next(c for c in report["checks"] if c["name"] == "parity")
    assert parity["status"] == "pass" and "informational for reduced precision" in parity["message"]
    assert report["metrics"]["examples"] == len(EVAL_TEXTS)  # eval-set metrics still ran
    # TorchServe served the int8 graph from the .mar: its labels are ONNX Runtime's own on the graph.
    served = json.loads((stage_dir(spec, settings, "verify") / "served.json").read_text())
    assert [answer[0]["label"] for answer in served["served"]] == labels[: len(EXAMPLES)]
    assert mar_path(stage_dir(spec, settings, "package"), spec).is_file()


@pytest.mark.parametrize(("precision", "keep"), [("int8-dynamic", False), ("int8-static", True)])
def test_int8_encoder_keeps_its_vectors(tmp_path, tiny_model_dir, precision, keep):
    extra = ", int8_keep_fp32: [ffn-output]" if keep else ""
    spec = precision_spec(
        tmp_path / "spec", tiny_model_dir, "onnx", precision, task="embeddings", compile_=extra
    )
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="validate")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    hidden = onnx_outputs(
        stage_dir(spec, settings, "compile") / "model.onnx", tiny_model_dir, EXAMPLES, "last_hidden_state"
    )
    cosines = np.sum(
        mean_pooled(tiny_model_dir, EXAMPLES) * mean_pooled(tiny_model_dir, EXAMPLES, hidden), axis=1
    )
    check = read_precision_check(stage_dir(spec, settings, "validate"))
    assert check is not None and check.passed
    # The gate runs the handler's batches, these are one text at a time: int8-dynamic's per-batch activation
    # scales move the last digits.
    assert check.value("mean_cosine") == pytest.approx(float(cosines.mean()), abs=1e-5)
    assert check.value("min_cosine") == pytest.approx(float(cosines.min()), abs=1e-5)
    assert 0.99 <= float(cosines.min()) < 1.0  # it moved, and not far
    # Every linear layer of the encoder is quantized (but with int8_keep_fp32: [ffn-output] each layer's
    # feed-forward output projection) and nothing else. Static QDQ feeds each MatMul dequantized int8
    # weights, calibrated on the 5 examples (2 batches of 4) and 4 generated lengths; dynamic writes
    # MatMulInteger.
    import onnx
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(tiny_model_dir)).encoder
    linear = sum(isinstance(m, torch.nn.Linear) for m in encoder.modules())
    ffn_outputs = [
        name
        for name, _ in encoder.named_modules()
        if name.endswith(".output.dense") and "attention" not in name
    ]
    expected = linear - (len(ffn_outputs) if keep else 0)
    graph = onnx.load(str(stage_dir(spec, settings, "compile") / "model.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed_int8 = sum(n.op_type == "MatMul" and any(i in dequantized for i in n.input) for n in graph.node)
    integer = sum(n.op_type == "MatMulInteger" for n in graph.node)
    quantization = outcomes[1].record["details"]["quantization"]
    assert quantization["quantized"] == {"MatMul": expected}
    assert (fed_int8, integer) == ((expected, 0) if precision == "int8-static" else (0, expected))
    layers = len(encoder.layer)
    assert quantization["kept_fp32"] == {"MatMul": 2 * layers + (len(ffn_outputs) if keep else 0)}
    assert quantization["calibration_batches"] == (2 + 4 if precision == "int8-static" else 0)


# ------------------------------------------------------------------------------------------ refusals


def torchship(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchship.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=300,
    )  # fmt: skip


def test_a_candidate_over_a_task_limit_is_refused_and_never_packaged(tmp_path, tiny_model_dir):
    # int8-static moves the tiny encoder's vectors to a mean cosine of about 0.9999 (measured above): below
    # this limit, so the candidate must be refused.
    spec = precision_spec(tmp_path / "spec", tiny_model_dir, "onnx", "int8-static", task="embeddings",
                          limits=", precision_limits: {min_mean_cosine: 0.999999}")  # fmt: skip
    result = torchship("run", spec.spec_path, "--until", "package", cwd=tmp_path)
    assert result.returncode != 0
    outputs = tmp_path / "outputs" / spec.name / spec.version
    check = read_precision_check(outputs / "validate-failed")
    assert check is not None and not check.passed and check.refused_by == "mean_cosine"
    measured = check.value("mean_cosine")
    assert measured is not None and measured < 0.999999
    assert (
        f"validation gate failed: precision: the int8-static answers differ too much from the fp32 source's on "
        f"5 requests: mean_cosine {measured:.4g} is below validate.precision_limits.min_mean_cosine 0.999999"
    ) in result.stderr
    assert "inputs that moved most" in result.stderr
    assert not (outputs / "package").exists() and not list(tmp_path.rglob("*.mar"))
    assert next(r for r in check.limits if r.key == "min_mean_cosine").ok is False


def _centre_on_one_input(model) -> None:
    """Labels 0 and 1 get the same random weights plus a small difference, and label 2 never wins; the
    bias (set by the test) then puts the 0/1 boundary where it wants."""
    with torch.no_grad():
        weight = model.classifier.weight
        weight[1].copy_(
            weight[0] + 0.05 * torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(1))
        )
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, -100.0]))


def test_a_classifier_whose_int8_labels_flip_is_refused(tmp_path):
    """A classifier with an input on its decision boundary: the bias is placed between that input's fp32 and
    int8 scores (measured with ONNX Runtime here), so int8 flips its label and max_flip_rate 0 refuses."""
    from transformers import AutoModelForSequenceClassification

    texts = EXAMPLES + EVAL_TEXTS
    model_dir = save_tiny_labelled(
        tmp_path / "model", "bert", "sequence", SENTIMENT_LABELS, 0, _centre_on_one_input
    )
    probe = precision_spec(tmp_path / "probe", model_dir, "onnx", "int8-dynamic", task="text-classification")
    probe_settings = Settings(outputs_dir=tmp_path / "probe-outputs")
    assert run_stages(probe, probe_settings, until="compile")[-1].status == "ran"
    fp32 = [x[0] - x[1] for x in transformers_logits(model_dir, texts)]
    int8 = [
        x[0] - x[1]
        for x in onnx_outputs(
            stage_dir(probe, probe_settings, "compile") / "model.onnx", model_dir, texts, "logits"
        )
    ]
    moved = max(range(len(texts)), key=lambda i: abs(fp32[i] - int8[i]))
    assert fp32[moved] != int8[moved]
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    with torch.no_grad():  # the 0/1 boundary halfway between that input's fp32 and int8 margins
        model.classifier.bias[0] -= float(fp32[moved] + int8[moved]) / 2
    model.save_pretrained(str(model_dir))

    spec = precision_spec(tmp_path / "spec", model_dir, "onnx", "int8-dynamic", task="text-classification",
                          limits=", precision_limits: {max_flip_rate: 0.0}")  # fmt: skip
    settings = Settings(outputs_dir=tmp_path / "outputs")
    failed = run_stages(spec, settings, until="package")[-1]
    assert failed.status == "failed" and "precision: " in str(failed.error)
    source = transformers_logits(model_dir, texts)
    quantized = onnx_outputs(stage_dir(spec, settings, "compile") / "model.onnx", model_dir, texts, "logits")
    flipped = [t for t, a, b in zip(texts, source, quantized, strict=True) if np.argmax(a) != np.argmax(b)]
    assert texts[moved] in flipped
    check = read_precision_check(stage_dir(spec, settings, "validate-failed"))
    assert check is not None and check.refused_by == "flip_rate"
    # int8-dynamic scales each batch's activations by that batch's range, so on the boundary the gate's
    # batches (the handler's) may flip more inputs than these one-text runs; never fewer here.
    changed = [json.loads(c.request)["text"] for c in check.changed]
    assert texts[moved] in changed and check.value("flip_rate") == len(changed) / len(texts) > 0
    assert (
        f"flip_rate {len(changed) / len(texts):.4g} is above validate.precision_limits.max_flip_rate 0"
        in str(failed.error)
    )
    assert json.dumps({"text": texts[moved]}) in str(failed.error)  # the input that changed
    assert not stage_dir(spec, settings, "package").exists()


# ------------------------------------------------------------------------------------------ bf16 TorchScript


@pytest.mark.skipif(
    not native_bf16(this_cpu_flags()),
    reason="this CPU has no native bf16 (no avx512_bf16/amx_bf16/bf16 flag)",
)
def test_bf16_torchscript_on_a_cpu_with_native_bf16(tmp_path):
    model_dir = save_tiny_classifier(tmp_path / "model", "bert")
    spec = precision_spec(tmp_path / "spec", model_dir, "torchscript", "bf16", task="text-classification")
    settings = Settings(outputs_dir=tmp_path / "outputs")
    outcomes = run_stages(spec, settings, until="validate")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    compiled = stage_dir(spec, settings, "compile")
    assert json.loads((compiled / "compiled.json").read_text())["precision"] == "bf16"
    module = torch.jit.load(str(compiled / "model.pt"))
    constants = [n.output().toIValue() for n in module.graph.nodes() if n.kind() == "prim::Constant"]
    weights = [c for c in constants if isinstance(c, torch.Tensor) and c.is_floating_point() and c.dim() == 2]
    assert weights and {w.dtype for w in weights} == {torch.bfloat16}  # frozen into the graph in bf16
    ids = torch.tensor([[2, 40, 41, 3]])
    with torch.inference_mode():
        (logits,) = module(ids, torch.ones_like(ids), torch.zeros_like(ids))
    assert logits.dtype == torch.float32  # cast back, so the handler and the gate see fp32
    texts = EXAMPLES + EVAL_TEXTS
    fp32, bf16 = transformers_logits(model_dir, texts), transformers_logits(model_dir, texts, torch.bfloat16)
    flips = sum(int(np.argmax(a) != np.argmax(b)) for a, b in zip(fp32, bf16, strict=True))
    check = read_precision_check(stage_dir(spec, settings, "validate"))
    assert check is not None and check.precision == "bf16" and check.backend == "torchscript"
    assert check.value("flip_rate") == flips / len(texts)
    assert not math.isclose(check.value("score_shift") or 0.0, 0.0)  # bf16 moved the scores


def test_served_answers_of_a_reduced_model_are_judged_on_the_task_measures(tmp_path, tiny_model_dir):
    """verify, the image check and rehearse: a reduced-precision model's served answers against the source's
    on the task's measures (a tolerance would refuse every int8 model; a flipped label must still fail)."""
    from torchship.validate.precision import served_judge
    from torchship.validate.served import compare_served

    spec = precision_spec(
        tmp_path / "spec", tiny_model_dir, "onnx", "int8-dynamic", task="text-classification"
    )
    bodies = [{"text": t} for t in EVAL_TEXTS]

    def answer(top: str, score: float) -> list[dict]:
        other = "negative" if top == "positive" else "positive"
        return [{"label": top, "score": score}, {"label": other, "score": 1 - score}]

    source = [answer("positive", 0.9), answer("negative", 0.8), answer("positive", 0.7)]
    moved = [answer("positive", 0.9004), answer("negative", 0.7996), answer("positive", 0.7001)]
    served = {"singles": moved, "batch": moved, "plain": moved[0]}
    assert (
        served_judge(
            spec.model_copy(update={"compile": spec.compile.model_copy(update={"precision": "fp32"})})
        )
        is None
    )
    judged = compare_served(served, source, bodies, 1e-5, 1e-4, judge=served_judge(spec))
    assert judged["ok"] and judged["compared"] == 3 + 3 + 3 and judged["max_abs"] == pytest.approx(4e-4)
    flipped = [answer("positive", 0.9), answer("positive", 0.51), answer("positive", 0.7)]
    judged = compare_served(
        {**served, "batch": flipped}, source, bodies, 1e-5, 1e-4, judge=served_judge(spec)
    )
    assert not judged["ok"] and judged["failure"]["mode"] == "combined"
    assert (
        "flip_rate 0.3333 is above validate.precision_limits.max_flip_rate 0.01"
        in judged["failure"]["mismatch"]
    )
    assert json.dumps(bodies[1]) in judged["failure"]["mismatch"]
