"""The `local-llm` backend: a GGUF model run in-process by llama-cpp-python (the optional `llm` extra).

The model is loaded on first use (or at start when it is the default backend), after its size and sha256 were
checked against the pins; a missing extra or file is FAILED_PRECONDITION saying to run `make llm`. llama.cpp
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

from wikimem_common.config import ConfigError
from wikimem_common.errors import FailedPrecondition, InvalidArgument

from .config import LocalLlmConfig
from .generative import GenerativeReader
from .llm_models import PROVISION_HINT, check_gguf, resolve_gguf
from .prompt import Message

log = logging.getLogger("wikimem.reader.local_llm")


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
