"""The `openai` backend: any OpenAI-compatible `/chat/completions` endpoint (vLLM, Ollama, llama.cpp server, ...).

Plain HTTP with the standard library: a streamed request (`"stream": true`) answers with server-sent events, one
`data: {json}` line per chunk and `data: [DONE]` at the end. Server errors map to gRPC codes with what to do next:
unreachable or 5xx → UNAVAILABLE, bad key → FAILED_PRECONDITION, 429 → RESOURCE_EXHAUSTED, other 4xx →
INVALID_ARGUMENT (e.g. the prompt does not fit the model's context).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from wikimem_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

from .config import OpenAIConfig
from .generative import GenerativeReader
from .prompt import Message

NOT_CONFIGURED = (
    "the openai reader is not configured: set WIKIMEM_OPENAI_BASE_URL to an OpenAI-compatible server "
    "(e.g. http://127.0.0.1:8000/v1), and WIKIMEM_OPENAI_MODEL / WIKIMEM_OPENAI_API_KEY if it needs them"
)


def parse_sse(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """JSON payloads of `data:` lines until `data: [DONE]` (comments, blank lines and other fields skipped)."""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ServiceError(f"the OpenAI-compatible server sent a malformed event: {data[:200]!r}") from exc
        if isinstance(payload, dict):
            yield payload


class OpenAIChatReader(GenerativeReader):
    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        super().__init__(config.generation)
        self.config = config
        self._listed_model = ""
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.config.model or self._listed_model

    def _request(self, path: str, body: dict[str, Any] | None) -> urllib.request.Request:
        if not self.config.base_url:
            raise FailedPrecondition(NOT_CONFIGURED)
        headers = {"Accept": "text/event-stream" if body and body.get("stream") else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        return urllib.request.Request(
            self.config.base_url + path, data=data, headers=headers, method="GET" if body is None else "POST"
        )

    def _error(self, exc: Exception) -> ServiceError:
        where = f"the OpenAI-compatible server at {self.config.base_url}"
        if isinstance(exc, urllib.error.HTTPError):
            try:
                detail = exc.read().decode("utf-8", errors="replace")[:500]
            except OSError:
                detail = ""
            message = f"{where} answered HTTP {exc.code}: {detail or exc.reason}"
            if exc.code in (401, 403):
                return FailedPrecondition(f"{message} — check WIKIMEM_OPENAI_API_KEY")
            if exc.code == 404:
                return FailedPrecondition(f"{message} — check WIKIMEM_OPENAI_BASE_URL (…/v1) and WIKIMEM_OPENAI_MODEL")
            if exc.code == 429:
                return ResourceExhausted(message)
            if exc.code >= 500:
                return Unavailable(message)
            return InvalidArgument(message)
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return Unavailable(f"{where} did not answer within {self.config.timeout_s:g}s (WIKIMEM_OPENAI_TIMEOUT_S)")
        if isinstance(exc, urllib.error.URLError):
            return Unavailable(f"cannot reach {where}: {exc.reason}")
        return Unavailable(f"{where} failed: {type(exc).__name__}: {exc}")

    def resolve_model(self) -> str:
        """WIKIMEM_OPENAI_MODEL, else the first model the server lists (asked once)."""
        if self.config.model:
            return self.config.model
        with self._lock:
            if not self._listed_model:
                try:
                    with urllib.request.urlopen(self._request("/models", None), timeout=self.config.timeout_s) as r:
                        listed = json.load(r)
                except (OSError, ValueError) as exc:
                    raise self._error(exc) from None
                ids = [m.get("id", "") for m in listed.get("data", []) if isinstance(m, dict)]
                if not ids or not ids[0]:
                    raise FailedPrecondition(
                        f"the server at {self.config.base_url} lists no models; set WIKIMEM_OPENAI_MODEL"
                    )
                self._listed_model = ids[0]
            return self._listed_model

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        body = {
            "model": self.resolve_model(),
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        try:
            response = urllib.request.urlopen(self._request("/chat/completions", body), timeout=self.config.timeout_s)
        except OSError as exc:
            raise self._error(exc) from None
        with response:
            try:
                for event in parse_sse(iter(response.readline, b"")):
                    if "error" in event:
                        raise Unavailable(f"the OpenAI-compatible server reported an error: {event['error']}")
                    for choice in event.get("choices") or []:
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            yield content
            except OSError as exc:
                raise self._error(exc) from None
