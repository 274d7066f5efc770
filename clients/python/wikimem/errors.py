"""Errors raised by the wikimem client: one `WikimemError` subclass per gRPC status code."""

from __future__ import annotations

import math
from typing import Any

import grpc

from wikimem_contract import metadata


class WikimemError(Exception):
    """A failed call: `code` is the gRPC status, `message` the server's explanation."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(WikimemError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(WikimemError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(WikimemError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(WikimemError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(WikimemError):
    """A compare-and-set (`if_revision`) did not match the current revision."""

    code = grpc.StatusCode.ABORTED


class ResourceExhaustedError(WikimemError):
    """The server is busy (admission control) or the caller is over a rate limit. `retry_after_s`: when a retry is
    likely to be admitted (the server's trailing `retry-after-ms`), or None when it gave no hint."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self, message: str, code: grpc.StatusCode | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code)
        self.retry_after_s = retry_after_s


class UnavailableError(WikimemError):
    """The server (or one of the services behind it) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(WikimemError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDeniedError(WikimemError):
    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(WikimemError):
    code = grpc.StatusCode.UNAUTHENTICATED


class CancelledError(WikimemError):
    code = grpc.StatusCode.CANCELLED


class UnimplementedError(WikimemError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(WikimemError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[WikimemError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        PermissionDeniedError,
        UnauthenticatedError,
        CancelledError,
        UnimplementedError,
        InternalError,
    )
}


def retry_after_s(exc: grpc.RpcError) -> float | None:
    """The server's retry hint (trailing metadata `retry-after-ms`) in seconds, or None (absent or malformed)."""
    trailing_fn = getattr(exc, "trailing_metadata", None)
    try:
        trailing: Any = trailing_fn() if callable(trailing_fn) else None
    except Exception:  # a call that has no trailing metadata to give
        return None
    for item in trailing or ():
        key, value = item
        if key != metadata.RETRY_AFTER_MS:
            continue
        try:
            ms = float(value)
        except (TypeError, ValueError):
            return None
        return ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None
    return None


def from_rpc_error(exc: grpc.RpcError) -> WikimemError:
    """The `WikimemError` subclass matching a gRPC error (sync or asyncio); RESOURCE_EXHAUSTED carries the server's
    retry hint (`ResourceExhaustedError.retry_after_s`)."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else None) or str(exc)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhaustedError(message, code, retry_after_s(exc))
    cls = _BY_CODE.get(code, WikimemError)
    return cls(message, code)
