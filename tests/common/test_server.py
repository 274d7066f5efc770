"""Every service gets health checking, reflection and error mapping from the shared bootstrap."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from wikimem_common.errors import InvalidArgument, grpc_errors
from wikimem_common.server import start
from wikimem_contract.v1 import reranker_pb2, reranker_pb2_grpc


class _Echo(reranker_pb2_grpc.RerankerServicer):
    @grpc_errors
    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        if not request.query:
            raise InvalidArgument("query must not be empty")
        if request.query == "crash":
            raise RuntimeError("bug")
        return reranker_pb2.RerankResponse(scores=[float(len(p)) for p in request.passages])


def _register(server: grpc.Server) -> list[str]:
    reranker_pb2_grpc.add_RerankerServicer_to_server(_Echo(), server)
    return ["wikimem.v1.Reranker"]


def test_health_reflection_errors_and_graceful_stop() -> None:
    handle = start(_register, "127.0.0.1:0")
    channel = grpc.insecure_channel(handle.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "wikimem.v1.Reranker"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(reflect.ServerReflectionInfo(iter([ask]))))
        names = {s.name for s in reply.list_services_response.service}
        assert {"wikimem.v1.Reranker", "grpc.health.v1.Health"} <= names

        stub = reranker_pb2_grpc.RerankerStub(channel)
        assert list(stub.Rerank(reranker_pb2.RerankRequest(query="q", passages=["ab"]), timeout=5).scores) == [2.0]
        with pytest.raises(grpc.RpcError) as bad:
            stub.Rerank(reranker_pb2.RerankRequest(query=""), timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "query must not be empty" in (bad.value.details() or "")
        with pytest.raises(grpc.RpcError) as crash:
            stub.Rerank(reranker_pb2.RerankRequest(query="crash"), timeout=5)
        assert crash.value.code() == grpc.StatusCode.INTERNAL
        # The service survives a crash of one call.
        assert stub.Rerank(reranker_pb2.RerankRequest(query="q", passages=["abc"]), timeout=5).scores[0] == 3.0
    finally:
        handle.stop(grace=1)
        channel.close()
    with pytest.raises(grpc.RpcError) as gone:
        grpc_channel = grpc.insecure_channel(handle.address)
        health_pb2_grpc.HealthStub(grpc_channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


class _Aborting(reranker_pb2_grpc.RerankerServicer):
    @grpc_errors
    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("unreachable")


def test_explicit_abort_keeps_its_status() -> None:
    def register(server: grpc.Server) -> list[str]:
        reranker_pb2_grpc.add_RerankerServicer_to_server(_Aborting(), server)
        return ["wikimem.v1.Reranker"]

    handle = start(register, "127.0.0.1:0")
    try:
        with grpc.insecure_channel(handle.address) as channel, pytest.raises(grpc.RpcError) as err:
            reranker_pb2_grpc.RerankerStub(channel).Rerank(reranker_pb2.RerankRequest(query="q"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "no such thing"
    finally:
        handle.stop(grace=1)


def test_invalid_utf8_in_a_string_field_is_invalid_argument() -> None:
    handle = start(_register, "127.0.0.1:0")
    try:
        with grpc.insecure_channel(handle.address) as channel:
            raw = channel.unary_unary("/wikimem.v1.Reranker/Rerank")  # bytes in, bytes out
            # field 1 (query), wire type 2, length 3, then bytes that are not UTF-8
            with pytest.raises(grpc.RpcError) as err:
                raw(b"\x0a\x03\xff\xfe\xfd", timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "UTF-8" in (err.value.details() or "")
            stub = reranker_pb2_grpc.RerankerStub(channel)
            assert stub.Rerank(reranker_pb2.RerankRequest(query="é", passages=["x"]), timeout=5).scores[0] == 1.0
    finally:
        handle.stop(grace=1)
