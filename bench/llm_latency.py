"""`python -m bench.llm_latency`: the generative reader on the 18F handbook — latency per answer (p50 over 20
questions) for each local model, and what came out (right answers, verified sentences, abstentions).

Needs `make llm`. Starts the five services as `wikimem serve` does (one start per model, on one data directory,
so the handbook is ingested once), then asks each question of bench/data/handbook_llm_questions.json through
`AskStream` with `reader=local-llm` and no cache. Latency is the whole Ask (embed, search, rerank, generation,
verification) as the client sees it; time to first token is when the first delta arrived.

    .venv/bin/python -m bench.llm_latency [--models 0.5b,1.5b] [--n 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import ROOT, Context, latency_summary, machine, percentile, progress, running_system, write_json

QUESTIONS = ROOT / "bench" / "data" / "handbook_llm_questions.json"


def load_questions(n: int) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = json.loads(QUESTIONS.read_text())["questions"]
    return questions[:n]


def ingest_handbook(address: str, pages: Path) -> int:
    from wikimem import ingest
    from wikimem.client import WikimemClient

    files = ingest.discover([str(pages)])
    with WikimemClient(address, timeout=600) as client, tqdm(total=len(files), desc="ingest handbook") as bar:
        report = ingest.ingest(client, files, workers=4, on_done=lambda *_: bar.update(1))
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} handbook pages failed to ingest")
    return report.total


def ask_all(address: str, questions: list[dict[str, Any]], model: str, log: Path) -> list[dict[str, Any]]:
    """Each question through AskStream; every row is appended to `log` (JSON lines) as soon as it is measured."""
    from wikimem.client import WikimemClient
    from wikimem.models import Answer

    rows: list[dict[str, Any]] = []
    with WikimemClient(address, timeout=900) as client:
        # warm-up (not counted): the reader loads and checks the GGUF on its first request
        list(client.ask_stream("Warm-up: what is this wiki about?", reader="local-llm", no_cache=True, max_tokens=8))
        for q in progress(questions, f"ask ({model})"):
            start = time.perf_counter()
            first: float | None = None
            deltas = 0
            final: Answer | None = None
            for event in client.ask_stream(q["question"], reader="local-llm", no_cache=True):
                if isinstance(event, str):
                    if first is None and event:
                        first = time.perf_counter()
                    deltas += 1
                else:
                    final = event
            total = time.perf_counter() - start
            assert final is not None
            text = (final.answer + " " + final.generated).lower()
            rows.append(
                {
                    "question": q["question"],
                    "total_ms": total * 1000.0,
                    "first_token_ms": ((first or time.perf_counter()) - start) * 1000.0,
                    "deltas": deltas,
                    "abstained": final.abstained,
                    "right_in_answer": any(a in final.answer.lower() for a in q["answers"]) and not final.abstained,
                    "right_in_generated": any(a in text for a in q["answers"]),
                    "sentences": len(final.sentences),
                    "verified": sum(s.verified for s in final.sentences),
                    "answer": final.answer,
                    "generated": final.generated,
                    "citations": [f"{c.doc_id}@{c.revision}" for c in final.citations],
                    "reader_ms": {k: v for k, v in final.timings_ms.items() if k in ("read", "verify", "total")},
                }
            )
            with log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    return rows


def summarise(model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    figures: dict[str, Any] = {"model": model, "questions": n}
    figures.update(latency_summary([r["total_ms"] for r in rows], "answer"))
    figures.update(latency_summary([r["first_token_ms"] for r in rows], "first_token"))
    figures["verify_p50_ms"] = round(percentile([r["reader_ms"].get("verify", 0.0) for r in rows], 50), 1)
    figures["right_answers"] = sum(r["right_in_answer"] for r in rows)
    figures["right_in_generated_text"] = sum(r["right_in_generated"] for r in rows)
    figures["abstained"] = sum(r["abstained"] for r in rows)
    sentences = sum(r["sentences"] for r in rows)
    figures["sentences"] = sentences
    figures["verified_sentences"] = sum(r["verified"] for r in rows)
    return figures


def markdown(summaries: list[dict[str, Any]], contended: bool) -> str:
    lines = [
        "| model | p50 answer (s) | p90 answer (s) | p50 first token (s) | right answers | abstained | "
        "verified sentences |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['model']} | {s['answer_p50_ms'] / 1000:.1f} | {s['answer_p90_ms'] / 1000:.1f} | "
            f"{s['first_token_p50_ms'] / 1000:.1f} | {s['right_answers']}/{s['questions']} | "
            f"{s['abstained']}/{s['questions']} | {s['verified_sentences']}/{s['sentences']} |"
        )
    if contended:
        lines.append("\nMeasured while other jobs shared the machine's 2 cores (contended).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_latency", description=__doc__)
    parser.add_argument("--models", default="0.5b,1.5b", help="comma-separated local models (default 0.5b,1.5b)")
    parser.add_argument("--n", type=int, default=20, help="questions (default 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "llm-latency")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--contended", action="store_true", help="note in the report that the machine was shared")
    parser.add_argument("--work", type=Path, default=None, help="keep the services' data here (default: a temp dir)")
    args = parser.parse_args(argv)
    from wikimem_reader.local_llm import llama_cpp_available

    if not llama_cpp_available():
        print("the llm extra is not installed: run `make llm`", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=False, out=args.out, data=args.data)
    if args.work is not None:
        ctx.work = args.work
    pages = ctx.dataset("handbook-18f") / "pages"
    questions = load_questions(args.n)
    summaries, details = [], {}
    for model in [m for m in args.models.split(",") if m]:
        env = {"WIKIMEM_LLM_MODEL": model, "WIKIMEM_CACHE": "0"}
        with running_system(ctx, "llm-handbook", env=env) as address:
            print(f"ingested {ingest_handbook(address, pages)} pages", file=sys.stderr)
            rows = ask_all(address, questions, model, args.out / f"answers-{model}.jsonl")
        summaries.append(summarise(model, rows))
        details[model] = rows
        print(json.dumps(summaries[-1]), file=sys.stderr)
    write_json(args.out / "llm_latency.json", {"machine": machine(), "summaries": summaries, "answers": details})
    report = markdown(summaries, args.contended)
    (args.out / "llm_latency.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
