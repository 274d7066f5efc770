"""Memory.Search latency as the memory grows: 10k, 100k and 1M synthetic chunks.

Embedding a million texts is out of reach on this machine, so each size is written straight into a fresh memory
data directory with the store backend API (`EdgeVectorStore.upsert` + `SqliteRegistry.put`, exactly the files the
memory service opens): 384-d unit vectors drawn around 2,000 random topic centres, payloads shaped like real chunks
(the text, title and heading of a real 18F handbook chunk, ~7 chunks per document), spread over four collections
with a quarter of the documents restricted to one of four groups. Then the real memory service is started on that
directory (`python -m wikimem_memory`, its own process) and queried through gRPC with a collection filter and the
caller's groups, as the orchestrator queries it (top 20). Query vectors are stored vectors plus noise; recall@10
is checked against exact filtered search (numpy) on the same points.

`optimize()` (Qdrant Edge's HNSW build + segment merge) is run where it fits the time budget; at 1M it does not on
2 cores (the build rate measured at the smaller sizes says how long it would take), so 1M is searched as written
(plain segments, exact search inside the filter).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import ROOT, Context, Skip, SuiteResult, latency_summary, percentile, progress
from bench.service import load_average, load_note, service_process

TITLE = "Memory.Search latency at 10k / 100k / 1M synthetic chunks (through the memory service)"

DIM = 384
CHUNKS_PER_DOC = 7
TOPICS = 2000
BLOCK = 2000  # points per upsert call / per generated block
COLLECTIONS = (("handbook", 0.5), ("eng", 0.25), ("sales", 0.15), ("legal", 0.10))
GROUPS = ("eng", "hr", "legal", "exec")
RESTRICTED_SHARE = 0.25
TOP_K = 20


# ----------------------------------------------------------------------------------------- synthetic data


def _topics(seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def block_vectors(seed: int, lo: int, hi: int, topics: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Points lo..hi: a topic centre plus noise (cosine ~0.85 to their centre), unit length; deterministic."""
    rng = np.random.default_rng([seed, lo])
    which = rng.integers(0, TOPICS, hi - lo)
    v = topics[which] + 0.6 * rng.standard_normal((hi - lo, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def doc_of(i: int) -> int:
    return i // CHUNKS_PER_DOC


def _collection_index(docs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Deterministic weighted choice of a collection per document (a hash of its number)."""
    u = ((docs.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    edges = np.cumsum([w for _, w in COLLECTIONS])
    return np.minimum(np.searchsorted(edges, u, side="right"), len(COLLECTIONS) - 1).astype(np.int64)


def _acl_index(docs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """-1 for a public document, else the index of the one group that may read it."""
    u = ((docs.astype(np.int64) * 40503 + 12345) % 65536) / 65536
    return np.where(u < RESTRICTED_SHARE, docs % len(GROUPS), -1).astype(np.int64)


def doc_collection(doc: int) -> str:
    return COLLECTIONS[int(_collection_index(np.array([doc]))[0])][0]


def doc_acl(doc: int) -> list[str]:
    g = int(_acl_index(np.array([doc]))[0])
    return [GROUPS[g]] if g >= 0 else []


def _sparse_vectors(chunks: list[tuple[str, str, str]]) -> list[Any]:
    """The BM25 vector each real chunk gets in the memory (as its upsert computes it)."""
    from wikimem_memory import lexical
    from wikimem_memory.chunking import embedding_text

    return [lexical.document_vector(embedding_text(title, heading, text)) for title, heading, text in chunks]


def _real_chunks(data: Path) -> list[tuple[str, str, str]]:
    """(title, heading, text) of the real handbook chunks, for realistic payloads."""
    from wikimem_memory.chunking import chunk_document

    root = data / "handbook-18f" / "pages"
    out: list[tuple[str, str, str]] = []
    for path in sorted(root.rglob("*.md"))[:80]:
        doc = chunk_document(path.read_text(encoding="utf-8"), doc_id=path.name, source="", title="")
        out += [(doc.title, c.heading, c.text) for c in doc.chunks]
    return out or [("Title", "Heading", "text " * 150)]


def optimize(directory: Path) -> dict[str, Any]:
    """Qdrant Edge's optimize() (HNSW build, segment merge) on a written store. Runs in a child process."""
    from wikimem_memory.store.edge import EdgeVectorStore

    store = EdgeVectorStore(directory / "shard", DIM)
    t0 = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t0
    store.close()
    return {"optimize_s": optimize_s, "peak_rss_mb": _rss_mb()}


def populate(directory: Path, n: int, seed: int, data: Path) -> dict[str, Any]:
    """Write n chunks (and their documents) into `directory` (= $WIKIMEM_DATA/memory). Runs in a child process."""
    from wikimem_memory.store.base import ChunkPoint, DocRecord, chunk_point_id, read_list
    from wikimem_memory.store.edge import EdgeVectorStore
    from wikimem_memory.store.sqlite_registry import SqliteRegistry

    chunks = _real_chunks(data)
    sparse = _sparse_vectors(chunks)
    topics = _topics(seed)
    store = EdgeVectorStore(directory / "shard", DIM)
    registry = SqliteRegistry(directory / "registry.sqlite3")
    t0 = time.perf_counter()
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        vectors = block_vectors(seed, lo, hi, topics)
        points = []
        for i in range(lo, hi):
            doc, ordinal = doc_of(i), i % CHUNKS_PER_DOC
            collection, acl = doc_collection(doc), doc_acl(doc)
            title, heading, text = chunks[i % len(chunks)]
            doc_id = f"synthetic/{doc:07d}.md"
            points.append(
                ChunkPoint(
                    id=chunk_point_id(collection, doc_id, 1, ordinal),
                    vector=vectors[i - lo],
                    payload={
                        "chunk_id": f"{doc_id}@1#{ordinal}",
                        "doc_id": doc_id,
                        "revision": 1,
                        "collection": collection,
                        "ordinal": ordinal,
                        "start": ordinal * 1000,
                        "end": ordinal * 1000 + len(text),
                        "text": text,
                        "heading": heading,
                        "title": title,
                        "source": doc_id,
                        "acl": acl,
                        "read": read_list(acl),
                    },
                    sparse=sparse[i % len(chunks)],
                )
            )
        store.upsert(points)
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for doc in range((n + CHUNKS_PER_DOC - 1) // CHUNKS_PER_DOC):
        count = min(CHUNKS_PER_DOC, n - doc * CHUNKS_PER_DOC)
        record = DocRecord(
            collection=doc_collection(doc),
            doc_id=f"synthetic/{doc:07d}.md",
            revision=1,
            title="synthetic",
            acl=doc_acl(doc),
            chunk_count=count,
            char_count=count * 1000,
            updated_at=time.time(),
        )
        registry.put(record, "")
    registry_s = time.perf_counter() - t0
    store.close()
    registry.close()
    return {"insert_s": insert_s, "registry_s": registry_s, "peak_rss_mb": _rss_mb()}


def _rss_mb(pid: int | None = None, key: str = "VmHWM") -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    vector: npt.NDArray[np.float32]
    collection: str
    groups: tuple[str, ...]


def make_queries(n_points: int, count: int, seed: int) -> list[Query]:
    """Each query: a fresh point near a random topic centre (like the stored ones) plus noise, filtered to the
    collection of a random stored point, with one or two caller groups."""
    rng = np.random.default_rng([seed, 7])
    topics = _topics(seed)
    out = []
    for _ in range(count):
        i = int(rng.integers(0, n_points))
        base = block_vectors(seed + 1, i, i + 1, topics)[0]
        v = base + 0.5 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
        groups = tuple(sorted({str(g) for g in rng.choice(GROUPS, size=int(rng.integers(1, 3)), replace=False)}))
        out.append(Query((v / np.linalg.norm(v)).astype(np.float32), doc_collection(doc_of(i)), groups))
    return out


def exact_top(n_points: int, seed: int, queries: list[Query], k: int) -> list[set[int]]:
    """Exact filtered top-k point indices per query (cosine = dot on unit vectors)."""
    topics = _topics(seed)
    best: list[list[tuple[float, int]]] = [[] for _ in queries]
    qmat = np.stack([q.vector for q in queries])
    step = 50_000
    for lo in range(0, n_points, step):
        hi = min(n_points, lo + step)
        vec = np.concatenate([block_vectors(seed, b, min(hi, b + BLOCK), topics) for b in range(lo, hi, BLOCK)])
        scores = qmat @ vec.T
        docs = np.arange(lo, hi) // CHUNKS_PER_DOC
        colls = _collection_index(docs)
        acls = _acl_index(docs)
        for qi, q in enumerate(queries):
            wanted = [i for i, (name, _) in enumerate(COLLECTIONS) if name == q.collection]
            groups = [GROUPS.index(g) for g in q.groups]
            mask = np.isin(colls, wanted) & ((acls < 0) | np.isin(acls, groups))
            s = np.where(mask, scores[qi], -np.inf)
            top = np.argpartition(-s, k)[:k]
            best[qi] += [(float(s[j]), lo + int(j)) for j in top if np.isfinite(s[j])]
            best[qi] = sorted(best[qi], reverse=True)[:k]
    return [{i for _, i in b} for b in best]


def point_index(doc_id: str, ordinal: int) -> int:
    return int(doc_id.removeprefix("synthetic/").removesuffix(".md")) * CHUNKS_PER_DOC + ordinal


def search_all(
    address: str, queries: list[Query], warmup: int, hybrid: bool = False
) -> tuple[list[float], list[list[int]], list[float]]:
    """Client wall ms, hit point indices, server search stages' ms, per query (after `warmup` unmeasured ones).
    Dense retrieval, or hybrid (dense + BM25 fused, the orchestrator's default) with a handbook question's text."""
    import grpc

    from bench.handbook import QUESTIONS
    from wikimem_common import vectors
    from wikimem_contract.v1 import common_pb2, memory_pb2, memory_pb2_grpc

    ms: list[float] = []
    hits: list[list[int]] = []
    server_ms: list[float] = []
    with grpc.insecure_channel(address) as channel:
        stub = memory_pb2_grpc.MemoryStub(channel)
        mode = common_pb2.RETRIEVAL_MODE_HYBRID if hybrid else common_pb2.RETRIEVAL_MODE_DENSE
        label = "Memory.Search (hybrid)" if hybrid else "Memory.Search (dense)"
        for n, q in enumerate(progress([*queries[:warmup], *queries], label)):
            request = memory_pb2.SearchRequest(
                query=vectors.to_proto(q.vector[None, :]),
                top_k=TOP_K,
                filter=common_pb2.Filter(collection=q.collection, groups=list(q.groups)),
                query_text=QUESTIONS[n % len(QUESTIONS)].question if hybrid else "",
                mode=mode,
            )
            t0 = time.perf_counter()
            response = stub.Search(request, timeout=120)
            elapsed = (time.perf_counter() - t0) * 1000.0
            if n < warmup:
                continue
            ms.append(elapsed)
            hits.append([point_index(h.chunk.doc_id, h.chunk.ordinal) for h in response.hits])
            server_ms.append(sum(v for k, v in response.timings_ms.items() if k != "total"))
    return ms, hits, server_ms


# ----------------------------------------------------------------------------------------- the suite


@dataclass
class Plan:
    sizes: tuple[int, ...]
    optimize_up_to: int
    queries: int
    budget_s: float


def run(ctx: Context) -> SuiteResult:
    load_start = load_average()
    ctx.dataset("handbook-18f")
    plan = Plan((10_000,), 0, 40, 60) if ctx.quick else Plan((10_000, 100_000, 1_000_000), 100_000, 150, 900)
    free = shutil.disk_usage(ctx.work).free
    if not ctx.quick and free < 12 * 2**30:
        raise Skip(f"{free / 2**30:.1f} GiB free under {ctx.work}; the 1M-chunk store needs ~8 GiB")
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    rows: list[tuple[int, bool, str]] = []  # (chunks, optimized, table row)
    notes: list[str] = []
    curve: list[tuple[int, str, float, float]] = []
    build_rate: float | None = None  # points per second of optimize()
    insert_rate: float | None = None  # points per second of populate (vectors + registry)

    def measure(root: Path, n: int, built: dict[str, Any], optimize_s: float | None) -> None:
        label = f"{n // 1000}k" + ("_hnsw" if optimize_s is not None else "")
        queries = make_queries(n, plan.queries, ctx.seed)
        disk = _dir_bytes(root)
        env = {
            "WIKIMEM_DATA": str(root),
            "WIKIMEM_EMBEDDER_ADDR": "127.0.0.1:9",  # never called: searches bring their vectors
            "WIKIMEM_OPTIMIZE_MIN_CHANGES": str(10**9),
            "WIKIMEM_LOG_LEVEL": "WARNING",
        }
        t0 = time.perf_counter()
        with service_process("memory", ctx.scratch(f"scale-logs-{label}"), env, timeout=900) as memory:
            start_s = time.perf_counter() - t0
            ms, hits, server_ms = search_all(memory.address, queries, warmup=5)
            hybrid_ms, _, _ = search_all(memory.address, queries[: max(10, len(queries) // 3)], 3, hybrid=True)
            rss = memory.rss_mb()
        truth = exact_top(n, ctx.seed, queries, 10)
        recall = float(np.mean([len(set(h[:10]) & t) / max(1, len(t)) for h, t in zip(hits, truth, strict=True)]))
        summary = latency_summary(ms, f"search_{label}")
        figures.update(summary)
        figures[f"search_{label}_server_p50_ms"] = round(percentile(server_ms, 50), 2)
        figures[f"hybrid_{label}_p50_ms"] = round(percentile(hybrid_ms, 50), 2)
        figures[f"hybrid_{label}_p99_ms"] = round(percentile(hybrid_ms, 99), 2)
        figures[f"recall10_{label}"] = round(recall, 3)
        figures[f"service_start_{label}_s"] = round(start_s, 1)
        figures[f"service_rss_{label}_mb"] = rss
        figures[f"disk_{label}_mb"] = round(disk / 2**20, 0)
        if optimize_s is not None:
            figures[f"optimize_{label}_s"] = round(optimize_s, 1)
        else:
            figures[f"insert_{label}_points_per_s"] = round(n / built["insert_s"], 0)
            figures[f"registry_{label}_docs_per_s"] = round(n / CHUNKS_PER_DOC / built["registry_s"], 0)
        kind = "HNSW (optimized)" if optimize_s is not None else "as written (plain segments)"
        curve.append((n, kind, summary[f"search_{label}_p50_ms"], summary[f"search_{label}_p99_ms"]))
        rows.append(
            (
                n,
                optimize_s is not None,
                f"| {n:,} | {'HNSW' if optimize_s is not None else 'plain'} | "
                f"{summary[f'search_{label}_p50_ms']:.1f} | "
                f"{summary[f'search_{label}_p99_ms']:.1f} | {percentile(server_ms, 50):.1f} | {recall:.3f} | "
                f"{percentile(hybrid_ms, 50):.1f} / {percentile(hybrid_ms, 99):.1f} | "
                f"{n / built['insert_s']:,.0f} | {f'{optimize_s:.0f} s' if optimize_s is not None else '–'} | "
                f"{start_s:.1f} | {rss} | {disk / 2**20:,.0f} |",
            )
        )

    # First every size as written (the growth curve), then HNSW on the kept smaller stores while time is left.
    kept: list[tuple[Path, int, dict[str, Any]]] = []
    for n in plan.sizes:
        left = plan.budget_s - (time.perf_counter() - started)
        if insert_rate and n / insert_rate * 1.3 > left:  # predicted from the previous size
            notes.append(
                f"{n:,} chunks not measured: at the insert rate measured here ({insert_rate:,.0f} points/s) writing "
                f"them needs ~{n / insert_rate / 60:.0f} min; {max(0.0, left) / 60:.0f} min of the suite's "
                f"{plan.budget_s / 60:.0f}-min budget were left"
            )
            break
        root = ctx.scratch(f"scale-{n}")
        shutil.rmtree(root, ignore_errors=True)
        (root / "memory").mkdir(parents=True)
        print(f"   writing {n:,} chunks ...", file=sys.stderr, flush=True)
        built = _child("populate", str(root / "memory"), str(n), str(ctx.seed), str(ctx.data))
        insert_rate = n / (built["insert_s"] + built["registry_s"])
        measure(root, n, built, None)
        if n <= plan.optimize_up_to:
            kept.append((root, n, built))
        else:
            shutil.rmtree(root, ignore_errors=True)
    for root, n, built in kept:
        left = plan.budget_s - (time.perf_counter() - started)
        if build_rate and n / build_rate * 1.5 > left:
            notes.append(
                f"{n:,} chunks: HNSW build (optimize) not run; at the build rate measured here "
                f"({build_rate:,.0f} points/s) it needs ~{n / build_rate / 60:.0f} min, {max(0.0, left) / 60:.0f} min "
                "were left"
            )
        else:
            print(f"   optimize (HNSW) on {n:,} chunks ...", file=sys.stderr, flush=True)
            optimize_s = float(_child("optimize", str(root / "memory"))["optimize_s"])
            if optimize_s >= 1.0:  # below Qdrant's indexing threshold optimize() builds nothing
                build_rate = n / optimize_s
            measure(root, n, built, optimize_s)
        shutil.rmtree(root, ignore_errors=True)
    if build_rate and plan.sizes[-1] > plan.optimize_up_to:
        n = plan.sizes[-1]
        notes.append(
            f"HNSW at {n:,} chunks not built: at the build rate measured here ({build_rate:,.0f} points/s, which "
            f"only falls as the graph grows) it would take ~{n / build_rate / 60:.0f} min on this machine"
        )
    md = [
        "Synthetic chunks written with the store API, then searched through the real memory service (gRPC, top "
        f"{TOP_K}, collection filter + caller groups, revision post-filter). Latency at the client; "
        "'server' = the memory's own stages (dense). recall@10 of dense search against exact filtered search. "
        "Hybrid = dense + BM25 fused (the default retrieval mode), the query text a handbook question. "
        "'HNSW' rows: after Qdrant Edge's optimize(), which indexes only segments above its indexing threshold "
        "(10 MB of vectors, ~6.5k points per segment), so small stores stay exact.",
        "",
        "| chunks | index | dense p50 ms | dense p99 ms | server p50 ms | recall@10 | hybrid p50 / p99 ms | "
        "insert points/s | optimize | service start s | service RSS MB | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[row for _, _, row in sorted(rows)],
    ]
    plots = []
    plot = _plot(ctx, curve)
    if plot:
        plots.append(plot)
    notes.append(load_note(load_start))
    return SuiteResult(
        figures=figures,
        markdown="\n".join(md),
        plots=plots,
        notes=notes,
    )


def _child(*args: str) -> dict[str, Any]:
    """populate() / optimize() in a child process (its peak memory is its own; a crash cannot take the suite down)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.suites.scale", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"scale child {args[0]} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _plot(ctx: Context, curve: list[tuple[int, str, float, float]]) -> str | None:
    if not curve:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for kind in sorted({c[1] for c in curve}):
        pts = sorted((n, p50, p99) for n, k, p50, p99 in curve if k == kind)
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=f"{kind} p50")
        ax.plot(xs, [p[2] for p in pts], marker="x", linestyle="--", label=f"{kind} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in memory")
    ax.set_ylabel("Memory.Search ms (client)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    name = "scale_search_latency.png"
    fig.savefig(ctx.out / name, dpi=110)
    plt.close(fig)
    return name


if __name__ == "__main__":  # child process of _child
    if sys.argv[1] == "optimize":
        print(json.dumps(optimize(Path(sys.argv[2]))))
    else:
        _, target, count, seed_s, data_s = sys.argv[1:6]
        print(json.dumps(populate(Path(target), int(count), int(seed_s), Path(data_s))))
