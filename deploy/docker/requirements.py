"""Print the third-party requirements of wikimem distributions, read from their pyproject.toml files.

    python3 requirements.py ROOT DIST[EXTRA,...] ...     e.g.  requirements.py /src wikimem-embedder

The images install dependencies in a layer of their own, before the source is copied in, so that a code change does
not reinstall packages; this reads the dependency lists (following wikimem-* dependencies and their extras through
the repository layout under ROOT) without needing the source. Versions come from constraints.txt (pip -c).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: Where each wikimem distribution lives in the repository.
LOCATIONS = {
    "wikimem": "clients/python",
    "wikimem-contract": "protos/python",
    "wikimem-common": "services/common",
}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*(.*)$")


def location(name: str) -> str:
    if name in LOCATIONS:
        return LOCATIONS[name]
    if name.startswith("wikimem-"):
        return f"services/{name.removeprefix('wikimem-')}"
    raise SystemExit(f"requirements.py: {name!r} is not a wikimem distribution")


def parse(spec: str) -> tuple[str, set[str], str]:
    match = REQUIREMENT.match(spec)
    if not match:
        raise SystemExit(f"requirements.py: cannot parse requirement {spec!r}")
    name, extras, rest = match.groups()
    wanted = {e.strip() for e in (extras or "").split(",") if e.strip()}
    return name.lower().replace("_", "-"), wanted, rest


def collect(root: Path, name: str, extras: set[str], out: dict[str, str], seen: set[tuple[str, str]]) -> None:
    for extra in {"", *extras}:
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        pyproject = root / location(name) / "pyproject.toml"
        if not pyproject.is_file():
            raise SystemExit(f"requirements.py: {pyproject} is missing (copy it into the build before this step)")
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        specs = project.get("dependencies", []) if not extra else project.get("optional-dependencies", {})[extra]
        for spec in specs:
            dep, dep_extras, rest = parse(spec)
            if dep == "wikimem" or dep.startswith("wikimem-"):
                collect(root, dep, dep_extras, out, seen)
            else:
                key = dep + (f"[{','.join(sorted(dep_extras))}]" if dep_extras else "")
                out[key] = key + rest


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    root = Path(argv[0])
    out: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for arg in argv[1:]:
        name, extras, _ = parse(arg)
        collect(root, name, extras, out, seen)
    print("\n".join(sorted(out.values())))


if __name__ == "__main__":
    main(sys.argv[1:])
