"""Ingest Markdown/text files into the memory: discover files, give them stable doc ids, put them concurrently.

The doc id of a file is its path relative to the folder that was given (for a file given directly: its name), so
re-ingesting a folder replaces exactly the pages that changed; unchanged pages are no-ops on the server.
Ingest never deletes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wikimem.client import WikimemClient
from wikimem.errors import UnavailableError, UnimplementedError, WikimemError
from wikimem.models import PutResult

SUFFIXES = (".md", ".markdown", ".txt")


class IngestUsageError(ValueError):
    """A path that cannot be ingested at all (missing, wrong type, clashing ids): nothing was sent."""


@dataclass(frozen=True)
class FileToIngest:
    path: Path
    doc_id: str


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: (doc id or path, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.added) + len(self.changed) + len(self.unchanged) + len(self.failed)


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def discover(paths: Sequence[str]) -> list[FileToIngest]:
    """The files to ingest, in a stable order; raises IngestUsageError for a bad path or clashing doc ids."""
    found: list[FileToIngest] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise IngestUsageError(f"{raw}: no such file or directory")
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUFFIXES and not _is_hidden(p.relative_to(path))
            )
            found.extend(FileToIngest(p, p.relative_to(path).as_posix()) for p in files)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise IngestUsageError(f"{raw}: not a Markdown or text file (expected {', '.join(SUFFIXES)})")
            found.append(FileToIngest(path, path.name))
        else:
            raise IngestUsageError(f"{raw}: not a regular file or directory")
    seen: dict[str, Path] = {}
    for item in found:
        other = seen.get(item.doc_id)
        if other is not None and other.resolve() != item.path.resolve():
            raise IngestUsageError(
                f"doc id {item.doc_id!r} would come from both {other} and {item.path}; "
                "ingest them separately or into different collections"
            )
        seen[item.doc_id] = item.path
    unique = {item.doc_id: item for item in found}
    return list(unique.values())


def read_text(path: Path) -> str:
    """The file's text; raises ValueError with a readable reason if it is unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def ingest(
    client: WikimemClient,
    files: Sequence[FileToIngest],
    *,
    collection: str = "",
    acl: Sequence[str] = (),
    workers: int = 4,
    on_done: Callable[[FileToIngest, str, str], None] | None = None,
) -> IngestReport:
    """Put every file; per-file failures are collected; an unreachable server raises UnavailableError.

    `on_done(file, outcome, detail)` is called (from worker threads, serialised) after each file with outcome one
    of "added", "changed", "unchanged", "failed".
    """
    report = IngestReport()
    lock = threading.Lock()
    stop = threading.Event()

    def one(item: FileToIngest) -> None:
        if stop.is_set():
            return
        try:
            text = read_text(item.path)
            result = client.put_document(item.doc_id, text, source=str(item.path), collection=collection, acl=list(acl))
        except ValueError as exc:
            outcome, detail = "failed", str(exc)
        except (UnavailableError, UnimplementedError):
            stop.set()  # the server is down or is not wikimem: no point in trying the other files
            raise
        except WikimemError as exc:
            outcome, detail = "failed", exc.message
        else:
            outcome, detail = put_outcome(result), f"rev {result.document.revision}"
        with lock:
            if outcome == "failed":
                report.failed.append((str(item.path), detail))
            else:
                getattr(report, outcome).append(item.doc_id)
            if on_done is not None:
                on_done(item, outcome, detail)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest") as pool:
        futures = [pool.submit(one, item) for item in files]
        error: BaseException | None = None
        for fut in futures:
            exc = fut.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error
    return report


def put_outcome(result: PutResult) -> str:
    """The outcome of a PutDocument: "added", "changed" or "unchanged"."""
    if not result.changed:
        return "unchanged"
    return "added" if result.document.revision <= 1 else "changed"


def default_workers() -> int:
    return min(8, max(2, (os.cpu_count() or 2)))
