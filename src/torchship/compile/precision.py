"""Which compile backend can produce which numeric precision (`compile.precision`), on this machine.

fp32 is every backend's. The reduced precisions each come from one backend that does them well on CPU:
- int8-dynamic, int8-static: onnx (ONNX Runtime's quantizer, int8 weights per channel; onnx_quantize.py);
- bf16: torchscript (the model cast to bfloat16 and traced), only where the CPU computes bf16 natively
  (x86: avx512_bf16 or amx_bf16; Arm: bf16). Elsewhere torch emulates it, slower than fp32 and no smaller
  in what matters, so it is refused rather than shipped as a slowdown.
The CPU's flags are read from /proc/cpuinfo, never assumed: the compiling machine should be the kind that
serves (README "Reduced precision").
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torchship.errors import SpecError

PRECISIONS = ("fp32", "bf16", "int8-dynamic", "int8-static")
REDUCED = tuple(p for p in PRECISIONS if p != "fp32")
CPUINFO = Path("/proc/cpuinfo")
# A CPU flag that means bf16 arithmetic in hardware: x86 (AVX-512 BF16, AMX) or Arm (FEAT_BF16).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

# (backend, precision) -> None when the backend makes it (subject to the CPU, for bf16), else why not.
_WHY_NOT: dict[tuple[str, str], str | None] = {
    ("torchscript", "fp32"): None,
    ("torchscript", "bf16"): None,
    ("torchscript", "int8-dynamic"): "torchscript does not quantize here; compile.backend: onnx makes int8",
    ("torchscript", "int8-static"): "torchscript does not quantize here; compile.backend: onnx makes int8",
    ("onnx", "fp32"): None,
    ("onnx", "bf16"): "ONNX Runtime's CPU provider has no bf16 kernels for a transformer's ops; "
    "compile.backend: torchscript makes bf16",
    ("onnx", "int8-dynamic"): None,
    ("onnx", "int8-static"): None,
    ("neuron", "fp32"): None,
    ("eager", "fp32"): None,
}


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of /proc/cpuinfo's text: x86's `flags` lines, Arm's `Features` lines."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def this_cpu_flags() -> frozenset[str]:
    """This machine's CPU flags; none where /proc/cpuinfo cannot be read (so bf16 counts as not native)."""
    try:
        return cpu_flags(CPUINFO.read_text(errors="replace"))
    except OSError:
        return frozenset()


def native_bf16(flags: Iterable[str]) -> bool:
    return any(flag in BF16_FLAGS for flag in flags)


def unsupported_reason(backend: str, precision: str, flags: Iterable[str] | None = None) -> str | None:
    """None when `backend` can produce `precision` on a CPU with `flags` (default: this machine's), else
    one line saying why not."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; the precisions are {', '.join(PRECISIONS)}"
    if (backend, precision) not in _WHY_NOT:
        return f"{backend}: {precision} is not supported; {backend} compiles fp32 only"
    why = _WHY_NOT[(backend, precision)]
    if why is not None:
        return f"{backend}: {why}"
    if precision == "bf16":
        cpu = this_cpu_flags() if flags is None else frozenset(flags)
        if not native_bf16(cpu):
            return (
                "bf16: this CPU has no native bf16 (no avx512_bf16/amx_bf16/bf16 in /proc/cpuinfo flags); "
                "emulated bf16 is slower than fp32"
            )
    return None


def supported_combinations(flags: Iterable[str] | None = None) -> list[str]:
    """Every backend + precision this machine can compile, e.g. "onnx + int8-dynamic"."""
    cpu = this_cpu_flags() if flags is None else frozenset(flags)
    return [f"{b} + {p}" for b, p in _WHY_NOT if unsupported_reason(b, p, cpu) is None]


def require_supported(backend: str, precision: str, spec_path: Path) -> None:
    """SpecError naming what this machine can compile, when the spec asks for another combination."""
    why = unsupported_reason(backend, precision)
    if why is None:
        return
    raise SpecError(
        f"{spec_path}: compile.backend {backend} with compile.precision {precision} is not supported here: {why}",
        hint=f"Supported on this machine: {', '.join(supported_combinations())}. Set compile.backend and "
        "compile.precision to one of them (or compile where the CPU supports what you need).",
    )
