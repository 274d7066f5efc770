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


class ComposeStack:
    """One compose project of docker-compose.yml (its own name, volumes and a free local port)."""

    def __init__(self, project: str, port: int, env_file: Path | None = None) -> None:
        self.project = project
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.env_file = env_file
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "WIKIMEM_PORT": str(port)}

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


def wikimem(address: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The client CLI against the stack (--addr after the command, like every other option)."""
    command, *rest = args
    return run([wikimem_cli(), command, "--addr", address, *rest], timeout=timeout)


def ask_json(address: str, question: str, *flags: str) -> dict[str, Any]:
    proc = wikimem(address, "ask", "--json", *flags, question)
    return dict(json.loads(proc.stdout))


def docs(address: str) -> dict[str, dict[str, Any]]:
    proc = wikimem(address, "docs", "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {row["doc_id"]: row for row in rows}
