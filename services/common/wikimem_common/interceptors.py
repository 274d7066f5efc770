"""Server interceptors shared by every service.

`MalformedRequests`: a request that does not parse (e.g. invalid UTF-8 in a string field, which protobuf rejects)
would otherwise surface as INTERNAL "Exception deserializing request!". This interceptor parses leniently and
answers INVALID_ARGUMENT naming the message type instead, without reaching the servicer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class _Malformed:
    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Malformed(exc)

    return parse


def _reject(method: str, request: _Malformed, context: grpc.ServicerContext) -> None:
    context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"malformed request for {method}: {request.error or 'not a valid protobuf message'} "
        "(string fields must be valid UTF-8)",
    )


class MalformedRequests(grpc.ServerInterceptor):
    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.request_streaming:
            return handler
        method = details.method
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Malformed):
                    _reject(method, request, context)
                return inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Malformed):
                    _reject(method, request, context)
                return inner_us(request, context)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler
