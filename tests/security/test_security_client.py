"""The client's credential options (token / API key, arguments or environment, CLI flags) against the orchestrator
with auth on; and checked writes racing on one page (each re-checks and lands, none is refused)."""

from __future__ import annotations

import threading

import pytest
from security_stack import Stack, put

from wikimem.cli import main as cli_main
from wikimem.client import WikimemClient
from wikimem.errors import NotFoundError, UnauthenticatedError, WikimemError
from wikimem_contract import metadata


@pytest.fixture(scope="module")
def page(stack: Stack) -> str:
    put(stack.stub(), stack.admin, "hr/client.md", "Client test page: CLIENT-CANARY-77.", acl=["hr"])
    return "hr/client.md"


def test_token_and_api_key_from_arguments_and_environment(
    stack: Stack, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIKIMEM_TOKEN", raising=False)
    monkeypatch.delenv("WIKIMEM_API_KEY", raising=False)
    address = stack.auth.address
    with WikimemClient(address, token=stack.idp.token("alice", ["hr"], ["writer"])) as client:
        assert page in [d.doc_id for d in client.list_documents()]
        assert "CLIENT-CANARY-77" in client.get_source(page, 0, 0, 34).passage
    with WikimemClient(address, api_key=stack.api_keys["ci-hr"]) as client:
        assert page in [d.doc_id for d in client.list_documents()]
    with WikimemClient(address, groups=["hr"]) as client, pytest.raises(UnauthenticatedError, match="missing"):
        list(client.list_documents())
    monkeypatch.setenv("WIKIMEM_TOKEN", stack.idp.token("bob", ["eng"], ["writer"]))
    with WikimemClient(address) as client, pytest.raises(NotFoundError):
        client.get_source(page, 0, 0, 5)
    with pytest.raises(WikimemError, match="not both"):
        WikimemClient(address, api_key=stack.api_keys["ci-hr"])
    assert metadata.AUTHORIZATION == "authorization"


def test_cli_flags(
    stack: Stack, page: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIKIMEM_TOKEN", raising=False)
    monkeypatch.delenv("WIKIMEM_API_KEY", raising=False)
    assert cli_main(["docs", "--addr", stack.auth.address, "--api-key", stack.api_keys["ci-hr"]]) == 0
    assert page in capsys.readouterr().out
    token = stack.idp.token("alice", ["hr"], ["writer"])
    assert cli_main(["docs", "--addr", stack.auth.address, "--token", token]) == 0
    assert page in capsys.readouterr().out
    assert cli_main(["docs", "--addr", stack.auth.address, "--groups", "hr"]) != 0
    assert "missing credentials" in capsys.readouterr().err


def test_checked_writes_racing_on_one_page_all_land(stack: Stack) -> None:
    rag = stack.stub()
    writer = [(metadata.AUTHORIZATION, f"Bearer {stack.idp.token('alice', ['hr'], ['writer'])}")]
    put(rag, stack.admin, "hr/raced.md", "Version 0.", acl=["hr"])
    errors: list[str] = []
    revisions: list[int] = []

    def write(n: int) -> None:
        for k in range(3):
            try:
                revisions.append(put(rag, writer, "hr/raced.md", f"Version {n}.{k}.", acl=["hr"]).document.revision)
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(revisions)) == 18
