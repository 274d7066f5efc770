"""`prepare`: article split, hard-negative mining (BM25 + dense) and compact training/eval files.

Writes into the cache dir (default .cache/train/):
  passages.jsonl.gz        {pid, text} for every SQuAD paragraph and SciFact abstract
  reranker_train.jsonl.gz  {qid, src, query, pos: [pid], negs: [pid]}           (train articles / SciFact train)
  reranker_val.jsonl.gz    {qid, src, query, cands: [pid], rel: {pid: grade}}   (validation only)
  reranker_eval.jsonl.gz   {qid, src, query, first_stage, cands, rel}           (held-out: SQuAD last 24 / SciFact test)
  reader_{train,val,eval}.jsonl.gz  {qid, question, pid, answers: [[text, char_start]], all_answers, negs: [pid]}
and, with --carry, the same files plus fp16 base weights under .devcarry/ for the GPU run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np

from .data import (
    Passage,
    Question,
    load_scifact,
    load_squad,
    make_split,
    scifact_val_queries,
    write_split,
)
from .io_utils import write_json, write_jsonl
from .mining import BM25Index, DenseEncoder, cached_embeddings, dense_search
from .paths import DEFAULT_CACHE, DEFAULT_CARRY, SPLIT_FILE, base_model_dir, data_dir

log = logging.getLogger(__name__)

POOL = 30  # first-stage depth used for mining
N_NEG = 20  # negatives kept per query (sampled from during training)
EVAL_DEPTH_SCIFACT = 100
EVAL_DEPTH_SQUAD = 20
TRAIN_FILES = (
    "passages.jsonl.gz",
    "reranker_train.jsonl.gz",
    "reranker_val.jsonl.gz",
    "reranker_eval.jsonl.gz",
    "reader_train.jsonl.gz",
    "reader_val.jsonl.gz",
    "reader_eval.jsonl.gz",
    "meta.json",
)


def contains_answer(text: str, answers: list[str]) -> bool:
    low = text.lower()
    return any(a.strip() and a.strip().lower() in low for a in answers)


def locate_answers(text: str, answers: list[str]) -> list[list[object]]:
    """Distinct answers with their first character offset in the passage (exact, then case-insensitive)."""
    out: list[list[object]] = []
    seen: set[str] = set()
    low = text.lower()
    for a in answers:
        a = a.strip()
        if not a or a in seen:
            continue
        seen.add(a)
        i = text.find(a)
        if i < 0:
            i = low.find(a.lower())
        if i >= 0:
            out.append([text[i : i + len(a)], i])
    return out


def merge_rankings(*rankings: list[str]) -> list[str]:
    """Interleave rankings (rank 1 of each, then rank 2, ...) without duplicates."""
    out: list[str] = []
    seen: set[str] = set()
    for row in zip(*rankings, strict=False):
        for pid in row:
            if pid not in seen:
                seen.add(pid)
                out.append(pid)
    return out


class Retriever:
    """BM25 + dense over one fixed list of passages."""

    def __init__(self, pids: list[str], texts: list[str], emb: np.ndarray | None) -> None:
        self.pids = pids
        self.index = BM25Index(texts)
        self.emb = emb

    def bm25(self, queries: list[str], k: int) -> list[list[str]]:
        docs, _ = self.index.search(queries, k)
        return [[self.pids[i] for i in row] for row in docs]

    def dense(self, qemb: np.ndarray, k: int) -> list[list[str]]:
        assert self.emb is not None
        idx, _ = dense_search(qemb, self.emb, k)
        return [[self.pids[i] for i in row] for row in idx]


def _squad_subset(passages: list[Passage], titles: list[str]) -> list[Passage]:
    keep = set(titles)
    return [p for p in passages if p.title in keep]


def prepare(cache: Path, carry: Path | None, threads: int = 2, max_questions: int | None = None) -> None:
    root = data_dir()
    cache.mkdir(parents=True, exist_ok=True)
    passages, questions = load_squad(root)
    split = make_split(passages)
    write_split(split, SPLIT_FILE)
    log.info("split: %d train / %d val / %d held-out articles", *(len(split[k]) for k in split))
    sf = load_scifact(root)
    if max_questions:
        questions = questions[:: max(1, len(questions) // max_questions)]
    enc = DenseEncoder(threads=threads)

    p_by_id = {p.pid: p for p in passages}
    title_of = {p.pid: p.title for p in passages}
    all_p_emb = cached_embeddings(enc, [p.text for p in passages], cache / "emb_squad_passages.npy", "squad psg")
    p_row = {p.pid: i for i, p in enumerate(passages)}
    q_emb = cached_embeddings(enc, [q.question for q in questions], cache / "emb_squad_questions.npy", "squad q")

    def retriever_for(titles: list[str]) -> Retriever:
        sub = _squad_subset(passages, titles)
        return Retriever([p.pid for p in sub], [p.text for p in sub], all_p_emb[[p_row[p.pid] for p in sub]])

    def qs_in(titles: list[str]) -> tuple[list[Question], np.ndarray]:
        keep = set(titles)
        idx = [i for i, q in enumerate(questions) if title_of[q.gold] in keep]
        return [questions[i] for i in idx], q_emb[idx]

    rr_train: list[dict[str, object]] = []
    rd_train: list[dict[str, object]] = []
    rr_val: list[dict[str, object]] = []
    rd_val: list[dict[str, object]] = []
    rr_eval: list[dict[str, object]] = []
    rd_eval: list[dict[str, object]] = []

    # --- SQuAD training articles (22): mined only over their own paragraphs.
    r_train = retriever_for(split["train"])
    qs, qe = qs_in(split["train"])
    bm = r_train.bm25([q.question for q in qs], POOL)
    de = r_train.dense(qe, POOL)
    for q, b, d in zip(qs, bm, de, strict=True):
        negs = [
            pid for pid in merge_rankings(b, d)
            if pid != q.gold and not contains_answer(p_by_id[pid].text, q.answers)
        ]
        rr_train.append({"qid": q.qid, "src": "squad", "query": q.question, "pos": [q.gold], "negs": negs[:N_NEG]})
        spans = locate_answers(p_by_id[q.gold].text, q.answers)
        if spans:
            rd_train.append({"qid": q.qid, "question": q.question, "pid": q.gold, "answers": spans,
                             "all_answers": q.answers, "negs": negs[:4]})

    # --- SQuAD validation (2 articles): first stage over all 24 training articles' paragraphs.
    r_val = retriever_for(split["train"] + split["validation"])
    qs, qe = qs_in(split["validation"])
    bm = r_val.bm25([q.question for q in qs], EVAL_DEPTH_SQUAD)
    for q, b in zip(qs, bm, strict=True):
        rr_val.append({"qid": q.qid, "src": "squad", "query": q.question, "cands": b, "rel": {q.gold: 1}})
        negs = [pid for pid in b if pid != q.gold and not contains_answer(p_by_id[pid].text, q.answers)]
        rd_val.append({"qid": q.qid, "question": q.question, "pid": q.gold,
                       "answers": locate_answers(p_by_id[q.gold].text, q.answers),
                       "all_answers": q.answers, "negs": negs[:1]})

    # --- SQuAD held-out (24 articles): first stage over held-out paragraphs only.
    r_held = retriever_for(split["heldout"])
    qs, qe = qs_in(split["heldout"])
    bm = r_held.bm25([q.question for q in qs], EVAL_DEPTH_SQUAD)
    de = r_held.dense(qe, EVAL_DEPTH_SQUAD)
    for q, b, d in zip(qs, bm, de, strict=True):
        rr_eval.append({"qid": q.qid, "src": "squad", "query": q.question,
                        "cands": {"bm25": b, "dense": d}, "rel": {q.gold: 1}})
        negs = [pid for pid in b if pid != q.gold and not contains_answer(p_by_id[pid].text, q.answers)]
        rd_eval.append({"qid": q.qid, "question": q.question, "pid": q.gold,
                        "answers": locate_answers(p_by_id[q.gold].text, q.answers),
                        "all_answers": q.answers, "negs": negs[:1]})

    # --- SciFact: full corpus; train qrels for training (10% of train queries kept for validation).
    doc_ids = list(sf.corpus)
    doc_texts = [sf.corpus[d] for d in doc_ids]
    d_emb = cached_embeddings(enc, doc_texts, cache / "emb_scifact_corpus.npy", "scifact docs")
    sf_qids = sorted(sf.queries)
    sfq_emb = cached_embeddings(enc, [sf.queries[q] for q in sf_qids], cache / "emb_scifact_queries.npy", "sf q")
    sfq_row = {q: i for i, q in enumerate(sf_qids)}
    r_sf = Retriever(doc_ids, doc_texts, d_emb)
    val_q = scifact_val_queries(list(sf.train_qrels))
    tr_q = sorted(qid for qid in sf.train_qrels if qid not in val_q and sf.train_qrels[qid])
    bm = r_sf.bm25([sf.queries[qid] for qid in tr_q], POOL)
    de = r_sf.dense(sfq_emb[[sfq_row[qid] for qid in tr_q]], POOL)
    for qid, b, d in zip(tr_q, bm, de, strict=True):
        pos = sorted(sf.train_qrels[qid])
        negs = [pid for pid in merge_rankings(b, d) if pid not in sf.train_qrels[qid]]
        rr_train.append({"qid": "sf" + qid, "src": "scifact", "query": sf.queries[qid], "pos": pos,
                         "negs": negs[:N_NEG]})
    vq = sorted(qid for qid in val_q if sf.train_qrels[qid])
    bm = r_sf.bm25([sf.queries[qid] for qid in vq], EVAL_DEPTH_SQUAD)
    for qid, b in zip(vq, bm, strict=True):
        rr_val.append({"qid": "sf" + qid, "src": "scifact", "query": sf.queries[qid], "cands": b,
                       "rel": dict.fromkeys(sorted(sf.train_qrels[qid]), 1)})
    te_q = sorted(sf.test_qrels)
    bm = r_sf.bm25([sf.queries[qid] for qid in te_q], EVAL_DEPTH_SCIFACT)
    de = r_sf.dense(sfq_emb[[sfq_row[qid] for qid in te_q]], EVAL_DEPTH_SCIFACT)
    for qid, b, d in zip(te_q, bm, de, strict=True):
        rr_eval.append({"qid": "sf" + qid, "src": "scifact", "query": sf.queries[qid],
                        "cands": {"bm25": b, "dense": d}, "rel": sf.test_qrels[qid]})

    rows = [{"pid": p.pid, "text": p.text} for p in passages] + [
        {"pid": d, "text": t} for d, t in zip(doc_ids, doc_texts, strict=True)
    ]
    write_jsonl(cache / "passages.jsonl.gz", rows)
    counts = {
        "reranker_train": write_jsonl(cache / "reranker_train.jsonl.gz", rr_train),
        "reranker_val": write_jsonl(cache / "reranker_val.jsonl.gz", rr_val),
        "reranker_eval": write_jsonl(cache / "reranker_eval.jsonl.gz", rr_eval),
        "reader_train": write_jsonl(cache / "reader_train.jsonl.gz", rd_train),
        "reader_val": write_jsonl(cache / "reader_val.jsonl.gz", rd_val),
        "reader_eval": write_jsonl(cache / "reader_eval.jsonl.gz", rd_eval),
    }
    write_json(cache / "meta.json", {"split": split, "counts": counts, "scifact_val_queries": sorted(val_q)})
    log.info("wrote %s: %s", cache, counts)
    if carry is not None:
        make_carry(cache, carry)


def make_carry(cache: Path, carry: Path) -> None:
    """Copy the compact data and fp16 base weights (+config, tokenizer) into the device carry folder."""
    from .model import save_fp16_base

    (carry / "data").mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES:
        shutil.copy2(cache / name, carry / "data" / name)
    base = carry / "base"
    base.mkdir(parents=True, exist_ok=True)
    src = base_model_dir()
    shutil.copy2(src / "config.json", base / "config.json")
    shutil.copy2(src / "tokenizer.json", base / "tokenizer.json")
    save_fp16_base(src / "model.safetensors", base / "model.fp16.safetensors")
    total = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    log.info("carry folder %s: %.1f MiB", carry, total / 2**20)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train prepare")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--carry", default=str(DEFAULT_CARRY), help="device carry folder ('' or 'none' to skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-questions", type=int, default=None, help="subsample SQuAD questions (smoke)")
    a = ap.parse_args(argv)
    carry = Path(a.carry) if a.carry and a.carry.lower() != "none" else None
    prepare(a.cache, carry, a.threads, a.max_questions)
