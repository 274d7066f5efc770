"""ONNX export (opset 17, dynamic batch/sequence), int8 dynamic quantisation and PyTorch parity."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .features import RERANK_MAX_LEN, pad_batch, pair_tokenizer, reader_tokenizer, reader_windows_batch

log = logging.getLogger(__name__)

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OPSET = 17


def output_names(kind: str) -> list[str]:
    return ["logits"] if kind == "reranker" else ["start_logits", "end_logits"]


def export_onnx(model: nn.Module, kind: str, path: Path) -> None:
    model = model.float().eval()
    model.encoder.use_sdpa = False  # type: ignore[union-attr]
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 2054, 2003, 102, 1996, 3437, 102]], dtype=torch.long).repeat(2, 1)
    args = (ids, torch.ones_like(ids), torch.tensor([[0, 0, 0, 0, 1, 1, 1]]).repeat(2, 1))
    outs = output_names(kind)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in INPUTS}
    axes.update({n: {0: "batch"} if kind == "reranker" else {0: "batch", 1: "sequence"} for n in outs})
    torch.onnx.export(model, args, str(path), input_names=INPUTS, output_names=outs, dynamic_axes=axes,
                      opset_version=OPSET, dynamo=False, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(str(path))


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)


def ort_session(path: Path, threads: int = 2) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def sample_inputs(kind: str, tokenizer: Path, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    if kind == "reranker":
        encs = pair_tokenizer(tokenizer, RERANK_MAX_LEN).encode_batch(pairs)
        ids = [np.asarray(e.ids, np.int64) for e in encs]
        types = [np.asarray(e.type_ids, np.int64) for e in encs]
    else:
        ws = [w for wl in reader_windows_batch(reader_tokenizer(tokenizer), pairs) for w in wl]
        ids, types = [w.ids for w in ws], [w.types for w in ws]
    a, m, t = pad_batch(ids, types)
    return {"input_ids": a, "attention_mask": m, "token_type_ids": t}


@torch.no_grad()
def parity(model: nn.Module, kind: str, onnx_path: Path, feeds: dict[str, np.ndarray]) -> float:
    """Max abs difference between PyTorch fp32 and ONNX Runtime outputs (real tokens only)."""
    model = model.float().eval()
    model.encoder.use_sdpa = False  # type: ignore[union-attr]
    ref = model(*(torch.from_numpy(feeds[n]) for n in INPUTS))
    ref_t = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    got = ort_session(onnx_path).run(output_names(kind), feeds)
    mask = feeds["attention_mask"].astype(bool)
    diffs = []
    for r, g in zip(ref_t, got, strict=True):
        d = np.abs(r.numpy() - g)
        diffs.append(float(d.max()) if kind == "reranker" else float(d[mask].max()))
    return max(diffs)
