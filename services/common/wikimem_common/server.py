"""gRPC server bootstrap shared by every service.

Each service provides a `register(server) -> [full service names]` function; `run` adds the standard health
service (grpc.health.v1) and server reflection, binds, optionally reports the bound address through a file (so a
launcher can use port 0), and shuts down gracefully on SIGINT/SIGTERM: health flips to NOT_SERVING, in-flight
calls get `grace` seconds (WIKIMEM_DRAIN_GRACE_S, default 30; new calls are refused meanwhile), then `on_stop`
callbacks release resources.
TLS: see tls.py (WIKIMEM_TLS_* on the public port, WIKIMEM_INTERNAL_* for mutual TLS between services).
Observability: metrics.py (WIKIMEM_METRICS_ADDR), tracing.py (WIKIMEM_TRACING), reflection v1 + v1alpha
(reflection_v1.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import logs, metrics, reflection_v1, tls, tracing
from .admission import Admission
from .config import ConfigError, env_float, env_int
from .drain import Drain
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


#: Peers reconnect quickly (100 ms to 2 s backoff), so a restarted peer is used again within about two seconds.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


#: WIKIMEM_GRPC_LB values: gRPC's default (one connection, to the first address that answers) or round robin.
LB_POLICIES = ("pick_first", "round_robin")


def load_balancing(address: str, policy: str | None = None) -> tuple[str, list[tuple[str, Any]]]:
    """(target, options) for WIKIMEM_GRPC_LB (`policy` overrides it): `round_robin` resolves the host through DNS
    (`dns:///host:port`, unless the address names a scheme) and spreads calls over every address it returns, e.g.
    the pods behind a headless Service; `pick_first` (default) leaves the address as it is."""
    chosen = (policy if policy is not None else os.environ.get("WIKIMEM_GRPC_LB", "")).strip() or "pick_first"
    if chosen not in LB_POLICIES:
        raise ConfigError(f"WIKIMEM_GRPC_LB={chosen!r}: use pick_first (default) or round_robin")
    if chosen == "pick_first":
        return address, []
    target = address if "://" in address or address.startswith(("dns:", "unix:", "ipv4:", "ipv6:")) else (
        f"dns:///{address}"
    )
    return target, [("grpc.lb_policy_name", "round_robin")]


def channel(
    address: str, options: Sequence[tuple[str, Any]] | None = None, tls_config: tls.TlsConfig | None = None
) -> grpc.Channel:
    """A channel to an internal peer: mutual TLS when WIKIMEM_INTERNAL_* (or `tls_config`) say so, else plaintext;
    round robin over the peer's addresses with WIKIMEM_GRPC_LB=round_robin (load_balancing)."""
    config = tls_config if tls_config is not None else tls.TlsConfig.from_env()
    address, lb_options = load_balancing(address)
    opts = [
        *(GRPC_OPTIONS + RECONNECT_OPTIONS if options is None else options),
        *tls.channel_options(config),
        *lb_options,
    ]
    credentials = tls.channel_credentials(config)
    if credentials is None:
        return tracing.intercept_channel(grpc.insecure_channel(address, options=opts))
    return tracing.intercept_channel(grpc.secure_channel(address, credentials, options=opts))


def drain_grace() -> float:
    """Seconds a stopping service gives its in-flight calls (WIKIMEM_DRAIN_GRACE_S, default 30)."""
    grace = env_float("WIKIMEM_DRAIN_GRACE_S", env_float("WIKIMEM_SHUTDOWN_GRACE_S", 30.0))
    if grace < 0:
        raise ConfigError(f"WIKIMEM_DRAIN_GRACE_S must be >= 0, got {grace}")
    return grace


@dataclass
class ServerHandle:
    server: grpc.Server
    address: str
    health: health.HealthServicer
    services: list[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    drain: Drain = field(default_factory=Drain)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float = 5.0) -> bool:
        """Drain: health NOT_SERVING, new calls refused (UNAVAILABLE), in-flight ones get `grace` seconds.
        False if some were still running at the end of the grace (cancelled)."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.drain.start()
        started = time.monotonic()
        in_flight = self.drain.in_flight
        drained = self.drain.wait_idle(grace)
        if drained:
            log.info("drained", extra={"calls": in_flight, "seconds": round(time.monotonic() - started, 3)})
            # calls arriving now are refused (UNAVAILABLE) rather than cancelled by the stop: wait for a quiet moment
            self.drain.wait_quiet(0.2, max(0.0, min(1.0, grace - (time.monotonic() - started))))
            self.server.stop(0.5).wait()
        else:
            log.warning(
                "drain grace expired; cancelling calls", extra={"calls": self.drain.in_flight, "grace_s": grace}
            )
            self.server.stop(0).wait()
        for callback in self.on_stop:
            try:
                callback()
            except Exception:
                log.exception("error while releasing resources")
        log.info("stopped", extra={"address": self.address})
        return drained

    def wait(self) -> None:
        self.server.wait_for_termination()


def start(
    register: Callable[[grpc.Server], Sequence[str]],
    address: str,
    max_workers: int | None = None,
    credentials: grpc.ServerCredentials | None = None,
    admission: Admission | None = None,
) -> ServerHandle:
    """Start a server with health and reflection; returns once it is bound and SERVING. `credentials`: TLS (see
    `tls.server_credentials`); None: plaintext. `admission`: bounded concurrency and queue (admission.py; `run`
    sets it from the environment); None: unbounded."""
    workers = max_workers or env_int("WIKIMEM_GRPC_WORKERS", 16)
    if admission is not None and not max_workers:
        workers = admission.config.workers(workers)
    drain = Drain()
    # Outermost first: the trace span (when tracing is on) encloses the metrics and access log of the call; a call
    # refused by the drain never queues for admission.
    interceptors = [*tracing.server_interceptors(), metrics.ServerMetrics(), drain]
    if admission is not None:
        interceptors.append(admission)
    interceptors.append(MalformedRequests())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS, interceptors=interceptors
    )
    services = list(register(server))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection_v1.enable([*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise ConfigError(f"cannot bind {address}: the port is in use or the address is invalid")
    host = address.rsplit(":", 1)[0]
    bound = f"{host}:{port}"
    server.start()
    for name in ["", *services]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"address": bound, "services": services})
    return ServerHandle(server=server, address=bound, health=health_servicer, services=services, drain=drain)


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
        tracing.configure_from_env(service)
        metrics_address = metrics.serve_from_env(service)
        grace = drain_grace()
        credentials = tls.server_credentials(service, tls.TlsConfig.from_env())
        admission = Admission.from_env(service)
        register, close = build()
        handle = start(register, listen_address(service, args.addr), credentials=credentials, admission=admission)
    except ConfigError as exc:
        log.error(str(exc))
        raise SystemExit(2) from exc
    if close is not None:
        handle.on_stop.append(close)
    if args.port_file and metrics_address:
        tmp = Path(args.port_file + ".metrics.tmp")
        tmp.write_text(metrics_address)
        tmp.replace(args.port_file + ".metrics")
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
    drained = handle.stop(grace=grace)
    tracing.shutdown()
    if not drained:
        # the cancelled calls may still occupy worker threads (a servicer cannot be interrupted), and a normal exit
        # waits for them: resources are released, so leave now
        logging.shutdown()
        os._exit(0)
