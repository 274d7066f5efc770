"""llm_probe: a llama.cpp build that kills its process (SIGILL on a CPU without an instruction it was built for)
is reported with the fix instead of taking the reader down. The child is replaced by scripts that behave like the
three outcomes; the real llama.cpp probe runs in tests/llm (`make test-llm`) and in `make llm`."""

from __future__ import annotations

from pathlib import Path

import pytest

from wikimem_reader import llm_probe


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGILL)", "crashes on this machine with SIGILL"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashes on this machine with SIGSEGV"),
        ("import sys; print('ggml: no such file', file=sys.stderr); sys.exit(3)", "(exit 3): ggml: no such file"),
    ],
)
def test_failures_are_described(monkeypatch: pytest.MonkeyPatch, child: str, expected: str) -> None:
    monkeypatch.setattr(llm_probe, "_CHILD", child)
    problem = llm_probe.probe(Path("model.gguf"))
    assert problem is not None and expected in problem
    if "crashes" in expected:
        assert "make llm" in problem


def test_a_child_that_runs_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_probe, "_CHILD", "import sys; assert sys.argv[1].endswith('model.gguf')")
    assert llm_probe.probe(Path("model.gguf")) is None


def test_a_hanging_child_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_probe, "_CHILD", "import time; time.sleep(30)")
    problem = llm_probe.probe(Path("model.gguf"), timeout_s=0.5)
    assert problem is not None and "within 0 s" in problem


def test_command_line_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(llm_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    assert llm_probe.main(["model.gguf"]) == 1
    assert "SIGILL" in capsys.readouterr().err
    assert llm_probe.main([]) == 2
