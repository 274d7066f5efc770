"""Does llama-cpp-python run on this CPU? Asked in a child process, before the reader loads a model in its own.

A llama.cpp build made for another CPU (an instruction set this one lacks: AVX_VNNI on AMD Zen 4, AMX without the
kernel's permission) does not fail with an error: the process dies with SIGILL on the first matrix product. Loaded
in-process, that would take the whole reader service down, the extractive backend with it. So the first use of a
GGUF runs it once in a child (load, one token); a child killed by a signal makes the local-llm backend
FAILED_PRECONDITION with the fix, and the service stays up. `make llm` runs the same probe (`python -m
wikimem_reader.llm_probe GGUF`) so a bad build is caught when it is made.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REBUILD_HINT = "rebuild it for this machine's CPU with `make llm` (it detects the CPU's instruction sets)"

_CHILD = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, n_threads_batch=1, verbose=False)
llm("Hello", max_tokens=1)
"""


def probe(gguf: Path, timeout_s: float = 300.0) -> str | None:
    """None when llama.cpp loads `gguf` and generates a token in a child process; else what went wrong."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(gguf)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return f"llama-cpp-python did not load {gguf.name} and generate one token within {timeout_s:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        cause = " (an instruction this CPU does not have)" if name == "SIGILL" else ""
        return f"llama-cpp-python crashes on this machine with {name}{cause}: {REBUILD_HINT}"
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return f"llama-cpp-python failed to run {gguf.name} (exit {done.returncode}): {' | '.join(tail)}"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m wikimem_reader.llm_probe GGUF", file=sys.stderr)
        return 2
    problem = probe(Path(args[0]))
    if problem:
        print(f"llm probe: {problem}", file=sys.stderr)
        return 1
    print(f"llm probe: llama-cpp-python runs {Path(args[0]).name} on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
