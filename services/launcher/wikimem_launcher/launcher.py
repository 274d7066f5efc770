"""`wikimem serve`: run all five services on one machine, no external server needed.

Each service runs as its own process (`python -m wikimem_<name> --addr HOST:0 --port-file F`), started in dependency
order — embedder, reranker, reader, then memory (needs the embedder), then the orchestrator (needs all four) —
with the discovered addresses handed to the dependants through their `WIKIMEM_<NAME>_ADDR` variables. Internal
services bind port 0 (unless their variable is set), so two stacks with different WIKIMEM_ADDR / WIKIMEM_DATA do
not clash. The launcher stays in the foreground; SIGINT/SIGTERM stops the children: the orchestrator first (it
drains its in-flight Asks, WIKIMEM_DRAIN_GRACE_S), then the rest; SIGKILL for whatever outlives the stop grace.

Mutual TLS between the services is on by default: at start the launcher writes a fresh internal CA and one
certificate per service to DATA/tls (0600; the CA key is never written) and hands each child its
WIKIMEM_INTERNAL_* variables, so an internal service refuses any caller without a certificate from that CA. Given
WIKIMEM_INTERNAL_CA/CERT/KEY, those files are used instead; WIKIMEM_INTERNAL_TLS=0 turns it off (plaintext).

A child that dies is restarted on the same address (so its peers reconnect) after an exponential backoff; its log
is appended to, with a marker line. After WIKIMEM_RESTART_MAX_FAST crashes in a row, each within
WIKIMEM_RESTART_STABLE_S of its start, the launcher gives up: it stops the rest and exits non-zero naming it.

On an address other than loopback, the launcher warns on the terminal when authentication (WIKIMEM_AUTH) or TLS
on the public port (WIKIMEM_TLS_CERT) is off.

`--in-process` runs the five servers as threads of one process instead (tests, split-overhead benchmarks); each
service gets a config object with its peers' addresses (the process environment is not touched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem.models import default_address
from wikimem_common import tls
from wikimem_common.config import ConfigError

#: Startup order; each tuple starts together, after the previous ones are SERVING.
STAGES: tuple[tuple[str, ...], ...] = (("embedder", "reranker", "reader"), ("memory",), ("orchestrator",))
SERVICES: tuple[str, ...] = tuple(name for stage in STAGES for name in stage)


class LaunchError(RuntimeError):
    """A service failed to start or died; `service` names it, `log_tail` shows the end of its log."""

    def __init__(self, service: str, message: str, log_tail: str = "") -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message
        self.log_tail = log_tail


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting."""


def peer_env(service: str) -> str:
    return "WIKIMEM_ADDR" if service == "orchestrator" else f"WIKIMEM_{service.upper()}_ADDR"


def _connect_address(bound: str) -> str:
    """An address to dial for a bound one (0.0.0.0 / [::] are not dialable)."""
    host, _, port = bound.rpartition(":")
    if host in ("0.0.0.0", "", "*"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return bound


def check_port_free(address: str) -> None:
    """Raise LaunchError if something already listens on `address` (fail before loading any model)."""
    host, _, port_s = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_s)
    except ValueError:
        raise LaunchError("orchestrator", f"WIKIMEM_ADDR={address!r} is not HOST:PORT") from None
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise LaunchError("orchestrator", f"cannot resolve {host!r} in WIKIMEM_ADDR={address!r}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError:
            raise LaunchError(
                "orchestrator",
                f"{address} is already in use — is wikimem already running? "
                "Stop it, or set WIKIMEM_ADDR (and WIKIMEM_DATA) for a second instance",
            ) from None


@dataclass(frozen=True)
class HealthDialer:
    """How the launcher dials its children's health service: plaintext, TLS (public port), mutual TLS (internal)."""

    credentials: grpc.ChannelCredentials | None = None
    options: tuple[tuple[str, str], ...] = ()

    def channel(self, address: str) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(address, options=list(self.options))
        return grpc.secure_channel(address, self.credentials, options=list(self.options))


def wait_serving(address: str, timeout: float = 1.0, dialer: HealthDialer | None = None) -> bool:
    """True once the gRPC health service at `address` answers SERVING."""
    with (dialer or HealthDialer()).channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


#: Runs in the child before it becomes `python -m wikimem_<name> ...`: asks the kernel for SIGTERM when the
#: launcher dies (even by SIGKILL), then execs the service (the setting survives exec). Done this way rather than
#: with `preexec_fn`, which forces fork(): gRPC's fork handlers can deadlock a launcher that has used gRPC.
_TRAMPOLINE = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _command(python: str, args: list[str]) -> list[str]:
    if sys.platform.startswith("linux"):
        return [python, "-c", _TRAMPOLINE, str(os.getpid()), *args]
    return [python, *args]


#: Values of WIKIMEM_INTERNAL_TLS that turn mutual TLS between the services off.
_OFF = ("0", "false", "no", "off")
_INTERNAL_VARS = ("WIKIMEM_INTERNAL_CA", "WIKIMEM_INTERNAL_CERT", "WIKIMEM_INTERNAL_KEY")


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a crashed child after `backoff_s` * 2**(fast crashes in a row - 1), at most `backoff_max_s`; give up
    after `max_fast` crashes in a row, each less than `stable_s` after its start."""

    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    max_fast: int = 5
    stable_s: float = 60.0

    def delay(self, fast_crashes: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, fast_crashes - 1)))


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port_file: Path
    address: str = ""
    #: The address it bound (what a restart binds again).
    bound: str = ""
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    restarts: int = 0
    fast_crashes: int = 0
    #: Exit code of the last crash while a restart is pending or under way.
    last_code: int | None = None
    restart_at: float | None = None


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def _log_marker(log: Any, name: str, message: str, level: str = "info", **fields: Any) -> None:
    """A JSON line like the services' own, so the log stays one object per line."""
    entry = {"ts": round(time.time(), 3), "level": level, "service": name, "logger": "wikimem.launcher"}
    entry.update(msg=message, **fields)
    log.write((json.dumps(entry) + "\n").encode())
    log.flush()


@dataclass
class ProcessStack:
    """The five services as child processes. `start()` blocks until all are SERVING; `stop()` ends them."""

    address: str
    data_dir: Path
    log_dir: Path
    start_timeout: float = 180.0
    stop_grace: float = 35.0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable
    on_ready: Callable[[str, str, Path], None] | None = None
    #: Called with a line for the user when a child crashes, is restarted, or is given up on.
    on_event: Callable[[str], None] | None = None
    #: Where the generated internal PKI goes (None: no mutual TLS unless WIKIMEM_INTERNAL_* are in `env`).
    tls_dir: Path | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    children: dict[str, Child] = field(default_factory=dict)
    _interrupted: threading.Event = field(default_factory=threading.Event)
    _stopping: bool = False
    _child_tls: dict[str, dict[str, str]] = field(default_factory=dict)
    _dialers: dict[str, HealthDialer] = field(default_factory=dict)
    _run_dir: Path | None = None

    def interrupt(self) -> None:
        """Abort a `start()` in progress (safe from a signal handler)."""
        self._interrupted.set()

    def _bind_address(self, name: str) -> str:
        if name == "orchestrator":
            return self.address
        return self.env.get(peer_env(name)) or "127.0.0.1:0"

    def _setup_tls(self) -> None:
        """Per-child WIKIMEM_INTERNAL_* variables and the launcher's own health-check credentials."""
        given = [name for name in _INTERNAL_VARS if self.env.get(name)]
        internal: tls.TlsConfig | None = None
        try:
            if given:
                internal = tls.TlsConfig.from_env(self.env)  # all three, readable, key matching: or ConfigError
            elif self.tls_dir is not None:
                pki = tls.generate_dev_pki(self.tls_dir)
                self._child_tls = {name: pki.env(name) for name in SERVICES}
                internal = pki.config("launcher")
            public = tls.TlsConfig.from_env({k: v for k, v in self.env.items() if k.startswith("WIKIMEM_TLS_")})
            if public.public is not None:
                # check the public port the way a client does: the CA it trusts (WIKIMEM_CA_FILE), else the
                # certificate itself (self-signed), under the name in the certificate (we dial an IP)
                roots = Path(self.env.get("WIKIMEM_CA_FILE") or public.public.cert).read_bytes()
                host = tls.first_host(public.public.cert)
                self._dialers[tls.PUBLIC_SERVICE] = HealthDialer(
                    grpc.ssl_channel_credentials(roots), (("grpc.ssl_target_name_override", host),) if host else ()
                )
        except (ConfigError, OSError) as exc:
            raise LaunchError("tls", str(exc)) from None
        if internal is not None and internal.mutual:
            credentials = tls.channel_credentials(internal)
            options = tuple(tls.channel_options(internal))
            for name in SERVICES:
                if name != tls.PUBLIC_SERVICE:
                    self._dialers[name] = HealthDialer(credentials, options)

    def _spawn(self, name: str, run_dir: Path, previous: Child | None = None) -> Child:
        env = dict(self.env)
        env["WIKIMEM_DATA"] = str(self.data_dir)
        env.pop("WIKIMEM_LISTEN", None)
        env.update(self._child_tls.get(name, {}))
        for other in SERVICES:
            child = self.children.get(other)
            if child is not None and child.address:
                env[peer_env(other)] = child.address
        port_file = run_dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        log_path = self.log_dir / f"{name}.log"
        # a restart binds the address the crashed one had: its peers' channels reconnect to it
        bind = previous.bound if previous is not None and previous.bound else self._bind_address(name)
        args = ["-m", f"wikimem_{name}", "--addr", bind, "--port-file", str(port_file)]
        with log_path.open("ab") as log:  # appended: a crash log survives the restart (and `wikimem serve` again)
            if previous is None:
                _log_marker(log, name, "started by wikimem serve", bind=bind)
            else:
                code = previous.last_code if previous.last_code is not None else 0
                _log_marker(
                    log,
                    name,
                    f"restarted after exit code {_exit_text(code)}",
                    level="warning",
                    restart=previous.restarts + 1,
                    bind=bind,
                )
            process = subprocess.Popen(
                _command(self.python, args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a terminal Ctrl-C reaches the launcher only; it stops the children in order
            )
        child = Child(name=name, process=process, log_path=log_path, port_file=port_file)
        if previous is not None:
            child.restarts = previous.restarts + 1
            child.fast_crashes = previous.fast_crashes
            child.last_code = previous.last_code
        self.children[name] = child
        return child

    def _poll_ready(self, child: Child, timeout: float = 1.0) -> bool:
        if not child.address and child.port_file.exists():
            with contextlib.suppress(OSError):
                bound = child.port_file.read_text().strip()
                if bound:
                    child.bound = bound
                    child.address = _connect_address(bound)
        if child.address and wait_serving(child.address, timeout=timeout, dialer=self._dialers.get(child.name)):
            child.ready = True
        return child.ready

    def _wait_ready(self, children: list[Child], deadline: float) -> None:
        pending = list(children)
        while pending:
            if self._interrupted.is_set():
                raise Interrupted
            for child in list(pending):
                code = child.process.poll()
                if code is not None:
                    raise LaunchError(child.name, f"exited with code {code} while starting", tail(child.log_path))
                if self._poll_ready(child):
                    pending.remove(child)
                    if self.on_ready is not None:
                        self.on_ready(child.name, child.address, child.log_path)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise LaunchError(
                    pending[0].name,
                    f"not SERVING after {self.start_timeout:.0f}s ({names} still starting); "
                    "raise WIKIMEM_START_TIMEOUT_S if the machine is slow",
                    tail(pending[0].log_path),
                )
            if pending:
                time.sleep(0.1)

    def start(self) -> None:
        """Start every service in dependency order; on failure, stops what was started and raises."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        check_port_free(self.address)
        run_dir = self.log_dir / "run"
        run_dir.mkdir(exist_ok=True)
        self._run_dir = run_dir
        self._setup_tls()
        deadline = time.monotonic() + self.start_timeout
        try:
            for stage in STAGES:
                started = [self._spawn(name, run_dir) for name in stage]
                self._wait_ready(started, deadline)
        except BaseException:
            self.stop()
            raise

    @property
    def public_address(self) -> str:
        child = self.children.get("orchestrator")
        return child.address if child and child.address else self.address

    def dead(self) -> Child | None:
        """The first child that has exited, if any."""
        for child in self.children.values():
            if child.process.poll() is not None:
                return child
        return None

    def _event(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def supervise(self) -> None:
        """One round of supervision (call it every fraction of a second): restart crashed children after their
        backoff, report the restarted ones once SERVING. Raises LaunchError when giving up on one."""
        if self._stopping or self._run_dir is None:
            return
        now = time.monotonic()
        for name in SERVICES:
            child = self.children.get(name)
            if child is None:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._spawn(name, self._run_dir, previous=child)
                continue
            code = child.process.poll()
            if code is None:
                if not child.ready and self._poll_ready(child, timeout=0.5):
                    self._event(
                        f"{name} restarted after exit code {_exit_text(child.last_code or 0)}; "
                        f"serving again on {child.address}"
                    )
                elif not child.ready and now - child.started_at > self.start_timeout:
                    self._event(f"{name} not SERVING {self.start_timeout:.0f}s after its restart; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                continue
            lived = now - child.started_at
            child.fast_crashes = child.fast_crashes + 1 if lived < self.restart.stable_s else 1
            child.last_code = code
            if child.fast_crashes > self.restart.max_fast:
                raise LaunchError(
                    name,
                    f"exited with code {_exit_text(code)}; gave up after {self.restart.max_fast} restarts, each "
                    f"crashing within {self.restart.stable_s:g}s",
                    tail(child.log_path),
                )
            delay = self.restart.delay(child.fast_crashes)
            child.restart_at = now + delay
            child.ready = False
            self._event(
                f"{name} exited with code {_exit_text(code)} after {lived:.1f}s; restarting it in {delay:g}s "
                f"(crash {child.fast_crashes} of at most {self.restart.max_fast} in a row; log: {child.log_path})"
            )

    def stop(self) -> None:
        """SIGTERM the orchestrator, then the rest; SIGKILL whatever outlives the grace period."""
        self._stopping = True
        order = [c for name in reversed(SERVICES) if (c := self.children.get(name)) is not None]
        front, rest = order[:1], order[1:]
        for group in (front, rest):
            for child in group:
                if child.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace
            for child in group:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    child.process.wait()


def _service_build(name: str) -> Callable[..., Any]:
    module = importlib.import_module(f"wikimem_{name}.server")
    build = getattr(module, "build", None)
    if build is None:
        raise LaunchError(name, f"wikimem_{name}.server has no build()")
    return build


def _service_config(name: str, peers: Mapping[str, str], data_dir: Path | None) -> Any:
    """The config object of service `name` (from the environment, as when it runs alone), with the addresses of the
    peers it dials and the data directory replaced; None for the services that need neither."""
    if name == "memory":
        from wikimem_memory.config import MemoryConfig

        memory = MemoryConfig.from_env()
        changes: dict[str, Any] = {"embedder_addr": peers["embedder"]}
        if data_dir is not None:
            changes["data_dir"] = data_dir / "memory"
        return dataclasses.replace(memory, **changes)
    if name == "orchestrator":
        from wikimem_orchestrator.config import OrchestratorConfig

        return dataclasses.replace(
            OrchestratorConfig.from_env(),
            embedder_addr=peers["embedder"],
            memory_addr=peers["memory"],
            reranker_addr=peers["reranker"],
            reader_addr=peers["reader"],
        )
    return None


@dataclass
class InProcessStack:
    """The five services as gRPC servers inside this process (one thread pool each).

    Each service is built from a config object that carries its peers' addresses (and the data directory): the
    process environment is read, never rewritten. TLS as the environment says (WIKIMEM_TLS_*, WIKIMEM_INTERNAL_*);
    admission control per service as well (WIKIMEM_MAX_INFLIGHT etc., docs/overload.md), as in separate processes.
    """

    address: str
    data_dir: Path | None = None
    handles: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        from wikimem_common import server  # the services' own bootstrap
        from wikimem_common.admission import Admission

        bind = {name: os.environ.get(peer_env(name)) or "127.0.0.1:0" for name in SERVICES}
        bind["orchestrator"] = self.address
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_config = tls.TlsConfig.from_env()
        peers: dict[str, str] = {}
        try:
            for name in SERVICES:
                admission = Admission.from_env(name)  # as `python -m wikimem_<name>` sizes it (before any model)
                config = _service_config(name, peers, self.data_dir)
                build = _service_build(name)
                register, close = build() if config is None else build(config)
                credentials = tls.server_credentials(name, tls_config)
                handle = server.start(register, bind[name], credentials=credentials, admission=admission)
                if close is not None:
                    handle.on_stop.append(close)
                self.handles[name] = handle
                peers[name] = _connect_address(handle.address)
        except BaseException:
            self.stop()
            raise

    @property
    def public_address(self) -> str:
        handle = self.handles.get("orchestrator")
        return _connect_address(handle.address) if handle is not None else self.address

    def stop(self, grace: float = 5.0) -> None:
        for name in reversed(SERVICES):
            handle = self.handles.pop(name, None)
            if handle is not None:
                handle.stop(grace)


def _install_signals(callback: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: object) -> None:
        callback()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def _loopback(address: str) -> bool:
    """True for 127.x, ::1 and localhost listen addresses (HOST:PORT)."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    return host in ("localhost", "::1") or host.startswith("127.")


def public_warnings(address: str, env: Mapping[str, str]) -> list[str]:
    """What `wikimem serve` says on the terminal when the public port is reachable from other hosts unprotected
    (the orchestrator also logs the first one)."""
    if _loopback(address):
        return []
    warnings = []
    if env.get("WIKIMEM_AUTH", "off").strip().lower() in ("off", "none", ""):
        warnings.append(
            f"authentication is OFF on {address}, a non-loopback address: any caller who can reach it reads every "
            "group's pages (x-wikimem-groups) and writes; set WIKIMEM_AUTH (docs/security.md)"
        )
    if not env.get("WIKIMEM_TLS_CERT"):
        warnings.append(
            f"the public port {address} is plaintext: questions, answers and credentials cross the network in the "
            "clear; set WIKIMEM_TLS_CERT and WIKIMEM_TLS_KEY (docs/security.md)"
        )
    return warnings


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        print(f"wikimem serve: {name}={raw!r} is not a number; using {default}", file=sys.stderr)
        return default


def restart_policy() -> RestartPolicy:
    """WIKIMEM_RESTART_BACKOFF_S, WIKIMEM_RESTART_BACKOFF_MAX_S, WIKIMEM_RESTART_MAX_FAST, WIKIMEM_RESTART_STABLE_S."""
    base = RestartPolicy()
    return RestartPolicy(
        backoff_s=_float_env("WIKIMEM_RESTART_BACKOFF_S", base.backoff_s),
        backoff_max_s=_float_env("WIKIMEM_RESTART_BACKOFF_MAX_S", base.backoff_max_s),
        max_fast=int(_float_env("WIKIMEM_RESTART_MAX_FAST", base.max_fast)),
        stable_s=_float_env("WIKIMEM_RESTART_STABLE_S", base.stable_s),
    )


def _print_failure(exc: LaunchError) -> None:
    print(f"wikimem serve: {exc.service} failed: {exc.message}", file=sys.stderr)
    if exc.log_tail:
        print(f"--- last lines of the {exc.service} log ---", file=sys.stderr)
        print(exc.log_tail, file=sys.stderr)
        print("---", file=sys.stderr)


def serve_all(address: str | None = None, data_dir: str | None = None, log_dir: str | None = None) -> int:
    """Run the whole stack as child processes until SIGINT/SIGTERM; returns the exit code."""
    address = address or default_address()
    data = Path(data_dir or os.environ.get("WIKIMEM_DATA") or ".wikimem").resolve()
    logs = Path(log_dir).resolve() if log_dir else data / "logs"

    def ready(name: str, addr: str, log_path: Path) -> None:
        print(f"{name:<12} {addr:<22} log: {log_path}", flush=True)

    def event(message: str) -> None:
        print(f"wikimem serve: {message}", file=sys.stderr, flush=True)
        if " restarted after " in message:
            print(message, flush=True)

    for warning in public_warnings(address, os.environ):
        print(f"wikimem serve: WARNING: {warning}", file=sys.stderr, flush=True)
    internal_off = os.environ.get("WIKIMEM_INTERNAL_TLS", "").strip().lower() in _OFF
    if internal_off:
        print(
            "wikimem serve: WIKIMEM_INTERNAL_TLS=0: the internal services accept plaintext calls from anyone who can "
            "reach their ports",
            file=sys.stderr,
        )
    # the orchestrator drains its in-flight Asks for up to WIKIMEM_DRAIN_GRACE_S: the stop waits a little longer
    drain = _float_env("WIKIMEM_DRAIN_GRACE_S", 30.0)
    stack = ProcessStack(
        address=address,
        data_dir=data,
        log_dir=logs,
        start_timeout=_float_env("WIKIMEM_START_TIMEOUT_S", 180.0),
        stop_grace=_float_env("WIKIMEM_STOP_GRACE_S", drain + 5.0),
        on_ready=ready,
        on_event=event,
        tls_dir=None if internal_off else data / "tls",
        restart=restart_policy(),
    )
    stop = threading.Event()

    def on_signal() -> None:
        stop.set()
        stack.interrupt()

    _install_signals(on_signal)
    print(f"starting wikimem (data: {data})", flush=True)
    try:
        stack.start()
    except Interrupted:
        print("wikimem serve: interrupted while starting; stopped", file=sys.stderr)
        return 0
    except LaunchError as exc:
        _print_failure(exc)
        return 1
    print(f"wikimem ready on {stack.public_address}", flush=True)
    try:
        while not stop.wait(0.25):
            try:
                stack.supervise()
            except LaunchError as exc:
                stack.stop()
                _print_failure(exc)
                return 1
    finally:
        stack.stop()
    print("wikimem stopped", flush=True)
    return 0


def serve_in_process(address: str | None = None, data_dir: str | None = None) -> int:
    """Run the whole stack in this process until SIGINT/SIGTERM."""
    from wikimem_common import logs

    logs.setup("wikimem")
    stop = threading.Event()
    _install_signals(stop.set)
    stack = InProcessStack(address=address or default_address(), data_dir=Path(data_dir) if data_dir else None)
    try:
        stack.start()
    except Exception as exc:
        print(f"wikimem serve --in-process: failed to start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for name in SERVICES:
        print(f"{name:<12} {_connect_address(stack.handles[name].address)}", flush=True)
    print(f"wikimem ready on {stack.public_address}", flush=True)
    try:
        stop.wait()
    finally:
        stack.stop()
    print("wikimem stopped", flush=True)
    return 0


def serve_one(name: str, argv: list[str]) -> int:
    """Run one service in the foreground, exactly like `python -m wikimem_<name>`."""
    import runpy

    saved = sys.argv
    sys.argv = [f"wikimem-{name}", *argv]
    try:
        runpy.run_module(f"wikimem_{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
