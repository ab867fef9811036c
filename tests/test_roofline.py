"""bench/roofline.py: the FLOP count against the issue's hand figure for MiniLM-L6 and a hand-worked tiny
encoder, and a matmul timing that measures something."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from roofline import (
    Roofline,
    cpu_flags,
    encoder_flops_per_token,
    gflop_per_text,
    matmul_gflops,
    onnxruntime_matmul_gflops,
)

MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}


def test_minilm_costs_about_21_mflop_per_token():
    # The figure measured by hand for issue 21: MiniLM-L6 ≈ 21 MFLOP per token, ~18 tokens ≈ 0.38 GFLOP.
    assert encoder_flops_per_token(MINILM, 18) == pytest.approx(21e6, rel=0.03)
    assert gflop_per_text(MINILM, 18) == pytest.approx(0.38, rel=0.03)


def test_a_tiny_encoder_worked_by_hand():
    # d=4, i=8, 1 layer, 3 tokens: projections 4*16=64, FFN 2*4*8=64, attention 2*3*4=24 -> 152 MACs, x2.
    tiny = {"hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1}
    assert encoder_flops_per_token(tiny, 3) == 304
    assert gflop_per_text(tiny, 3) == pytest.approx(912e-9)


def test_the_roofline_divides_measured_gflops_by_the_cost_of_a_text():
    roofline = Roofline(
        threads=2,
        fp32_gflops=51.0,
        fp32_by_engine={"torch": 51.0},
        bf16_gflops=None,
        int8_native=False,
        flags=[],
    )
    assert roofline.texts_per_s(0.38) == pytest.approx(134.2, abs=0.1)  # the issue's ~130 texts/s
    with pytest.raises(ValueError, match="no bf16 roofline"):
        roofline.texts_per_s(0.38, "bf16")


def test_a_matmul_timing_measures_real_work(tmp_path):
    gflops = matmul_gflops(torch.float32, threads=1, size=128, min_seconds=0.05)
    assert 0.05 < gflops < 10_000  # a CPU core does 0.05..10000 GFLOP/s on fp32
    other = onnxruntime_matmul_gflops(threads=1, size=128, min_seconds=0.05)
    assert other is not None and 0.05 < other < 10_000
    flags_file = tmp_path / "cpuinfo"
    flags_file.write_text("processor : 0\nflags : fpu avx2 fma avx512_vnni\n")
    assert {"avx2", "avx512_vnni"} <= cpu_flags(flags_file)
