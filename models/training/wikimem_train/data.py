"""Loading SQuAD v1.1 dev (flattened) and BEIR SciFact, and the article split."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .io_utils import read_json, read_jsonl, write_json
from .paths import SPLIT_FILE

N_TRAIN_ARTICLES = 24
N_VAL_ARTICLES = 2


@dataclass(frozen=True)
class Passage:
    pid: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    answers: list[str]
    gold: str


def load_squad(root: Path) -> tuple[list[Passage], list[Question]]:
    d = root / "squad-v1.1-dev"
    passages = [Passage(r["passage_id"], r["title"], r["text"]) for r in read_jsonl(d / "passages-v1.1.jsonl")]
    questions = [
        Question(r["id"], r["question"], list(r["answers"]), r["gold_passage_id"])
        for r in read_jsonl(d / "questions-v1.1.jsonl")
    ]
    return passages, questions


def article_titles(passages: list[Passage]) -> list[str]:
    titles: list[str] = []
    for p in passages:
        if not titles or titles[-1] != p.title:
            if p.title in titles:
                continue
            titles.append(p.title)
    return titles


def make_split(passages: list[Passage]) -> dict[str, list[str]]:
    """First 24 articles (file order) train, last 24 held out; last 2 training articles = validation."""
    titles = article_titles(passages)
    train = titles[:N_TRAIN_ARTICLES]
    return {
        "train": train[: N_TRAIN_ARTICLES - N_VAL_ARTICLES],
        "validation": train[N_TRAIN_ARTICLES - N_VAL_ARTICLES :],
        "heldout": titles[N_TRAIN_ARTICLES:],
    }


def write_split(split: dict[str, list[str]], path: Path = SPLIT_FILE) -> None:
    doc = {
        "description": (
            "SQuAD v1.1 dev split by article (file order of titles): the first 24 articles are for training "
            "(of which 'validation' = the last 2, used only for model selection and threshold calibration); "
            "'heldout' = the last 24 articles, never trained on."
        ),
        **split,
    }
    write_json(path, doc)


def load_split(path: Path = SPLIT_FILE) -> dict[str, list[str]]:
    doc = read_json(path)
    return {k: list(doc[k]) for k in ("train", "validation", "heldout")}


@dataclass(frozen=True)
class SciFact:
    corpus: dict[str, str]  # doc id -> "title. text"
    queries: dict[str, str]
    train_qrels: dict[str, set[str]]
    test_qrels: dict[str, dict[str, int]]


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.strip().split("\t")
            out.setdefault(q, {})[d] = int(s)
    return out


def scifact_doc_text(title: str, text: str) -> str:
    return f"{title}. {text}" if title else text


def load_scifact(root: Path) -> SciFact:
    d = root / "beir-scifact"
    corpus = {r["_id"]: scifact_doc_text(r.get("title", ""), r["text"]) for r in read_jsonl(d / "corpus.jsonl")}
    queries = {r["_id"]: r["text"] for r in read_jsonl(d / "queries.jsonl")}
    train = {q: {doc for doc, s in ds.items() if s > 0} for q, ds in _qrels(d / "qrels" / "train.tsv").items()}
    return SciFact(corpus, queries, train, _qrels(d / "qrels" / "test.tsv"))


def scifact_val_queries(train_qids: list[str], frac: float = 0.1, seed: int = 13) -> set[str]:
    """A seeded 10% of SciFact *train* queries kept out of training for model selection."""
    ids = sorted(train_qids)
    random.Random(seed).shuffle(ids)
    return set(ids[: max(1, int(len(ids) * frac))])
