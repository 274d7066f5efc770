"""Server reflection v1 (what current grpcurl asks first) and v1alpha, on a server started like every service's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

from wikimem_common.server import ServerHandle, start
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

RAG = "wikimem.v1.Rag"
EXPECTED = {
    RAG,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    def register(srv: grpc.Server) -> list[str]:
        rag_pb2_grpc.add_RagServicer_to_server(rag_pb2_grpc.RagServicer(), srv)
        return [RAG]

    handle = start(register, "127.0.0.1:0")
    yield handle
    handle.stop(grace=0)


def v1_classes() -> tuple[type[Any], type[Any]]:
    """The v1 request/response classes, built from the v1 descriptors the server put in the default pool (the
    client speaks v1 proper: its own message types in package grpc.reflection.v1)."""
    pool = descriptor_pool.Default()
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest"))
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    return request, response


def ask(address: str, version: str, request: Any, response_type: type[Any]) -> Any:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        responses = list(call(iter([request]), timeout=10))
    assert len(responses) == 1
    return responses[0]


def test_v1_lists_the_services(server: ServerHandle) -> None:
    request_type, response_type = v1_classes()
    reply = ask(server.address, "v1", request_type(list_services=""), response_type)
    assert reply.DESCRIPTOR.full_name == "grpc.reflection.v1.ServerReflectionResponse"
    assert {s.name for s in reply.list_services_response.service} == EXPECTED


def test_v1_describes_a_wikimem_service(server: ServerHandle) -> None:
    request_type, response_type = v1_classes()
    reply = ask(server.address, "v1", request_type(file_containing_symbol=RAG), response_type)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    rag = next(f for f in files if f.package == "wikimem.v1" and any(s.name == "Rag" for s in f.service))
    methods = {m.name for m in next(s for s in rag.service if s.name == "Rag").method}
    assert {"Ask", "AskStream", "PutDocument"} <= methods
    assert rag.name == rag_pb2.DESCRIPTOR.name


def test_v1_describes_itself_in_its_own_package(server: ServerHandle) -> None:
    request_type, response_type = v1_classes()
    reply = ask(
        server.address, "v1", request_type(file_containing_symbol="grpc.reflection.v1.ServerReflection"), response_type
    )
    (raw,) = reply.file_descriptor_response.file_descriptor_proto
    proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert proto.package == "grpc.reflection.v1"
    (method,) = proto.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


def test_v1alpha_still_answers(server: ServerHandle) -> None:
    reply = ask(
        server.address, "v1alpha", v1alpha.ServerReflectionRequest(list_services=""), v1alpha.ServerReflectionResponse
    )
    assert {s.name for s in reply.list_services_response.service} == EXPECTED


def test_unknown_symbol_is_an_error_response_on_v1(server: ServerHandle) -> None:
    request_type, response_type = v1_classes()
    reply = ask(server.address, "v1", request_type(file_containing_symbol="no.such.Service"), response_type)
    assert reply.WhichOneof("message_response") == "error_response"
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
