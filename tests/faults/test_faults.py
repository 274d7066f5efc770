"""Faults under load, with real processes: kill -9 of memory under concurrent writes (every acknowledged write is
there after the restart), kill -9 of the reranker mid-load (clear errors, or degraded answers by policy, never a
silent unreranked one; answers recover when it is back), kill -9 of Redis (no stale answer; caching recovers),
SIGTERM of the orchestrator under load (in-flight Asks drain; no call is cancelled).

The counts each test measures are printed (`pytest -s`) as one `FAULTS {...}` JSON line."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from typing import Any

import grpc
import pytest

from bench.suites.load import Outcome, Workload, example_pages, example_questions, fact_questions
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

from .conftest import Faulty

pytestmark = pytest.mark.slow

NO_CACHE = rag_pb2.AskOptions(no_cache=True, no_qa_memory=True)
#: How long the reranker stays down before the supervisor may restart it.
OUTAGE_S = 5.0


def report(name: str, **figures: object) -> None:
    print("FAULTS " + json.dumps({"test": name, **figures}, sort_keys=True))


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("answers", "errors", "degraded_answers", "silent_unreranked", "stale_answers", "ask_p50_ms")
    return {k: summary[k] for k in keys}


def listed(faulty: Faulty) -> dict[str, int]:
    """doc id -> revision of every stored document (the default collection)."""
    channel, stub = faulty.rag()
    found: dict[str, int] = {}
    token = ""
    with channel:
        while True:
            page = stub.ListDocuments(rag_pb2.ListDocumentsRequest(page_size=500, page_token=token), timeout=60)
            found.update({d.doc_id: int(d.revision) for d in page.documents})
            token = page.next_page_token
            if not token:
                return found


def test_kill_9_memory_under_concurrent_writes_keeps_every_acked_write(faulty: Faulty) -> None:
    acked: dict[str, int] = {}
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    kill_at: list[float] = []

    def writer(w: int) -> None:
        channel, stub = faulty.rag()
        with channel:
            n = 0
            while not stop.is_set():
                doc = f"faults/writes/w{w}-{n}.md"
                text = f"# Write {w}-{n}\n\nWriter {w} stored the value {w * 1000 + n} in this page.\n"
                try:
                    response = stub.PutDocument(rag_pb2.PutDocumentRequest(doc_id=doc, text=text), timeout=30)
                    with lock:
                        acked[doc] = int(response.document.revision)
                except grpc.RpcError as exc:
                    with lock:
                        failures[exc.code().name] += 1
                    stop.wait(0.1)
                n += 1

    writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(4)
        before_kill = len(acked)
        old = faulty.kill("memory")
        kill_at.append(time.monotonic())
        down_s = faulty.wait_restarted("memory", old)
        after_restart = len(acked)
        time.sleep(3)  # writes go on against the restarted memory
    finally:
        stop.set()
        for thread in writers:
            thread.join(60)
    stored = listed(faulty)
    present = sum(1 for doc, rev in acked.items() if stored.get(doc, 0) >= rev)
    report(
        "kill_9_memory", acked=len(acked), present=present, acked_before_kill=before_kill,
        acked_after_restart=len(acked) - after_restart, failed_writes=dict(failures), restart_s=round(down_s, 2),
    )
    assert before_kill > 0 and len(acked) > after_restart  # writes were acknowledged before the kill and after
    assert present == len(acked), sorted(set(acked) - {d for d in acked if stored.get(d, 0) >= acked[d]})[:10]
    assert set(failures) <= {"UNAVAILABLE"}, failures  # while memory was down: UNAVAILABLE, nothing else


def test_kill_9_reranker_mid_load_fails_clearly_or_degrades_by_policy_and_recovers(faulty: Faulty) -> None:
    questions = example_questions()
    failing = Workload(faulty.address, questions, [], edit_share=0.0, ask_options=NO_CACHE, seed=1)
    degrading = Workload(faulty.degrade_address, questions, [], edit_share=0.0, ask_options=NO_CACHE, seed=2)
    failing.start(3)
    degrading.start(3)
    try:
        time.sleep(3)
        faulty.paused.set()  # the reranker stays down for OUTAGE_S
        killed = time.monotonic()
        old = faulty.kill("reranker")
        time.sleep(OUTAGE_S)
        faulty.paused.clear()
        faulty.wait_restarted("reranker", old)
        back = time.monotonic()
        time.sleep(6)
    finally:
        failing.stop()
        degrading.stop()
    settled = back + 3.0  # the orchestrators' channels reconnect within their backoff (<= 2 s)
    fail_all, degrade_all = failing.tally.summary(), degrading.tally.summary()
    fail_down = failing.tally.summary(killed, back)
    degrade_down = degrading.tally.summary(killed, back)
    fail_after, degrade_after = failing.tally.summary(settled), degrading.tally.summary(settled)
    report(
        "kill_9_reranker", outage_s=round(back - killed, 2), fail_policy_during=brief(fail_down),
        degrade_policy_during=brief(degrade_down), fail_policy_after=brief(fail_after),
        degrade_policy_after=brief(degrade_after),
    )
    # never a silent unreranked answer, under either policy
    assert fail_all["silent_unreranked"] == 0 and degrade_all["silent_unreranked"] == 0
    # fail (default): no unreranked answer at all; every error names the reranker and is UNAVAILABLE (it is down)
    assert fail_all["degraded_answers"] == 0
    errors = failing.tally.select("ask")
    assert fail_down["errors"].get("UNAVAILABLE", 0) > 0, fail_down
    assert all(o.code == "UNAVAILABLE" and "reranker" in o.detail for o in errors if o.code != "OK"), [
        (o.code, o.detail) for o in errors if o.code != "OK"
    ][:5]
    # degrade: answers go on, marked degraded, and no error
    assert degrade_down["degraded_answers"] > 0 and degrade_all["errors_other"] == 0, degrade_down
    # recovered: reranked answers again, no errors
    for after in (fail_after, degrade_after):
        assert after["answers"] > 0 and after["errors"] == {} and after["degraded_answers"] == 0, after


#: Fact pages edited and asked about in each phase of the Redis test (each phase: edit, then ask at once).
PROBED = fact_questions()[:3]


def _edit_then_ask(workload: Workload, stub: rag_pb2_grpc.RagStub, rounds: int) -> list[Outcome]:
    """Each probed fact page: a new pager code, then at once its question (an answer with the old code is stale)."""
    outcomes = []
    for _ in range(rounds):
        for question in PROBED:
            assert question.fact is not None
            workload.tally.add(workload.edit_fact(stub, question.fact))
            outcome = workload.ask(stub, question)
            workload.tally.add(outcome)
            outcomes.append(outcome)
    return outcomes


def test_redis_killed_or_hung_gives_no_stale_answer_and_caching_recovers(faulty: Faulty) -> None:
    """Background clients ask and edit throughout; meanwhile each fact page is edited and asked about at once:
    with Redis up (answers cached), killed with -9, restarted empty, and hung (SIGSTOP: calls time out, then it
    comes back holding entries written before the edits made meanwhile)."""
    workload = Workload(faulty.address, fact_questions() * 2 + example_questions(), example_pages(), edit_share=0.25)
    workload.setup()
    channel, stub = faulty.rag()
    phases: dict[str, list[Outcome]] = {}
    workload.start(2)
    try:
        phases["up"] = _edit_then_ask(workload, stub, 1)
        for question in PROBED:  # cached now
            workload.tally.add(workload.ask(stub, question))
        assert faulty.redis.proc is not None
        faulty.redis.proc.kill()
        faulty.redis.proc.wait(10)
        faulty.redis.proc = None
        phases["killed"] = _edit_then_ask(workload, stub, 1)
        faulty.redis.start()
        time.sleep(1.5)  # the orchestrator retries Redis after WIKIMEM_REDIS_RETRY_S (1 s)
        phases["restarted"] = _edit_then_ask(workload, stub, 1)
        for question in PROBED:  # cached again, in the restarted Redis
            workload.tally.add(workload.ask(stub, question))
        assert faulty.redis.proc is not None
        faulty.redis.proc.send_signal(signal.SIGSTOP)
        try:
            phases["hung"] = _edit_then_ask(workload, stub, 1)
        finally:
            faulty.redis.proc.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        phases["resumed"] = _edit_then_ask(workload, stub, 1)
        workload.stop()  # no more edits: each question asked twice, the second answer comes from Redis
        again = [(workload.ask(stub, q), workload.ask(stub, q))[1] for q in PROBED]
    finally:
        workload.stop()
        channel.close()
        if faulty.redis.proc is None:
            faulty.redis.start()
    total = workload.tally.summary()
    report(
        "redis_faults", edits_acked=workload.ledger.count(), answers=total["answers"],
        stale_answers=total["stale_answers"], errors=total["errors"],
        current_fact_answers={k: sum(bool(o.fact_right) for o in v) for k, v in phases.items()},
        fact_questions_per_phase=len(PROBED), cached_after_resume=sum(o.cached for o in again),
    )
    assert total["stale_answers"] == 0, workload.tally.examples(lambda o: bool(o.stale))
    assert total["errors"] == {}, workload.tally.examples(lambda o: o.code != "OK")
    # right after each edit, answers name the new code (not stale, and answered from the edited page; the pages are
    # near copies of each other, so the reader sometimes takes another's code or abstains: most, not all)
    probes = [o for outcomes in phases.values() for o in outcomes]
    assert sum(bool(o.fact_right) for o in probes) * 2 >= len(probes), [o.detail for o in probes if not o.fact_right]
    assert all(o.cached for o in again)  # the cache works again after Redis resumed


def test_sigterm_orchestrator_under_load_drains_in_flight_asks(faulty: Faulty) -> None:
    workload = Workload(faulty.address, example_questions(), [], edit_share=0.0, ask_options=NO_CACHE, seed=4)
    workload.start(6)
    try:
        time.sleep(3)
        termed = time.monotonic()
        old = faulty.kill("orchestrator", signal.SIGTERM)
        faulty.wait_restarted("orchestrator", old)
        back = time.monotonic()
        time.sleep(5)
    finally:
        workload.stop()
    in_flight = [o for o in workload.tally.select("ask") if o.started < termed < o.started + o.seconds]
    codes = Counter(o.code for o in workload.tally.select("ask"))
    after = workload.tally.summary(back + 3.0)
    log = (faulty.stack.log_dir / "orchestrator.log").read_text()
    drained = [json.loads(line) for line in log.splitlines() if '"msg": "drained"' in line]
    report(
        "sigterm_orchestrator", in_flight_at_sigterm=len(in_flight),
        in_flight_completed=sum(o.code == "OK" for o in in_flight), codes=dict(codes),
        restart_s=round(back - termed, 2), drained=drained[-1] if drained else None,
    )
    # every Ask in flight at SIGTERM completed with its answer; later ones were refused (UNAVAILABLE: draining,
    # then not listening until the restart), none cancelled
    assert in_flight and all(o.code == "OK" for o in in_flight), [(o.code, o.detail) for o in in_flight]
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert drained and drained[-1]["calls"] >= 1
    assert after["answers"] > 0 and after["errors"] == {}, after
