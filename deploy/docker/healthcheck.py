"""Container health check: grpc.health.v1 Check on the service's own port ($WIKIMEM_LISTEN); exit 0 when SERVING.

    python /opt/wikimem/healthcheck.py [SERVICE]     (SERVICE: a full gRPC service name; default "" = the server)

The images' HEALTHCHECK, and the Helm chart's probe command on ports with TLS (the kubelet's gRPC probe speaks
plaintext only). A wildcard listen host (0.0.0.0, [::]) is probed on loopback. TLS as the service itself serves it
($WIKIMEM_SERVICE names the service; wikimem_common.tls has the settings):
- internal services with WIKIMEM_INTERNAL_CA/_CERT/_KEY (mutual TLS): the service's own certificate as the client
  certificate, the peer checked against the internal CA under WIKIMEM_INTERNAL_SERVER_NAME, else the first name in
  the service's certificate;
- the orchestrator with WIKIMEM_TLS_CERT/_KEY: the server checked against WIKIMEM_HEALTHCHECK_CA (a PEM file; default:
  the system's roots) under the first name in its certificate.
Exit 1 when not serving or unreachable, with the reason on stdout (`docker inspect` shows it under
.State.Health.Log).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PUBLIC_SERVICE = "orchestrator"


def probe_address(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"WIKIMEM_LISTEN={listen!r} has no port")
    if host in ("", "0.0.0.0", "[::]", "::", "*"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def channel_security(env: Mapping[str, str]) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    """Credentials and channel options that match how this service's port is served; (None, []) for plaintext."""
    service = env.get("WIKIMEM_SERVICE", "").strip() or (PUBLIC_SERVICE if env.get("WIKIMEM_TLS_CERT") else "")
    public = service == PUBLIC_SERVICE
    if not (env.get("WIKIMEM_TLS_CERT") if public else env.get("WIKIMEM_INTERNAL_CA")):
        return None, []
    from wikimem_common import tls  # only with TLS: it imports cryptography

    config = tls.TlsConfig.from_env(env)
    if public:
        assert config.public is not None
        ca = env.get("WIKIMEM_HEALTHCHECK_CA", "").strip()
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes() if ca else None)
        name = tls.first_host(config.public.cert)
    else:
        assert config.internal is not None
        credentials = tls.channel_credentials(config)
        name = config.internal_server_name or tls.first_host(config.internal.cert)
    return credentials, [("grpc.ssl_target_name_override", name)] if name else []


def check(env: Mapping[str, str], service: str = "") -> tuple[bool, str]:
    """(serving, what to print)."""
    listen = env.get("WIKIMEM_LISTEN", "")
    if not listen:
        return False, "WIKIMEM_LISTEN is not set; the health check does not know the service's port"
    timeout = float(env.get("WIKIMEM_HEALTHCHECK_TIMEOUT_S", "3"))
    try:
        address = probe_address(listen)
        credentials, options = channel_security(env)
        channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address)
        )
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError as exc:
        return False, f"unhealthy: {exc.code().name}: {exc.details()}"
    except (
        ValueError,
        OSError,
        RuntimeError,
    ) as exc:  # bad address; certificate files missing or invalid (ConfigError)
        return False, f"unhealthy: {exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str]) -> int:
    serving, message = check(os.environ, argv[0] if argv else "")
    print(message)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
