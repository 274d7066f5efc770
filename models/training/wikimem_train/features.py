"""Tokenisation shared by training, evaluation and (by contract) the services.

Reranker input: [CLS] query [SEP] passage [SEP] (token_type 0/1), truncated to max_length (256).
Reader input: the same pair layout, max_length 384; long passages are split into windows with
`doc_stride` (128) tokens of overlap — exactly `tokenizers` truncation(strategy="only_second", stride=128)
with the overflowing encodings as extra windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

RERANK_MAX_LEN = 256
READER_MAX_LEN = 384
DOC_STRIDE = 128
MAX_QUERY_TOKENS = 64
MAX_ANSWER_TOKENS = 30


def load_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def pair_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """The service-style pair tokenizer for the reranker (longest_first truncation)."""
    tok = load_tokenizer(path)
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    return tok


def reader_tokenizer(path: Path, max_length: int = READER_MAX_LEN, stride: int = DOC_STRIDE) -> Tokenizer:
    tok = load_tokenizer(path)
    tok.enable_truncation(max_length=max_length, stride=stride, strategy="only_second")
    return tok


class PairBuilder:
    """Fast reranker pairs from separately tokenised queries and passages (identical ids for short queries)."""

    def __init__(self, tok: Tokenizer, max_length: int = RERANK_MAX_LEN) -> None:
        self.max_length = max_length
        self.cls = tok.token_to_id("[CLS]")
        self.sep = tok.token_to_id("[SEP]")
        self.tok = tok

    def encode_texts(self, texts: list[str], limit: int) -> list[np.ndarray]:
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids[:limit], dtype=np.int32) for e in encs]

    def pair(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        room = self.max_length - 3 - len(q)
        ids = np.concatenate([[self.cls], q, [self.sep], p[:room], [self.sep]]).astype(np.int64)
        types = np.zeros_like(ids)
        types[len(q) + 2 :] = 1
        return ids, types


@dataclass
class Window:
    ids: np.ndarray
    types: np.ndarray
    offsets: list[tuple[int, int]]
    context: np.ndarray  # bool mask: token belongs to the passage
    start: int = 0  # training target (0 = [CLS] = no answer)
    end: int = 0


def _windows(enc: Encoding) -> list[Encoding]:
    return [enc, *enc.overflowing]


def reader_windows(tok: Tokenizer, question: str, passage: str) -> list[Window]:
    enc = tok.encode(question, passage)
    out = []
    for e in _windows(enc):
        seq = e.sequence_ids
        ctx = np.array([s == 1 for s in seq], dtype=bool)
        out.append(Window(np.asarray(e.ids, np.int64), np.asarray(e.type_ids, np.int64), list(e.offsets), ctx))
    return out


def reader_windows_batch(tok: Tokenizer, pairs: list[tuple[str, str]]) -> list[list[Window]]:
    encs = tok.encode_batch(pairs)
    res = []
    for enc in encs:
        ws = []
        for e in _windows(enc):
            ctx = np.array([s == 1 for s in e.sequence_ids], dtype=bool)
            ws.append(Window(np.asarray(e.ids, np.int64), np.asarray(e.type_ids, np.int64), list(e.offsets), ctx))
        res.append(ws)
    return res


def span_targets(w: Window, char_start: int, char_end: int) -> tuple[int, int]:
    """Token start/end of a character span inside a window, or (0, 0) when it is not fully inside."""
    idx = np.nonzero(w.context)[0]
    if len(idx) == 0:
        return 0, 0
    first, last = int(idx[0]), int(idx[-1])
    if not (w.offsets[first][0] <= char_start and w.offsets[last][1] >= char_end):
        return 0, 0
    s = first
    while s <= last and w.offsets[s][1] <= char_start:
        s += 1
    e = last
    while e >= first and w.offsets[e][0] >= char_end:
        e -= 1
    if s > e:
        return 0, 0
    return s, e


def pad_batch(seqs: list[np.ndarray], types: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), n), np.int64)
    tt = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for i, (s, t) in enumerate(zip(seqs, types, strict=True)):
        ids[i, : len(s)] = s
        tt[i, : len(t)] = t
        mask[i, : len(s)] = 1
    return ids, mask, tt


def best_span(
    start: np.ndarray, end: np.ndarray, context: np.ndarray, max_answer_tokens: int = MAX_ANSWER_TOKENS
) -> tuple[float, int, int]:
    """Best (score, s, e) over context tokens with s <= e < s + max_answer_tokens; score = start+end logits."""
    idx = np.nonzero(context)[0]
    if len(idx) == 0:
        return -1e9, 0, 0
    s_l, e_l = start[idx], end[idx]
    n = len(idx)
    scores = s_l[:, None] + e_l[None, :]
    i, j = np.indices((n, n))
    valid = (j >= i) & (j - i < max_answer_tokens) & ((idx[j] - idx[i]) < max_answer_tokens)
    scores = np.where(valid, scores, -np.inf)
    flat = int(np.argmax(scores))
    a, b = divmod(flat, n)
    return float(scores[a, b]), int(idx[a]), int(idx[b])


@dataclass
class ReaderPrediction:
    answer: str
    score: float  # best span (start+end) minus [CLS] (start+end); abstain when below the threshold
    char_start: int
    char_end: int


def decode_passage(
    windows: list[Window], starts: list[np.ndarray], ends: list[np.ndarray], passage: str,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> ReaderPrediction:
    """Best answer over all windows of one passage; score = max over windows of (span - null)."""
    best = ReaderPrediction("", -1e9, 0, 0)
    for w, s, e in zip(windows, starts, ends, strict=True):
        span, a, b = best_span(s[: len(w.ids)], e[: len(w.ids)], w.context, max_answer_tokens)
        score = span - float(s[0] + e[0])
        if score > best.score:
            cs, ce = w.offsets[a][0], w.offsets[b][1]
            best = ReaderPrediction(passage[cs:ce], score, cs, ce)
    return best
