"""The `wikimem` CLI: arguments, output formats, error messages and exit codes (against the fake Rag server)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wikimem.cli import main

from .conftest import FakeServer

PAGES = {
    "onboarding.md": "---\ntitle: Onboarding\n---\nNew hires get a laptop from the Helpdesk on day one.\n",
    "it/vpn.md": "---\ntitle: VPN\n---\nThe VPN client is called TunnelKit.\n",
    "hr/expenses.txt": "Expense reports are due within 30 days.\n",
}


def make_wiki(root: Path) -> Path:
    for rel, text in PAGES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG")  # ignored: not Markdown/text
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.md").write_text("hidden folders are skipped")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_server_not_running_exit_3(capsys: pytest.CaptureFixture[str], dead_address: str, tmp_path: Path) -> None:
    expected = f"cannot reach wikimem at {dead_address} — start it with `wikimem serve`"
    for argv in (["ask", "hi?"], ["docs"], ["delete", "x"], ["ingest", str(make_wiki(tmp_path))]):
        code, _, err = run(capsys, *argv, "--addr", dead_address, "--timeout", "5")
        assert code == 3, argv
        assert expected in err and "Traceback" not in err


def test_console_script_without_server(dead_address: str) -> None:
    """The installed entry point: exit 3, one clear line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "wikimem.cli", "ask", "Where is the office?"],
        env={"WIKIMEM_ADDR": dead_address, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"wikimem: cannot reach wikimem at {dead_address} — start it with `wikimem serve`"


def test_ingest_bad_path_exit_2_sends_nothing(
    capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path
) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    code, _, err = run(capsys, "ingest", str(wiki), str(tmp_path / "missing"), "--addr", fake_server.address)
    assert code == 2 and "missing: no such file or directory" in err
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    code, _, err = run(capsys, "ingest", str(tmp_path / "notes.pdf"), "--addr", fake_server.address)
    assert code == 2 and "not a Markdown or text file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "ingest", str(empty), "--addr", fake_server.address)
    assert code == 2 and "no Markdown or text files" in err
    assert fake_server.rag.docs == {}


def test_ingest_folder_doc_ids_and_reingest(
    capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path
) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    code, out, _ = run(capsys, "ingest", str(wiki), "--addr", fake_server.address, "--acl", "eng,hr", "--acl", "ops")
    assert code == 0
    assert "3 files: 3 added, 0 changed, 0 unchanged, 0 failed" in out
    assert set(fake_server.rag.docs) == {(rel, "") for rel in PAGES}
    doc, text = fake_server.rag.docs[("it/vpn.md", "")]
    assert text == PAGES["it/vpn.md"] and doc.source == str(wiki / "it" / "vpn.md")
    assert list(doc.acl) == ["eng", "hr", "ops"]

    (wiki / "it" / "vpn.md").write_text("---\ntitle: VPN\n---\nThe VPN client is now called WireKit.\n")
    code, out, _ = run(capsys, "ingest", str(wiki), "--addr", fake_server.address, "--acl", "eng,hr,ops")
    assert code == 0
    assert "3 files: 0 added, 1 changed, 2 unchanged, 0 failed" in out
    assert "changed  it/vpn.md (rev 2)" in out
    assert fake_server.rag.docs[("onboarding.md", "")][0].revision == 1

    # a single file: its doc id is its name; another collection keeps it apart
    code, out, _ = run(
        capsys, "ingest", str(wiki / "it" / "vpn.md"), "--collection", "c2", "--addr", fake_server.address
    )
    assert code == 0 and ("vpn.md", "c2") in fake_server.rag.docs


def test_ingest_skips_invalid_utf8_and_reports(
    capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path
) -> None:
    wiki = make_wiki(tmp_path / "wiki")
    (wiki / "broken.md").write_bytes(b"caf\xe9 au lait\n")
    (wiki / "blank.txt").write_text("   \n")  # the server rejects empty text: reported, not fatal
    code, out, err = run(capsys, "ingest", str(wiki), "--addr", fake_server.address)
    assert code == 1
    assert f"skipped {wiki / 'broken.md'}: not valid UTF-8 (byte 0xe9 at offset 3)" in err
    assert f"skipped {wiki / 'blank.txt'}: blank.txt: text must not be empty" in err
    assert "5 files: 3 added, 0 changed, 0 unchanged, 2 failed" in out
    assert set(fake_server.rag.docs) == {(rel, "") for rel in PAGES}


def test_ask_pretty_output(capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path) -> None:
    run(capsys, "ingest", str(make_wiki(tmp_path)), "--addr", fake_server.address)
    code, out, _ = run(
        capsys,
        "ask",
        "Which client is TunnelKit?",
        "--addr",
        fake_server.address,
        "--groups",
        "eng",
        "--groups",
        "hr,ops",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "TunnelKit"
    text = PAGES["it/vpn.md"]
    start, end = text.index("TunnelKit") - 10, len(text)  # the fake cites ±10 characters around the answer
    assert lines[2] == f"[1] VPN — it/vpn.md@1 chars {start}–{end}"
    assert lines[3] == f"    “{text[start:end].strip()}”"
    assert fake_server.rag.seen_groups[-1] == "eng,hr,ops"

    code, out, _ = run(capsys, "ask", "What is the meaning of life?", "--addr", fake_server.address)
    assert code == 0 and out.startswith("No answer in the wiki (no passage answers the question).")

    code, out, _ = run(capsys, "ask", "Which client is TunnelKit?", "--stream", "--addr", fake_server.address)
    assert code == 0 and out.startswith("TunnelKit\n") and "[1] VPN — it/vpn.md@1" in out


def test_ask_errors(capsys: pytest.CaptureFixture[str], fake_server: FakeServer) -> None:
    code, _, err = run(capsys, "ask", "   ", "--addr", fake_server.address)
    assert code == 2 and "invalid_argument: question must not be empty" in err
    # the orchestrator is up but a service behind it is not: still exit 3, with the server's reason
    code, _, err = run(capsys, "ask", "BROKEN?", "--addr", fake_server.address)
    assert code == 3 and "is up but cannot answer: reader unavailable" in err
    # admission control refused it: the server's retry hint, not a bare status name
    code, _, err = run(capsys, "ask", "BUSY?", "--addr", fake_server.address)
    assert code == 1 and "server busy, retry in 2.5 s: orchestrator is at capacity" in err
    code, _, err = run(capsys, "ask", "BUSY-NOHINT?", "--addr", fake_server.address)
    assert code == 1 and "server busy: orchestrator is at capacity" in err


def test_ask_json_lines_carry_the_retry_hint(
    capsys: pytest.CaptureFixture[str], fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("BUSY?\n"))
    code, out, _ = run(capsys, "ask", "--json", "-", "--addr", fake_server.address)
    assert code == 1
    error = json.loads(out)["error"]
    assert error["code"] == "RESOURCE_EXHAUSTED" and error["retry_after_s"] == 2.5


def test_ask_json_lines_from_stdin(
    capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "ingest", str(make_wiki(tmp_path)), "--addr", fake_server.address)
    questions = "Which client is TunnelKit?\n\nWhat is the meaning of life?\nINVALID question\nExpense reports due?\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(questions))
    code, out, _ = run(capsys, "ask", "--json", "-", "--no-cache", "--addr", fake_server.address)
    assert code == 1  # one question failed
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["question"] for r in rows] == [
        "Which client is TunnelKit?",
        "What is the meaning of life?",
        "INVALID question",
        "Expense reports due?",
    ]
    first = rows[0]
    assert {"question", "answer", "abstained", "citations", "cached", "timings_ms"} <= set(first)
    assert first["answer"] == "TunnelKit" and first["abstained"] is False and first["cached"] is False
    [cit] = first["citations"]
    assert {"doc_id", "revision", "title", "source", "start", "end", "quote"} <= set(cit)
    assert cit["doc_id"] == "it/vpn.md" and cit["revision"] == 1
    assert cit["quote"] == PAGES["it/vpn.md"][cit["start"] : cit["end"]]
    assert rows[1]["abstained"] is True and rows[1]["citations"] == []
    assert rows[2]["error"] == {"code": "INVALID_ARGUMENT", "message": "question must not be empty"}
    assert rows[3]["citations"][0]["doc_id"] == "hr/expenses.txt"
    assert all(o.no_cache for o in fake_server.rag.seen_options)

    code, out, _ = run(capsys, "ask", "--json", "Which client is TunnelKit?", "--addr", fake_server.address)
    assert code == 0 and json.loads(out)["question"] == "Which client is TunnelKit?"


def test_docs_delete_source(capsys: pytest.CaptureFixture[str], fake_server: FakeServer, tmp_path: Path) -> None:
    run(capsys, "ingest", str(make_wiki(tmp_path)), "--addr", fake_server.address)
    code, out, _ = run(capsys, "docs", "--addr", fake_server.address)
    assert code == 0 and "3 documents" in out and "it/vpn.md" in out
    code, out, _ = run(capsys, "docs", "--json", "--addr", fake_server.address)
    assert sorted(json.loads(line)["doc_id"] for line in out.splitlines()) == sorted(PAGES)

    text = PAGES["it/vpn.md"]
    pos = text.index("TunnelKit")
    code, out, _ = run(
        capsys, "source", "it/vpn.md", "1", str(pos), str(pos + 9), "--context", "4", "--addr", fake_server.address
    )
    assert code == 0
    assert out.splitlines()[0].startswith(f"VPN — it/vpn.md@1 chars {pos}–{pos + 9}")
    # context before is cut (…); after reaches the end of the page (no …)
    assert out.endswith(f"\n…{text[pos - 4 : pos]}[[TunnelKit]]{text[pos + 9 :]}\n")
    code, _, err = run(capsys, "source", "it/vpn.md", "9", "0", "5", "--addr", fake_server.address)
    assert code == 1 and "not_found: it/vpn.md@9 is gone" in err

    code, out, err = run(capsys, "delete", "it/vpn.md", "nope.md", "--addr", fake_server.address)
    assert code == 1 and "deleted it/vpn.md (rev 1)" in out and "nope.md: no document 'nope.md'" in err
    assert ("it/vpn.md", "") not in fake_server.rag.docs


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["ask"], ["source", "a.md", "one", "0", "5"], ["serve", "nosuch"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()


def test_wrong_server_stops_at_first_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Something that is not wikimem listens there: one clear error (exit 3), not one per file."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        code, out, err = run(capsys, "ingest", str(make_wiki(tmp_path)), "--addr", f"127.0.0.1:{port}")
        assert code == 3 and out == ""
        assert err.count("is not a wikimem orchestrator") == 1 and "skipped" not in err
        code, _, err = run(capsys, "ask", "hello?", "--addr", f"127.0.0.1:{port}")
        assert code == 3 and "is not a wikimem orchestrator" in err
    finally:
        server.stop(0).wait()
