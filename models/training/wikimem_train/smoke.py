"""`smoke`: a tiny end-to-end run on CPU (a few dozen SQuAD questions, one step per model, ONNX export and
parity) through the same code path as the GPU job. Needs only the `train` extra and ../shared/data."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .data import load_squad
from .io_utils import write_jsonl
from .paths import base_model_dir, data_dir
from .prepare import contains_answer, locate_answers


def build_tiny(root: Path, out: Path, n_train: int = 24, n_eval: int = 4) -> None:
    from .mining import BM25Index, DenseEncoder, dense_search
    from .prepare import merge_rankings

    passages, questions = load_squad(root)
    title = passages[0].title
    sub = [p for p in passages if p.title == title]
    text = {p.pid: p.text for p in sub}
    qs = [q for q in questions if q.gold in text][: n_train + 2 * n_eval]
    idx = BM25Index([p.text for p in sub])
    docs, _ = idx.search([q.question for q in qs], 6)
    enc = DenseEncoder(threads=2)
    dense, _ = dense_search(enc.encode([q.question for q in qs]), enc.encode([p.text for p in sub]), 6)
    rr: list[dict[str, Any]] = []
    rd: list[dict[str, Any]] = []
    rr_eval: list[dict[str, Any]] = []
    for q, row, drow in zip(qs, docs, dense, strict=True):
        ranked = [sub[i].pid for i in row]
        negs = [
            p for p in merge_rankings(ranked, [sub[i].pid for i in drow])
            if p != q.gold and not contains_answer(text[p], q.answers)
        ]
        spans = locate_answers(text[q.gold], q.answers)
        rr.append({"qid": q.qid, "src": "squad", "query": q.question, "pos": [q.gold], "negs": negs})
        rr_eval.append({"qid": q.qid, "src": "squad", "query": q.question, "cands": {"bm25": ranked, "dense": ranked},
                        "rel": {q.gold: 1}})
        rd.append({"qid": q.qid, "question": q.question, "pid": q.gold, "answers": spans,
                   "all_answers": q.answers, "negs": negs[:2]})
    val = [{**r, "cands": r["cands"]["bm25"]} for r in rr_eval[n_train : n_train + n_eval]]
    write_jsonl(out / "passages.jsonl.gz", [{"pid": p.pid, "text": p.text} for p in sub])
    write_jsonl(out / "reranker_train.jsonl.gz", rr[:n_train])
    write_jsonl(out / "reranker_val.jsonl.gz", val)
    write_jsonl(out / "reranker_eval.jsonl.gz", rr_eval[n_train + n_eval :])
    write_jsonl(out / "reader_train.jsonl.gz", rd[:n_train])
    write_jsonl(out / "reader_val.jsonl.gz", rd[n_train : n_train + n_eval])
    write_jsonl(out / "reader_eval.jsonl.gz", rd[n_train + n_eval :])


def reader_job_smoke(root: Path, work: Path) -> None:
    """Synthetic cloze data from two training articles, then the reader job (pre-training, two variants and a
    distilled student, one step each) on the tiny data."""
    from . import reader_job
    from .synthetic import generate, load_docs, write_synthetic

    gen = generate(load_docs(root, ["squad"])[:2], seed=0, max_examples=48)
    for ex in gen.examples:
        assert ex["s"] < 0 or gen.contexts[ex["c"]][ex["s"] : ex["s"] + len(ex["a"])] == ex["a"], ex
    write_synthetic(gen, work / "data" / "synthetic.jsonl.gz")
    out = work / "out_reader_job"
    reader_job.main(["--data", str(work), "--base", str(base_model_dir()), "--out", str(out), "--device", "cpu",
                     "--pt-batch", "4", "--batch", "4", "--max-steps", "1", "--num-workers", "0", "--max-examples", "8",
                     "--variants", "A=pt/1e-4/1/0,B=base/1e-4/1/1,D=pt/1e-4/1/2/distill", "--teacher-margin", "100",
                     "--answer-lengths", "30,15", "--budget", "100000"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics.get("done") and set(metrics["variants"]) == {"A", "B", "D"}, metrics.get("skipped")
    assert sorted(out.glob("reader-*.safetensors")), "reader-job saved no weights"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train smoke")
    ap.add_argument("--keep", type=Path, default=None, help="keep outputs here instead of a temp dir")
    a = ap.parse_args(argv)
    root = data_dir()
    if not (root / "squad-v1.1-dev" / "passages-v1.1.jsonl").exists():
        print(f"SKIP smoke: shared data not found at {root} (set WIKIMEM_DATA or provide ../shared/data)")
        return
    import torch

    from . import device_run
    from .export import export_onnx, parity, sample_inputs
    from .model import load_trained

    torch.set_num_threads(2)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or Path(tmp)
        build_tiny(root, work / "data")
        out = work / "out"
        device_run.main(["--data", str(work), "--base", str(base_model_dir()), "--out", str(out), "--device", "cpu",
                         "--rr-lrs", "5e-5", "--rd-lrs", "1e-4", "--rr-epochs", "1", "--rd-epochs", "1",
                         "--rr-batch", "1", "--rd-batch", "4", "--max-steps", "1", "--num-workers", "0"])
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics.get("done"), "device-run did not finish"
        reader_job_smoke(root, work)
        tok = base_model_dir() / "tokenizer.json"
        diffs = {}
        for kind in ("reranker", "reader"):
            model = load_trained(kind, base_model_dir(), sorted(out.glob(f"{kind}-*.safetensors")))
            onnx_path = work / f"{kind}.onnx"
            export_onnx(model, kind, onnx_path)
            feeds = sample_inputs(kind, tok, [("who won super bowl 50?", "The Denver Broncos won Super Bowl 50.")])
            diffs[kind] = parity(model, kind, onnx_path, feeds)
            assert diffs[kind] < 1e-3, f"{kind} ONNX parity {diffs[kind]}"
    print(f"SMOKE OK in {time.time() - t0:.1f}s; ONNX max abs diff {diffs}")
