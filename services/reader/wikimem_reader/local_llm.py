"""The `local-llm` backend: a GGUF model run in-process by llama-cpp-python (the optional `llm` extra).

The model is loaded on first use (or at start when it is the default backend), after its size and sha256 were
checked against the pins and llama.cpp was seen to run on this CPU in a child process (llm_probe.py); a missing
extra or file, or a build that crashes here, is FAILED_PRECONDITION saying to run `make llm`. llama.cpp
contexts are not thread-safe, so requests take turns (one lock); a cancelled stream stops generating.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wikimem_common.config import ConfigError, env_bool
from wikimem_common.errors import FailedPrecondition, InvalidArgument

from .config import LocalLlmConfig
from .generative import GenerativeReader
from .llm_models import PROVISION_HINT, check_gguf, resolve_gguf
from .llm_probe import probe
from .prompt import Message

log = logging.getLogger("wikimem.reader.local_llm")


_probed: dict[Path, str | None] = {}
_probe_lock = threading.Lock()


def _probe_once(path: Path) -> str | None:
    """llm_probe.probe, once per GGUF per process (a broken build stays broken until the service restarts)."""
    with _probe_lock:
        if path not in _probed:
            t = time.perf_counter()
            _probed[path] = probe(path)
            log.info(
                "llama.cpp probed", extra={"path": str(path), "problem": _probed[path], "s": time.perf_counter() - t}
            )
        return _probed[path]


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class LocalLlmReader(GenerativeReader):
    name = "local-llm"

    def __init__(self, config: LocalLlmConfig) -> None:
        super().__init__(config.generation)
        self.config = config
        self.path, self.spec = resolve_gguf(config.model, config.gguf)
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.spec.name if self.spec is not None else Path(self.path).name

    def load(self) -> Any:
        """The llama.cpp model, loaded (and checked) once."""
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            try:
                from llama_cpp import Llama
            except ImportError:
                raise FailedPrecondition(f"the local-llm reader needs the llm extra: {PROVISION_HINT}") from None
            try:
                check_gguf(self.path, self.spec, self.config.gguf_sha256)
            except ConfigError as exc:
                raise FailedPrecondition(str(exc)) from None
            if env_bool("WIKIMEM_LLM_PROBE", True):
                problem = _probe_once(Path(self.path))
                if problem:
                    raise FailedPrecondition(f"the local-llm reader cannot run: {problem}")
            threads = self.config.threads or os.cpu_count() or 1
            t = time.perf_counter()
            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=self.config.context,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            log.info(
                "local LLM loaded",
                extra={"model": self.model, "path": str(self.path), "threads": threads, "s": time.perf_counter() - t},
            )
            return self._llama

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        llama = self.load()
        with self._run_lock:
            chunks = llama.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature, seed=0, stream=True
            )
            try:
                for chunk in chunks:
                    choices = chunk.get("choices") or []
                    if choices:
                        content = (choices[0].get("delta") or {}).get("content")
                        if content:
                            yield content
            except ValueError as exc:  # llama.cpp: the prompt does not fit the context window
                raise InvalidArgument(
                    f"{exc}; lower WIKIMEM_LLM_MAX_PROMPT_CHARS or raise WIKIMEM_LLM_CONTEXT "
                    f"({self.config.context} tokens)"
                ) from None
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # a cancelled stream: stop generating before releasing the lock

    def close(self) -> None:
        with self._load_lock:
            llama, self._llama = self._llama, None
        if llama is not None and hasattr(llama, "close"):
            llama.close()
