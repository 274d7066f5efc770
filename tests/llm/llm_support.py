"""When the LLM tests run, and the real OpenAI-compatible server they use (llama-cpp-python's own, on loopback).

They run under `make test-llm` (WIKIMEM_TEST_LLM=1) once `make llm` has installed the extra and the GGUFs; in
the normal suite they skip, saying why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from wikimem_common.config import ConfigError
from wikimem_reader.llm_models import DEFAULT_MODEL, check_gguf, resolve_gguf
from wikimem_reader.local_llm import llama_cpp_available

#: The tests use the small model: it is the fast one, and the one the issue's observations are about.
MODEL = DEFAULT_MODEL


def skip_reason() -> str | None:
    """Why the LLM tests cannot run here (None: they run)."""
    if not llama_cpp_available():
        return "llm extra not installed: run `make llm`, then `make test-llm`"
    if os.environ.get("WIKIMEM_TEST_LLM") != "1":
        return "LLM tests run with `make test-llm` (WIKIMEM_TEST_LLM=1)"
    path, spec = resolve_gguf(MODEL)
    try:
        check_gguf(path, spec)
    except ConfigError as exc:
        return str(exc)
    return None


def gguf_path() -> Path:
    return resolve_gguf(MODEL)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` serving the GGUF on a free loopback port (an OpenAI-compatible API)."""

    def __init__(self, model: Path, log: Path, threads: int = 0) -> None:
        self.port = free_port()
        self.log = log
        self.model_alias = model.stem
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", self.model_alias,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "4096",
            "--n_threads", str(threads or os.cpu_count() or 1), "--verbose", "False",
        ]
        self.proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if json.load(r).get("data"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llama_cpp.server did not come up on port {self.port}:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
