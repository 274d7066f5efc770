"""Calibrate the QA memory: its similarity threshold (WIKIMEM_QA_MEMORY_THRESHOLD) and its lexical guard.

`python -m bench.qa_memory_calibration [--squad-paragraphs N] [--out FILE]`

Questions are embedded exactly as the orchestrator embeds them: normalised (wikimem_orchestrator.cache), one per
model run, with the project's own embedder (int8 all-MiniLM-L6-v2, services/embedder). Cosine similarity of
(all in bench/data/qa_paraphrases.json unless said):

- positives, paraphrases: hand-written rewordings of realistic questions about examples/wiki and the 18F handbook
  (pairs within a group ask for the same thing);
- positives, surface variants: the same question with other function words, a contraction, punctuation or case;
- hard negatives, SQuAD: two different questions about the same SQuAD v1.1 dev paragraph (same gold_passage_id)
  whose answers differ (no gold answer of one equals or contains one of the other), from
  ../shared/data/squad-v1.1-dev — e.g. "Which NFL team represented the AFC at Super Bowl 50?" vs "... the NFC ...";
- hard negatives, wiki: two questions about the same wiki page asking for different facts (across groups);
- hard negatives, contrast: hand-written minimal pairs (places swapped, a negation, another qualifier or
  question word).

A reuse happens when the cosine is at or above the threshold and the lexical guard lets the pair through: "none",
"subsequence" (one question's content words are a subsequence of the other's) or "same words" (the same content
words in the same order: wikimem_orchestrator.qa_memory.same_question). A reused answer to a different question
is much worse than a miss (which only costs the normal pipeline), so the threshold and guard are chosen for no
false reuse on any hard negative. Writes the figures (JSON) to --out and prints the Markdown table recorded in
docs/architecture.md ("QA memory").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
PARAPHRASES = ROOT / "bench" / "data" / "qa_paraphrases.json"
SHARED = ROOT.parent / "shared" / "data"
SQUAD = SHARED / "squad-v1.1-dev"
GRID = sorted([round(0.80 + 0.01 * i, 2) for i in range(21)] + [0.995, 0.998, 0.999])

Pair = tuple[str, str]


def _answer_key(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").replace(",", " ").split())


def answers_differ(a: list[str], b: list[str]) -> bool:
    """No gold answer of one question equals or contains (either way) a gold answer of the other."""
    ka = {_answer_key(x) for x in a if x.strip()}
    kb = {_answer_key(x) for x in b if x.strip()}
    return not any(x == y or x in y or y in x for x in ka for y in kb)


def squad_negatives(paragraphs: int | None, seed: int) -> list[Pair]:
    """Pairs of different-answer questions about one paragraph."""
    by_passage: dict[str, list[dict[str, Any]]] = {}
    for line in (SQUAD / "questions-v1.1.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_passage.setdefault(row["gold_passage_id"], []).append(row)
    ids = sorted(by_passage)
    if paragraphs is not None and paragraphs < len(ids):
        ids = sorted(random.Random(seed).sample(ids, paragraphs))
    pairs: list[Pair] = []
    for pid in ids:
        for a, b in itertools.combinations(by_passage[pid], 2):
            if a["question"].strip() != b["question"].strip() and answers_differ(a["answers"], b["answers"]):
                pairs.append((a["question"], b["question"]))
    return pairs


def wiki_pairs(data: dict[str, Any]) -> tuple[list[Pair], list[Pair]]:
    """Paraphrase pairs (within a group) and hard negatives (across groups of one page)."""
    positives: list[Pair] = []
    negatives: list[Pair] = []
    for page in data["pages"]:
        groups = page["groups"]
        for group in groups:
            positives.extend(itertools.combinations(group, 2))
        for a, b in itertools.combinations(groups, 2):
            negatives.extend(itertools.product(a, b))
    return positives, negatives


class Embedder:
    """The embedder's encoder in-process, one question per model run (as a lone Ask is embedded)."""

    def __init__(self, cache: Path) -> None:
        from wikimem_embedder.config import EmbedderConfig
        from wikimem_embedder.encoder import SentenceEncoder
        from wikimem_orchestrator.cache import normalise_question

        self._normalise = normalise_question
        self.encoder = SentenceEncoder(dataclasses.replace(EmbedderConfig.from_env(), sub_batch=1))
        self.cache_path = cache
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}
        if cache.exists():
            saved = np.load(cache, allow_pickle=False)
            self.vectors = dict(zip([str(q) for q in saved["questions"]], saved["vectors"], strict=True))

    def __call__(self, questions: list[str]) -> None:
        from tqdm import tqdm

        todo = sorted({self._normalise(q) for q in questions} - set(self.vectors))
        for q in tqdm(todo, desc="embedding questions", file=sys.stderr, mininterval=10.0):
            self.vectors[q] = self.encoder.embed([q])[0].vector
        if todo:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(self.vectors)
            np.savez(self.cache_path, questions=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))

    def similarity(self, a: str, b: str) -> float:
        return float(np.dot(self.vectors[self._normalise(a)], self.vectors[self._normalise(b)]))


def is_subsequence(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    it = iter(long)
    return all(word in it for word in short)


GUARDS = ("none", "subsequence", "same words")


def guarded(guard: str, a: str, b: str) -> bool:
    """Whether the lexical guard lets the pair through (see wikimem_orchestrator.qa_memory.same_question)."""
    from wikimem_orchestrator.qa_memory import content_words

    if guard == "none":
        return True
    wa, wb = content_words(a), content_words(b)
    if guard == "same words":
        return wa == wb
    return is_subsequence(wa, wb) or is_subsequence(wb, wa)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.qa_memory_calibration", description=__doc__)
    parser.add_argument("--squad-paragraphs", type=int, default=None, help="sample of SQuAD paragraphs (all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "qa_memory_calibration.json")
    parser.add_argument(
        "--embedding-cache", type=Path, default=ROOT / "bench" / "results" / "qa_calibration_embeddings.npz"
    )
    args = parser.parse_args(argv)
    if not SQUAD.exists():
        print(f"{SQUAD} is missing (../shared/data, see its README)", file=sys.stderr)
        return 2

    started = time.perf_counter()
    data = json.loads(PARAPHRASES.read_text(encoding="utf-8"))
    positives, wiki_negatives = wiki_pairs(data)
    surface = [pair for group in data["surface_variants"] for pair in itertools.combinations(group, 2)]
    contrast = [(a, b) for a, b in data["contrast_pairs"]]
    squad = squad_negatives(args.squad_paragraphs, args.seed)
    sets: dict[str, list[Pair]] = {
        "paraphrases": positives,
        "surface": surface,
        "squad": squad,
        "wiki": wiki_negatives,
        "contrast": contrast,
    }
    negative_sets = ("squad", "wiki", "contrast")
    embed = Embedder(args.embedding_cache)
    embed([q for pairs in sets.values() for pair in pairs for q in pair])
    sims = {name: np.array([embed.similarity(a, b) for a, b in pairs]) for name, pairs in sets.items()}
    passes = {g: {n: np.array([guarded(g, a, b) for a, b in pairs]) for n, pairs in sets.items()} for g in GUARDS}

    def reused(guard: str, name: str, t: float) -> npt.NDArray[np.bool_]:
        return (sims[name] >= t) & passes[guard][name]

    grid: list[dict[str, Any]] = []
    lowest_safe: dict[str, float | None] = {g: None for g in GUARDS}
    for t in GRID:
        row: dict[str, Any] = {"threshold": t}
        for g in GUARDS:
            false = {n: int(reused(g, n, t).sum()) for n in negative_sets}
            tp = int(reused(g, "paraphrases", t).sum() + reused(g, "surface", t).sum())
            fp = sum(false.values())
            row[g] = {
                "recall_paraphrases": round(float(reused(g, "paraphrases", t).mean()), 3),
                "recall_surface": round(float(reused(g, "surface", t).mean()), 3),
                **{f"false_reuse_{n}": v for n, v in false.items()},
                "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            }
            if fp == 0 and lowest_safe[g] is None:
                lowest_safe[g] = t
        grid.append(row)

    def examples(name: str, mask: npt.NDArray[np.bool_], n: int = 5, best: bool = True) -> list[dict[str, Any]]:
        idx = [i for i in np.argsort(-sims[name] if best else sims[name]) if mask[i]][:n]
        return [{"similarity": round(float(sims[name][i]), 4), "pair": list(sets[name][i])} for i in idx]

    everything = {n: np.ones(len(v), dtype=bool) for n, v in sims.items()}
    result: dict[str, Any] = {
        "model": embed.encoder.config.model_id,
        "pairs": {n: len(v) for n, v in sets.items()},
        "cosine": {
            n: {
                "min": round(float(v.min()), 4),
                "median": round(float(np.median(v)), 4),
                "p99": round(float(np.percentile(v, 99)), 4),
                "max": round(float(v.max()), 4),
            }
            for n, v in sims.items()
        },
        "lowest_threshold_without_false_reuse": lowest_safe,
        "grid": grid,
        "hardest_negatives": {n: examples(n, everything[n]) for n in negative_sets},
        "hardest_negatives_past_same_words_guard": {n: examples(n, passes["same words"][n]) for n in negative_sets},
        "surface_variants_lowest": examples("surface", everything["surface"], 5, best=False),
        "paraphrases_highest": examples("paraphrases", everything["paraphrases"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    c = result["pairs"]
    print(
        f"{c['paraphrases']} paraphrase and {c['surface']} surface-variant pairs; hard negatives: {c['squad']} SQuAD, "
        f"{c['wiki']} wiki, {c['contrast']} contrast pairs ({result['model']}). Lowest threshold with no false "
        f"reuse: {lowest_safe}\n"
    )
    print(
        "| threshold | guard | recall paraphrases | recall surface variants | false reuse SQuAD / wiki / contrast "
        "| precision |"
    )
    print("|---|---|---|---|---|---|")
    for row in grid:
        t = row["threshold"]
        if t < 0.99 and round(t * 100) % 2 and t not in lowest_safe.values():
            continue
        for g in ("none", "same words"):
            r = row[g]
            print(
                f"| {t:g} | {g} | {r['recall_paraphrases']:.3f} | {r['recall_surface']:.3f} | "
                f"{r['false_reuse_squad']} / {r['false_reuse_wiki']} / {r['false_reuse_contrast']} | "
                f"{r['precision'] if r['precision'] is not None else '–'} |"
            )
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
