"""One wikimem service as its own process (`python -m wikimem_<name>`), for suites that measure a single service."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Running:
    address: str
    pid: int

    def rss_mb(self, key: str = "VmRSS") -> float | None:
        """Resident memory of the service process (VmRSS now, VmHWM peak)."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None


@contextlib.contextmanager
def service_process(
    name: str, run_dir: Path, env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> Iterator[Running]:
    """Start `wikimem_<name>` on a free port, wait until its health check says SERVING, stop it afterwards."""
    from wikimem_launcher.launcher import _connect_address, wait_serving

    run_dir.mkdir(parents=True, exist_ok=True)
    port_file = run_dir / f"{name}.port"
    log = run_dir / f"{name}.log"
    port_file.unlink(missing_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"wikimem_{name}", "--addr", "127.0.0.1:0", "--port-file", str(port_file)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    try:
        deadline = time.monotonic() + timeout
        address = ""
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} service exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if not address and port_file.exists() and port_file.read_text().strip():
                address = _connect_address(port_file.read_text().strip())
            if address and wait_serving(address, 1.0):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} service not SERVING after {timeout:.0f}s; log: {log}")
            time.sleep(0.1)
        yield Running(address, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def load_note(at_start: float) -> str:
    """What else the machine was doing: its load average at the start and end of a suite, against its cores."""
    at_end = load_average()
    cores = os.cpu_count() or 1
    peak = max(at_start, at_end)
    if peak <= cores:
        verdict = "within the core count (the benchmark's own processes count too)"
    elif peak <= 1.5 * cores:
        verdict = (
            "a little above the core count, which the benchmark's own client and service processes reach on their "
            "own; if nothing else ran, the timings stand"
        )
    else:
        verdict = "well above the core count: other jobs were competing and timings are inflated"
    return (
        f"machine load (1-min load average) {at_start:.1f} at the start, {at_end:.1f} at the end, on "
        f"{cores} cores — {verdict}"
    )
