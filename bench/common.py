"""What every suite gets (`Context`) and returns (`SuiteResult`), plus the shared helpers suites need."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class Skip(Exception):
    """A suite cannot run here (missing data or optional package); the message says what to do."""


@dataclass
class Target:
    """A figure the issue aims for; reported as met / not met, never enforced."""

    figure: str
    op: str  # ">=" or "<="
    value: float

    def met(self, figures: Mapping[str, Any]) -> bool | None:
        got = figures.get(self.figure)
        if not isinstance(got, (int, float)):
            return None
        return got >= self.value if self.op == ">=" else got <= self.value


@dataclass
class SuiteResult:
    """`figures` is flat and JSON-able (the machine-readable result); `markdown` is the report section body."""

    figures: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""
    plots: list[str] = field(default_factory=list)  # file names under ctx.out
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    quick: bool
    out: Path
    data: Path  # ../shared/data
    seed: int = 0
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wikimem-bench-")))

    def dataset(self, name: str) -> Path:
        path = self.data / name
        if not path.exists():
            raise Skip(f"{path} is missing: the benchmarks read ../shared/data (see its README)")
        return path

    def scratch(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (one line per update when not a terminal, so CI logs show progress too)."""
    interval = 0.5 if sys.stderr.isatty() else 15.0
    yield from tqdm(items, desc=desc, total=total, mininterval=interval, file=sys.stderr, dynamic_ncols=True)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(ms: Sequence[float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(percentile(ms, 50), 3),
        f"{prefix}_p90_ms": round(percentile(ms, 90), 3),
        f"{prefix}_p99_ms": round(percentile(ms, 99), 3),
        f"{prefix}_mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        f"{prefix}_n": len(ms),
    }


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


@contextlib.contextmanager
def running_system(
    ctx: Context, name: str, env: Mapping[str, str] | None = None, in_process: bool = False
) -> Iterator[str]:
    """All five services started as `wikimem serve` starts them (child processes unless `in_process`), on a fresh
    data directory; yields the orchestrator address. `env` adds settings (e.g. WIKIMEM_MEMORY_BACKEND)."""
    from wikimem_launcher.launcher import InProcessStack, ProcessStack

    data_dir = ctx.scratch(f"{name}-data")
    if in_process:
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        stack_ip = InProcessStack(address="127.0.0.1:0", data_dir=data_dir)
        try:
            stack_ip.start()
            yield stack_ip.public_address
        finally:
            stack_ip.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return
    full_env = dict(os.environ)
    full_env.update(env or {})
    stack = ProcessStack(
        address="127.0.0.1:0", data_dir=data_dir, log_dir=ctx.scratch(f"{name}-logs"), env=full_env
    )
    stack.start()
    try:
        yield stack.public_address
    finally:
        stack.stop()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
