"""This machine's compute roofline, measured in the same run as the benchmark it anchors.

Absolute texts/s mean little across these machines (the same kind measured 2-3x apart a week apart); the
fraction of what the CPU can do, measured in the same minute with the serving thread count, does. So every
benchmark that reports a throughput also reports it as a fraction of:

    roofline texts/s = matmul GFLOP/s (this dtype, these threads)  /  GFLOP per text

with GFLOP per text from the model's config.json and the texts' measured token counts. A dense matmul is the
best case for these CPUs, so the fraction is an upper-bounded efficiency: 1.0 is out of reach (attention,
LayerNorm, GELU and the tokenizer are not matmuls), the gap is what engines and serving can still win.

    python bench/roofline.py [--threads N]      # prints the machine's figures and MiniLM's per-text cost
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

MATMUL_SIZE = 1024
MIN_SECONDS = 1.0
# Where the CPU has native support, read from /proc/cpuinfo flags (never assumed): VNNI for int8 dot
# products, AVX-512 BF16 or AMX for bf16.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _timed_gflops(product: Callable[[], object], flop: float, min_seconds: float) -> float:
    """GFLOP/s of `product` (`flop` FLOP each), after a warm-up, timed over at least `min_seconds`: the one
    timing loop every engine's figure comes from, so they compare."""
    for _ in range(3):
        product()
    products, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds:
        product()
        products += 1
    return flop * products / elapsed / 1e9


def matmul_gflops(
    dtype: torch.dtype, threads: int, size: int = MATMUL_SIZE, min_seconds: float = MIN_SECONDS
) -> float:
    """GFLOP/s of a square matmul of `dtype` on `threads` torch threads (2·n³ FLOP per product), after a
    warm-up, timed over at least `min_seconds`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        return _timed_gflops(lambda: torch.mm(a, b), 2 * size**3, min_seconds)
    finally:
        torch.set_num_threads(previous)


def onnxruntime_matmul_gflops(
    threads: int, size: int = MATMUL_SIZE, min_seconds: float = MIN_SECONDS
) -> float | None:
    """The same fp32 product through ONNX Runtime's MatMul (MLAS kernels), None without onnxruntime. On some
    CPUs its kernels reach twice torch's (AMD EPYC with AVX-512: 416 vs 212 GFLOP/s at 2 threads), so the
    roofline is the faster of the two: a ceiling torch alone sets would be one engines can beat."""
    return onnxruntime_gemm_gflops(threads, size, size, size, min_seconds)


def onnxruntime_gemm_gflops(
    threads: int, m: int, k: int, n: int, min_seconds: float = MIN_SECONDS
) -> float | None:
    """GFLOP/s of an (m x k) · (k x n) fp32 product in ONNX Runtime (2·m·k·n FLOP), None without it."""
    try:
        import numpy as np
        import onnxruntime
        from onnx import TensorProto, helper
    except ImportError:
        return None
    shapes = {"a": [m, k], "b": [k, n], "c": [m, n]}
    tensor = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", tensor[:2], tensor[2:]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options)
    feeds = {name: np.random.randn(*shapes[name]).astype(np.float32) for name in ("a", "b")}
    return _timed_gflops(lambda: session.run(None, feeds), 2 * m * k * n, min_seconds)


def shaped_ceiling_gflops(config: dict, rows: int, threads: int, min_seconds: float = 0.5) -> float | None:
    """What ONNX Runtime's matmuls reach at the shapes this encoder runs at `rows` tokens per batch (batch x
    tokens): the projections (rows x h · h x h, four per layer), the feed-forward (rows x h · h x i and
    rows x i · i x h), FLOP-weighted. Small batches of short texts make thin products far from the square
    roofline's efficiency: this is the ceiling for those shapes, the reason a short-text floor stays below
    the square one. None without onnxruntime."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    products = [(rows, hidden, hidden, 4), (rows, hidden, inner, 1), (rows, inner, hidden, 1)]
    flop = seconds = 0.0
    for m, k, n, count in products:
        gflops = onnxruntime_gemm_gflops(threads, m, k, n, min_seconds)
        if gflops is None:
            return None
        flop += 2 * m * k * n * count
        seconds += 2 * m * k * n * count / (gflops * 1e9)
    return flop / seconds / 1e9


@dataclass(frozen=True)
class Roofline:
    threads: int
    fp32_gflops: float  # the faster of torch's and ONNX Runtime's fp32 matmul
    fp32_by_engine: dict[str, float]
    bf16_gflops: float | None  # None: no native bf16 on this CPU (emulated bf16 is not a roofline)
    int8_native: bool  # VNNI/AMX present (int8 candidates can beat fp32 on this CPU)
    flags: list[str]

    def texts_per_s(self, gflop_per_text: float, dtype: str = "fp32") -> float:
        gflops = self.fp32_gflops if dtype == "fp32" else self.bf16_gflops
        if gflops is None:
            raise ValueError(f"no {dtype} roofline on this CPU")
        return gflops / gflop_per_text


def measure_roofline(threads: int, min_seconds: float = MIN_SECONDS) -> Roofline:
    flags = cpu_flags()
    bf16 = any(flag in flags for flag in BF16_FLAGS)
    engines = {"torch": matmul_gflops(torch.float32, threads, min_seconds=min_seconds)}
    onnx_gflops = onnxruntime_matmul_gflops(threads, min_seconds=min_seconds)
    if onnx_gflops is not None:
        engines["onnxruntime"] = onnx_gflops
    return Roofline(
        threads=threads,
        fp32_gflops=max(engines.values()),
        fp32_by_engine=engines,
        bf16_gflops=matmul_gflops(torch.bfloat16, threads, min_seconds=min_seconds) if bf16 else None,
        int8_native=any(flag in flags for flag in INT8_FLAGS),
        flags=sorted(f for f in flags if f in (*INT8_FLAGS, *BF16_FLAGS, "avx2", "fma", "avx512f")),
    )


def encoder_flops_per_token(config: dict, sequence_length: float) -> float:
    """Multiply-adds x 2 of one token through a transformer encoder, per layer: the Q, K, V and output
    projections (4·d²), the feed-forward pair (2·d·i), and attention's scores and weighted sum against the
    `sequence_length` tokens of its text (2·s·d). Embedding lookups, LayerNorm, softmax and the head are left
    out (not matmuls, or negligible beside these)."""
    d = config["hidden_size"]
    i = config.get("intermediate_size", 4 * d)
    layers = config["num_hidden_layers"]
    return 2 * layers * (4 * d * d + 2 * d * i + 2 * sequence_length * d)


def gflop_per_text(config: dict, tokens_per_text: float) -> float:
    return encoder_flops_per_token(config, tokens_per_text) * tokens_per_text / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--config", help="a model's config.json (default: MiniLM-L6's shape)")
    parser.add_argument("--tokens", type=float, default=18.0, help="tokens per text")
    args = parser.parse_args()
    config = (
        json.loads(Path(args.config).read_text())
        if args.config
        else {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}
    )
    roofline = measure_roofline(args.threads)
    per_text = gflop_per_text(config, args.tokens)
    print(json.dumps(asdict(roofline), indent=2))
    print(
        f"{per_text * 1e3:.1f} MFLOP per text of {args.tokens:g} tokens: roofline "
        f"{roofline.texts_per_s(per_text):.0f} texts/s at {args.threads} threads (fp32)"
    )


if __name__ == "__main__":
    main()
