"""Domain errors and their gRPC status codes.

Service code raises these; `grpc_errors` (a decorator for servicer methods) turns them into a status with the
message, so every bad input gets a precise code and the service stays up.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from wikimem_contract import metadata

log = logging.getLogger("wikimem.errors")


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class ResourceExhausted(ServiceError):
    """Overloaded or rate limited; `retry_after_s` goes to the caller as trailing metadata (`retry-after-ms`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


F = TypeVar("F", bound=Callable[..., Any])


def _already_aborted(context: grpc.ServicerContext) -> bool:
    try:
        code = context.code()
    except Exception:
        return False
    return code is not None and code != grpc.StatusCode.OK


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    if _already_aborted(context):
        raise exc  # the method called context.abort() itself: keep its status
    if isinstance(exc, ServiceError):
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            context.set_trailing_metadata(((metadata.RETRY_AFTER_MS, str(max(1, round(retry_after * 1000)))),))
        context.abort(exc.code, exc.message)
    log.exception("unhandled error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def grpc_errors(method: F) -> F:
    """Map ServiceError (and unexpected exceptions) raised by a servicer method to a gRPC status."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def gen_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                _abort(context, exc)

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, exc)

    return wrapper  # type: ignore[return-value]


def require_text(value: str, field: str, max_chars: int | None = None) -> str:
    """Reject empty / whitespace-only strings and over-long ones with INVALID_ARGUMENT."""
    if not value or not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidArgument(f"{field} is {len(value)} characters; the limit is {max_chars}")
    return value
