"""Ask latency on the 18F handbook: ingest through Rag.PutDocument, then hand-written questions asked cold
(`no_cache`) and cached, with per-stage timings; and the same pipeline in one process (gRPC on loopback) and
composed directly without gRPC (bench/direct.py), on the same data directory, to show what the split costs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import handbook
from bench.common import Context, SuiteResult, Target, latency_summary, percentile, progress, running_system
from bench.service import load_average, load_note

TITLE = "ask latency p50/p99 cold and cached on the 18F handbook; services vs one process; ingest"

STAGES = ("cache", "embed", "search", "rerank", "read")

#: (retrieve_k, read_k) besides the default (20, 5): how much of the cold latency is model work the product could
#: trade away, and what that costs in right answers on the same questions.
DEPTHS = ((10, 3), (10, 2), (5, 2), (5, 1))


@dataclass
class Asked:
    ms: float
    timings: dict[str, float]
    answer_ok: bool
    page_ok: bool
    cached: bool


@dataclass
class Run:
    name: str
    asked: list[Asked] = field(default_factory=list)

    @property
    def ms(self) -> list[float]:
        return [a.ms for a in self.asked]

    def stage_p50(self, stage: str) -> float:
        return round(percentile([a.timings.get(stage, 0.0) for a in self.asked], 50), 2)


AskFn = Callable[[str, bool], tuple[str, bool, str | None, dict[str, float]]]


def _client_ask(address: str, retrieve_k: int = 0, read_k: int = 0) -> tuple[AskFn, Callable[[], None]]:
    from wikimem.client import WikimemClient

    client = WikimemClient(address, timeout=120)

    def ask(question: str, no_cache: bool) -> tuple[str, bool, str | None, dict[str, float]]:
        a = client.ask(question, no_cache=no_cache, retrieve_k=retrieve_k, read_k=read_k)
        return a.answer, a.cached, (a.citations[0].doc_id if a.citations else None), dict(a.timings_ms)

    return ask, client.close


def _measure(name: str, ask: AskFn, questions: Sequence[handbook.HandbookQuestion], no_cache: bool, rounds: int) -> Run:
    run = Run(name)
    for q in progress([q for _ in range(rounds) for q in questions], f"ask ({name})"):
        t0 = time.perf_counter()
        answer, cached, cited, timings = ask(q.question, no_cache)
        ms = (time.perf_counter() - t0) * 1000.0
        answer_ok, page_ok = handbook.correct(q, answer, cited)
        run.asked.append(Asked(ms, timings, answer_ok, page_ok, cached))
    return run


def _row(run: Run, label: str) -> str:
    ms = run.ms
    stages = " | ".join(f"{run.stage_p50(s):.1f}" for s in STAGES)
    return (
        f"| {label} | {len(ms)} | {percentile(ms, 50):.1f} | {percentile(ms, 90):.1f} | {percentile(ms, 99):.1f} | "
        f"{stages} |"
    )


def _plot(ctx: Context, runs: list[tuple[str, Run]]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [label for label, _ in runs]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(runs) + 1.5))
    left = [0.0] * len(runs)
    for stage in (*STAGES, "other"):
        widths = []
        for _, run in runs:
            means = {s: statistics.fmean(a.timings.get(s, 0.0) for a in run.asked) for s in STAGES}
            widths.append(
                max(0.0, statistics.fmean(run.ms) - sum(means.values())) if stage == "other" else means[stage]
            )
        ax.barh(labels, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("mean ms per Ask by stage (other: gRPC hops, client, orchestration)")
    ax.invert_yaxis()
    ax.legend(ncol=6, fontsize=8, loc="lower right")
    fig.tight_layout()
    name = "latency_breakdown.png"
    fig.savefig(ctx.out / name, dpi=110)
    plt.close(fig)
    return name


def _wait_for_warming(ctx: Context, name: str, timeout_s: float = 900.0) -> float:
    """Seconds until the orchestrator has computed the sentence vectors of what was just written (its
    `wikimem_sentence_warm_pending` gauge is 0): cold Asks are measured on a wiki at rest, as in use."""
    import re
    import urllib.request

    port_file = ctx.scratch(f"{name}-logs") / "run" / "orchestrator.port.metrics"
    url = f"http://127.0.0.1:{port_file.read_text().strip().rsplit(':', 1)[-1]}/metrics"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        found = re.search(r"^wikimem_sentence_warm_pending\s+(\S+)$", text, re.M)
        if found is None or float(found.group(1)) <= 0:
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


def run(ctx: Context) -> SuiteResult:
    load_start = load_average()
    from bench.direct import DirectStack

    docs = handbook.pages(ctx)
    questions = handbook.questions(ctx)
    rounds_cached = 2 if ctx.quick else 3
    figures: dict[str, Any] = {}
    env = {"WIKIMEM_CACHE": "1", "REDIS_URL": ""}  # in-process answer cache (Redis is measured in the editing suite)
    with running_system(ctx, "latency", env={**env, "WIKIMEM_METRICS_ADDR": "127.0.0.1:0"}) as address:
        stats = handbook.ingest(address, docs)
        figures["ingest_warm_s"] = round(_wait_for_warming(ctx, "latency"), 1)
        ask, close = _client_ask(address)
        try:
            ask(questions[0].question, True)  # warm-up (first model runs allocate); not counted
            cold = _measure("services, cold", ask, questions, no_cache=True, rounds=1)
            _measure("fill cache", ask, questions, no_cache=False, rounds=1)
            cached = _measure("services, cached", ask, questions, no_cache=False, rounds=rounds_cached)
        finally:
            close()
        depth_runs: list[tuple[int, int, Run]] = []
        for retrieve_k, read_k in DEPTHS:
            ask, close = _client_ask(address, retrieve_k, read_k)
            try:
                run_ = _measure(f"cold, rerank {retrieve_k}, read {read_k}", ask, questions, no_cache=True, rounds=1)
                depth_runs.append((retrieve_k, read_k, run_))
            finally:
                close()
    figures.update(
        ingest_pages=stats.pages,
        ingest_chunks=stats.chunks,
        ingest_s=round(stats.seconds, 1),
        ingest_pages_per_s=round(stats.pages_per_s, 2),
        ingest_chunks_per_s=round(stats.chunks_per_s, 1),
    )
    figures.update(latency_summary(cold.ms, "ask_cold"))
    figures.update(latency_summary(cached.ms, "ask_cached"))
    figures["ask_cached_hit_share"] = round(sum(a.cached for a in cached.asked) / len(cached.asked), 3)
    for stage in STAGES:
        figures[f"ask_cold_{stage}_p50_ms"] = cold.stage_p50(stage)
    figures["answer_accuracy"] = round(sum(a.answer_ok for a in cold.asked) / len(cold.asked), 3)
    figures["page_accuracy"] = round(sum(a.page_ok for a in cold.asked) / len(cold.asked), 3)
    figures["questions"] = len(questions)
    for retrieve_k, read_k, run_ in depth_runs:
        key = f"ask_cold_k{retrieve_k}_r{read_k}"
        figures[f"{key}_p50_ms"] = round(percentile(run_.ms, 50), 1)
        figures[f"{key}_p99_ms"] = round(percentile(run_.ms, 99), 1)
        figures[f"{key}_answer_accuracy"] = round(sum(a.answer_ok for a in run_.asked) / len(run_.asked), 3)
        figures[f"{key}_page_accuracy"] = round(sum(a.page_ok for a in run_.asked) / len(run_.asked), 3)

    # The same pipeline, same data directory: five servers in one process (loopback gRPC), then no gRPC at all.
    # (Quick runs skip the loopback-gRPC variant: services vs direct already brackets the split's cost.)
    in_process: Run | None = None
    if not ctx.quick:
        with running_system(ctx, "latency", env=env, in_process=True) as address:
            ask, close = _client_ask(address)
            try:
                ask(questions[0].question, True)
                in_process = _measure("one process, gRPC", ask, questions, no_cache=True, rounds=1)
            finally:
                close()
    direct = DirectStack(ctx.scratch("latency-data"))
    direct.start()
    try:

        def ask_direct(question: str, no_cache: bool) -> tuple[str, bool, str | None, dict[str, float]]:
            r = direct.ask(question, no_cache)
            return r.answer, r.cached, (r.citations[0].doc_id if r.citations else None), dict(r.timings_ms)

        ask_direct(questions[0].question, True)
        direct_run = _measure("one process, no gRPC", ask_direct, questions, no_cache=True, rounds=1)
    finally:
        direct.stop()
    if in_process is not None:
        figures.update(latency_summary(in_process.ms, "ask_cold_in_process"))
    figures.update(latency_summary(direct_run.ms, "ask_cold_direct"))
    figures["split_overhead_p50_ms"] = round(percentile(cold.ms, 50) - percentile(direct_run.ms, 50), 2)
    figures["split_overhead_mean_ms"] = round(statistics.fmean(cold.ms) - statistics.fmean(direct_run.ms), 2)

    header = (
        "| run | asks | p50 ms | p90 ms | p99 ms | " + " | ".join(f"{s} p50" for s in STAGES) + " |\n"
        "|---|---|---|---|---|" + "---|" * len(STAGES)
    )
    rows = [
        _row(cold, "services (5 processes), cold (`no_cache`)"),
        _row(cached, "services, cached (answer cache hit)"),
        *([_row(in_process, "one process, loopback gRPC, cold")] if in_process is not None else []),
        _row(direct_run, "one process, no gRPC (direct calls), cold"),
    ]
    corpus = "all 246 pages" if not ctx.quick else f"quick subset: {stats.pages} pages"
    md = [
        f"18F handbook ({corpus}), {len(questions)} hand-written questions (bench/handbook.py), each asked once cold "
        f"and {rounds_cached}× cached; wall time at the client. Stage columns are the orchestrator's `timings_ms` "
        "(p50). Cold asks skip the answer cache; the query-embedding cache is still consulted (each question is "
        "new to it on its one cold ask).",
        "",
        header,
        *rows,
        "",
        f"Ingest through Rag.PutDocument (4 concurrent writers): {stats.pages} pages → {stats.chunks} chunks in "
        f"{stats.seconds:.1f} s = **{stats.pages_per_s:.2f} pages/s, {stats.chunks_per_s:.1f} chunks/s**.",
        "",
        "Less model work per question (AskOptions `retrieve_k`: chunks retrieved and reranked, `read_k`: passages "
        "read), services, cold, same questions:",
        "",
        "| rerank / read | p50 ms | p99 ms | rerank p50 | read p50 | answers right | cited page right |",
        "|---|---|---|---|---|---|---|",
        f"| 20 / 5 (default) | {percentile(cold.ms, 50):.0f} | {percentile(cold.ms, 99):.0f} | "
        f"{cold.stage_p50('rerank'):.0f} | {cold.stage_p50('read'):.0f} | {figures['answer_accuracy']:.0%} | "
        f"{figures['page_accuracy']:.0%} |",
        *(
            f"| {k} / {r} | {percentile(d.ms, 50):.0f} | {percentile(d.ms, 99):.0f} | {d.stage_p50('rerank'):.0f} | "
            f"{d.stage_p50('read'):.0f} | {figures[f'ask_cold_k{k}_r{r}_answer_accuracy']:.0%} | "
            f"{figures[f'ask_cold_k{k}_r{r}_page_accuracy']:.0%} |"
            for k, r, d in depth_runs
        ),
        "",
        f"Answers right {figures['answer_accuracy']:.0%}, cited page right {figures['page_accuracy']:.0%} (cold run). "
        f"Split overhead (services − direct, p50): {figures['split_overhead_p50_ms']:.1f} ms. The runs follow one "
        "another (one data directory, one memory at a time): on a machine shared with other jobs, compare them "
        "with the load note below in mind.",
    ]
    plots = []
    plot = _plot(
        ctx,
        [
            ("services, cold", cold),
            *([("one process, gRPC, cold", in_process)] if in_process is not None else []),
            ("one process, no gRPC, cold", direct_run),
            ("services, cached", cached),
        ],
    )
    if plot:
        plots.append(plot)
    return SuiteResult(
        figures=figures,
        markdown="\n".join(md),
        plots=plots,
        targets=[Target("ask_cold_p50_ms", "<=", 150), Target("ask_cached_p50_ms", "<=", 3)],
        notes=[load_note(load_start)],
    )
