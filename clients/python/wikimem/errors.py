"""Errors raised by the wikimem client: one `WikimemError` subclass per gRPC status code."""

from __future__ import annotations

import grpc


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
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


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


def from_rpc_error(exc: grpc.RpcError) -> WikimemError:
    """The `WikimemError` subclass matching a gRPC error (sync or asyncio)."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else None) or str(exc)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    cls = _BY_CODE.get(code, WikimemError)
    return cls(message, code)
