"""Randomized: no restricted text ever reaches a caller outside the document's ACL.

Restricted pages with random ACLs each carry a unique canary string; insiders ask about them first (so the answer
cache and the QA memory hold answers that contain the canaries); then random callers (tokens with random groups,
API keys, with auth on; claimed groups with auth off) make random calls — Ask and AskStream (answers, citations,
quotes, passages; cached, paraphrased and uncached), GetSource, ListDocuments, and writes with if_revision — and
everything that comes back, replies and error messages alike, is searched for the canaries (and, for answers and
listings, the page ids) of every page the caller may not read. Seeded (WIKIMEM_LEAK_SEED, default 12); the
insiders' hits are counted too, so a test that could not see a canary at all fails.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import grpc
import pytest
from security_stack import Meta, Stack, bearer, put, source_text

from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

COLLECTION = "leaks"
GROUPS = ("hr", "legal", "sec", "fin")
VAULTS = ("amber", "cobalt", "juniper", "saffron", "tundra", "willow")
CALLS = 36


@dataclass(frozen=True)
class Page:
    doc_id: str
    vault: str
    acl: tuple[str, ...]
    canary: str

    def question(self, rng: random.Random) -> str:
        return rng.choice([
            f"What is the access code for the {self.vault} vault?",
            f"So, what is the access code for the {self.vault} vault",  # a QA-memory paraphrase
            f"Which code opens the {self.vault} vault?",
        ])


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...]
    meta: Meta
    auth: bool

    def may_read(self, page: Page) -> bool:
        return bool(set(page.acl) & set(self.groups))


@pytest.fixture(scope="module")
def pages(stack: Stack) -> list[Page]:
    rng = random.Random(int(os.environ.get("WIKIMEM_LEAK_SEED", "12")))
    rag = stack.stub()
    made: list[Page] = []
    for vault in VAULTS:
        acl = tuple(sorted(rng.sample(GROUPS, rng.choice([1, 1, 2]))))
        canary = f"CNRY{rng.getrandbits(40):010X}"
        page = Page(f"vaults/{vault}.md", vault, acl, canary)
        text = (f"# The {vault} vault\n\nThe access code for the {vault} vault is {canary}. "
                f"It is changed every {rng.randint(2, 9)} weeks by the {acl[0]} team.\n")
        put(rag, stack.admin, page.doc_id, text, acl=list(acl), collection=COLLECTION, title=f"{vault} vault")
        made.append(page)
    put(rag, stack.admin, "vaults/public.md", "# Vaults\n\nEvery vault has an access code; ask its owners for it.\n",
        collection=COLLECTION)
    return made


def make_caller(stack: Stack, rng: random.Random, n: int) -> Caller:
    groups = tuple(sorted(rng.sample(GROUPS, rng.choice([0, 1, 1, 2]))))
    auth = rng.random() < 0.75
    if not auth:
        return Caller(f"claimed{n}", groups, [(metadata.GROUPS, ",".join(groups))] if groups else [], False)
    # a groups header that claims everything: ignored with auth on
    noise = [(metadata.GROUPS, ",".join(GROUPS))] if rng.random() < 0.3 else []
    token = stack.idp.token(f"user{n}", groups, ["writer"])
    return Caller(f"user{n}", groups, [*bearer(token), *noise], True)


def invoke(rag: rag_pb2_grpc.RagStub, caller: Caller, page: Page, rng: random.Random) -> tuple[str, str]:
    """(kind, everything the caller got back as text)."""
    kind = rng.choice(["ask", "ask", "ask", "stream", "source", "list", "put", "delete"])
    options = rag_pb2.AskOptions(collection=COLLECTION, include_passages=rng.random() < 0.5,
                                 no_qa_memory=rng.random() < 0.2, no_cache=rng.random() < 0.2)
    try:
        if kind == "ask":
            reply: object = rag.Ask(rag_pb2.AskRequest(question=page.question(rng), options=options),
                                    metadata=caller.meta, timeout=120)
        elif kind == "stream":
            reply = list(rag.AskStream(rag_pb2.AskStreamRequest(question=page.question(rng), options=options),
                                       metadata=caller.meta, timeout=120))
        elif kind == "source":
            reply = rag.GetSource(rag_pb2.GetSourceRequest(doc_id=page.doc_id, collection=COLLECTION, start=0,
                                                           end=rng.randint(0, 40), context_chars=500),
                                  metadata=caller.meta, timeout=60)
        elif kind == "list":
            reply = rag.ListDocuments(rag_pb2.ListDocumentsRequest(collection=COLLECTION), metadata=caller.meta,
                                      timeout=60)
        elif kind == "put":  # probes existence, never changes the page: only an outsider sends its revision (1)
            if_revision = rng.choice([0, 1, 2, 10**6])
            if if_revision == 1 and caller.may_read(page):
                if_revision = 2  # an insider's write would land (and make the page public)
            reply = rag.PutDocument(rag_pb2.PutDocumentRequest(
                doc_id=page.doc_id, collection=COLLECTION, text="Probe.", if_revision=if_revision),
                metadata=caller.meta, timeout=60)
        else:
            reply = rag.DeleteDocument(rag_pb2.DeleteDocumentRequest(
                doc_id=page.doc_id, collection=COLLECTION, if_revision=10**6), metadata=caller.meta, timeout=60)
    except grpc.RpcError as exc:
        return kind, f"{exc.code()} {exc.details()}"
    return kind, str(reply)


def test_no_restricted_text_reaches_an_outsider(stack: Stack, pages: list[Page]) -> None:
    rng = random.Random(int(os.environ.get("WIKIMEM_LEAK_SEED", "12")) + 1)
    rag_auth, rag_plain = stack.stub(auth=True), stack.stub(auth=False)
    insider_hits = 0
    # insiders first: their answers (with the canaries) go into the answer cache and the QA memory
    for page in pages:
        insider = bearer(stack.idp.token("owner", page.acl, ["writer"]))
        answer = rag_auth.Ask(rag_pb2.AskRequest(question=f"What is the access code for the {page.vault} vault?",
                                                 options=rag_pb2.AskOptions(collection=COLLECTION)),
                              metadata=insider, timeout=120)
        insider_hits += page.canary in str(answer)
    leaks: list[str] = []
    calls = 0
    for n in range(CALLS):
        caller = make_caller(stack, rng, n)
        page = rng.choice(pages)
        if rng.random() < 0.5:  # half the calls aim at a page the caller may not read
            hidden = [p for p in pages if not caller.may_read(p)]
            page = rng.choice(hidden) if hidden else page
        kind, seen = invoke(rag_auth if caller.auth else rag_plain, caller, page, rng)
        calls += 1
        for other in pages:
            if caller.may_read(other):
                insider_hits += other.canary in seen
                continue
            if other.canary in seen:
                leaks.append(f"{caller.name} {caller.groups} {kind} on {page.doc_id}: canary of {other.doc_id}")
            if kind in ("ask", "stream", "list") and other.doc_id in seen:
                leaks.append(f"{caller.name} {caller.groups} {kind}: id of {other.doc_id} {other.acl}")
            if kind in ("put", "delete") and page is other and "revision" in seen.split(" ", 1)[1]:
                leaks.append(f"{caller.name} {kind} on hidden {other.doc_id} mentions a revision: {seen}")
    assert calls == CALLS
    assert not leaks, "\n".join(leaks)
    assert insider_hits >= len(pages)  # the canaries were there to be found
    # the probes changed nothing: every page still holds its canary under its ACL (else later calls had less to leak)
    everyone = bearer(stack.idp.token("auditor", GROUPS, []))
    for page in pages:
        assert page.canary in source_text(rag_auth, everyone, page.doc_id, COLLECTION), page.doc_id
