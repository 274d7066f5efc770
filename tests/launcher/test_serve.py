"""`wikimem serve`: start in dependency order, readiness, mutual TLS between the children, clean stop on SIGTERM,
a crashed child restarted on its address with its log kept (and given up on after fast crashes in a row).

The process-management tests run the launcher against stand-in `wikimem_<name>` packages (put first on
PYTHONPATH) that check, like the real services would need, that their peers are SERVING at the addresses the
launcher passed (over the channel the services use: mutual TLS); they run without trained models.
`test_real_services_*` start the real five services.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem import WikimemClient
from wikimem_common import server as wserver
from wikimem_common import tls
from wikimem_launcher.launcher import SERVICES, RestartPolicy, public_warnings

REPO = Path(__file__).resolve().parents[2]

STANDIN = """
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wikimem_common.config import ConfigError
from wikimem_common.server import channel, run

NAME = "{name}"
NEEDS = {needs!r}

def build():
    if os.path.exists(os.path.join(os.environ.get("STANDIN_CRASH_DIR", "/nonexistent"), NAME)):
        print("crashing at start", flush=True)
        sys.exit(3)
    for peer in NEEDS:
        address = os.environ.get("WIKIMEM_%s_ADDR" % peer.upper())
        if not address:
            raise ConfigError("WIKIMEM_%s_ADDR is not set" % peer.upper())
        with channel(address) as channel_:
            status = health_pb2_grpc.HealthStub(channel_).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise ConfigError(peer + " is not serving")
    print("peers ok:", ",".join(NEEDS), "data:", os.environ.get("WIKIMEM_DATA"), "pid:", os.getpid(), flush=True)
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


def _pid_of(pids: list[int], name: str) -> int:
    return next(pid for pid in pids if f"wikimem_{name}" in Path(f"/proc/{pid}/cmdline").read_text())


def _address_of(launcher: Launcher, name: str) -> str:
    return next(line.split()[1] for line in launcher.stdout if line.split()[:1] == [name])


def _launcher_tls(pki_dir: Path) -> tls.TlsConfig:
    """The certificate `wikimem serve` generated for itself (its health checks)."""
    return tls.TlsConfig(
        internal_ca=pki_dir / "ca.pem", internal=tls.KeyPair(pki_dir / "launcher.pem", pki_dir / "launcher.key")
    )


def _health(address: str, tls_config: tls.TlsConfig | None) -> int:
    channel = wserver.channel(address, tls_config=tls_config or tls.TlsConfig())
    with channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3).status)


def test_internal_services_require_a_certificate_from_the_generated_ca(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    launcher, _ = ready_stack(standin_env, launchers, timeout=60)
    pki_dir = tmp_path / "data" / "tls"
    assert stat.S_IMODE(pki_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pki_dir.iterdir())
    assert not [p for p in pki_dir.iterdir() if p.name.startswith("ca") and p.suffix == ".key"]  # no CA key on disk
    trusted = _launcher_tls(tmp_path / "data" / "tls")
    for name in ("embedder", "memory", "reranker", "reader"):
        address = _address_of(launcher, name)
        assert _health(address, trusted) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            _health(address, None)  # plaintext, no certificate
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # the public port stays plaintext in the local default (no WIKIMEM_TLS_CERT)
    assert _health(standin_env["WIKIMEM_ADDR"], None) == health_pb2.HealthCheckResponse.SERVING


def test_public_port_speaks_tls_with_the_given_certificate(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    public = tls.generate_dev_pki(tmp_path / "public", names=("public",))
    pair = public.pairs["public"]
    env = dict(standin_env, WIKIMEM_TLS_CERT=str(pair.cert), WIKIMEM_TLS_KEY=str(pair.key))
    ready_stack(env, launchers, timeout=60)  # the launcher's own readiness check speaks TLS
    with WikimemClient(env["WIKIMEM_ADDR"], ca_file=str(public.ca)) as client:
        assert client.health() == "SERVING"
    with pytest.raises(grpc.RpcError) as refused:
        _health(env["WIKIMEM_ADDR"], None)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_settings_fail_before_starting_anything(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    launcher = Launcher(dict(standin_env, WIKIMEM_INTERNAL_CA=str(tmp_path / "missing.pem")))
    launchers.append(launcher)
    code, err = launcher.finish(timeout=30)
    assert code == 1
    assert "tls failed: mutual TLS needs all of WIKIMEM_INTERNAL_CA, WIKIMEM_INTERNAL_CERT" in err
    assert children_of(launcher.proc.pid) == []


def test_killed_child_is_restarted_on_its_address_with_its_log_kept(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    launcher, pids = ready_stack(dict(standin_env, WIKIMEM_RESTART_BACKOFF_S="0.2"), launchers, timeout=60)
    address = _address_of(launcher, "reader")
    old = _pid_of(pids, "reader")
    os.kill(old, signal.SIGKILL)
    line = launcher.wait_for("reader restarted after exit code -9 (SIGKILL)", 60)
    assert line.endswith(f"serving again on {address}")  # the same address: its peers reconnect
    new_pids = children_of(launcher.proc.pid)
    assert len(new_pids) == 5 and old not in new_pids and set(pids) - {old} < set(new_pids)
    log = (tmp_path / "data" / "logs" / "reader.log").read_text()
    assert f"pid: {old}" in log and f"pid: {_pid_of(new_pids, 'reader')}" in log  # the first run's lines are kept
    marker = next(json.loads(line) for line in log.splitlines() if "restarted after" in line)
    assert marker["msg"] == "restarted after exit code -9 (SIGKILL)" and marker["restart"] == 1
    assert log.index(f"pid: {old}") < log.index("restarted after") < log.index(f"pid: {_pid_of(new_pids, 'reader')}")
    trusted = _launcher_tls(tmp_path / "data" / "tls")
    assert _health(address, trusted) == health_pb2.HealthCheckResponse.SERVING
    launcher.proc.send_signal(signal.SIGTERM)
    code, err = launcher.finish()
    assert code == 0, err
    assert "reader exited with code -9 (SIGKILL)" in err and "restarting it in 0.2s" in err
    assert not [pid for pid in new_pids if alive(pid)]


def test_gives_up_on_a_child_that_keeps_crashing(
    standin_env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    env = dict(
        standin_env, STANDIN_CRASH_DIR=str(crash_dir), WIKIMEM_RESTART_BACKOFF_S="0.1", WIKIMEM_RESTART_MAX_FAST="2"
    )
    launcher, pids = ready_stack(env, launchers, timeout=60)
    (crash_dir / "reader").touch()  # from now on the reader exits with code 3 as it starts
    os.kill(_pid_of(pids, "reader"), signal.SIGKILL)
    code, err = launcher.finish(timeout=60)
    assert code == 1
    assert "reader failed: exited with code 3; gave up after 2 restarts" in err
    assert "restarting it in 0.1s" in err and "restarting it in 0.2s" in err  # exponential backoff
    assert "--- last lines of the reader log ---" in err and "crashing at start" in err
    assert not [pid for pid in pids if alive(pid)]
    assert children_of(launcher.proc.pid) == []


def test_warns_on_the_terminal_when_the_public_port_is_reachable_unprotected(
    standin_env: dict[str, str], launchers: list[Launcher]
) -> None:
    port = standin_env["WIKIMEM_ADDR"].rsplit(":", 1)[1]
    launcher = Launcher(dict(standin_env, WIKIMEM_ADDR=f"0.0.0.0:{port}"))
    launchers.append(launcher)
    launcher.wait_for("wikimem ready on", 60)
    launcher.proc.send_signal(signal.SIGTERM)
    code, err = launcher.finish()
    assert code == 0, err
    assert f"WARNING: authentication is OFF on 0.0.0.0:{port}" in err and "set WIKIMEM_AUTH" in err
    assert f"WARNING: the public port 0.0.0.0:{port} is plaintext" in err


def test_public_warnings() -> None:
    assert public_warnings("127.0.0.1:50051", {}) == public_warnings("[::1]:1", {}) == []
    assert public_warnings("localhost:50051", {}) == []
    assert len(public_warnings("[::]:50051", {})) == 2
    protected = {"WIKIMEM_AUTH": "jwt", "WIKIMEM_TLS_CERT": "/etc/wikimem/tls.crt"}
    assert public_warnings("10.0.0.5:50051", protected) == []
    only_tls = public_warnings("10.0.0.5:50051", {"WIKIMEM_AUTH": "off", "WIKIMEM_TLS_CERT": "c"})
    assert len(only_tls) == 1 and "authentication is OFF" in only_tls[0]


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(backoff_s=0.5, backoff_max_s=5.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


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
    """In one process, with mutual TLS from the environment: the peers are found through config objects."""
    from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc
    from wikimem_launcher.launcher import InProcessStack

    for name in SERVICES:
        monkeypatch.delenv(f"WIKIMEM_{name.upper()}_ADDR", raising=False)
    for name, value in tls.generate_dev_pki(tmp_path / "pki").env("orchestrator").items():
        monkeypatch.setenv(name, value)
    environ = dict(os.environ)
    stack = InProcessStack(address="127.0.0.1:0", data_dir=tmp_path / "data")
    stack.start()
    assert dict(os.environ) == environ  # configured by config objects, not by rewriting os.environ
    try:
        with WikimemClient(stack.public_address) as client:
            assert client.health() == "SERVING"
            assert client.put_document("a.md", "Expense reports are due within 30 days.").document.revision == 1
            assert client.ask("When are expense reports due?").citations[0].doc_id == "a.md"
        memory = stack.handles["memory"].address
        with grpc.insecure_channel(memory) as plain, pytest.raises(grpc.RpcError) as refused:
            memory_pb2_grpc.MemoryStub(plain).Stats(memory_pb2.StatsRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stack.stop()
    assert (tmp_path / "data" / "memory").is_dir()


def test_in_process_failure_releases_what_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reranker cannot load (no models): the already started embedder is stopped; the env is untouched."""
    from wikimem_common.config import ConfigError
    from wikimem_launcher.launcher import InProcessStack

    for name in SERVICES:
        monkeypatch.delenv(f"WIKIMEM_{name.upper()}_ADDR", raising=False)
    from wikimem_common.modeldir import models_dir

    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL_DIR", str(models_dir() / "embedder"))  # the embedder starts
    monkeypatch.setenv("WIKIMEM_MODELS", str(tmp_path / "no-models"))  # ... the reranker does not
    environ = dict(os.environ)
    stack = InProcessStack(address="127.0.0.1:0", data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="no reranker model"):
        stack.start()
    assert stack.handles == {}
    assert dict(os.environ) == environ


def test_in_process_services_read_their_admission_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """In one process, each service is sized by its admission settings as when it runs alone: a bad one fails the
    start before any model is loaded (the embedder, started first, never starts)."""
    from wikimem_common.config import ConfigError
    from wikimem_launcher.launcher import InProcessStack

    monkeypatch.setenv("WIKIMEM_EMBEDDER_MAX_INFLIGHT", "many")
    stack = InProcessStack(address="127.0.0.1:0")
    with pytest.raises(ConfigError, match="WIKIMEM_EMBEDDER_MAX_INFLIGHT='many' is not an integer"):
        stack.start()
    assert stack.handles == {}


QUESTIONS = [
    "What is the VPN client called?",
    "Which VPN client do we use?",
    "What is TunnelKit?",
    "How many days of vacation do employees get?",
    "Where are the offices?",
    "Who approves expense reports?",
]


@pytest.mark.slow
@pytest.mark.skipif(_models_missing() is not None, reason=str(_models_missing()))
def test_real_services_survive_kill_9_and_drain_on_sigterm(
    env: dict[str, str], launchers: list[Launcher], tmp_path: Path
) -> None:
    """Real stack: a direct call to memory without a certificate is refused; memory killed with -9 is restarted on
    its address with its data, and the stack answers again; SIGTERM during in-flight Asks lets them complete."""
    from concurrent.futures import ThreadPoolExecutor

    from wikimem.errors import UnavailableError
    from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc

    env = dict(env, WIKIMEM_RESTART_BACKOFF_S="0.2", WIKIMEM_STOP_GRACE_S="90", WIKIMEM_DRAIN_GRACE_S="60")
    launcher, pids = ready_stack(env, launchers, timeout=300)
    memory_address = _address_of(launcher, "memory")
    with grpc.insecure_channel(memory_address) as plain, pytest.raises(grpc.RpcError) as refused:
        memory_pb2_grpc.MemoryStub(plain).Stats(memory_pb2.StatsRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    with WikimemClient(env["WIKIMEM_ADDR"], timeout=120) as client:
        client.put_document("it/vpn.md", "# VPN\n\nThe VPN client is called TunnelKit.\n", source="vpn.md")
        before = client.ask(QUESTIONS[0], no_cache=True)
        assert not before.abstained and before.citations[0].doc_id == "it/vpn.md"

        os.kill(_pid_of(pids, "memory"), signal.SIGKILL)
        line = launcher.wait_for("memory restarted after exit code -9 (SIGKILL)", 240)
        assert line.endswith(f"serving again on {memory_address}")
        deadline = time.monotonic() + 30
        while True:  # the orchestrator's channel reconnects within its backoff (<= 2 s)
            try:
                after = client.ask(QUESTIONS[0], no_cache=True)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert after.citations[0].doc_id == "it/vpn.md" and after.answer == before.answer
        assert "restarted after exit code -9 (SIGKILL)" in (tmp_path / "data" / "logs" / "memory.log").read_text()

        for path in sorted((REPO / "examples" / "wiki").glob("*.md")):  # more to rerank and read: slower Asks
            client.put_document(path.name, path.read_text(encoding="utf-8"))

        def keep_asking(question: str) -> tuple[int, Exception | None]:
            """Ask until the first failure; (answers, that failure)."""
            answered = 0
            while True:
                try:
                    client.ask(question, no_cache=True, retrieve_k=40, read_k=10)
                except Exception as exc:
                    return answered, exc
                answered += 1

        with ThreadPoolExecutor(max_workers=4) as pool:
            workers = [pool.submit(keep_asking, q) for q in QUESTIONS[:4]]
            time.sleep(1.5)
            launcher.proc.send_signal(signal.SIGTERM)
            results = [w.result(timeout=120) for w in workers]
    assert all(answered > 0 for answered, _ in results), results
    # after SIGTERM, calls are refused (UNAVAILABLE: draining, then nothing listening); none in flight is cancelled
    assert all(isinstance(exc, UnavailableError) for _, exc in results), results
    code, err = launcher.finish(timeout=120)
    assert code == 0, err
    log = (tmp_path / "data" / "logs" / "orchestrator.log").read_text().splitlines()
    drained = [json.loads(line) for line in log if '"msg": "drained"' in line]
    assert drained and drained[0]["calls"] >= 1, log[-5:]  # the orchestrator waited for Asks in flight at SIGTERM
