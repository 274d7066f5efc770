"""`wikimem serve`: start in dependency order, readiness, clean stop on SIGTERM, a dying child stops the rest.

The process-management tests run the launcher against stand-in `wikimem_<name>` packages (put first on
PYTHONPATH) that check, like the real services would need, that their peers are SERVING at the addresses the
launcher passed; they run without trained models. `test_real_services_*` start the real five services.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wikimem import WikimemClient
from wikimem_launcher.launcher import SERVICES

REPO = Path(__file__).resolve().parents[2]

STANDIN = """
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wikimem_common.config import ConfigError
from wikimem_common.server import run

NAME = "{name}"
NEEDS = {needs!r}

def build():
    for peer in NEEDS:
        address = os.environ.get("WIKIMEM_%s_ADDR" % peer.upper())
        if not address:
            raise ConfigError("WIKIMEM_%s_ADDR is not set" % peer.upper())
        with grpc.insecure_channel(address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise ConfigError(peer + " is not serving")
    print("peers ok:", ",".join(NEEDS), "data:", os.environ.get("WIKIMEM_DATA"), flush=True)
    return (lambda server: []), None

run(NAME, build)
"""

NEEDS = {"memory": ["embedder"], "orchestrator": ["embedder", "memory", "reranker", "reader"]}


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Launcher:
    """`wikimem serve` as a subprocess, its stdout read line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wikimem.cli", "serve", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.stdout.append(line)
            if line.startswith(prefix):
                return line
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no line starting with {prefix!r}; stdout={self.stdout} stderr={err}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("WIKIMEM_")}
    e.update(WIKIMEM_DATA=str(tmp_path / "data"), WIKIMEM_ADDR=free_address(), WIKIMEM_STOP_GRACE_S="10")
    return e


@pytest.fixture()
def standin_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "standins"
    for name in SERVICES:
        pkg = root / f"wikimem_{name}"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "__main__.py").write_text(STANDIN.format(name=name, needs=NEEDS.get(name, [])))
    env = dict(env, PYTHONPATH=os.pathsep.join([str(root), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture()
def launchers() -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.kill()


def ready_stack(env: dict[str, str], launchers: list[Launcher], timeout: float) -> tuple[Launcher, list[int]]:
    launcher = Launcher(env)
    launchers.append(launcher)
    ready = launcher.wait_for("wikimem ready on", timeout)
    assert ready == f"wikimem ready on {env['WIKIMEM_ADDR']}"
    names = [line.split()[0] for line in launcher.stdout[1:-1]]
    assert sorted(names) == sorted(SERVICES)
    assert names.index("memory") > names.index("embedder") and names[-1] == "orchestrator"
    pids = children_of(launcher.proc.pid)
    assert len(pids) == 5
    return launcher, pids


def test_standins_start_in_order_and_stop_on_sigterm(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    launcher, pids = ready_stack(standin_env, launchers, timeout=60)
    logs = tmp_path / "data" / "logs"
    # the orchestrator found all four peers SERVING at the addresses the launcher handed over
    assert "peers ok: embedder,memory,reranker,reader" in (logs / "orchestrator.log").read_text()
    assert f"data: {tmp_path / 'data'}" in (logs / "memory.log").read_text()
    with WikimemClient(standin_env["WIKIMEM_ADDR"]) as client:
        assert client.health() == "SERVING"
    launcher.proc.send_signal(signal.SIGTERM)
    code, err = launcher.finish()
    assert code == 0, err
    assert "wikimem stopped" in launcher.wait_for("wikimem stopped", 5)
    assert not [pid for pid in pids if alive(pid)]


def test_second_instance_does_not_clash(standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path) -> None:
    first, pids1 = ready_stack(standin_env, launchers, timeout=60)
    second_env = dict(standin_env, WIKIMEM_ADDR=free_address(), WIKIMEM_DATA=str(tmp_path / "data2"))
    second, pids2 = ready_stack(second_env, launchers, timeout=60)
    for launcher in (second, first):
        launcher.proc.send_signal(signal.SIGINT)
        assert launcher.finish()[0] == 0
    assert not [pid for pid in pids1 + pids2 if alive(pid)]


def test_dying_child_stops_the_rest(standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path) -> None:
    launcher, pids = ready_stack(standin_env, launchers, timeout=60)
    reader_pid = next(pid for pid in pids if "wikimem_reader" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(reader_pid, signal.SIGKILL)
    code, err = launcher.finish()
    assert code == 1
    assert "reader failed: exited unexpectedly with code -9" in err
    assert "--- last lines of the reader log ---" in err
    assert not [pid for pid in pids if alive(pid)]


def test_children_exit_when_launcher_is_killed(standin_env: dict[str, str], launchers: list[Launcher]) -> None:
    """Even a SIGKILLed launcher (no chance to clean up) leaves no services behind."""
    launcher, pids = ready_stack(standin_env, launchers, timeout=60)
    cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pids]
    # each service is a plain `python -m wikimem_<name> --addr ...` process
    assert all(c[1] == b"-m" and c[2].startswith(b"wikimem_") and c[3] == b"--addr" for c in cmdlines), cmdlines
    launcher.proc.kill()
    launcher.proc.wait()
    deadline = time.monotonic() + 20
    while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)]


def test_address_in_use_fails_fast(env: dict[str, str], launchers: list[Launcher]) -> None:
    host, port = env["WIKIMEM_ADDR"].rsplit(":", 1)
    with socket.socket() as busy:
        busy.bind((host, int(port)))
        busy.listen()
        launcher = Launcher(env)
        launchers.append(launcher)
        code, err = launcher.finish(timeout=30)
    assert code == 1
    assert f"orchestrator failed: {env['WIKIMEM_ADDR']} is already in use" in err
    assert children_of(launcher.proc.pid) == []


def test_service_failing_to_start_is_named_with_its_log(
    env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    """Real services, no models in WIKIMEM_MODELS: the embedder, reranker and reader exit at startup."""
    empty = tmp_path / "no-models"
    empty.mkdir()
    launcher = Launcher(dict(env, WIKIMEM_MODELS=str(empty), WIKIMEM_LOG_FORMAT="text"))
    launchers.append(launcher)
    code, err = launcher.finish(timeout=120)
    assert code == 1
    match = re.search(r"(embedder|reranker|reader) failed: exited with code 2 while starting", err)
    assert match, err
    assert f"no {match.group(1)} model at {empty / match.group(1)}" in err
    time.sleep(0.2)
    assert children_of(launcher.proc.pid) == []


def _models_missing() -> str | None:
    models = Path(os.environ.get("WIKIMEM_MODELS") or REPO / "models")
    missing = [name for name in ("embedder", "reranker", "reader") if not (models / name / "wikimem.json").is_file()]
    return f"no trained {' and '.join(missing)} model in {models}; train them (models/training)" if missing else None


@pytest.mark.slow
@pytest.mark.skipif(_models_missing() is not None, reason=str(_models_missing()))
def test_real_services_serve_and_stop(env: dict[str, str], launchers: list[Launcher]) -> None:
    launcher, pids = ready_stack(env, launchers, timeout=240)
    with WikimemClient(env["WIKIMEM_ADDR"]) as client:
        assert client.health() == "SERVING"
        put = client.put_document("it/vpn.md", "# VPN\n\nThe VPN client is called TunnelKit.\n", source="vpn.md")
        assert put.changed and put.document.revision == 1 and put.document.chunk_count >= 1
        assert [d.doc_id for d in client.list_documents()] == ["it/vpn.md"]
        answer = client.ask("What is the VPN client called?")
        assert answer.abstained or answer.citations[0].doc_id == "it/vpn.md"
    launcher.proc.send_signal(signal.SIGTERM)
    code, err = launcher.finish()
    assert code == 0, err
    assert not [pid for pid in pids if alive(pid)]


@pytest.mark.slow
@pytest.mark.skipif(_models_missing() is not None, reason=str(_models_missing()))
def test_real_services_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wikimem_launcher.launcher import InProcessStack

    for name in SERVICES:
        monkeypatch.delenv(f"WIKIMEM_{name.upper()}_ADDR", raising=False)
    stack = InProcessStack(address="127.0.0.1:0", data_dir=tmp_path / "data")
    stack.start()
    try:
        with WikimemClient(stack.public_address) as client:
            assert client.health() == "SERVING"
            assert client.put_document("a.md", "Expense reports are due within 30 days.").document.revision == 1
            client.ask("When are expense reports due?")
    finally:
        stack.stop()
    assert "WIKIMEM_MEMORY_ADDR" not in os.environ


def test_in_process_failure_releases_what_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reranker cannot load (no models): the already started embedder is stopped and the env restored."""
    from wikimem_common.config import ConfigError
    from wikimem_launcher.launcher import InProcessStack

    for name in SERVICES:
        monkeypatch.delenv(f"WIKIMEM_{name.upper()}_ADDR", raising=False)
    from wikimem_common.modeldir import models_dir

    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL_DIR", str(models_dir() / "embedder"))  # the embedder starts
    monkeypatch.setenv("WIKIMEM_MODELS", str(tmp_path / "no-models"))  # ... the reranker does not
    data_before = os.environ.get("WIKIMEM_DATA")
    stack = InProcessStack(address="127.0.0.1:0", data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="no reranker model"):
        stack.start()
    assert stack.handles == {}
    assert "WIKIMEM_EMBEDDER_ADDR" not in os.environ
    assert os.environ.get("WIKIMEM_DATA") == data_before
