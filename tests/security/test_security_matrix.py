"""The caller x call matrix against the orchestrator with WIKIMEM_AUTH=jwt,apikey (real tokens signed by a test
key, a JWKS file, an API keys file, the real services), and what surrounds it: groups header ignored, roles for
writes and for the generative reader, health and reflection open, revocation and key rotation without a restart,
the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_stack import (
    EC_KID,
    Meta,
    Stack,
    api_key,
    bearer,
    code_of,
    put,
    source_text,
    write_keys,
)

from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc
from wikimem_orchestrator.auth.apikeys import digest, mint
from wikimem_orchestrator.auth.apikeys import main as apikeys_main

HR_DOC = "hr/leave-policy.md"
HR_TEXT = (
    "# Leave policy\n\nFMLA leave lasts 12 weeks in any 12-month period. "
    "Ask the leave desk; its door code is LEAVE-CANARY-9431.\n"
)
CANARY = "LEAVE-CANARY-9431"
PUBLIC_DOC = "public/canteen.md"
PUBLIC_TEXT = "# Canteen\n\nThe canteen opens at noon and closes at three in the afternoon.\n"
QUESTION = "How long does FMLA leave last?"

#: Callers whose credential is refused, and what the message must say.
REFUSED = {
    "anonymous": "missing credentials",
    "expired": "expired",
    "bad-signature": "bad signature",
    "other-issuer": "wrong issuer",
    "wrong-audience": "wrong audience",
    "revoked-key": "revoked",
    "unknown-key": "unknown API key",
}
#: Callers in the hr group with the writer role.
INSIDERS = ("right-group", "right-group-es256", "api-key")
OUTSIDERS = ("wrong-group",)
CALLS = ("Ask", "AskStream", "GetSource", "ListDocuments", "PutDocument", "DeleteDocument")
#: What an outsider (valid credential, not in the document's ACL) gets: the same as for a missing document.
OUTSIDER_CODES = {
    "Ask": grpc.StatusCode.OK,
    "AskStream": grpc.StatusCode.OK,
    "GetSource": grpc.StatusCode.NOT_FOUND,
    "ListDocuments": grpc.StatusCode.OK,
    "PutDocument": grpc.StatusCode.NOT_FOUND,
    "DeleteDocument": grpc.StatusCode.NOT_FOUND,
}


def caller(stack: Stack, name: str) -> Meta:
    idp = stack.idp
    now = int(time.time())
    tokens = {
        "anonymous": None,
        "expired": idp.token("alice", ["hr"], ["writer"], exp=now - 60, iat=now - 600, nbf=now - 600),
        "bad-signature": idp.token("alice", ["hr"], ["writer"], key=idp.attacker),
        "other-issuer": idp.token("alice", ["hr"], ["writer"], iss="https://evil.test/realms/wikimem"),
        "wrong-audience": idp.token("alice", ["hr"], ["writer"], aud="another-app"),
        "right-group": idp.token("alice", ["hr"], ["writer"]),
        "right-group-es256": idp.token("erin", ["hr"], ["writer"], kid=EC_KID, alg="ES256"),
        "wrong-group": idp.token("bob", ["eng"], ["writer"]),
    }
    keys = {"api-key": "ci-hr", "revoked-key": "revoked-bot"}
    if name in keys:
        return api_key(stack.api_keys[keys[name]])
    if name == "unknown-key":
        return api_key(mint())
    token = tokens[name]
    return [] if token is None else bearer(token)


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> Stack:
    rag = stack.stub()
    put(rag, stack.admin, HR_DOC, HR_TEXT, acl=["hr"], title="Leave policy")
    put(rag, stack.admin, PUBLIC_DOC, PUBLIC_TEXT, title="Canteen")
    return stack


def run_call(stack: Stack, rag: rag_pb2_grpc.RagStub, call: str, meta: Meta, target: str) -> Callable[[], object]:
    options = rag_pb2.AskOptions(include_passages=True)
    requests: dict[str, Callable[[], object]] = {
        "Ask": lambda: rag.Ask(rag_pb2.AskRequest(question=QUESTION, options=options), metadata=meta, timeout=120),
        "AskStream": lambda: list(rag.AskStream(rag_pb2.AskStreamRequest(question=QUESTION, options=options),
                                                metadata=meta, timeout=120)),
        "GetSource": lambda: rag.GetSource(rag_pb2.GetSourceRequest(doc_id=HR_DOC, start=0, end=len(HR_TEXT)),
                                           metadata=meta, timeout=60),
        "ListDocuments": lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=meta, timeout=60),
        "PutDocument": lambda: put(rag, meta, target, "Overwritten: FMLA leave lasts 2 weeks.", acl=[]),
        "DeleteDocument": lambda: rag.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id=target), metadata=meta,
                                                     timeout=60),
    }
    return requests[call]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("who", [*REFUSED, *INSIDERS, *OUTSIDERS])
def test_matrix(seeded: Stack, who: str, call: str) -> None:
    stack = seeded
    rag = stack.stub()
    target = f"hr/matrix-{who}-{call}.md"
    if call in ("PutDocument", "DeleteDocument"):  # a restricted document of its own for each write case
        put(rag, stack.admin, target, f"Matrix target of {who}: {CANARY}.", acl=["hr"])
    result: list[object] = []

    def invoke() -> object:
        value = run_call(stack, rag, call, caller(stack, who), target)()
        result.append(value)
        return value

    code, details = code_of(invoke)
    if who in REFUSED:
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        assert REFUSED[who] in details
    elif who in OUTSIDERS:
        assert code == OUTSIDER_CODES[call], (code, details)
        if code == grpc.StatusCode.NOT_FOUND:
            assert "revision" not in details and CANARY not in details
        if result:
            assert CANARY not in str(result[0]) and HR_DOC not in str(result[0])
    else:
        assert code == grpc.StatusCode.OK, (code, details)
        text = str(result[0])
        if call in ("Ask", "AskStream"):
            assert HR_DOC in text  # retrieved (passages) and cited
        elif call == "GetSource":
            assert CANARY in text
        elif call == "ListDocuments":
            assert HR_DOC in text
    if call == "PutDocument":
        after = source_text(rag, stack.admin, target)
        assert ("Overwritten" in after) == (who in INSIDERS)
    if call == "DeleteDocument":
        gone, _ = code_of(lambda: source_text(rag, stack.admin, target))
        assert (gone == grpc.StatusCode.NOT_FOUND) == (who in INSIDERS)


def test_groups_header_is_ignored_when_auth_is_on(seeded: Stack) -> None:
    rag = seeded.stub()
    outsider = [*caller(seeded, "wrong-group"), (metadata.GROUPS, "hr")]
    code, _ = code_of(lambda: rag.GetSource(rag_pb2.GetSourceRequest(doc_id=HR_DOC, start=0, end=5),
                                            metadata=outsider, timeout=60))
    assert code == grpc.StatusCode.NOT_FOUND
    listed = rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=outsider, timeout=60)
    assert HR_DOC not in [d.doc_id for d in listed.documents]
    answer = rag.Ask(rag_pb2.AskRequest(question=QUESTION, options=rag_pb2.AskOptions(include_passages=True)),
                     metadata=outsider, timeout=120)
    assert CANARY not in str(answer) and HR_DOC not in str(answer)
    code, details = code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=[(metadata.GROUPS,
                                                                                                  "hr")], timeout=60))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "missing credentials" in details
    # the default orchestrator (auth off) does trust the header: that is the local-dev mode, and why it is loopback
    plain = seeded.stub(auth=False)
    assert plain.GetSource(rag_pb2.GetSourceRequest(doc_id=HR_DOC, start=0, end=5), metadata=[(metadata.GROUPS,
                           "hr")], timeout=60).passage == HR_TEXT[:5]


def test_writes_need_a_writer_role_and_acl_membership(seeded: Stack) -> None:
    rag = seeded.stub()
    reader = api_key(seeded.api_keys["reader-bot"])  # in hr, no writer role
    code, details = code_of(lambda: put(rag, reader, "hr/new.md", "text", acl=["hr"]))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "apikey:reader-bot may not write" in details
    code, details = code_of(lambda: rag.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id=HR_DOC),
                                                       metadata=reader, timeout=60))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # a writer cannot restrict a page to a group it is not in (it could not read it back)
    eng_writer = bearer(seeded.idp.token("bob", ["eng"], ["writer"]))
    code, details = code_of(lambda: put(rag, eng_writer, "legal/planted.md", "Planted.", acl=["legal"]))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "legal" in details
    assert put(rag, eng_writer, "eng/own.md", "Ours.", acl=["eng"]).document.revision >= 1
    # an insider may change the ACL of a page it can read (here: make it public, then restrict it again)
    insider = caller(seeded, "right-group")
    put(rag, seeded.admin, "hr/acl-change.md", "Restricted first.", acl=["hr"])
    assert put(rag, insider, "hr/acl-change.md", "Now public.", acl=[]).document.acl == []
    assert list(put(rag, insider, "hr/acl-change.md", "Restricted again.", acl=["hr"]).document.acl) == ["hr"]


def test_generative_reader_needs_the_llm_role(seeded: Stack) -> None:
    rag = seeded.stub()
    insider = caller(seeded, "right-group")  # roles: writer, not llm
    for reader in ("local-llm", "openai"):
        options = rag_pb2.AskOptions(reader=reader)
        started = time.monotonic()
        code, details = code_of(lambda o=options: rag.Ask(rag_pb2.AskRequest(question=QUESTION, options=o),
                                                          metadata=insider, timeout=60))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "llm" in details, (code, details)
        assert time.monotonic() - started < 2.0  # refused before any retrieval or model load
        code, _ = code_of(lambda o=options: rag.AskStream(rag_pb2.AskStreamRequest(question=QUESTION, options=o),
                                                          metadata=insider, timeout=60))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    assert rag.Ask(rag_pb2.AskRequest(question=QUESTION, options=rag_pb2.AskOptions(reader="extractive")),
                   metadata=insider, timeout=120).reader == "extractive"


def test_health_and_reflection_stay_open(seeded: Stack) -> None:
    with grpc.insecure_channel(seeded.auth.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=10)
        names = [s.name for r in replies for s in r.list_services_response.service]
        assert "wikimem.v1.Rag" in names


def test_revoking_a_key_needs_no_restart(seeded: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    rag = seeded.stub()
    assert apikeys_main(["new", "--id", "temp-bot", "--groups", "hr", "--roles", "writer",
                         "--file", str(seeded.keys_file)]) == 0
    key = capsys.readouterr().out.split("): ", 1)[1].split()[0]
    assert key.startswith("wmk_") and digest(key) in seeded.keys_file.read_text()
    assert key not in seeded.keys_file.read_text()  # only the hash is kept
    listed = rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=api_key(key), timeout=60)
    assert HR_DOC in [d.doc_id for d in listed.documents]
    assert apikeys_main(["revoke", "--id", "temp-bot", "--file", str(seeded.keys_file)]) == 0
    code, details = code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=api_key(key),
                                                      timeout=60))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "'temp-bot' is revoked" in details


def test_a_rotated_signing_key_is_picked_up_without_restart(seeded: Stack) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rag = seeded.stub()
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = seeded.idp.token("carol", ["hr"], [], key=new_key, kid="test-rsa-2")
    code, details = code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=bearer(token),
                                                      timeout=60))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "'test-rsa-2' is not in the IdP's key set" in details
    seeded.idp.publish(new_key, "test-rsa-2", "RS256")
    listed = rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=bearer(token), timeout=60)
    assert HR_DOC in [d.doc_id for d in listed.documents]


def test_the_audit_log_has_every_write_and_every_denied_call(seeded: Stack) -> None:
    rag = seeded.stub()
    insider = caller(seeded, "api-key")
    written = put(rag, insider, "hr/audited.md", "Audited text.", acl=["hr"])
    code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=[], timeout=60))
    code_of(lambda: rag.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id="hr/audited.md"),
                                       metadata=caller(seeded, "wrong-group"), timeout=60))
    rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=insider, timeout=60)
    lines = seeded.audit_lines()
    for line in lines:
        assert set(line) >= {"time", "who", "groups", "method", "doc_id", "revision", "outcome", "peer"}
    ok = [x for x in lines if x["method"] == "PutDocument" and x["doc_id"] == "hr/audited.md"]
    assert ok and ok[-1]["who"] == "apikey:ci-hr" and ok[-1]["outcome"] == "OK"
    assert ok[-1]["revision"] == written.document.revision and ok[-1]["groups"] == ["hr"]
    assert ok[-1]["peer"].startswith(("ipv4:", "ipv6:"))
    denied = [x for x in lines if x["method"] == "ListDocuments" and x["outcome"] == "UNAUTHENTICATED"]
    assert denied and denied[-1]["who"] == "anonymous" and "missing credentials" in denied[-1]["message"]
    refused = [x for x in lines if x["method"] == "DeleteDocument" and x["doc_id"] == "hr/audited.md"]
    assert refused and refused[-1]["who"] == "jwt:bob" and refused[-1]["outcome"] == "NOT_FOUND"
    # reads that succeed are not audited
    assert not [x for x in lines if x["method"] == "ListDocuments" and x["outcome"] == "OK"]


@pytest.fixture
def broken_keys_file(seeded: Stack) -> Iterator[None]:
    original = seeded.keys_file.read_text()
    seeded.keys_file.write_text("{not json")
    try:
        yield
    finally:
        seeded.keys_file.write_text(original)


def test_an_unreadable_keys_file_refuses_every_key(seeded: Stack, broken_keys_file: None) -> None:
    rag = seeded.stub()
    code, details = code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(),
                                                      metadata=caller(seeded, "api-key"), timeout=60))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "key file is invalid" in details


def test_a_keys_file_edit_takes_effect_at_once(seeded: Stack) -> None:
    rag = seeded.stub()
    original = seeded.keys_file.read_text()
    fresh = mint()
    try:
        write_keys(seeded.keys_file, [{"id": "edited", "sha256": digest(fresh), "groups": ["hr"], "roles": []}])
        assert rag.ListDocuments(rag_pb2.ListDocumentsRequest(), metadata=api_key(fresh), timeout=60).documents
        code, _ = code_of(lambda: rag.ListDocuments(rag_pb2.ListDocumentsRequest(),
                                                    metadata=caller(seeded, "api-key"), timeout=60))
        assert code == grpc.StatusCode.UNAUTHENTICATED  # ci-hr is no longer in the file
    finally:
        seeded.keys_file.write_text(original)
