"""`device-run`: the whole GPU job in one process — reranker sweep, reader sweep, validation-based
selection, threshold calibration and held-out metrics — writing only small files to --out:
  reranker-NN.safetensors / reader-NN.safetensors  trained weights except word embeddings, fp16, <=15 MiB shards
  metrics.json                                     everything measured (rewritten after each model)
The reranker's files are written before the reader starts, so a timeout still returns it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .datasets import ReaderExamples, RerankGroups, collate_groups, collate_spans, load_passages, load_rows
from .evaluation import reader_metrics, reranker_metrics
from .model import load_base, save_shards
from .train import FitConfig, fit, pick_device, torch_rerank_scores, torch_span_logits

log = logging.getLogger(__name__)


def _rr_fn(model: nn.Module, device: torch.device) -> Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]:
    return lambda ids, types: torch_rerank_scores(model, ids, types, device)


def _span_fn(model: nn.Module, device: torch.device) -> Any:
    return lambda ids, types: torch_span_logits(model, ids, types, device)


def _by_src(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["src"], []).append(r)
    return out


def rerank_val_score(model: nn.Module, device: torch.device, val: dict[str, list[dict[str, Any]]],
                     passages: dict[str, str], tok: Path) -> tuple[float, dict[str, float]]:
    """Mean of SQuAD-validation MRR@10 and SciFact-validation nDCG@10 after reranking BM25 top-20."""
    parts = {}
    for src, rows in val.items():
        m = reranker_metrics(_rr_fn(model, device), rows, passages, tok, [None], 20)
        parts[f"{src}.mrr@10"] = m["first+rerank.mrr@10"]
        parts[f"{src}.ndcg@10"] = m["first+rerank.ndcg@10"]
        parts[f"{src}.first.ndcg@10"] = m["first.ndcg@10"]
    score = float(np.mean([parts.get("squad.mrr@10", 0.0), parts.get("scifact.ndcg@10", 0.0)]))
    return score, parts


class Job:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.t0 = time.time()
        self.device = pick_device(a.device)
        self.data = a.data / "data"
        self.base = a.base or a.data / "base"
        self.tok = self.base / "tokenizer.json"
        self.out: Path = a.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.passages = load_passages(self.data)
        self.reranker_state: dict[str, torch.Tensor] = {}
        self.metrics: dict[str, Any] = {
            "host": platform.node(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if self.device.type == "cuda" else "cpu", "args": {
                k: str(v) for k, v in vars(a).items()}}

    def elapsed(self) -> float:
        return time.time() - self.t0

    def dump(self) -> None:
        self.metrics["elapsed_s"] = self.elapsed()
        (self.out / "metrics.json").write_text(json.dumps(self.metrics, indent=2))

    def _cfg(self, kind: str, lr: float, epochs: int, bs: int) -> FitConfig:
        return FitConfig(kind=kind, epochs=epochs, lr=lr, batch_size=bs, seed=self.a.seed,
                         max_steps=self.a.max_steps, num_workers=self.a.num_workers,
                         ckpt_dir=Path("/tmp/wikimem_ckpt") / f"{kind}-{lr:g}")

    def sweep(self, kind: str, lrs: list[Any], run_one: Callable[[Any], tuple[float, dict[str, Any],
              dict[str, torch.Tensor]]], deadline: float) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        best: tuple[float, dict[str, Any], dict[str, torch.Tensor]] | None = None
        runs = []
        last = 0.0
        for lr in lrs:
            if best is not None and self.elapsed() + last > deadline:
                log.info("%s: skipping %s (time budget)", kind, lr)
                continue
            t = time.time()
            score, info, state = run_one(lr)
            last = time.time() - t
            info.update({"lr": lr, "val_score": score, "seconds": last})
            runs.append(info)
            log.info("%s %s: val=%.4f in %.0fs (elapsed %.0fs)", kind, lr, score, last, self.elapsed())
            if best is None or score > best[0]:
                best = (score, info, state)
        assert best is not None
        return best[2], {"runs": runs, "chosen": best[1]}

    def reranker(self, save: bool = True) -> None:
        a = self.a
        rows = load_rows(self.data, "reranker_train", a.max_examples)
        ds = RerankGroups(rows, self.passages, self.tok, a.seed)
        val = _by_src(load_rows(self.data, "reranker_val", a.max_eval))
        log.info("reranker: %d training queries, %d val queries, tokenised at %.0fs", len(ds),
                 sum(len(v) for v in val.values()), self.elapsed())
        val_parts: dict[float, list[dict[str, float]]] = {}

        def run_one(lr: float) -> tuple[float, dict[str, Any], dict[str, torch.Tensor]]:
            model = load_base("reranker", self.base, a.seed)
            val_parts[lr] = []

            def ev(m: nn.Module, epoch: int) -> float:
                s, parts = rerank_val_score(m, self.device, val, self.passages, self.tok)
                val_parts[lr].append(parts)
                return s

            state, hist = fit(model, ds, collate_groups, self._cfg("reranker", lr, a.rr_epochs, a.rr_batch),
                              self.device, ev)
            for h, p in zip(hist, val_parts[lr], strict=False):
                h.update(p)
            return max(h["val"] for h in hist), {"history": hist}, state

        state, sel = self.sweep("reranker", a.rr_lrs, run_one, a.budget * 0.45)
        self.reranker_state = state
        if not save:
            return
        save_shards(state, self.out, "reranker")
        self.metrics["reranker"] = {"selection": sel, "train_queries": len(ds)}
        self.dump()
        model = load_base("reranker", self.base, a.seed)
        model.load_state_dict(state, strict=False)
        model.to(self.device).eval()
        model.encoder.use_sdpa = self.device.type == "cuda"  # type: ignore[union-attr]
        held = _by_src(load_rows(self.data, "reranker_eval", a.max_eval))
        t = time.time()
        res = {}
        for src, rows_ in held.items():
            depth = 100 if src == "scifact" else 20
            res[src] = reranker_metrics(_rr_fn(model, self.device), rows_, self.passages, self.tok,
                                        ["bm25", "dense"], depth)
        self.metrics["reranker"]["heldout_torch_bf16"] = res
        self.metrics["reranker"]["heldout_seconds"] = time.time() - t
        self.dump()
        log.info("reranker held-out: %s", json.dumps(res))

    def reader(self) -> None:
        a = self.a
        rows = load_rows(self.data, "reader_train", a.max_examples)
        ds = ReaderExamples(rows, self.passages, self.tok, a.seed)
        val = load_rows(self.data, "reader_val", a.max_eval)
        log.info("reader: %d questions, %d items/epoch, tokenised at %.0fs", len(rows), len(ds), self.elapsed())

        def run_one(point: str) -> tuple[float, dict[str, Any], dict[str, torch.Tensor]]:
            # "1e-4": start from the base encoder; "r1e-4": start from the trained reranker's encoder
            lr = float(point.lstrip("r"))
            model = load_base("reader", self.base, a.seed)
            if point.startswith("r"):
                enc = {k: v for k, v in self.reranker_state.items() if k.startswith("encoder.")}
                model.load_state_dict(enc, strict=False)

            def ev(m: nn.Module, epoch: int) -> float:
                return float(reader_metrics(_span_fn(m, self.device), val, self.passages, self.tok, None)["em"])

            state, hist = fit(model, ds, collate_spans, self._cfg("reader", lr, a.rd_epochs, a.rd_batch),
                              self.device, ev)
            init = "reranker" if point.startswith("r") else "base"
            return max(h["val"] for h in hist), {"history": hist, "init": init}, state

        state, sel = self.sweep("reader", a.rd_lrs, run_one, a.budget * 0.8)
        save_shards(state, self.out, "reader")
        model = load_base("reader", self.base, a.seed)
        model.load_state_dict(state, strict=False)
        model.to(self.device).eval()
        model.encoder.use_sdpa = self.device.type == "cuda"  # type: ignore[union-attr]
        vm = reader_metrics(_span_fn(model, self.device), val, self.passages, self.tok, None)
        thr = vm["abstention"]["threshold"]
        self.metrics["reader"] = {"selection": sel, "train_items_per_epoch": len(ds), "validation": vm,
                                  "no_answer_threshold": thr}
        self.dump()
        held = load_rows(self.data, "reader_eval", a.max_eval)
        self.metrics["reader"]["heldout_torch_bf16"] = reader_metrics(
            _span_fn(model, self.device), held, self.passages, self.tok, thr)
        self.dump()
        log.info("reader held-out: %s", json.dumps(self.metrics["reader"]["heldout_torch_bf16"]))


def _points(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train device-run")
    ap.add_argument("--data", type=Path, required=True, help="carry folder with data/ and base/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", type=Path, default=None, help="base weights folder (default DATA/base)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rr-lrs", type=_floats, default=[3e-5, 7e-5])
    ap.add_argument("--rd-lrs", type=_points, default=["5e-5", "1e-4", "2e-4"],
                    help="comma list of reader learning rates; prefix r = init from the trained reranker encoder")
    ap.add_argument("--rr-epochs", type=int, default=3)
    ap.add_argument("--rd-epochs", type=int, default=4)
    ap.add_argument("--rr-batch", type=int, default=32, help="queries per step (x8 pairs)")
    ap.add_argument("--rd-batch", type=int, default=32)
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--max-eval", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later sweep points are skipped")
    ap.add_argument("--only", choices=["reranker", "reader"], default=None)
    a = ap.parse_args(argv)
    if pick_device(a.device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    job = Job(a)
    if a.only in (None, "reranker"):
        job.reranker()
    elif any(p.startswith("r") for p in a.rd_lrs):
        job.reranker(save=False)
    if a.only in (None, "reader"):
        job.reader()
    job.metrics["done"] = True
    job.dump()
    log.info("done in %.0fs", job.elapsed())
