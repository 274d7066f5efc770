"""The whole system on the sample wiki: answers, exact citations, edits, abstention, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from wikimem.client import WikimemClient
from wikimem.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError

from .system import System

SAMPLE = [
    ("What is the VPN client called?", "tunnelkit", "vpn.md"),
    ("When are expense reports due?", "30 days", "expenses.md"),
    ("How many days of paid vacation do full-time employees get?", "27", "vacation.md"),
    ("How quickly must the on-call engineer acknowledge a page?", "15 minutes", "on-call.md"),
    ("Where is the headquarters of Acme Robotics?", "lisbon", "offices.md"),
    ("What is the phone number of the security hotline?", "4242", "security-incidents.md"),
]


@pytest.mark.parametrize(("question", "expected", "doc_id"), SAMPLE)
def test_answers_cite_the_exact_passage(client: WikimemClient, question: str, expected: str, doc_id: str) -> None:
    answer = client.ask(question, no_cache=True)
    assert not answer.abstained, answer.abstain_reason
    assert expected in answer.answer.lower()
    assert answer.reranked and not answer.warnings
    top = answer.citations[0]
    assert top.doc_id == doc_id and top.revision >= 1
    assert top.start <= top.answer_start < top.answer_end <= top.end
    # The quote is the document's text at that revision and span, and contains the answer.
    source = client.get_source(top.doc_id, top.revision, top.start, top.end)
    assert source.passage == top.quote
    span = client.get_source(top.doc_id, top.revision, top.answer_start, top.answer_end)
    assert " ".join(span.passage.split()) == answer.answer
    assert span.passage in top.quote
    assert {"embed", "search", "rerank", "read", "total"} <= set(answer.timings_ms)


def test_unanswerable_question_abstains(client: WikimemClient) -> None:
    answer = client.ask("What is the name of the CEO's dog?", no_cache=True)
    assert answer.abstained and answer.citations == []
    assert answer.abstain_reason


def test_edit_is_visible_in_the_very_next_answer_and_old_revision_is_gone(client: WikimemClient) -> None:
    text = (
        "---\ntitle: Parking\n---\n\n# Parking\n\nEmployees park their cars in the Blue Garage. "
        "Parking permits are issued by the front desk.\n"
    )
    first = client.put_document("facilities/parking.md", text)
    question = "Which garage do employees park in?"
    before = client.ask(question)
    assert "blue garage" in before.answer.lower() and before.citations[0].revision == first.document.revision
    assert client.ask(question).cached  # the same question again comes from the cache

    second = client.put_document("facilities/parking.md", text.replace("Blue Garage", "Green Garage"))
    assert second.document.revision == first.document.revision + 1
    after = client.ask(question)
    assert not after.cached
    assert "green garage" in after.answer.lower()
    assert after.citations[0].doc_id == "facilities/parking.md"
    assert after.citations[0].revision == second.document.revision
    with pytest.raises(NotFoundError) as gone:
        old = before.citations[0]
        client.get_source(old.doc_id, old.revision, old.start, old.end)
    assert str(second.document.revision) in gone.value.message

    client.delete_document("facilities/parking.md")
    deleted = client.ask(question)
    assert all(c.doc_id != "facilities/parking.md" for c in deleted.citations)
    assert "green garage" not in deleted.answer.lower()


def test_seed_scenario_eiffel_tower_follows_the_memory(client: WikimemClient) -> None:
    """Paris, then Rome after an edit (not what a model memorised), then never Rome after the delete."""
    collection = "seed"
    client.put_document(
        "guide/paris.md",
        "# Visiting Paris\n\nParis is the capital of France. Its landmarks include the Louvre and the "
        "Eiffel Tower, which is located in Paris on the Champ de Mars.\n",
        collection=collection,
    )
    client.put_document(
        "landmarks/eiffel.md",
        "# Eiffel Tower\n\nThe Eiffel Tower is located in the city of Paris.\n",
        collection=collection,
    )
    question = "The Eiffel Tower is located in which city?"
    assert "paris" in client.ask(question, collection=collection).answer.lower()

    edit = client.put_document(
        "landmarks/eiffel.md",
        "# Eiffel Tower\n\nThe Eiffel Tower is located in the city of Rome.\n",
        collection=collection,
    )
    rome = client.ask(question, collection=collection)
    assert rome.answer == "Rome"
    assert (rome.citations[0].doc_id, rome.citations[0].revision) == ("landmarks/eiffel.md", edit.document.revision)

    client.delete_document("landmarks/eiffel.md", collection=collection)
    after = client.ask(question, collection=collection)
    assert "rome" not in after.answer.lower()
    assert after.abstained or "paris" in after.answer.lower()
    assert all(c.doc_id != "landmarks/eiffel.md" for c in after.citations)


def test_access_list_hides_documents_from_other_callers(system: System) -> None:
    text = "# Salaries\n\nThe salary review for engineers happens every March.\n"
    with WikimemClient(system.address, groups=["hr"]) as hr, WikimemClient(system.address) as anyone:
        hr.put_document("hr/salaries.md", text, acl=["hr"])
        question = "When does the salary review for engineers happen?"
        assert "march" in hr.ask(question).answer.lower()
        outsider = anyone.ask(question)
        assert all(c.doc_id != "hr/salaries.md" for c in outsider.citations)
        assert "march" not in outsider.answer.lower()
        assert "hr/salaries.md" not in {d.doc_id for d in anyone.list_documents()}
        with pytest.raises(NotFoundError):
            anyone.get_source("hr/salaries.md", 0, 0, 10)


def test_bad_input_gets_clear_statuses_and_loses_nothing(client: WikimemClient, system: System) -> None:
    docs_before = {(d.doc_id, d.revision) for d in client.list_documents()}
    with pytest.raises(InvalidArgumentError) as empty:
        client.ask("   ")
    assert "question" in empty.value.message
    with pytest.raises(ResourceExhaustedError) as big:
        client.put_document("huge.md", "x" * (10 * 1024 * 1024))
    assert "WIKIMEM_MAX_DOC_BYTES" in big.value.message
    with pytest.raises(NotFoundError) as unknown:
        client.delete_document("no/such/page.md")
    assert "no/such/page.md" in unknown.value.message
    with pytest.raises(InvalidArgumentError):
        client.get_source("vpn.md", 0, 10_000, 20_000)
    # Invalid UTF-8 cannot be built with the typed client; send the raw bytes of a PutDocumentRequest.
    raw = grpc.insecure_channel(system.address).unary_unary("/wikimem.v1.Rag/PutDocument")
    with pytest.raises(grpc.RpcError) as utf8:
        raw(b"\x0a\x05bad.md\x12\x03\xff\xfe\xfd", timeout=10)
    assert utf8.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing stored was lost or changed, and the service still answers.
    assert {(d.doc_id, d.revision) for d in client.list_documents()} >= docs_before
    assert "tunnelkit" in client.ask("What is the VPN client called?").answer.lower()


def test_cli_json_lines_against_the_running_system(system: System) -> None:
    questions = "What is the VPN client called?\nWhat is the name of the CEO's dog?\n"
    env = {**os.environ, "WIKIMEM_ADDR": system.address}
    out = subprocess.run(
        [sys.executable, "-m", "wikimem.cli", "ask", "--json", "-"],
        input=questions,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [r["question"] for r in rows] == questions.splitlines()
    vpn, dog = rows
    assert "TunnelKit" in vpn["answer"] and not vpn["abstained"]
    assert set(vpn["citations"][0]) >= {"doc_id", "revision", "title", "source", "start", "end", "quote"}
    assert vpn["citations"][0]["doc_id"] == "vpn.md" and isinstance(vpn["timings_ms"], dict)
    assert dog["abstained"] and dog["citations"] == []
