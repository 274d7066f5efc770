"""Training datasets built from the compact files written by `prepare` (pre-tokenised once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .features import (
    MAX_QUERY_TOKENS,
    RERANK_MAX_LEN,
    PairBuilder,
    Window,
    load_tokenizer,
    pad_batch,
    reader_tokenizer,
    reader_windows_batch,
    span_targets,
)
from .io_utils import read_jsonl

N_NEGATIVES = 7


def load_passages(data: Path, needed: set[str] | None = None) -> dict[str, str]:
    return {r["pid"]: r["text"] for r in read_jsonl(data / "passages.jsonl.gz") if needed is None or r["pid"] in needed}


def load_rows(data: Path, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    rows = list(read_jsonl(data / f"{name}.jsonl.gz"))
    if limit is not None and limit < len(rows):
        idx = np.random.default_rng(0).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(idx)]
    return rows


class RerankGroups(Dataset[tuple[list[np.ndarray], list[np.ndarray]]]):
    """One item = 1 positive + N_NEGATIVES negatives for a query (negatives re-sampled every epoch)."""

    def __init__(self, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path, seed: int,
                 n_neg: int = N_NEGATIVES, max_length: int = RERANK_MAX_LEN) -> None:
        self.rows = [r for r in rows if r["pos"] and r["negs"]]
        self.builder = PairBuilder(load_tokenizer(tokenizer), max_length)
        pids = sorted({p for r in self.rows for p in r["pos"] + r["negs"]})
        ptoks = self.builder.encode_texts([passages[p] for p in pids], max_length)
        self.ptok = dict(zip(pids, ptoks, strict=True))
        self.qtok = self.builder.encode_texts([r["query"] for r in self.rows], MAX_QUERY_TOKENS)
        self.seed = seed
        self.epoch = 0
        self.n_neg = n_neg

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        r = self.rows[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pos = r["pos"][int(rng.integers(len(r["pos"])))]
        negs = list(r["negs"])
        pick = rng.choice(len(negs), size=self.n_neg, replace=len(negs) < self.n_neg)
        ids, types = [], []
        for pid in [pos] + [negs[j] for j in pick]:
            a, b = self.builder.pair(self.qtok[i], self.ptok[pid])
            ids.append(a)
            types.append(b)
        return ids, types


def collate_groups(batch: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> dict[str, torch.Tensor]:
    ids = [x for g in batch for x in g[0]]
    types = [x for g in batch for x in g[1]]
    a, m, t = pad_batch(ids, types)
    return {"input_ids": torch.from_numpy(a), "attention_mask": torch.from_numpy(m),
            "token_type_ids": torch.from_numpy(t), "group": torch.tensor(len(batch[0][0]))}


class ReaderExamples(Dataset[tuple[np.ndarray, np.ndarray, int, int]]):
    """Windows with span targets: every distinct answer of a gold passage is a target; windows of one
    non-gold retrieved passage per question (re-sampled each epoch) and answer-less windows target [CLS]."""

    def __init__(self, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path, seed: int,
                 n_neg_choices: int = 4) -> None:
        tok = reader_tokenizer(tokenizer)
        rows = [r for r in rows if r["answers"]]
        gold = reader_windows_batch(tok, [(r["question"], passages[r["pid"]]) for r in rows])
        self.pos: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        for r, ws in zip(rows, gold, strict=True):
            for text, cs in r["answers"]:
                for w in ws:
                    s, e = span_targets(w, cs, cs + len(text))
                    self.pos.append((w.ids, w.types, s, e))
        neg_pairs: list[tuple[str, str]] = []
        self.neg_owner: list[tuple[int, int]] = []
        for qi, r in enumerate(rows):
            for j, pid in enumerate(r["negs"][:n_neg_choices]):
                neg_pairs.append((r["question"], passages[pid]))
                self.neg_owner.append((qi, j))
        self.neg_windows: list[list[Window]] = reader_windows_batch(tok, neg_pairs) if neg_pairs else []
        self.n_q = len(rows)
        self.n_choices = [min(n_neg_choices, len(r["negs"])) for r in rows]
        self.seed = seed
        self.items: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch, 7])
        choice = [int(rng.integers(n)) if n else -1 for n in self.n_choices]
        negs: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        self.sources = [(-1, i) for i in range(len(self.pos))]  # (-1, pos index) or (negative pair, window)
        for k, ((qi, j), ws) in enumerate(zip(self.neg_owner, self.neg_windows, strict=True)):
            if choice[qi] == j:
                for wi, w in enumerate(ws):
                    negs.append((w.ids, w.types, 0, 0))
                    self.sources.append((k, wi))
        self.items = self.pos + negs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        return self.items[i]


def collate_spans(batch: list[tuple[np.ndarray, np.ndarray, int, int]]) -> dict[str, torch.Tensor]:
    a, m, t = pad_batch([b[0] for b in batch], [b[1] for b in batch])
    return {"input_ids": torch.from_numpy(a), "attention_mask": torch.from_numpy(m),
            "token_type_ids": torch.from_numpy(t),
            "start": torch.tensor([b[2] for b in batch]), "end": torch.tensor([b[3] for b in batch])}


class SyntheticSpans(Dataset[tuple[np.ndarray, np.ndarray, int, int]]):
    """Synthetic (question, context, answer char start or -1) triples as single reader windows with span targets
    ([CLS] for no answer); examples whose answer falls outside the first window are dropped."""

    def __init__(self, contexts: list[str], examples: list[dict[str, Any]], tokenizer: Path) -> None:
        n_all = len(examples)
        qlen = [len(e.ids) for e in load_tokenizer(tokenizer).encode_batch([ex["q"] for ex in examples],
                                                                            add_special_tokens=False)]
        examples = [ex for ex, n in zip(examples, qlen, strict=True) if 0 < n <= MAX_QUERY_TOKENS]
        tok = reader_tokenizer(tokenizer, stride=0)  # one window per example; the answer must be inside it
        encs = tok.encode_batch([(ex["q"], contexts[ex["c"]]) for ex in examples])
        self.items: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        for ex, enc in zip(examples, encs, strict=True):
            s = e = 0
            if ex["s"] >= 0:
                a = enc.char_to_token(ex["s"], 1)
                b = enc.char_to_token(ex["s"] + len(ex["a"]) - 1, 1)
                if a is None or b is None or b < a:
                    continue
                s, e = a, b
            self.items.append((np.asarray(enc.ids, np.int32), np.asarray(enc.type_ids, np.int8), s, e))
        self.dropped = n_all - len(self.items)

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        return self.items[i]
