"""PutDocument / DeleteDocument pass through to memory; GetSource and ListDocuments respect revisions and groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_contract.v1 import rag_pb2


def _status(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _source(orch: Orchestrator, groups: str | None = None, **fields: Any) -> rag_pb2.GetSourceResponse:
    return orch.stub.GetSource(rag_pb2.GetSourceRequest(**fields), metadata=orch.meta(groups), timeout=30)


def test_put_passes_fields_through(orch: Orchestrator, peers: Peers) -> None:
    reply = orch.put(
        "hr/leave.md", "Leave is booked in the HR portal.", title="Leave", source="wiki/hr/leave.md",
        collection="hr", acl=["hr", "managers"], metadata={"owner": "ana"}, revision=7, if_revision=0,
    )
    sent = peers.calls.last["upsert"]
    assert (sent.doc_id, sent.title, sent.source, sent.collection) == ("hr/leave.md", "Leave", "wiki/hr/leave.md", "hr")
    assert list(sent.acl) == ["hr", "managers"] and dict(sent.metadata) == {"owner": "ana"}
    assert sent.revision == 7 and sent.HasField("if_revision") and sent.if_revision == 0
    assert reply.changed and reply.document.revision == 7 and reply.document.collection == "hr"
    assert "total" in reply.timings_ms

    same = orch.put("hr/leave.md", "Leave is booked in the HR portal.", title="Leave", collection="hr",
                    acl=["hr", "managers"], groups="hr")
    assert not same.changed and same.document.revision == 7
    # the write carries the revision its ACL check saw: the document cannot change hands in between
    assert peers.calls.last["upsert"].HasField("if_revision") and peers.calls.last["upsert"].if_revision == 7


def test_write_errors_pass_through(orch: Orchestrator) -> None:
    orch.put("a.md", "one")
    err = _status(lambda: orch.put("a.md", "two", if_revision=5))
    # (the orchestrator's own check answers: it reads the document before a write; see documents.py)
    assert err.code() == grpc.StatusCode.ABORTED and "'a.md' is at revision 1, not 5" in err.details()
    err = _status(lambda: orch.put("a.md", "two", revision=1))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "not greater than 1" in err.details()
    err = _status(lambda: orch.put(" ", "text"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    delete = rag_pb2.DeleteDocumentRequest(doc_id="missing.md")
    err = _status(lambda: orch.stub.DeleteDocument(delete, timeout=30))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_delete(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    orch.put("it/handbook.md", HANDBOOK + "\n\nMore.")
    err = _status(lambda: orch.stub.DeleteDocument(
        rag_pb2.DeleteDocumentRequest(doc_id="it/handbook.md", if_revision=1), timeout=30))
    assert err.code() == grpc.StatusCode.ABORTED
    reply = orch.stub.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id="it/handbook.md", if_revision=2), timeout=30)
    assert reply.revision == 2 and "total" in reply.timings_ms
    assert orch.ask(VPN_Q).abstained


def test_get_source_round_trips_a_citation(orch: Orchestrator) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    cite = orch.ask(VPN_Q).citations[0]
    src = _source(orch, doc_id=cite.doc_id, revision=cite.revision, start=cite.start, end=cite.end, context_chars=20)
    assert src.passage == cite.quote
    assert src.before == HANDBOOK[cite.start - 20 : cite.start]
    assert src.after == HANDBOOK[cite.end : cite.end + 20]
    assert src.document.revision == 1

    whole = _source(orch, doc_id="it/handbook.md", start=0, end=len(HANDBOOK))  # revision 0: the current one
    assert whole.passage == HANDBOOK and whole.before == "" and whole.after == ""
    edge = _source(orch, doc_id="it/handbook.md", revision=1, start=5, end=10)
    assert edge.before == HANDBOOK[:5] and edge.after == HANDBOOK[10:310]  # default context: 300


def test_get_source_errors(orch: Orchestrator) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    orch.put("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-43"))
    err = _status(lambda: _source(orch, doc_id="it/handbook.md", revision=1, start=0, end=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "revision 1 of it/handbook.md is gone; the current revision is 2"

    err = _status(lambda: _source(orch, doc_id="it/handbook.md", revision=2, start=10, end=len(HANDBOOK) + 1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in err.details()
    err = _status(lambda: _source(orch, doc_id="it/handbook.md", revision=2, start=10, end=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = _status(lambda: _source(orch, doc_id="", start=0, end=1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    orch.stub.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id="it/handbook.md"), timeout=30)
    err = _status(lambda: _source(orch, doc_id="it/handbook.md", revision=2, start=0, end=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details().startswith("revision 2 of it/handbook.md is gone")


def test_get_source_and_list_respect_groups(orch: Orchestrator, peers: Peers) -> None:
    orch.put("eng/secret.md", "The build key is KEY-1.", acl=["eng"])
    orch.put("all/public.md", "The canteen opens at noon.")
    err = _status(lambda: _source(orch, groups="hr", doc_id="eng/secret.md", start=0, end=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert _source(orch, groups="hr,eng", doc_id="eng/secret.md", start=4, end=9).passage == "build"

    listed = orch.stub.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=orch.meta("hr"), timeout=30)
    assert [d.doc_id for d in listed.documents] == ["all/public.md"]
    listed = orch.stub.ListDocuments(rag_pb2.ListDocumentsRequest(page_size=1), metadata=orch.meta("eng"), timeout=30)
    assert [d.doc_id for d in listed.documents] == ["all/public.md"]
    sent = peers.calls.last["list"]
    assert sent.page_size == 1 and list(sent.filter.groups) == ["eng"]
