"""Editing: how fast an acknowledged edit is visible, and what edits cost the caches (with and without QA memory).

(a) Edit ack -> visible. The real edits of the 18F handbook (../shared/data/handbook-18f/edit_history.jsonl, oldest
first; quick: the first 10, full: all 300) are replayed through the running services after the pages they touch
are ingested at their text before the first replayed edit. Per edit: the PutDocument round trip (send -> ack),
then, from the ack, the first memory Search (for the edit's changed line, vector embedded before the write, this
page only) that returns the new revision and no chunk of an older one; and the first Ask (the changed line as the
question, retrieved passages included) whose passages of that page are all at the new revision. The Search
figure is the visibility latency (`edit_visible_p99_ms`); the Ask figure includes answering (Asks here retrieve
RETRIEVE_K chunks and read READ_K: these figures are about edits and caches, not about answering).

(b) Hit rates. A repeated-question workload over examples/wiki and the 18F pages of bench/data/qa_paraphrases.json:
questions drawn Zipf-like from the hand-written question groups (half the draws the group's first wording, a quarter
the same question worded slightly differently — "So, ...", no question mark, lower case — and a quarter a
hand-written paraphrase), and — in the "edits" runs — one edit (a note appended to a random page of the corpus)
after every EDIT_EVERY questions. The same draw is run four times, each in its own collection so no cache is shared:
answer cache only (`no_qa_memory`) and with QA memory, each without and with edits. Reported per run: hit rate
(exact, QA memory, total), mean latency of hits and misses, QA-memory reuses of another group's answer (false
reuse), and answers citing a revision that had been replaced before the question was sent (stale; must be 0).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Context,
    SuiteResult,
    Target,
    latency_summary,
    progress,
    running_system,
)

TITLE = "Editing: edit ack -> visible latency; answer cache and QA memory hit rates under edits"

PARAPHRASES = ROOT / "bench" / "data" / "qa_paraphrases.json"
EXAMPLES = ROOT / "examples" / "wiki"
#: One edit after every this many questions in the "edits" runs.
EDIT_EVERY = 5
ZIPF_S = 1.1
VISIBLE_TIMEOUT_S = 2.0
QUICK_EDITS = 10
QUICK_QUESTIONS = 24
FULL_QUESTIONS = 300
#: Asks retrieve 10 chunks and read 2 (a miss costs ~1/2 of the default 20 / 5): the figures here are about what
#: the caches and edits do, not about answering; the same options in every run.
RETRIEVE_K, READ_K = 10, 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(ctx: Context) -> Iterator[str | None]:
    """A private redis-server (no persistence) if one is installed, else None (in-process cache)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    import redis

    port = _free_port()
    workdir = ctx.scratch("editing-redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------- (a) visibility


def load_edits(path: Path) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.reverse()  # the file lists the newest first
    return rows


def probe_line(before: str, after: str) -> str:
    """The longest body line of `after` that `before` does not have (headings last), else the longest line."""
    from wikimem_memory.chunking import chunk_document

    body = after[chunk_document(after).body_start :]
    old = {ln.strip() for ln in before.splitlines()}
    lines = [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 3]
    new = [ln for ln in lines if ln not in old]
    for pool in ([ln for ln in new if not ln.startswith("#")], new, lines):
        if pool:
            return max(pool, key=len)[:1000]
    return (body.strip() or after.strip())[:1000]


def edit_visibility(ctx: Context, address: str, memory_addr: str, embedder_addr: str, history: Path) -> dict[str, Any]:
    import grpc

    from wikimem.client import WikimemClient
    from wikimem_contract.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, memory_pb2, memory_pb2_grpc

    edits = load_edits(history)[: QUICK_EDITS if ctx.quick else None]
    collection = "edits"
    first: dict[str, str] = {}
    for e in edits:
        first.setdefault(e["path"].removeprefix("pages/"), e["before"])
    memory_channel = grpc.insecure_channel(memory_addr)
    embedder_channel = grpc.insecure_channel(embedder_addr)
    memory = memory_pb2_grpc.MemoryStub(memory_channel)
    embedder = embedder_pb2_grpc.EmbedderStub(embedder_channel)
    put_ms: list[float] = []
    search_ms: list[float] = []
    ask_ms: list[float] = []
    not_visible = stale_asks = deletes = 0
    with WikimemClient(address, timeout=300) as client:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(
                progress(
                    pool.map(
                        lambda kv: client.put_document(kv[0], kv[1], source=f"pages/{kv[0]}", collection=collection),
                        [(d, t) for d, t in first.items() if t.strip()],
                    ),
                    "editing: ingest the edited pages",
                    total=len(first),
                )
            )
        for e in progress(edits, "editing: replay edits"):
            doc_id, after = e["path"].removeprefix("pages/"), e.get("after") or ""
            if not after.strip():
                with contextlib.suppress(Exception):
                    client.delete_document(doc_id, collection=collection)
                deletes += 1
                continue
            probe = probe_line(e["before"], after)
            vector = embedder.Embed(embedder_pb2.EmbedRequest(texts=[probe]), timeout=60).vectors
            request = memory_pb2.SearchRequest(
                query=vector,
                top_k=10,
                filter=common_pb2.Filter(collection=collection, doc_ids=[doc_id]),
                query_text=probe,
            )
            sent = time.perf_counter()
            result = client.put_document(doc_id, after, source=e["path"], collection=collection)
            acked = time.perf_counter()
            put_ms.append((acked - sent) * 1000)
            revision = result.document.revision
            visible = False
            while time.perf_counter() - acked < VISIBLE_TIMEOUT_S:
                hits = memory.Search(request, timeout=30).hits
                if hits and all(h.chunk.revision == revision for h in hits):
                    search_ms.append((time.perf_counter() - acked) * 1000)
                    visible = True
                    break
            not_visible += not visible
            asked = time.perf_counter()
            answer = client.ask(probe, collection=collection, include_passages=True, retrieve_k=RETRIEVE_K,
                                read_k=READ_K)
            ask_ms.append((time.perf_counter() - asked) * 1000)
            mine = [p for p in answer.passages if p.doc_id == doc_id] + [
                c for c in answer.citations if c.doc_id == doc_id
            ]
            stale_asks += any(p.revision != revision for p in mine)
    memory_channel.close()
    embedder_channel.close()
    return {
        "edits": len(edits),
        "edits_deleting": deletes,
        "pages": len(first),
        **latency_summary(put_ms, "edit_ack"),
        **latency_summary(search_ms, "edit_visible"),
        **latency_summary(ask_ms, "edit_first_ask"),
        "edit_not_visible": not_visible,
        "edit_stale_asks": stale_asks,
    }


# --------------------------------------------------------------------------------------------- (b) hit rates


@dataclass
class Group:
    page: str  # doc id
    questions: list[str]


def corpus_and_groups(ctx: Context) -> tuple[dict[str, str], list[Group]]:
    data = json.loads(PARAPHRASES.read_text(encoding="utf-8"))
    pages = {f"examples/wiki/{p.name}": p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.md"))}
    handbook = ctx.dataset("handbook-18f") / "pages"
    groups: list[Group] = []
    for page in data["pages"]:
        doc_id = page["page"]
        if doc_id not in pages:
            pages[doc_id] = (handbook / doc_id).read_text(encoding="utf-8")
        groups.extend(Group(doc_id, list(g)) for g in page["groups"])
    return pages, groups


def workload(groups: list[Group], n: int, seed: int) -> list[tuple[int, str]]:
    """(group index, question) draws: groups Zipf-like by a random rank; half the draws the group's first
    question, a quarter a surface variant of it, a quarter a paraphrase."""
    rnd = random.Random(seed)
    ranks = list(range(len(groups)))
    rnd.shuffle(ranks)
    weights = [1.0 / (rank + 1) ** ZIPF_S for rank in ranks]
    draws = []
    for g in rnd.choices(range(len(groups)), weights=weights, k=n):
        questions = groups[g].questions
        roll = rnd.random()
        if roll < 0.5 or (roll >= 0.75 and len(questions) == 1):
            question = questions[0]
        elif roll < 0.75:
            question = surface_variant(questions[0], rnd)
        else:
            question = rnd.choice(questions[1:])
        draws.append((g, question))
    return draws


def surface_variant(question: str, rnd: random.Random) -> str:
    """The same question as a user might retype it."""
    kind = rnd.randrange(3)
    if kind == 0:
        return "So, " + question[0].lower() + question[1:]
    if kind == 1:
        return question.rstrip("?").rstrip()
    return question.lower()


@dataclass
class Run:
    name: str
    qa_memory: bool
    edits: bool
    sources: list[str] = field(default_factory=list)
    hit_ms: list[float] = field(default_factory=list)
    miss_ms: list[float] = field(default_factory=list)
    qa_ms: list[float] = field(default_factory=list)
    false_reuse: int = 0
    stale: int = 0
    edits_done: int = 0
    errors: int = 0

    def figures(self, key: str) -> dict[str, Any]:
        n = max(1, len(self.sources))
        exact = self.sources.count("exact")
        qa = self.sources.count("qa_memory")
        return {
            f"{key}_questions": len(self.sources),
            f"{key}_hit_rate": round((exact + qa) / n, 3),
            f"{key}_exact_hit_rate": round(exact / n, 3),
            f"{key}_qa_hit_rate": round(qa / n, 3),
            f"{key}_hit_mean_ms": round(statistics.fmean(self.hit_ms), 2) if self.hit_ms else None,
            f"{key}_qa_hit_mean_ms": round(statistics.fmean(self.qa_ms), 2) if self.qa_ms else None,
            f"{key}_miss_mean_ms": round(statistics.fmean(self.miss_ms), 1) if self.miss_ms else None,
            f"{key}_qa_false_reuse": self.false_reuse,
            f"{key}_stale": self.stale,
            f"{key}_edits": self.edits_done,
            f"{key}_errors": self.errors,
        }


def run_workload(
    address: str,
    run: Run,
    collection: str,
    pages: dict[str, str],
    groups: list[Group],
    draws: list[tuple[int, str]],
    seed: int,
) -> None:
    from wikimem.client import WikimemClient

    rnd = random.Random(seed + 1)  # the same edit schedule in every run
    texts = dict(pages)
    with WikimemClient(address, timeout=300) as client:
        current: dict[str, tuple[int, float]] = {}  # doc -> (revision, when it was acknowledged)
        replaced_at: dict[tuple[str, int], float] = {}
        with ThreadPoolExecutor(max_workers=4) as pool:
            for doc_id, result in zip(
                texts,
                pool.map(lambda kv: client.put_document(kv[0], kv[1], collection=collection), texts.items()),
                strict=True,
            ):
                current[doc_id] = (result.document.revision, time.perf_counter())
        question_of = {q: i for i, g in enumerate(groups) for q in g.questions}
        for i, (group, question) in enumerate(progress(draws, f"editing: {run.name}")):
            if run.edits and i and i % EDIT_EVERY == 0:
                doc_id = rnd.choice(sorted(texts))
                texts[doc_id] += f"\n\nThis page was reviewed (note {i}).\n"
                result = client.put_document(doc_id, texts[doc_id], collection=collection)
                acked = time.perf_counter()
                replaced_at[(doc_id, current[doc_id][0])] = acked
                current[doc_id] = (result.document.revision, acked)
                run.edits_done += 1
            sent = time.perf_counter()
            try:
                answer = client.ask(
                    question, collection=collection, no_qa_memory=not run.qa_memory, retrieve_k=RETRIEVE_K,
                    read_k=READ_K,
                )
            except Exception:  # counted; the figures say how many
                run.errors += 1
                continue
            ms = (time.perf_counter() - sent) * 1000
            run.sources.append(answer.cache_source)
            (run.hit_ms if answer.cached else run.miss_ms).append(ms)
            if answer.cache_source == "qa_memory":
                run.qa_ms.append(ms)
                if question_of.get(answer.qa_matched_question, group) != group:
                    run.false_reuse += 1
            for c in answer.citations:
                gone = replaced_at.get((c.doc_id, c.revision))
                if gone is not None and gone < sent:
                    run.stale += 1


def hit_rates(ctx: Context, address: str) -> tuple[dict[str, Any], list[Run]]:
    pages, groups = corpus_and_groups(ctx)
    n = QUICK_QUESTIONS if ctx.quick else FULL_QUESTIONS
    draws = workload(groups, n, ctx.seed)
    runs = [
        Run("answer cache, no edits", qa_memory=False, edits=False),
        Run("answer cache, edits", qa_memory=False, edits=True),
        Run("QA memory, no edits", qa_memory=True, edits=False),
        Run("QA memory, edits", qa_memory=True, edits=True),
    ]
    figures: dict[str, Any] = {
        "workload_questions": n,
        "workload_groups": len(groups),
        "workload_pages": len(pages),
        "edit_every": EDIT_EVERY,
    }
    for i, run in enumerate(runs):
        run_workload(address, run, f"hits-{i}", pages, groups, draws, ctx.seed)
        key = ("qa" if run.qa_memory else "exact") + ("_edits" if run.edits else "_static")
        figures.update(run.figures(key))
    figures["distinct_questions"] = len({q for _, q in draws})
    figures["repeat_share"] = round(1 - figures["distinct_questions"] / n, 3)
    return figures, runs


# ------------------------------------------------------------------------------------------------------ suite


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plot_hit_rates(ctx: Context, runs: list[Run]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra is not installed: no plot
        return None
    labels = [r.name for r in runs]
    n = [max(1, len(r.sources)) for r in runs]
    exact = [r.sources.count("exact") / k for r, k in zip(runs, n, strict=True)]
    qa = [r.sources.count("qa_memory") / k for r, k in zip(runs, n, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.barh(labels, exact, label="exact answer cache")
    ax.barh(labels, qa, left=exact, label="QA memory")
    ax.set_xlabel("share of questions answered from a cache")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    name = "editing_hit_rates.png"
    fig.savefig(ctx.out / name, dpi=110)
    plt.close(fig)
    return name


def run(ctx: Context) -> SuiteResult:
    history = ctx.dataset("handbook-18f") / "edit_history.jsonl"
    memory_addr, embedder_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    with redis_server(ctx) as redis_url:
        env = {"WIKIMEM_MEMORY_ADDR": memory_addr, "WIKIMEM_EMBEDDER_ADDR": embedder_addr, "REDIS_URL": redis_url or ""}
        with running_system(ctx, "editing", env=env) as address:
            visibility = edit_visibility(ctx, address, memory_addr, embedder_addr, history)
            hits, runs = hit_rates(ctx, address)
    figures: dict[str, Any] = {**visibility, **hits, "cache_backend": "redis" if redis_url else "in-process"}
    static, edited = figures["exact_static_hit_rate"], figures["exact_edits_hit_rate"]
    figures["generation_key_hit_rate_cost"] = round(static - edited, 3)
    figures["qa_memory_hit_rate_gain_with_edits"] = round(figures["qa_edits_hit_rate"] - edited, 3)

    v = visibility
    md = [
        f"Replayed {v['edits']} real edits ({v['edits_deleting']} deleting a page) of {v['pages']} 18F handbook pages "
        "through the running services (child processes, cache in "
        f"{figures['cache_backend']}).",
        "",
        "| latency (ms) | p50 | p90 | p99 | mean | n |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("edit_ack", "PutDocument send → ack"),
        ("edit_visible", "ack → first Search returning the new revision"),
        ("edit_first_ask", "ack → first Ask (its passages at the new revision)"),
    ):
        md.append(
            f"| {label} | {_fmt(v[f'{key}_p50_ms'])} | {_fmt(v[f'{key}_p90_ms'])} | {_fmt(v[f'{key}_p99_ms'])} | "
            f"{_fmt(v[f'{key}_mean_ms'])} | {v[f'{key}_n']} |"
        )
    md += [
        "",
        f"Edits not visible within {VISIBLE_TIMEOUT_S:.0f} s: {v['edit_not_visible']}; first Asks with a passage or "
        f"citation of the edited page at an older revision: {v['edit_stale_asks']}.",
        "",
        f"Repeated-question workload: {figures['workload_questions']} questions drawn Zipf-like (s={ZIPF_S}) from "
        f"{figures['workload_groups']} question groups over {figures['workload_pages']} pages (1/2 of the draws a "
        "group's first question, 1/4 that question retyped (\"So, ...\", no question mark, lower case), 1/4 a "
        f'paraphrase; {figures["distinct_questions"]} distinct questions); "edits": one page edited after every '
        f"{EDIT_EVERY} questions. Each run in its own collection; Asks retrieve {RETRIEVE_K} chunks and read {READ_K}.",
        "",
        "| run | hit rate | exact | QA memory | hit mean ms | QA hit mean ms | miss mean ms | false reuse | stale "
        "| edits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        key = ("qa" if r.qa_memory else "exact") + ("_edits" if r.edits else "_static")
        f = r.figures(key)
        md.append(
            f"| {r.name} | {f[f'{key}_hit_rate']:.3f} | {f[f'{key}_exact_hit_rate']:.3f} | "
            f"{f[f'{key}_qa_hit_rate']:.3f} | {_fmt(f[f'{key}_hit_mean_ms'], 2)} | "
            f"{_fmt(f[f'{key}_qa_hit_mean_ms'], 2)} | {_fmt(f[f'{key}_miss_mean_ms'])} | {r.false_reuse} | {r.stale} "
            f"| {r.edits_done} |"
        )
    md += [
        "",
        "Cost of generation-keyed answers: the answer cache's hit rate drops by "
        f"{figures['generation_key_hit_rate_cost']:.3f} with edits; QA memory (entries verified by re-running "
        f"retrieval, not keyed on the generation) wins back {figures['qa_memory_hit_rate_gain_with_edits']:.3f}.",
    ]
    notes = []
    if ctx.quick:
        notes.append(
            f"quick: {QUICK_EDITS} edits and {QUICK_QUESTIONS} questions per run; the full run replays all 300 edits "
            f"and asks {FULL_QUESTIONS} questions per run"
        )
    plot = plot_hit_rates(ctx, runs)
    result = SuiteResult(
        figures=figures,
        markdown="\n".join(md),
        plots=[plot] if plot else [],
        targets=[Target("edit_visible_p99_ms", "<=", 50.0)],
        notes=notes,
    )
    return result
