"""Helpers of the compose tests: the container engine, the image build, a compose project, step timings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "deploy" / "docker"
#: ensure-engine.sh's exit status when no container engine can be installed here.
NO_ENGINE = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; on failure (with check) raise with the command and what it printed."""
    proc = subprocess.run(
        list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def wikimem_cli() -> str:
    """The client CLI of this environment (.venv/bin/wikimem next to the running Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "wikimem"
    if beside.exists():
        return str(beside)
    found = shutil.which("wikimem")
    if found is None:
        raise AssertionError("the wikimem CLI is not installed (make venv)")
    return found


def compose_command() -> list[str]:
    """docker-compose (1.29) where installed, else the compose v2 plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


@dataclass
class Timings:
    """Step timings of a test, printed as a table."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps.append((name, time.monotonic() - start))

    def add(self, name: str, seconds: float) -> None:
        self.steps.append((name, seconds))

    def table(self) -> str:
        width = max((len(name) for name, _ in self.steps), default=4)
        lines = [f"  {name:<{width}}  {seconds:7.1f} s" for name, seconds in self.steps]
        return "\n".join(lines)


@dataclass
class Engine:
    """A docker daemon that answers; `started_pid` when ensure-engine.sh started it for this run."""

    started_pid: int | None
    output: str

    def stop_if_started(self, timeout: float = 30.0) -> None:
        if self.started_pid is None:
            return
        try:
            os.kill(self.started_pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.started_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def ensure_engine(pidfile: Path) -> tuple[Engine | None, str]:
    """(engine, "") when docker is ready; (None, reason) when no container engine can be installed here."""
    env = {**os.environ, "WIKIMEM_DOCKERD_PIDFILE": str(pidfile)}
    proc = run([str(DOCKER_DIR / "ensure-engine.sh")], env=env, timeout=900, check=False)
    if proc.returncode == NO_ENGINE:
        return None, proc.stderr.strip()
    if proc.returncode != 0:
        raise AssertionError(f"ensure-engine.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    pid = int(pidfile.read_text().strip()) if pidfile.exists() and pidfile.read_text().strip() else None
    return Engine(started_pid=pid, output=proc.stdout.strip()), ""


@dataclass(frozen=True)
class DevSecrets:
    """What deploy/docker/dev-secrets.py made: the folder (WIKIMEM_SECRETS) and the admin API key."""

    directory: Path
    api_key: str


def dev_secrets(directory: Path) -> DevSecrets:
    """A fresh set of development secrets (internal PKI, API-keys file) in `directory`."""
    run([sys.executable, str(DOCKER_DIR / "dev-secrets.py"), "--out", str(directory)], timeout=120)
    key = (directory / "admin.key").read_text(encoding="utf-8").strip()
    assert key.startswith("wmk_"), "dev-secrets.py wrote no API key"
    return DevSecrets(directory, key)


class ComposeStack:
    """One compose project of docker-compose.yml (its own name, volumes and a free local port; `secrets`: the
    folder of dev-secrets.py that the services mount)."""

    def __init__(
        self, project: str, port: int, env_file: Path | None = None, secrets: DevSecrets | None = None
    ) -> None:
        self.project = project
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.env_file = env_file
        self.api_key = secrets.api_key if secrets is not None else None
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "WIKIMEM_PORT": str(port)}
        if secrets is not None:
            self.env["WIKIMEM_SECRETS"] = str(secrets.directory)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        base = [*compose_command(), "--project-name", self.project]
        if self.env_file is not None:
            base += ["--env-file", str(self.env_file)]
        return run([*base, *args], env=self.env, timeout=timeout, check=check)

    def containers(self) -> dict[str, dict[str, Any]]:
        """`docker inspect` of the project's containers, by compose service name."""
        proc = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"])
        ids = proc.stdout.split()
        if not ids:
            return {}
        found = json.loads(run(["docker", "inspect", *ids]).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def health(self) -> dict[str, str]:
        """Each container's health status (or its state when it has no health check / is not running)."""
        out = {}
        for service, info in self.containers().items():
            state = info["State"]
            out[service] = state["Health"]["Status"] if state.get("Health") and state["Running"] else state["Status"]
        return out

    def wait_healthy(self, services: Sequence[str], timeout: float = 300.0) -> float:
        """Seconds until every one of `services` is healthy; raises with their states and logs when it takes longer."""
        start = time.monotonic()
        while True:
            states = self.health()
            if all(states.get(s) == "healthy" for s in services):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not healthy after {timeout:.0f} s: {states}\n{self.logs()}")
            time.sleep(1.0)

    def logs(self, tail: int = 40) -> str:
        proc = self.compose("logs", "--no-color", f"--tail={tail}", check=False, timeout=120)
        return proc.stdout[-20000:] + proc.stderr[-2000:]

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False, timeout=300)

    def volumes(self) -> list[str]:
        proc = run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.project}"])
        return proc.stdout.split()


def wikimem(
    address: str, *args: str, api_key: str | None = None, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The client CLI against the stack (--addr after the command, like every other option); the API key goes in
    WIKIMEM_API_KEY (not on the command line), and no credential of the caller's environment is passed on."""
    command, *rest = args
    env = {k: v for k, v in os.environ.items() if k not in ("WIKIMEM_API_KEY", "WIKIMEM_TOKEN")}
    if api_key is not None:
        env["WIKIMEM_API_KEY"] = api_key
    return run([wikimem_cli(), command, "--addr", address, *rest], env=env, timeout=timeout, check=check)


def ask_json(address: str, question: str, *flags: str, api_key: str | None = None) -> dict[str, Any]:
    proc = wikimem(address, "ask", "--json", *flags, question, api_key=api_key)
    return dict(json.loads(proc.stdout))


def docs(address: str, api_key: str | None = None) -> dict[str, dict[str, Any]]:
    proc = wikimem(address, "docs", "--json", api_key=api_key)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {row["doc_id"]: row for row in rows}


#: Run with the image's Python inside a container on the compose network: one call to each internal service
#: (health Check; memory also Stats) per mode, printing {"<service>/<mode>": status or gRPC code} as JSON.
#: Modes: plaintext; tls-no-cert (TLS, trusting the internal CA from $PROBE_CA_PEM, no client certificate);
#: mtls (the certificate mounted at /run/secrets/wikimem, as the services use it).
INTERNAL_PROBE = """
import json, os, sys
from pathlib import Path
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc
secrets = Path("/run/secrets/wikimem")
ports = {"embedder": 50052, "memory": 50053, "reranker": 50054, "reader": 50055}
out = {}
for mode in sys.argv[1:]:
    if mode == "mtls":
        creds = grpc.ssl_channel_credentials(
            (secrets / "ca.pem").read_bytes(), (secrets / "tls.key").read_bytes(), (secrets / "tls.crt").read_bytes())
    elif mode == "tls-no-cert":
        creds = grpc.ssl_channel_credentials(os.environ["PROBE_CA_PEM"].encode())
    for name, port in ports.items():
        target = f"{name}:{port}"
        channel = grpc.insecure_channel(target) if mode == "plaintext" else grpc.secure_channel(target, creds)
        health, memory = health_pb2_grpc.HealthStub(channel), memory_pb2_grpc.MemoryStub(channel)
        calls = [("health", health.Check, health_pb2.HealthCheckRequest())]
        if name == "memory":
            calls.append(("stats", memory.Stats, memory_pb2.StatsRequest()))
        for call, method, request in calls:
            try:
                method(request, timeout=10)
                out[f"{name}.{call}/{mode}"] = "OK"
            except grpc.RpcError as exc:
                out[f"{name}.{call}/{mode}"] = exc.code().name
        channel.close()
print(json.dumps(out))
"""


def probe_internal(cmd_prefix: Sequence[str], *modes: str) -> dict[str, str]:
    """INTERNAL_PROBE run by `cmd_prefix` (a `docker exec ID` or a `docker run ... IMAGE`)."""
    proc = run([*cmd_prefix, "python", "-c", INTERNAL_PROBE, *modes], timeout=180)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
