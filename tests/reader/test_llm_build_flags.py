"""deploy/llm-cmake-args.sh: llama.cpp is built with exactly the instruction sets the CPU reports (a build with one
it lacks dies with SIGILL), never with AMX or -march=native."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "llm-cmake-args.sh"

ZEN4 = "fpu sse4_1 sse4_2 avx f16c fma bmi2 avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni"
SAPPHIRE_RAPIDS = f"{ZEN4} avx_vnni amx_bf16 amx_tile amx_int8"
OLD_XEON = "fpu sse4_1 sse4_2 avx f16c fma bmi2 avx2"


def cmake_args(tmp_path: Path, flags: str) -> dict[str, str]:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    out = subprocess.run(["sh", str(SCRIPT), str(cpuinfo)], capture_output=True, text=True, check=True).stdout
    return dict(arg.removeprefix("-D").split("=") for arg in out.split())


@pytest.mark.parametrize(
    ("flags", "on", "off"),
    [
        (ZEN4, ["AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AVX512_VBMI"], ["AVX_VNNI"]),
        (SAPPHIRE_RAPIDS, ["AVX512_VNNI", "AVX_VNNI"], []),
        (OLD_XEON, ["AVX", "AVX2", "FMA", "F16C", "BMI2"], ["AVX512", "AVX512_VNNI", "AVX_VNNI", "AVX512_BF16"]),
    ],
)
def test_flags_follow_the_cpu(tmp_path: Path, flags: str, on: list[str], off: list[str]) -> None:
    args = cmake_args(tmp_path, flags)
    assert {f"GGML_{name}" for name in on} <= {k for k, v in args.items() if v == "ON"}
    assert {f"GGML_{name}" for name in off} <= {k for k, v in args.items() if v == "OFF"}
    # never native, never AMX (it needs the kernel's permission; the native build died with SIGILL on it)
    assert args["GGML_NATIVE"] == "OFF"
    assert args["GGML_AMX_INT8"] == args["GGML_AMX_TILE"] == args["GGML_AMX_BF16"] == "OFF"
