"""`wikimem serve`: run all five services on one machine, no external server needed.

Each service runs as its own process (`python -m wikimem_<name> --addr HOST:0 --port-file F`), started in dependency
order — embedder, reranker, reader, then memory (needs the embedder), then the orchestrator (needs all four) —
with the discovered addresses handed to the dependants through their `WIKIMEM_<NAME>_ADDR` variables. Internal
services bind port 0 (unless their variable is set), so two stacks with different WIKIMEM_ADDR / WIKIMEM_DATA do
not clash. The launcher stays in the foreground; SIGINT/SIGTERM stops the children (SIGTERM, then SIGKILL after a
grace period). If a child dies, the rest are stopped and the launcher exits non-zero naming it.

`--in-process` runs the five servers as threads of one process instead (tests, split-overhead benchmarks).
"""

from __future__ import annotations

import contextlib
import importlib
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


def wait_serving(address: str, timeout: float = 1.0) -> bool:
    """True once the gRPC health service at `address` answers SERVING."""
    with grpc.insecure_channel(address) as channel:
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


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port_file: Path
    address: str = ""


@dataclass
class ProcessStack:
    """The five services as child processes. `start()` blocks until all are SERVING; `stop()` ends them."""

    address: str
    data_dir: Path
    log_dir: Path
    start_timeout: float = 180.0
    stop_grace: float = 10.0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable
    on_ready: Callable[[str, str, Path], None] | None = None
    children: dict[str, Child] = field(default_factory=dict)
    _interrupted: threading.Event = field(default_factory=threading.Event)

    def interrupt(self) -> None:
        """Abort a `start()` in progress (safe from a signal handler)."""
        self._interrupted.set()

    def _bind_address(self, name: str) -> str:
        if name == "orchestrator":
            return self.address
        return self.env.get(peer_env(name)) or "127.0.0.1:0"

    def _spawn(self, name: str, run_dir: Path) -> Child:
        env = dict(self.env)
        env["WIKIMEM_DATA"] = str(self.data_dir)
        env.pop("WIKIMEM_LISTEN", None)
        for other in SERVICES:
            child = self.children.get(other)
            if child is not None and child.address:
                env[peer_env(other)] = child.address
        port_file = run_dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        log_path = self.log_dir / f"{name}.log"
        args = ["-m", f"wikimem_{name}", "--addr", self._bind_address(name), "--port-file", str(port_file)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                _command(self.python, args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a terminal Ctrl-C reaches the launcher only; it stops the children in order
            )
        child = Child(name=name, process=process, log_path=log_path, port_file=port_file)
        self.children[name] = child
        return child

    def _wait_ready(self, children: list[Child], deadline: float) -> None:
        pending = list(children)
        while pending:
            if self._interrupted.is_set():
                raise Interrupted
            for child in list(pending):
                code = child.process.poll()
                if code is not None:
                    raise LaunchError(child.name, f"exited with code {code} while starting", tail(child.log_path))
                if not child.address and child.port_file.exists():
                    with contextlib.suppress(OSError):
                        bound = child.port_file.read_text().strip()
                        if bound:
                            child.address = _connect_address(bound)
                if child.address and wait_serving(child.address, timeout=1.0):
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

    def stop(self) -> None:
        """SIGTERM the orchestrator, then the rest; SIGKILL whatever outlives the grace period."""
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


def _service_build(name: str) -> Callable[[], Any]:
    module = importlib.import_module(f"wikimem_{name}.server")
    build = getattr(module, "build", None)
    if build is None:
        raise LaunchError(name, f"wikimem_{name}.server has no build()")
    return build


@dataclass
class InProcessStack:
    """The five services as gRPC servers inside this process (one thread pool each).

    Peers find each other through `WIKIMEM_<NAME>_ADDR`, which this sets in `os.environ` while the stack runs;
    `stop()` restores the previous values.
    """

    address: str
    data_dir: Path | None = None
    handles: dict[str, Any] = field(default_factory=dict)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def _setenv(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def start(self) -> None:
        from wikimem_common import server  # the services' own bootstrap

        bind = {name: os.environ.get(peer_env(name)) or "127.0.0.1:0" for name in SERVICES}
        bind["orchestrator"] = self.address
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._setenv("WIKIMEM_DATA", str(self.data_dir))
        try:
            for name in SERVICES:
                register, close = _service_build(name)()
                handle = server.start(register, bind[name])
                if close is not None:
                    handle.on_stop.append(close)
                self.handles[name] = handle
                self._setenv(peer_env(name), _connect_address(handle.address))
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
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()


def _install_signals(callback: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: object) -> None:
        callback()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        print(f"wikimem serve: {name}={raw!r} is not a number; using {default}", file=sys.stderr)
        return default


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

    stack = ProcessStack(
        address=address,
        data_dir=data,
        log_dir=logs,
        start_timeout=_float_env("WIKIMEM_START_TIMEOUT_S", 180.0),
        stop_grace=_float_env("WIKIMEM_STOP_GRACE_S", 10.0),
        on_ready=ready,
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
        while not stop.wait(0.5):
            dead = stack.dead()
            if dead is not None:
                code = dead.process.returncode
                stack.stop()
                _print_failure(LaunchError(dead.name, f"exited unexpectedly with code {code}", tail(dead.log_path)))
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
