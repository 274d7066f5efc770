"""The typed client's mapping of the Rag contract (against an in-process fake Rag server)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from wikimem import (
    AbortedError,
    Answer,
    AsyncWikimemClient,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    WikimemClient,
    WikimemError,
    answer_to_dict,
)

from .conftest import FakeServer

VPN = "---\ntitle: VPN\n---\nThe VPN client is called TunnelKit. Support hours are 8-18."


def test_ask_maps_answer_citations_and_options(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address, groups=["eng", "hr"]) as client:
        client.put_document("it/vpn.md", VPN, source="wiki/it/vpn.md")
        answer = client.ask("Which client is TunnelKit?", collection="", retrieve_k=7, read_k=2, no_cache=True)
    assert isinstance(answer, Answer)
    assert answer.answer == "TunnelKit" and not answer.abstained
    assert answer.cached is False and answer.reranked is True and answer.generation == 7
    assert answer.timings_ms == {"embed": 1.0, "total": 3.0}
    [c] = answer.citations
    assert (c.doc_id, c.revision, c.title, c.source) == ("it/vpn.md", 1, "VPN", "wiki/it/vpn.md")
    assert c.quote == VPN[c.start : c.end] and VPN[c.answer_start : c.answer_end] == "TunnelKit"
    assert c.start <= c.answer_start < c.answer_end <= c.end
    opts = fake_server.rag.seen_options[-1]
    assert (opts.retrieve_k, opts.read_k, opts.no_cache) == (7, 2, True)
    assert fake_server.rag.seen_groups[-1] == "eng,hr"


def test_no_groups_sends_no_metadata(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        client.ask("anything here?")
    assert fake_server.rag.seen_groups == [""]


def test_abstention_and_json_dict(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        answer = client.ask("What is the meaning of life?")
    assert answer.abstained and answer.answer == "" and answer.citations == []
    assert answer.abstain_reason and answer.warnings == ["fake: nothing matched"]
    d = answer_to_dict(answer, "What is the meaning of life?")
    assert d["question"] == "What is the meaning of life?" and d["abstained"] is True and d["citations"] == []
    assert set(d) >= {"question", "answer", "abstained", "citations", "cached", "timings_ms"}


def test_stream_yields_deltas_then_answer(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        client.put_document("vpn.md", VPN)
        events = list(client.ask_stream("Name the TunnelKit client"))
    *deltas, final = events
    assert all(isinstance(d, str) for d in deltas) and "".join(deltas) == "TunnelKit"  # type: ignore[arg-type]
    assert isinstance(final, Answer) and final.answer == "TunnelKit"


def test_put_revisions_noop_and_compare_and_set(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        first = client.put_document("a.md", "alpha text", title="A", acl=["eng"], metadata={"k": "v"})
        same = client.put_document("a.md", "alpha text", title="A", acl=["eng"])
        second = client.put_document("a.md", "alpha text, edited")
        assert (first.changed, first.document.revision, first.document.acl) == (True, 1, ["eng"])
        assert (same.changed, same.document.revision) == (False, 1)
        assert (second.changed, second.document.revision) == (True, 2)
        with pytest.raises(AbortedError) as err:
            client.put_document("a.md", "conflict", if_revision=1)
        assert err.value.code == grpc.StatusCode.ABORTED and "revision 2" in err.value.message
        assert client.put_document("b.md", "new", if_revision=0).document.revision == 1


def test_list_documents_iterates_all_pages(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        for i in range(5):
            client.put_document(f"doc{i}.md", f"text {i}")
        client.put_document("other.md", "elsewhere", collection="other")
        docs = list(client.list_documents(page_size=2))
        assert [d.doc_id for d in docs] == [f"doc{i}.md" for i in range(5)]
        assert [d.doc_id for d in client.list_documents(collection="other")] == ["other.md"]


def test_get_source_and_delete(fake_server: FakeServer) -> None:
    with WikimemClient(fake_server.address) as client:
        client.put_document("vpn.md", VPN)
        start = VPN.index("TunnelKit")
        src = client.get_source("vpn.md", 1, start, start + 9, context_chars=5)
        assert src.passage == "TunnelKit" and src.before == VPN[start - 5 : start]
        assert src.document.doc_id == "vpn.md"
        assert client.delete_document("vpn.md") == 1
        with pytest.raises(NotFoundError) as err:
            client.get_source("vpn.md", 1, 0, 5)
        assert err.value.code == grpc.StatusCode.NOT_FOUND and "gone" in err.value.message
        with pytest.raises(NotFoundError):
            client.delete_document("vpn.md")


def test_errors_map_to_subclasses(fake_server: FakeServer, dead_address: str) -> None:
    with WikimemClient(fake_server.address) as client:
        with pytest.raises(InvalidArgumentError) as err:
            client.ask("   ")
        assert isinstance(err.value, WikimemError) and "must not be empty" in str(err.value)
        assert client.health() == "SERVING"
    with WikimemClient(dead_address, timeout=5) as client, pytest.raises(UnavailableError) as unavailable:
        client.ask("hello?")
    assert unavailable.value.code == grpc.StatusCode.UNAVAILABLE


def test_resource_exhausted_carries_the_retry_hint(fake_server: FakeServer) -> None:
    """The server's trailing `retry-after-ms` reaches the caller as seconds (sync, streaming and async)."""
    with WikimemClient(fake_server.address) as client:
        with pytest.raises(ResourceExhaustedError) as busy:
            client.ask("BUSY?")
        assert busy.value.retry_after_s == 2.5 and "at capacity" in busy.value.message
        with pytest.raises(ResourceExhaustedError) as streamed:
            list(client.ask_stream("BUSY?"))
        assert streamed.value.retry_after_s == 2.5
        with pytest.raises(ResourceExhaustedError) as no_hint:
            client.ask("BUSY-NOHINT?")
        assert no_hint.value.retry_after_s is None

    async def scenario() -> float | None:
        async with AsyncWikimemClient(fake_server.address) as client:
            try:
                await client.ask("BUSY?")
            except ResourceExhaustedError as exc:
                return exc.retry_after_s
        raise AssertionError("not refused")

    assert asyncio.run(scenario()) == 2.5


def test_default_address_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_ADDR", "127.0.0.1:6001")
    assert WikimemClient().address == "127.0.0.1:6001"
    monkeypatch.delenv("WIKIMEM_ADDR")
    assert WikimemClient().address == "127.0.0.1:50051"


def test_async_client(fake_server: FakeServer, dead_address: str) -> None:
    async def scenario() -> None:
        async with AsyncWikimemClient(fake_server.address, groups=["eng"]) as client:
            put = await client.put_document("vpn.md", VPN, title="VPN")
            assert put.changed and put.document.revision == 1
            answer = await client.ask("What is TunnelKit?")
            assert answer.answer == "TunnelKit" and answer.citations[0].doc_id == "vpn.md"
            events = [e async for e in client.ask_stream("What is TunnelKit?")]
            assert isinstance(events[-1], Answer) and "".join(e for e in events if isinstance(e, str)) == "TunnelKit"
            assert [d.doc_id async for d in client.list_documents(page_size=1)] == ["vpn.md"]
            src = await client.get_source("vpn.md", 1, 0, 3)
            assert src.passage == VPN[:3]
            assert await client.delete_document("vpn.md") == 1
            with pytest.raises(NotFoundError):
                await client.delete_document("vpn.md")
            assert await client.health() == "SERVING"
        assert fake_server.rag.seen_groups[0] == "eng"
        async with AsyncWikimemClient(dead_address, timeout=5) as client:
            with pytest.raises(UnavailableError):
                await client.ask("hello?")

    asyncio.run(scenario())
