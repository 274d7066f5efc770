"""`python -m bench [--quick] [--only NAMES] [--skip NAMES] [--out DIR]`: run the benchmark suites and write
`DIR/results.json` plus `DIR/report.md` (and PNG plots). `--quick` runs every suite on small samples (CI)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import ROOT, Context, Skip, SuiteResult, machine
from bench.report import write_report

#: Suite name -> module under bench.suites, in run order (quality first, then speed).
SUITES: dict[str, str] = {
    "retrieval": "retrieval",  # BEIR SciFact: BM25 / dense / hybrid, each +/- rerank, through the services
    "reading": "reading",  # SQuAD open-domain QA over all 2,067 paragraphs (held-out questions)
    "counterfactual": "counterfactual",  # entity-swapped passages: memorization ratio
    "editing": "editing",  # edit ack -> visible; cache hit rate with and without QA memory
    "speed": "speed",  # embed / rerank throughput vs PyTorch, matmul peak share
    "latency": "latency",  # ask p50/p99 cold and cached on the 18F handbook; services vs one process; ingest
    "scale": "scale",  # query latency at 10k / 100k / 1M synthetic chunks
    "peer": "peer",  # the same questions through a Haystack pipeline
    "wiki-qa": "wiki_qa",  # paraphrased employee questions over real handbooks (dev split unless told)
    "load": "load",  # 32 clients asking and editing for 2 min: errors by code, stale, unreranked, p50/p99
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small samples of every suite (a few minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated suites ({', '.join(SUITES)})")
    parser.add_argument("--skip", default="", help="comma-separated suites to leave out")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where results go")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="../shared/data")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument(
        "--wiki-qa-split",
        choices=("dev", "test"),
        default=None,
        help="wiki-qa: the question split (default dev, or $WIKIMEM_BENCH_WIKIQA_SPLIT); every test run is logged",
    )
    args = parser.parse_args(argv)
    if args.wiki_qa_split:
        os.environ["WIKIMEM_BENCH_WIKIQA_SPLIT"] = args.wiki_qa_split
    if args.list:
        for name in SUITES:
            print(name)
        return 0
    names = [n for n in (args.only.split(",") if args.only else SUITES) if n]
    skip = {n for n in args.skip.split(",") if n}
    unknown = [n for n in [*names, *skip] if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, out=out, data=args.data)
    results: dict[str, SuiteResult | str] = {}
    durations: dict[str, float] = {}
    failed = False
    for name in names:
        if name in skip:
            continue
        module = importlib.import_module(f"bench.suites.{SUITES[name]}")
        print(f"== {name}: {module.TITLE}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            results[name] = module.run(ctx)
        except Skip as exc:
            results[name] = f"skipped: {exc}"
            print(f"   skipped: {exc}", file=sys.stderr)
        except Exception as exc:  # one broken suite must not lose the others' figures
            failed = True
            results[name] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        durations[name] = time.perf_counter() - start
        print(f"   {name} took {durations[name]:.0f} s", file=sys.stderr, flush=True)
        write_report(out, results, durations, machine(), quick=args.quick)  # after each suite: partial runs count
    report = out / "report.md"
    print(f"report: {report}\nresults: {out / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
