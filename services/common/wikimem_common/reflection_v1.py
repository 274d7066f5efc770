"""gRPC server reflection, v1 and v1alpha.

grpcio-reflection ships only `grpc.reflection.v1alpha.ServerReflection`; current grpcurl (and other tools) ask
`grpc.reflection.v1.ServerReflection` first. The v1 messages are wire-identical to v1alpha's (same fields, same
numbers; only the package differs), so v1 is served by the same servicer through a generic handler with the
v1alpha serializers. The v1 service's descriptor (v1alpha's file under the v1 package) is added to the default
descriptor pool, so tools can also describe it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
SERVICE_NAME_V1 = f"{V1_PACKAGE}.ServerReflection"
SERVICE_NAME_V1ALPHA: str = reflection.SERVICE_NAME
METHOD = "ServerReflectionInfo"


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old_prefix = f".{proto.package}."
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    proto.options.Clear()
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_prefix, f".{V1_PACKAGE}.")
            method.output_type = method.output_type.replace(old_prefix, f".{V1_PACKAGE}.")
    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name.startswith(old_prefix):
                fld.type_name = fld.type_name.replace(old_prefix, f".{V1_PACKAGE}.")
    pool.Add(proto)


def enable(
    service_names: Sequence[str], server: grpc.Server, pool: descriptor_pool.DescriptorPool | None = None
) -> None:
    """Serve reflection v1 and v1alpha for `service_names` (plus both reflection services) on `server`."""
    target = pool or descriptor_pool.Default()
    _add_v1_descriptor(target)
    names = [*service_names, SERVICE_NAME_V1, SERVICE_NAME_V1ALPHA]
    servicer = reflection.ReflectionServicer(names, pool=pool)

    def info(
        requests: Iterator[reflection_pb2.ServerReflectionRequest], context: grpc.ServicerContext
    ) -> Iterator[reflection_pb2.ServerReflectionResponse]:
        return servicer.ServerReflectionInfo(requests, context)

    handler = grpc.stream_stream_rpc_method_handler(
        info,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE_NAME_V1, {METHOD: handler}),
            grpc.method_handlers_generic_handler(SERVICE_NAME_V1ALPHA, {METHOD: handler}),
        )
    )
