"""RedisTarget: one URL, or Sentinels naming the master (real redis-server and a real Sentinel on loopback)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wikimem_common.config import ConfigError
from wikimem_common.redis_target import RedisTarget, parse_sentinels


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_env_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "WIKIMEM_REDIS_SENTINELS", "WIKIMEM_REDIS_MASTER", "WIKIMEM_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert RedisTarget.from_env() is None
    monkeypatch.setenv("WIKIMEM_REDIS_SENTINELS", "10.0.0.1:26379, sentinel-1:26379")
    monkeypatch.setenv("WIKIMEM_REDIS_MASTER", "wikimem")
    target = RedisTarget.from_env()
    assert target is not None
    assert target.sentinels == (("10.0.0.1", 26379), ("sentinel-1", 26379)) and target.master == "wikimem"
    assert "sentinels" in target.describe()
    with pytest.raises(ConfigError, match="host:port"):
        parse_sentinels("sentinel-1")
    monkeypatch.delenv("WIKIMEM_REDIS_SENTINELS")
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError, match="redis://"):
        RedisTarget.from_env()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port, sport = _free_port(), _free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret",
            "--masterauth",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
    )
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sport}\nsentinel monitor wikimem 127.0.0.1 {port} 1\nsentinel auth-pass wikimem s3cret\n")
    sent = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        yield port, sport
    finally:
        for proc in (sent, server):
            proc.terminate()
            proc.wait(5)


def test_sentinel_names_the_master(sentinel: tuple[int, int]) -> None:
    _port, sport = sentinel
    target = RedisTarget(sentinels=(("127.0.0.1", sport),), master="wikimem", password="s3cret")
    deadline = time.monotonic() + 10
    while True:
        try:
            client = target.connect(socket_timeout=1.0, socket_connect_timeout=1.0)
            client.set("k", "v")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert client.get("k") == b"v"
    wrong = RedisTarget(sentinels=(("127.0.0.1", sport),), master="wikimem", password="nope")
    with pytest.raises(Exception, match=r"(?i)invalid|auth|WRONGPASS"):
        wrong.connect(socket_timeout=1.0).set("k", "w")
