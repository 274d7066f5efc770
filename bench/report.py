"""results.json (machine-readable) and report.md (for people) from the suites' results."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from bench.common import ROOT, SuiteResult, write_json


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _target_lines(result: SuiteResult) -> list[str]:
    lines = []
    for target in result.targets:
        met = target.met(result.figures)
        got = result.figures.get(target.figure, "n/a")
        mark = {True: "met", False: "NOT met", None: "not measured"}[met]
        lines.append(f"- target `{target.figure} {target.op} {target.value}`: got {got} — {mark}")
    return lines


def write_report(
    out: Path,
    results: dict[str, SuiteResult | str],
    durations: dict[str, float],
    machine: dict[str, Any],
    quick: bool,
) -> None:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    payload: dict[str, Any] = {
        "when": when,
        "commit": _commit(),
        "quick": quick,
        "machine": machine,
        "durations_s": {k: round(v, 1) for k, v in durations.items()},
        "suites": {},
    }
    lines = [
        f"# wikimem benchmark report{' (quick)' if quick else ''}",
        "",
        f"{when}, commit `{payload['commit']}`, {machine['cpu']} ({machine['cores']} cores), "
        f"Python {machine['python']}.",
        "",
    ]
    for name, result in results.items():
        lines.append(f"## {name} ({durations.get(name, 0):.0f} s)")
        lines.append("")
        if isinstance(result, str):
            payload["suites"][name] = {"status": result}
            lines += [result, ""]
            continue
        payload["suites"][name] = {
            "status": "ok",
            "figures": result.figures,
            "targets": [
                {"figure": t.figure, "op": t.op, "value": t.value, "met": t.met(result.figures)}
                for t in result.targets
            ],
            "notes": result.notes,
            "plots": result.plots,
        }
        lines.append(result.markdown.strip())
        lines.append("")
        lines += _target_lines(result)
        lines += [f"- {note}" for note in result.notes]
        lines += [f"![{plot}]({plot})" for plot in result.plots]
        lines.append("")
    write_json(out / "results.json", payload)
    (out / "report.md").write_text("\n".join(lines).rstrip() + "\n")
