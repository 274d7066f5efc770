"""`wikimem sync` against the real system: a folder mirrored into a collection (add, replace, delete, watch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from e2e.system import System, start_system

from wikimem.cli import main
from wikimem.client import WikimemClient
from wikimem.models import Document, PutResult
from wikimem.sync import SYNC_ROOT_KEY, Mirror

PAGES = {
    "onboarding.md": "---\ntitle: Onboarding\n---\n\n# Onboarding\n\nNew hires get their laptop from the Helpdesk "
    "on their first day.\n",
    "it/vpn.md": "---\ntitle: VPN\n---\n\n# VPN\n\nThe VPN client used at the company is called TunnelKit.\n",
    "hr/expenses.txt": "Expense reports are due within 30 days of the purchase.\n",
}


class CountingClient(WikimemClient):
    """A real client that remembers which documents it sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def put_document(self, doc_id: str, text: str, **kwargs: Any) -> PutResult:
        self.sent.append(doc_id)
        return super().put_document(doc_id, text, **kwargs)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = start_system(tmp_path_factory.mktemp("wikimem-sync-data"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def client(system: System) -> Iterator[CountingClient]:
    with CountingClient(system.address, timeout=60) as c:
        yield c


def make_wiki(root: Path, pages: Mapping[str, str] = PAGES) -> Path:
    for rel, text in pages.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def docs(client: WikimemClient, collection: str) -> dict[str, Document]:
    return {d.doc_id: d for d in client.list_documents(collection=collection)}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def test_sync_mirrors_adds_changes_and_deletes(
    system: System, client: CountingClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    coll = "sync-basic"
    code, out, _ = cli(capsys, "sync", str(wiki), "--collection", coll, "--addr", system.address)
    assert code == 0, out
    assert "3 files: 3 added, 0 changed, 0 deleted, 0 unchanged, 0 failed" in out
    first = docs(client, coll)
    assert set(first) == set(PAGES)
    assert all(d.metadata[SYNC_ROOT_KEY] == str(wiki.resolve()) for d in first.values())
    assert first["it/vpn.md"].source == str((wiki / "it" / "vpn.md").resolve())

    # a document ingested some other way in the same collection is never deleted
    client.put_document("manual/notes.md", "Meeting notes are kept in the shared drive.", collection=coll)

    (wiki / "it" / "vpn.md").write_text(PAGES["it/vpn.md"].replace("TunnelKit", "WireKit"), encoding="utf-8")
    (wiki / "hr" / "expenses.txt").unlink()
    (wiki / "new.md").write_text("# Parking\n\nVisitors park in the Blue Garage.\n", encoding="utf-8")
    code, out, _ = cli(capsys, "sync", str(wiki), "--collection", coll, "--dry-run", "--addr", system.address)
    assert code == 0
    assert "would add  new.md" in out and "would change  it/vpn.md" in out and "would delete  hr/expenses.txt" in out
    assert "1 to add, 1 to change, 1 to delete, 1 unchanged" in out
    assert docs(client, coll)["it/vpn.md"].revision == 1 and "new.md" not in docs(client, coll)  # nothing sent

    code, out, _ = cli(capsys, "sync", str(wiki), "--collection", coll, "--addr", system.address)
    assert code == 0
    assert "3 files: 1 added, 1 changed, 1 deleted, 1 unchanged, 0 failed" in out
    assert "changed  it/vpn.md (rev 2)" in out and "deleted  hr/expenses.txt (rev 1)" in out
    after = docs(client, coll)
    assert set(after) == {"onboarding.md", "it/vpn.md", "new.md", "manual/notes.md"}
    assert after["it/vpn.md"].revision == 2
    assert (
        after["onboarding.md"].revision == 1 and after["onboarding.md"].updated_at == first["onboarding.md"].updated_at
    )

    # the answer follows the synced edit, citing the new revision
    answer = client.ask("What is the VPN client called?", collection=coll)
    assert "WireKit" in answer.answer and answer.citations[0].doc_id == "it/vpn.md"
    assert answer.citations[0].revision == 2

    # an emptied folder deletes only what the folder owns
    for path in wiki.rglob("*.*"):
        path.unlink()
    code, out, _ = cli(capsys, "sync", str(wiki), "--collection", coll, "--addr", system.address)
    assert code == 0 and "0 files: 0 added, 0 changed, 3 deleted" in out
    assert set(docs(client, coll)) == {"manual/notes.md"}


def test_unchanged_files_are_not_sent(client: CountingClient, tmp_path: Path) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    coll = "sync-unchanged"
    _, report = Mirror(client, wiki, collection=coll).sync()
    assert sorted(report.added) == sorted(PAGES) and sorted(client.sent) == sorted(PAGES)

    client.sent.clear()
    _, report = Mirror(client, wiki, collection=coll).sync()  # a fresh mirror: state comes from ListDocuments
    assert client.sent == [] and sorted(report.unchanged) == sorted(PAGES)

    os.utime(wiki / "onboarding.md", ns=(1, 1))  # touched, same text: still not sent
    (wiki / "it" / "vpn.md").write_text(PAGES["it/vpn.md"] + "\nIt starts on login.\n", encoding="utf-8")
    _, report = Mirror(client, wiki, collection=coll).sync()
    assert client.sent == ["it/vpn.md"] and report.changed == ["it/vpn.md"]


def test_a_file_takes_over_a_document_put_otherwise_and_failures_are_reported(
    system: System, client: CountingClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coll = "sync-adopt"
    wiki = make_wiki(tmp_path / "wiki")
    client.put_document("it/vpn.md", PAGES["it/vpn.md"], collection=coll)  # same text, ingested by hand
    (wiki / "broken.md").write_bytes(b"caf\xe9 au lait\n")
    code, out, err = cli(capsys, "sync", str(wiki), "--collection", coll, "--addr", system.address)
    assert code == 1
    assert f"failed {wiki.resolve() / 'broken.md'}: not valid UTF-8" in err
    assert "4 files: 2 added, 1 changed, 0 deleted, 0 unchanged, 1 failed" in out
    assert docs(client, coll)["it/vpn.md"].metadata == {SYNC_ROOT_KEY: str(wiki.resolve())}
    code, _, err = cli(capsys, "sync", str(wiki / "onboarding.md"), "--addr", system.address)
    assert code == 2 and "not a directory" in err
    code, _, err = cli(capsys, "sync", str(tmp_path / "missing"), "--addr", system.address)
    assert code == 2 and "no such directory" in err


def test_collections_keep_wikis_apart(system: System, client: CountingClient, tmp_path: Path) -> None:
    a = make_wiki(tmp_path / "a", {"office.md": "# Office\n\nThe Berlin office is on the fourth floor.\n"})
    b = make_wiki(tmp_path / "b", {"office.md": "# Office\n\nThe Lisbon office is on the second floor.\n"})
    Mirror(client, a, collection="sync-a").sync()
    Mirror(client, b, collection="sync-b").sync()
    assert "fourth" in client.ask("Which floor is the office on?", collection="sync-a").answer
    assert "second" in client.ask("Which floor is the office on?", collection="sync-b").answer
    (a / "office.md").unlink()
    _, report = Mirror(client, a, collection="sync-a").sync()
    assert report.deleted == ["office.md"]
    assert "office.md" not in docs(client, "sync-a") and "office.md" in docs(client, "sync-b")


def test_watch_applies_an_edit_and_a_deletion(system: System, client: CountingClient, tmp_path: Path) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    coll = "sync-watch"
    env = {**os.environ, "WIKIMEM_ADDR": system.address, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wikimem.cli", "sync", str(wiki), "--collection", coll, "--watch", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: set(docs(client, coll)) == set(PAGES), timeout=60)
        (wiki / "it" / "vpn.md").write_text(PAGES["it/vpn.md"].replace("TunnelKit", "WireKit"), encoding="utf-8")
        edit_s = wait_for(lambda: docs(client, coll)["it/vpn.md"].revision == 2)
        answer = client.ask("What is the VPN client called?", collection=coll)
        assert "WireKit" in answer.answer and answer.citations[0].revision == 2
        (wiki / "hr" / "expenses.txt").unlink()
        delete_s = wait_for(lambda: "hr/expenses.txt" not in docs(client, coll))
        assert edit_s < 10 and delete_s < 10
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "3 files: 3 added" in out and f"watching {wiki.resolve()}" in out
    assert "changed  it/vpn.md (rev 2)" in out and "deleted  hr/expenses.txt (rev 1)" in out
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_acl_restricted_mirror_still_sees_and_deletes_its_documents(
    system: System, client: CountingClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    coll = "sync-acl"
    argv = ["sync", str(wiki), "--collection", coll, "--acl", "hr", "--addr", system.address]
    code, out, _ = cli(capsys, *argv)
    assert code == 0 and "3 added" in out
    assert docs(client, coll) == {}  # a caller outside "hr" sees nothing
    with WikimemClient(system.address, groups=["hr"]) as hr:
        assert all(d.acl == ["hr"] for d in docs(hr, coll).values()) and len(docs(hr, coll)) == 3
        (wiki / "onboarding.md").unlink()
        code, out, _ = cli(capsys, *argv)
        assert code == 0 and "2 files: 0 added, 0 changed, 1 deleted, 2 unchanged, 0 failed" in out
        assert set(docs(hr, coll)) == {"it/vpn.md", "hr/expenses.txt"}
