"""The training pipeline stays runnable: one tiny CPU step per model, ONNX export and parity (`make train-smoke`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytest.importorskip("torch", reason="the training smoke run needs the 'train' extra (torch, transformers)")


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "squad-v1.1-dev").is_dir(), reason=f"needs SQuAD at {SHARED} (../shared/data)")
def test_training_smoke_run_trains_exports_and_matches_onnx() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "wikimem_train", "smoke"], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
