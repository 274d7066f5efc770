"""`train`, `export`, `eval` and `ship` sub-commands (local, CPU or GPU)."""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from .datasets import ReaderExamples, RerankGroups, collate_groups, collate_spans, load_passages, load_rows
from .features import DOC_STRIDE, MAX_ANSWER_TOKENS, READER_MAX_LEN, RERANK_MAX_LEN
from .io_utils import read_json, sha256, write_json
from .paths import BASE_MODEL_NAME, DEFAULT_CACHE, MODELS_DIR, base_model_dir

log = logging.getLogger(__name__)
KINDS = ("reranker", "reader")


def _shards(weights: Path, kind: str) -> list[Path]:
    found = sorted(weights.glob(f"{kind}-*.safetensors"))
    if not found:
        raise SystemExit(f"no {kind}-*.safetensors under {weights}")
    return found


# ------------------------------------------------------------------ train


def cmd_train(argv: list[str]) -> None:
    from .model import load_base, save_shards
    from .train import FitConfig, fit, pick_device

    ap = argparse.ArgumentParser(prog="wikimem_train train")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--data", type=Path, default=DEFAULT_CACHE, help="folder written by `prepare`")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    out = a.out or DEFAULT_CACHE / "runs" / a.kind
    device = pick_device(a.device)
    base = base_model_dir()
    passages = load_passages(a.data)
    rows = load_rows(a.data, f"{a.kind}_train", a.max_examples)
    if a.kind == "reranker":
        ds: Any = RerankGroups(rows, passages, base / "tokenizer.json", a.seed)
        collate: Any = collate_groups
    else:
        ds, collate = ReaderExamples(rows, passages, base / "tokenizer.json", a.seed), collate_spans
    lr = a.lr or (5e-5 if a.kind == "reranker" else 1e-4)
    cfg = FitConfig(kind=a.kind, epochs=a.epochs, lr=lr, batch_size=a.batch_size, seed=a.seed,
                    max_steps=a.max_steps, num_workers=a.num_workers, ckpt_dir=out / "ckpt", resume=a.resume)
    t = time.time()
    state, hist = fit(load_base(a.kind, base, a.seed), ds, collate, cfg, device)
    paths = save_shards(state, out, a.kind)
    write_json(out / "history.json", {"device": str(device), "seconds": time.time() - t, "history": hist,
                                      "examples": len(ds), "lr": lr})
    print(f"saved {[str(p) for p in paths]} ({time.time() - t:.0f}s on {device})")


# ------------------------------------------------------------------ export


def cmd_export(argv: list[str]) -> None:
    from .export import export_onnx, parity, quantize_int8, sample_inputs
    from .model import load_trained

    ap = argparse.ArgumentParser(prog="wikimem_train export")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--weights", type=Path, default=DEFAULT_CACHE / "device",
                    help="folder with <kind>-NN.safetensors (from device-run or train)")
    ap.add_argument("--work", type=Path, default=DEFAULT_CACHE / "onnx")
    a = ap.parse_args(argv)
    base = base_model_dir()
    model = load_trained(a.kind, base, _shards(a.weights, a.kind))
    fp32, int8 = a.work / f"{a.kind}.fp32.onnx", a.work / f"{a.kind}.int8.onnx"
    t = time.time()
    export_onnx(model, a.kind, fp32)
    quantize_int8(fp32, int8)
    feeds = sample_inputs(a.kind, base / "tokenizer.json", _parity_pairs())
    res = {"fp32_max_abs_diff": parity(model, a.kind, fp32, feeds),
           "int8_max_abs_diff": parity(model, a.kind, int8, feeds),
           "parity_inputs": list(feeds["input_ids"].shape),
           "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size, "seconds": time.time() - t}
    write_json(a.work / f"{a.kind}.export.json", res)
    print(json.dumps(res, indent=2))


def _parity_pairs() -> list[tuple[str, str]]:
    from .data import load_squad
    from .paths import data_dir

    passages, questions = load_squad(data_dir())
    by_id = {p.pid: p.text for p in passages}
    rng = random.Random(1)
    qs = rng.sample(questions, 16)
    return [(q.question, by_id[q.gold]) for q in qs]


# ------------------------------------------------------------------ eval


def _subset(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    if n is None or n >= len(rows):
        return rows
    return sorted(random.Random(seed).sample(rows, n), key=lambda r: r["qid"])


def cmd_eval(argv: list[str]) -> None:
    from .evaluation import reader_metrics, reranker_metrics
    from .export import ort_session, sample_inputs
    from .onnx_backend import latency, ort_rerank_fn, ort_span_fn

    ap = argparse.ArgumentParser(prog="wikimem_train eval")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--onnx", type=Path, default=None, help="default: models/<kind>/model.onnx")
    ap.add_argument("--data", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--subset", type=int, default=None, help="seeded random subset of queries per source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth-scifact", type=int, default=100)
    ap.add_argument("--depth-squad", type=int, default=20)
    ap.add_argument("--sources", default="scifact,squad", help="reranker: comma list of scifact,squad")
    ap.add_argument("--stages", default="bm25", help="comma list of first stages: bm25,dense")
    ap.add_argument("--threshold", type=float, default=None, help="reader; default from wikimem.json")
    ap.add_argument("--calibrate", action="store_true",
                    help="reader: re-calibrate the no-answer threshold on the validation articles with this model")
    ap.add_argument("--max-answer-tokens", type=int, default=None, help="reader; default from wikimem.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write metrics JSON here")
    ap.add_argument("--latency", action="store_true")
    a = ap.parse_args(argv)
    path = a.onnx or MODELS_DIR / a.kind / "model.onnx"
    tok = base_model_dir() / "tokenizer.json"
    sess = ort_session(path, a.threads)
    passages = load_passages(a.data)
    t = time.time()
    res: dict[str, Any] = {"onnx": str(path), "subset": a.subset, "seed": a.seed, "threads": a.threads}
    if a.kind == "reranker":
        rows = load_rows(a.data, "reranker_eval")
        for src, depth in (("scifact", a.depth_scifact), ("squad", a.depth_squad)):
            if src not in a.sources.split(","):
                continue
            sub = _subset([r for r in rows if r["src"] == src], a.subset, a.seed)
            res[src] = reranker_metrics(ort_rerank_fn(sess), sub, passages, tok, a.stages.split(","), depth)
            print(src, json.dumps(res[src]), flush=True)
    else:
        thr = a.threshold
        card = MODELS_DIR / "reader" / "wikimem.json"
        mat = a.max_answer_tokens or (int(read_json(card)["max_answer_tokens"]) if card.exists() else MAX_ANSWER_TOKENS)
        res["max_answer_tokens"] = mat
        if a.calibrate:
            val = reader_metrics(ort_span_fn(sess), load_rows(a.data, "reader_val"), passages, tok, None, mat)
            thr = float(val["abstention"]["threshold"])
            res["validation"] = val
            print("validation", json.dumps({k: v for k, v in val.items() if k != "calibration_curve"}), flush=True)
        if thr is None:
            thr = float(read_json(card)["no_answer_threshold"]) if card.exists() else 0.0
        rows = _subset(load_rows(a.data, "reader_eval"), a.subset, a.seed)
        res["heldout"] = reader_metrics(ort_span_fn(sess), rows, passages, tok, thr, mat)
        print(json.dumps(res["heldout"]), flush=True)
    res["seconds"] = time.time() - t
    if a.latency:
        feeds = sample_inputs(a.kind, tok, _parity_pairs())
        res["latency"] = [latency(sess, feeds, 16), latency(sess, feeds, 1, repeats=20)]
        print(json.dumps(res["latency"]))
    if a.out:
        write_json(a.out, res)


# ------------------------------------------------------------------ ship


def cmd_ship(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train ship")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--variant", choices=["int8", "fp32"], default="int8")
    ap.add_argument("--work", type=Path, default=DEFAULT_CACHE / "onnx")
    ap.add_argument("--threshold", type=float, default=None, help="reader no-answer threshold")
    ap.add_argument("--alt-variant", choices=["int8", "fp32"], default=None,
                    help="also ship the other variant as model.<variant>.onnx (listed under 'variants')")
    ap.add_argument("--alt-threshold", type=float, default=None, help="reader threshold for the alt variant")
    ap.add_argument("--max-answer-tokens", type=int, default=MAX_ANSWER_TOKENS, help="reader decoding limit")
    a = ap.parse_args(argv)
    dst = MODELS_DIR / a.kind
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(a.work / f"{a.kind}.{a.variant}.onnx", dst / "model.onnx")
    shutil.copy2(base_model_dir() / "tokenizer.json", dst / "tokenizer.json")
    cfg: dict[str, Any] = {"kind": a.kind, "max_length": RERANK_MAX_LEN if a.kind == "reranker" else READER_MAX_LEN}
    if a.kind == "reader":
        if a.threshold is None:
            raise SystemExit("reader needs --threshold (calibrated on validation)")
        cfg.update({"doc_stride": DOC_STRIDE, "no_answer_threshold": round(a.threshold, 4),
                    "max_answer_tokens": a.max_answer_tokens})
    cfg.update({"onnx": "model.onnx", "tokenizer": "tokenizer.json", "variant": a.variant,
                "base_model": BASE_MODEL_NAME, "sha256": sha256(dst / "model.onnx")})
    if a.alt_variant:
        alt = dst / f"model.{a.alt_variant}.onnx"
        shutil.copy2(a.work / f"{a.kind}.{a.alt_variant}.onnx", alt)
        entry: dict[str, Any] = {"onnx": alt.name, "sha256": sha256(alt)}
        if a.kind == "reader":
            if a.alt_threshold is None:
                raise SystemExit("--alt-threshold is required for the reader")
            entry["no_answer_threshold"] = round(a.alt_threshold, 4)
        cfg["variants"] = {a.alt_variant: entry}
    write_json(dst / "wikimem.json", cfg)
    print(json.dumps(cfg, indent=2))
