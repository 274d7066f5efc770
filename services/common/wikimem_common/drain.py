"""Graceful drain: count the calls in flight; once draining, refuse new ones and wait for the running ones.

`Drain` is the outermost server interceptor. `ServerHandle.stop` (SIGTERM) flips health to NOT_SERVING, calls
`start()` here, waits up to the grace (`WIKIMEM_DRAIN_GRACE_S`) for the in-flight calls to finish, then stops the
server. Health and reflection are neither counted nor refused: during the drain a load balancer or the launcher
still gets an answer (NOT_SERVING), and an open health Watch does not hold the drain up. A call refused while
draining gets UNAVAILABLE, which clients may retry on another instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

#: Method prefixes that are always served and never waited for.
EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.")

DRAINING_MESSAGE = "the server is shutting down (draining in-flight calls); retry on another instance"


class Drain(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False
        self._last_refused = 0.0

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def draining(self) -> bool:
        with self._cond:
            return self._draining

    def start(self) -> None:
        """Refuse new calls from now on."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no counted call is in flight; False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_quiet(self, quiet_s: float, timeout: float) -> None:
        """Keep refusing until no call has come for `quiet_s` (at most `timeout`). A call that reached the server
        but not yet a worker thread when the server stops is cancelled (CANCELLED at the client, which may not
        retry it); refused now, it gets UNAVAILABLE, and clients watching health stop sending meanwhile."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            with self._cond:
                quiet_since = max(start, self._last_refused)
            now = time.monotonic()
            if now - quiet_since >= quiet_s or now >= deadline:
                return
            time.sleep(min(quiet_s - (now - quiet_since), deadline - now))

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._cond:
            if not self._draining:
                self._in_flight += 1
                return
            self._last_refused = time.monotonic()
        context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)

    def _exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if not self._in_flight:
                self._cond.notify_all()

    def _unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            self._enter(context)
            try:
                return behavior(request, context)
            finally:
                self._exit()

        return call

    def _streaming(self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._enter(context)
            try:
                yield from behavior(request, context)
            finally:
                self._exit()

        return call

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or str(details.method).startswith(EXEMPT):
            return handler
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary), des, ser)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream), des, ser)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary), des, ser)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream), des, ser)
        return handler
