"""The cases found by trying the default `wikimem serve` as an outsider (issue 12), on the real stack: with auth
off (the local-dev default, groups from x-wikimem-groups) and with auth on.

- anonymous overwrite / delete of a restricted page refused, and indistinguishable from a missing page;
- if_revision never reveals that a hidden page exists (NOT_FOUND, no revision);
- ids with zero-width, bidi or look-alike characters refused (INVALID_ARGUMENT naming the code point), in the
  orchestrator and in memory;
- revision 2**64-1 (was INTERNAL from SQLite) and read_k 65-200 (failed in the reader after all the work)
  refused at the edge, before any work; the services stay up.
"""

from __future__ import annotations

import time

import grpc
import pytest
from security_stack import Meta, Stack, code_of, put

from wikimem_common import identifiers
from wikimem_contract import metadata
from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc, rag_pb2, rag_pb2_grpc

SECRET_DOC = "travel-and-leave/fmla.md"
SECRET_TEXT = "# FMLA\n\nFMLA leave lasts 12 weeks. Secret marker EDGE-CANARY-5521.\n"
HR: Meta = [(metadata.GROUPS, "hr")]
NOBODY: Meta = []


@pytest.fixture(scope="module")
def secret(stack: Stack) -> Stack:
    put(stack.stub(), stack.admin, SECRET_DOC, SECRET_TEXT, acl=["hr"], collection="edges")
    return stack


def _put(rag: rag_pb2_grpc.RagStub, meta: Meta, doc_id: str, text: str, **fields: object) -> tuple[object, str]:
    return code_of(lambda: put(rag, meta, doc_id, text, collection="edges", **fields))


def _delete(rag: rag_pb2_grpc.RagStub, meta: Meta, doc_id: str, **fields: object) -> tuple[object, str]:
    request = rag_pb2.DeleteDocumentRequest(doc_id=doc_id, collection="edges", **fields)  # type: ignore[arg-type]
    return code_of(lambda: rag.DeleteDocument(request, metadata=meta, timeout=60))


def _intact(stack: Stack) -> None:
    text = str(stack.stub().GetSource(rag_pb2.GetSourceRequest(doc_id=SECRET_DOC, collection="edges", start=0,
                                                                end=0, context_chars=5000),
                                       metadata=stack.admin, timeout=60).after)
    assert text == SECRET_TEXT


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
def test_an_outsider_can_neither_overwrite_nor_delete_a_restricted_page(secret: Stack, auth: bool) -> None:
    rag = secret.stub(auth=auth)
    outsider = [] if not auth else [(metadata.AUTHORIZATION,
                                     f"Bearer {secret.idp.token('mallory', ['eng'], ['writer'])}")]
    code, details = _put(rag, outsider, SECRET_DOC, "FMLA leave lasts 2 weeks.", acl=[])
    assert code == grpc.StatusCode.NOT_FOUND and "revision" not in details
    code, details = _delete(rag, outsider, SECRET_DOC)
    missing_code, missing_details = _delete(rag, outsider, "travel-and-leave/no-such-page.md")
    assert code == missing_code == grpc.StatusCode.NOT_FOUND
    assert details == missing_details.replace("no-such-page", "fmla")  # word for word what a missing page gets
    _intact(secret)


def test_with_auth_off_the_claimed_group_may_write(secret: Stack) -> None:
    rag = secret.stub(auth=False)
    put(rag, secret.admin, "hr/dev-mode.md", "First.", acl=["hr"], collection="edges")
    code, _ = _put(rag, NOBODY, "hr/dev-mode.md", "Second.")
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _put(rag, HR, "hr/dev-mode.md", "Second.", acl=["hr"])
    assert code == grpc.StatusCode.OK
    code, _ = _delete(rag, HR, "hr/dev-mode.md")
    assert code == grpc.StatusCode.OK


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
@pytest.mark.parametrize("if_revision", [0, 1, 2, 999])
def test_if_revision_does_not_reveal_a_hidden_page(secret: Stack, auth: bool, if_revision: int) -> None:
    rag = secret.stub(auth=auth)
    outsider = [] if not auth else [(metadata.AUTHORIZATION, f"Bearer {secret.idp.token('mallory', [], ['writer'])}")]
    hidden = _put(rag, outsider, SECRET_DOC, "x", if_revision=if_revision)
    assert hidden[0] == grpc.StatusCode.NOT_FOUND, hidden
    assert "revision 1" not in hidden[1] and "EDGE-CANARY" not in hidden[1]
    if if_revision:  # a missing page answers the same, word for word
        missing = _put(rag, outsider, "travel-and-leave/absent.md", "x", if_revision=if_revision)
        assert missing == (hidden[0], hidden[1].replace("fmla", "absent"))
    hidden_delete = _delete(rag, outsider, SECRET_DOC, if_revision=if_revision)
    missing_delete = _delete(rag, outsider, "travel-and-leave/absent.md", if_revision=if_revision)
    assert hidden_delete == (missing_delete[0], missing_delete[1].replace("absent", "fmla"))
    _intact(secret)


BAD_IDS = {
    "travel-and-leave/fmla\u200b.md": "U+200B ZERO WIDTH SPACE",
    "travel-and-leave/\u202efdp.md": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "travel-and-leave/\u2066fmla.md": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "travel-and-leave/fmla\u00a0.md": "U+00A0 NO-BREAK SPACE",
    "travel-and-leave/fml\u0430.md": "U+0430 CYRILLIC SMALL LETTER A",
    "travel-and-leave/\uff46mla.md": "U+FF46 FULLWIDTH LATIN SMALL LETTER F",
    "travel-and-leave/fmla\ue000.md": "U+E000",
    "travel-and-leave/\u3164.md": "U+3164 HANGUL FILLER",
    "travel-and-leave/fmla\u0378.md": "U+0378",
}


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
def test_invisible_and_look_alike_ids_are_refused(secret: Stack, auth: bool) -> None:
    rag = secret.stub(auth=auth)
    meta = secret.admin if auth else NOBODY
    for doc_id, named in BAD_IDS.items():
        code, details = _put(rag, meta, doc_id, "FMLA leave lasts 2 weeks.")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and named in details, (doc_id, code, details)
    listed = rag.ListDocuments(rag_pb2.ListDocumentsRequest(collection="edges"), metadata=secret.admin, timeout=60)
    assert all(identifiers.doc_id(d.doc_id, 512) == d.doc_id for d in listed.documents)  # nothing was stored
    # NFC: a decomposed "é" is stored composed, so it cannot print like a second page
    stored = put(rag, meta, "people/cafe\u0301.md", "The café opens at eight.", collection="edges")
    assert stored.document.doc_id == "people/caf\u00e9.md"
    # the memory refuses them too (defence in depth), and stays up
    with grpc.insecure_channel(secret.system.handles["memory"].address) as channel:
        memory = memory_pb2_grpc.MemoryStub(channel)
        code, details = code_of(lambda: memory.Upsert(memory_pb2.UpsertRequest(
            doc_id="travel-and-leave/fmla\u200b.md", text="FMLA leave lasts 2 weeks.", collection="edges"), timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "U+200B" in details
        assert memory.Stats(memory_pb2.StatsRequest(), timeout=30).documents >= 1


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
def test_revisions_beyond_int63_are_invalid_argument(secret: Stack, auth: bool) -> None:
    rag = secret.stub(auth=auth)
    meta = secret.admin if auth else NOBODY
    for field, value in (("revision", 2**64 - 1), ("revision", 2**63), ("if_revision", 2**64 - 1)):
        code, details = _put(rag, meta, "overflow.md", "Overflow test.", **{field: value})
        assert code == grpc.StatusCode.INVALID_ARGUMENT and str(2**63 - 1) in details, (field, code, details)
    code, _ = _delete(rag, meta, "overflow.md", if_revision=2**64 - 1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(lambda: rag.GetSource(rag_pb2.GetSourceRequest(doc_id="overflow.md", revision=2**64 - 1),
                                            metadata=meta, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    top = put(rag, meta, f"overflow-{int(auth)}.md", "The largest revision.", collection="edges", revision=2**63 - 1)
    assert top.document.revision == 2**63 - 1
    # memory directly: INVALID_ARGUMENT, not INTERNAL from SQLite, and it keeps serving
    with grpc.insecure_channel(secret.system.handles["memory"].address) as channel:
        memory = memory_pb2_grpc.MemoryStub(channel)
        code, _ = code_of(lambda: memory.Upsert(memory_pb2.UpsertRequest(doc_id="overflow.md", text="x",
                                                                         revision=2**64 - 1), timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert memory.Stats(memory_pb2.StatsRequest(), timeout=30).documents >= 1


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
@pytest.mark.parametrize("read_k", [65, 100, 200])
def test_read_k_beyond_the_readers_limit_is_refused_before_any_work(secret: Stack, auth: bool, read_k: int) -> None:
    rag = secret.stub(auth=auth)
    meta = secret.admin if auth else NOBODY
    options = rag_pb2.AskOptions(retrieve_k=200, read_k=read_k, no_cache=True)
    started = time.monotonic()
    code, details = code_of(lambda: rag.Ask(rag_pb2.AskRequest(question="How long is FMLA leave?", options=options),
                                            metadata=meta, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 64" in details
    assert time.monotonic() - started < 1.0
    code, details = code_of(lambda: rag.Ask(rag_pb2.AskRequest(
        question="How long is FMLA leave?", options=rag_pb2.AskOptions(max_tokens=100_000)), metadata=meta, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_tokens" in details
