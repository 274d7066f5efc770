"""Load: many concurrent clients asking and editing at once, against the services as `wikimem serve` runs them.

32 clients (quick: 8) for 2 minutes (quick: 20 s), each in a loop on its own channel: mostly Asks (the pager-code
questions of the fact pages below, the examples/wiki questions of bench/data/qa_paraphrases.json and the 18F
handbook questions of bench/handbook.py), sometimes an edit (EDIT_SHARE): a new pager code on a fact page, or a
review note appended to a wiki page. Redis caches (as in production) when redis-server is installed.

Counted: answers; errors by status code (the only one allowed is RESOURCE_EXHAUSTED, admission control's
documented "at capacity" answer; a client then waits the `retry-after-ms` hint, with jitter); stale answers: an
answer citing a revision of a page older than the newest revision acknowledged (PutDocument returned) before the
Ask was sent, or naming a pager code older than the newest one acknowledged before it; silent unreranked answers
(`reranked=false` without a warning saying so; must be 0: with WIKIMEM_ON_RERANK_OVERLOAD=fail there are none, with
degrade each carries its warning); p50/p99 latency of the answers and edits. The workload (`Workload`) is shared
with the fault tests (tests/faults), which run it while they kill services.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.common import ROOT, Context, SuiteResult, Target, latency_summary, running_system
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

TITLE = "Load: 32 concurrent clients asking and editing for 2 minutes (admission control, staleness, reranking)"

FULL_CLIENTS, FULL_SECONDS = 32, 120.0
QUICK_CLIENTS, QUICK_SECONDS = 8, 20.0
#: Share of a client's operations that are edits (the rest are Asks).
EDIT_SHARE = 0.15
#: Deadline a client gives each call.
CALL_TIMEOUT_S = 60.0
#: Longest a client waits after RESOURCE_EXHAUSTED (it waits the server's hint, with jitter, up to this).
MAX_BACKOFF_S = 5.0

EXAMPLES = ROOT / "examples" / "wiki"
PARAPHRASES = ROOT / "bench" / "data" / "qa_paraphrases.json"

#: Fact pages: one pager code each, changed by edits; the question asks for it.
FACT_SERVICES = ("billing", "payroll", "search", "checkout", "ledger", "mailer")
FACT_COLLECTION = ""


def fact_doc(name: str) -> str:
    return f"on-call/pager-{name}.md"


def fact_code(name: str) -> str:
    return f"{name[:3].upper()}"


def fact_text(name: str, value: int) -> str:
    return (
        f"# Pager code of the {name} service\n\n"
        f"The pager code of the {name} service is {fact_code(name)}-{value}.\n\n"
        f"Page the on-call engineer of the {name} service with this code when it is down.\n"
    )


def fact_question(name: str) -> str:
    return f"What is the pager code of the {name} service?"


@dataclass(frozen=True)
class Question:
    text: str
    #: The fact page it asks about (its pager code is checked for staleness), or None.
    fact: str | None = None


@dataclass(frozen=True)
class EditablePage:
    doc_id: str
    text: str


def example_questions() -> list[Question]:
    """The first wording of every question group on examples/wiki pages (qa_paraphrases.json)."""
    data = json.loads(PARAPHRASES.read_text(encoding="utf-8"))
    return [
        Question(group[0]) for page in data["pages"] if page["page"].startswith("examples/wiki/")
        for group in page["groups"]
    ]


def example_pages() -> list[EditablePage]:
    return [
        EditablePage(p.relative_to(EXAMPLES).as_posix(), p.read_text(encoding="utf-8"))
        for p in sorted(EXAMPLES.rglob("*.md"))
    ]


def fact_questions() -> list[Question]:
    return [Question(fact_question(name), fact=name) for name in FACT_SERVICES]


class Ledger:
    """Acknowledged writes: per page, (ack time, revision), and per fact page, which revision holds which code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acks: dict[str, list[tuple[float, int]]] = {}
        self._codes: dict[str, dict[int, int]] = {}  # fact -> code value -> revision

    def acked(self, doc_id: str, revision: int, at: float, fact: str | None = None, value: int | None = None) -> None:
        with self._lock:
            self._acks.setdefault(doc_id, []).append((at, revision))
            if fact is not None and value is not None:
                self._codes.setdefault(fact, {})[value] = revision

    def floor(self, doc_id: str, before: float) -> int:
        """The newest revision of `doc_id` acknowledged at or before `before` (0: none)."""
        with self._lock:
            return max((rev for at, rev in self._acks.get(doc_id, ()) if at <= before), default=0)

    def code_revision(self, fact: str, value: int) -> int | None:
        with self._lock:
            return self._codes.get(fact, {}).get(value)

    def all_acked(self) -> dict[str, int]:
        """Every page's newest acknowledged revision."""
        with self._lock:
            return {doc: max(rev for _, rev in acks) for doc, acks in self._acks.items()}

    def count(self) -> int:
        with self._lock:
            return sum(len(a) for a in self._acks.values())


@dataclass
class Outcome:
    kind: str  # "ask" or "edit"
    code: str  # "OK" or a status code name
    started: float
    seconds: float
    detail: str = ""
    stale: str = ""  # why the answer is stale ("" if it is not)
    silent_unreranked: bool = False
    degraded: bool = False
    cached: bool = False
    abstained: bool = False
    fact_right: bool | None = None


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def select(self, kind: str | None = None, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if (kind is None or o.kind == kind) and since <= o.started < until]

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
        asks = self.select("ask", since, until)
        edits = self.select("edit", since, until)
        answered = [o for o in asks if o.code == "OK"]
        errors = Counter(o.code for o in asks + edits if o.code != "OK")
        facts = [o for o in answered if o.fact_right is not None]
        figures: dict[str, Any] = {
            "asks": len(asks),
            "answers": len(answered),
            "answers_cached": sum(o.cached for o in answered),
            "abstained": sum(o.abstained for o in answered),
            "edits": len(edits),
            "edits_acked": sum(o.code == "OK" for o in edits),
            "errors": dict(sorted(errors.items())),
            "errors_other": sum(n for code, n in errors.items() if code != "RESOURCE_EXHAUSTED"),
            "resource_exhausted": errors.get("RESOURCE_EXHAUSTED", 0),
            "stale_answers": sum(bool(o.stale) for o in answered),
            "silent_unreranked": sum(o.silent_unreranked for o in answered),
            "degraded_answers": sum(o.degraded for o in answered),
            "fact_answers_current": sum(bool(o.fact_right) for o in facts),
            "fact_answers": len(facts),
        }
        figures.update(latency_summary([o.seconds * 1000 for o in answered], "ask"))
        figures.update(latency_summary([o.seconds * 1000 for o in edits if o.code == "OK"], "edit"))
        return figures

    def examples(self, what: Callable[[Outcome], bool], n: int = 5) -> list[str]:
        with self.lock:
            return [f"{o.kind} {o.code} {o.stale or o.detail}"[:300] for o in self.outcomes if what(o)][:n]


def _retry_after(exc: grpc.RpcError) -> float:
    for key, value in (exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else ():
        if key == metadata.RETRY_AFTER_MS:
            try:
                return float(value) / 1000.0
            except (TypeError, ValueError):
                break
    return 0.5


class Workload:
    """Clients asking and editing through the orchestrator at `address`; every outcome goes to `tally`, every
    acknowledged edit to `ledger`. The fact pages must have been put (`setup`) first."""

    def __init__(
        self,
        address: str,
        questions: Sequence[Question],
        pages: Sequence[EditablePage],
        edit_share: float = EDIT_SHARE,
        seed: int = 0,
        timeout_s: float = CALL_TIMEOUT_S,
        ask_options: rag_pb2.AskOptions | None = None,
    ) -> None:
        self.address = address
        self.questions = list(questions)
        self.pages = list(pages)
        self.edit_share = edit_share
        self.seed = seed
        self.timeout_s = timeout_s
        self.ask_options = ask_options or rag_pb2.AskOptions()
        self.ledger = Ledger()
        self.tally = Tally()
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._codes = dict.fromkeys(FACT_SERVICES, 0)
        self._notes = 0
        self._threads: list[threading.Thread] = []

    # setup
    def setup(self) -> None:
        """Put the fact pages at code 0 (and record them)."""
        with grpc.insecure_channel(self.address) as channel:
            stub = rag_pb2_grpc.RagStub(channel)
            for name in FACT_SERVICES:
                self._put(stub, fact_doc(name), fact_text(name, 0), fact=name, value=0)

    def warm(self, asks: int = 6) -> None:
        """A few Asks one at a time (uncached) before the clients start: the services learn their pace (admission
        control compares deadlines with it), as they have in any running deployment."""
        with grpc.insecure_channel(self.address) as channel:
            stub = rag_pb2_grpc.RagStub(channel)
            for question in self.questions[:asks]:
                options = rag_pb2.AskOptions(no_cache=True, no_qa_memory=True)
                stub.Ask(rag_pb2.AskRequest(question=question.text, options=options), timeout=self.timeout_s)

    def _put(
        self, stub: rag_pb2_grpc.RagStub, doc_id: str, text: str, fact: str | None = None, value: int | None = None
    ) -> int:
        request = rag_pb2.PutDocumentRequest(doc_id=doc_id, text=text, collection=FACT_COLLECTION, source="load")
        response = stub.PutDocument(request, timeout=self.timeout_s)
        revision = int(response.document.revision)
        self.ledger.acked(doc_id, revision, time.monotonic(), fact, value)
        return revision

    # one client
    def edit_fact(self, stub: rag_pb2_grpc.RagStub, name: str) -> Outcome:
        """A new pager code on fact page `name` (recorded in the ledger once acknowledged; raises on failure)."""
        started = time.monotonic()
        with self._lock:
            self._codes[name] += 1
            value = self._codes[name]
        self._put(stub, fact_doc(name), fact_text(name, value), fact=name, value=value)
        return Outcome("edit", "OK", started, time.monotonic() - started, detail=f"{fact_doc(name)} code {value}")

    def _edit(self, stub: rag_pb2_grpc.RagStub, rng: random.Random) -> Outcome:
        started = time.monotonic()
        if not self.pages or rng.random() < 0.6:
            return self.edit_fact(stub, rng.choice(FACT_SERVICES))
        page = rng.choice(self.pages)
        with self._lock:
            self._notes += 1
            note = self._notes
        text = page.text.rstrip("\n") + f"\n\nReviewed during the load test (note {note}).\n"
        revision = self._put(stub, page.doc_id, text)
        return Outcome("edit", "OK", started, time.monotonic() - started, detail=f"{page.doc_id}@{revision}")

    def _ask(self, stub: rag_pb2_grpc.RagStub, rng: random.Random) -> Outcome:
        return self.ask(stub, rng.choice(self.questions))

    def ask(self, stub: rag_pb2_grpc.RagStub, question: Question) -> Outcome:
        """One Ask, checked for staleness against the ledger (raises on failure)."""
        started = time.monotonic()
        request = rag_pb2.AskRequest(question=question.text, options=self.ask_options)
        reply = stub.Ask(request, timeout=self.timeout_s)
        outcome = Outcome(
            "ask", "OK", started, time.monotonic() - started, detail=question.text, cached=reply.cached,
            abstained=reply.abstained,
        )
        reasons = []
        for citation in reply.citations:
            newest = self.ledger.floor(citation.doc_id, started)
            if newest > citation.revision:
                reasons.append(f"cites {citation.doc_id}@{citation.revision}; @{newest} was acked before the ask")
        if question.fact is not None:
            found = re.search(rf"\b{fact_code(question.fact)}-(\d+)\b", reply.answer)
            newest = self.ledger.floor(fact_doc(question.fact), started)
            if found:
                revision = self.ledger.code_revision(question.fact, int(found.group(1)))
                outcome.fact_right = revision is not None and revision >= newest
                if revision is not None and revision < newest:
                    reasons.append(f"answers {found.group(0)} (revision {revision}); {newest} was acked before")
            else:
                outcome.fact_right = False
        outcome.stale = "; ".join(reasons)
        if not reply.reranked:
            if any("reranker" in w for w in reply.warnings):
                outcome.degraded = True
            else:
                outcome.silent_unreranked = True
        return outcome

    def client(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        with grpc.insecure_channel(self.address) as channel:
            stub = rag_pb2_grpc.RagStub(channel)
            while not self.stop_event.is_set():
                kind = "edit" if rng.random() < self.edit_share else "ask"
                started = time.monotonic()
                try:
                    outcome = self._edit(stub, rng) if kind == "edit" else self._ask(stub, rng)
                except grpc.RpcError as exc:
                    code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
                    details = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
                    self.tally.add(Outcome(kind, code, started, time.monotonic() - started, detail=details))
                    wait = min(MAX_BACKOFF_S, _retry_after(exc)) if code == "RESOURCE_EXHAUSTED" else 0.2
                    self.stop_event.wait(wait * rng.uniform(0.5, 1.5))
                    continue
                self.tally.add(outcome)

    def start(self, clients: int) -> None:
        self.stop_event.clear()
        self._threads = [
            threading.Thread(target=self.client, args=(i,), name=f"load-client-{i}", daemon=True)
            for i in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = CALL_TIMEOUT_S + 5) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def run(self, clients: int, seconds: float) -> Tally:
        self.start(clients)
        try:
            self.stop_event.wait(seconds)
        finally:
            self.stop()
        return self.tally


def _put_pages(address: str, pages: Sequence[EditablePage], writers: int = 4) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with grpc.insecure_channel(address) as channel, ThreadPoolExecutor(writers) as pool:
        stub = rag_pb2_grpc.RagStub(channel)

        def put(page: EditablePage) -> None:
            stub.PutDocument(rag_pb2.PutDocumentRequest(doc_id=page.doc_id, text=page.text, source="load"), timeout=600)

        list(pool.map(put, pages))


def run(ctx: Context) -> SuiteResult:
    from bench import handbook
    from bench.service import load_average, load_note
    from bench.suites.editing import redis_server

    clients, seconds = (QUICK_CLIENTS, QUICK_SECONDS) if ctx.quick else (FULL_CLIENTS, FULL_SECONDS)
    hb_pages = handbook.pages(ctx)
    hb_questions = [Question(q.question) for q in handbook.questions(ctx)]
    examples = example_pages()
    load_at_start = load_average()
    with redis_server(ctx) as redis_url, running_system(ctx, "load", env={"REDIS_URL": redis_url or ""}) as address:
        _put_pages(address, [*examples, *(EditablePage(p.doc_id, p.text) for p in hb_pages)])
        editable = examples + [EditablePage(p.doc_id, p.text) for p in hb_pages if p.doc_id in {
            d for q in handbook.questions(ctx) for d in q.pages
        }]
        questions = fact_questions() * 2 + example_questions() + hb_questions  # fact questions twice as often
        workload = Workload(address, questions, editable, seed=ctx.seed)
        workload.setup()
        workload.warm()
        started = time.monotonic()
        tally = workload.run(clients, seconds)
        wall = time.monotonic() - started
    figures = tally.summary()
    figures.update(clients=clients, seconds=round(wall, 1), redis=redis_url is not None)
    figures["answers_per_s"] = round(figures["answers"] / wall, 2) if wall else 0.0
    stale = tally.examples(lambda o: bool(o.stale))
    other = tally.examples(lambda o: o.code not in ("OK", "RESOURCE_EXHAUSTED"))
    rejected = tally.examples(lambda o: o.code == "RESOURCE_EXHAUSTED", 2)
    rows = [
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in figures.items()),
    ]
    notes = [load_note(load_at_start)]
    markdown = "\n".join(
        [
            f"{clients} clients for {wall:.0f} s against the five services as processes (`wikimem serve`'s "
            f"ProcessStack, Redis cache: {'yes' if redis_url else 'no, in-process'}), default admission settings "
            "(wikimem_common/admission.py) and WIKIMEM_ON_RERANK_OVERLOAD=fail. Asks: pager-code questions of "
            f"{len(FACT_SERVICES)} fact pages, examples/wiki and 18F handbook questions; edits: {EDIT_SHARE:.0%} "
            "of operations (new pager codes, review notes on wiki pages).",
            "",
            *rows,
            "",
            "Stale answers (first 5): " + ("; ".join(stale) if stale else "none"),
            "",
            "Errors other than RESOURCE_EXHAUSTED (first 5): " + ("; ".join(other) if other else "none"),
            "",
            "RESOURCE_EXHAUSTED, e.g.: " + ("; ".join(rejected) if rejected else "none"),
        ]
    )
    return SuiteResult(
        figures=figures,
        markdown=markdown,
        targets=[
            Target("errors_other", "<=", 0),
            Target("stale_answers", "<=", 0),
            Target("silent_unreranked", "<=", 0),
        ],
        notes=notes,
    )
