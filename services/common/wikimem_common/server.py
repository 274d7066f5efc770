"""gRPC server bootstrap shared by every service.

Each service provides a `register(server) -> [full service names]` function; `run` adds the standard health
service (grpc.health.v1) and server reflection, binds, optionally reports the bound address through a file (so a
launcher can use port 0), and shuts down gracefully on SIGINT/SIGTERM: health flips to NOT_SERVING, in-flight
calls get `grace` seconds, then `on_stop` callbacks release resources.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import logs
from .config import ConfigError, env_int
from .interceptors import MalformedRequests

log = logging.getLogger("wikimem.server")

#: Default ports when nothing else is configured (the orchestrator is the public one).
DEFAULT_PORTS = {"orchestrator": 50051, "embedder": 50052, "memory": 50053, "reranker": 50054, "reader": 50055}

#: 64 MiB: large enough that an over-sized document reaches the service and gets a precise error.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def peer_env(service: str) -> str:
    """Environment variable holding a service's address, e.g. WIKIMEM_EMBEDDER_ADDR."""
    return "WIKIMEM_ADDR" if service == "orchestrator" else f"WIKIMEM_{service.upper()}_ADDR"


def listen_address(service: str, cli_addr: str | None = None) -> str:
    """Where a service binds: --addr, else WIKIMEM_LISTEN, else its peer variable, else the default port."""
    if cli_addr:
        return cli_addr
    for name in ("WIKIMEM_LISTEN", peer_env(service)):
        value = os.environ.get(name)
        if value:
            return value
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


def peer_address(service: str) -> str:
    value = os.environ.get(peer_env(service))
    if value:
        return value
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=GRPC_OPTIONS)


@dataclass
class ServerHandle:
    server: grpc.Server
    address: str
    health: health.HealthServicer
    services: list[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float = 5.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        for callback in self.on_stop:
            try:
                callback()
            except Exception:
                log.exception("error while releasing resources")
        log.info("stopped", extra={"address": self.address})

    def wait(self) -> None:
        self.server.wait_for_termination()


def start(
    register: Callable[[grpc.Server], Sequence[str]],
    address: str,
    max_workers: int | None = None,
) -> ServerHandle:
    """Start a server with health and reflection; returns once it is bound and SERVING."""
    workers = max_workers or env_int("WIKIMEM_GRPC_WORKERS", 16)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS, interceptors=[MalformedRequests()]
    )
    services = list(register(server))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise ConfigError(f"cannot bind {address}: the port is in use or the address is invalid")
    host = address.rsplit(":", 1)[0]
    bound = f"{host}:{port}"
    server.start()
    for name in ["", *services]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"address": bound, "services": services})
    return ServerHandle(server=server, address=bound, health=health_servicer, services=services)


def parse_args(service: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"wikimem-{service}", description=f"wikimem {service} service")
    parser.add_argument("--addr", help=f"host:port to bind (default: $WIKIMEM_LISTEN, ${peer_env(service)})")
    parser.add_argument("--port-file", help="write the bound host:port to this file once serving")
    return parser.parse_args(argv)


def run(
    service: str,
    build: Callable[[], tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None] | None]],
    argv: Sequence[str] | None = None,
) -> None:
    """Entry point of `python -m wikimem_<service>`: build the servicers, serve until SIGINT/SIGTERM."""
    args = parse_args(service, argv)
    logs.setup(service)
    try:
        register, close = build()
        handle = start(register, listen_address(service, args.addr))
    except ConfigError as exc:
        log.error(str(exc))
        raise SystemExit(2) from exc
    if close is not None:
        handle.on_stop.append(close)
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(handle.address)
        tmp.replace(args.port_file)
    done = threading.Event()

    def _signal(signum: int, _frame: object) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    done.wait()
    handle.stop(grace=float(os.environ.get("WIKIMEM_SHUTDOWN_GRACE_S", "5")))
