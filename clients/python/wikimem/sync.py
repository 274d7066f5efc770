"""Mirror a folder into a collection: add new files, replace changed ones, delete documents whose file is gone.

Ownership: every document `sync` puts carries the metadata `wikimem.sync_root = <absolute folder path>`, and sync
only ever deletes documents of its collection that carry the same root, so documents ingested any other way (or
mirrored from another folder) are never deleted. A file whose doc id matches a document put some other way takes
that document over (it is replaced and marked as owned).

Unchanged files are not sent at all: the sha256 of a file's text is compared with the stored document's
`content_sha256` from ListDocuments. Doc ids are paths relative to the folder, as for `wikimem ingest`.

`Mirror` keeps what it knows of the server (revision and hash of each document) and the hash of each local file
keyed on its (mtime, size), so a watch loop re-reads only files whose stamp changed and sends only real changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wikimem.client import WikimemClient
from wikimem.errors import AbortedError, NotFoundError, UnavailableError, UnimplementedError, WikimemError
from wikimem.ingest import IngestReport, IngestUsageError, discover, put_outcome, read_text
from wikimem.models import Document
from wikimem_contract.content import content_sha256

SYNC_ROOT_KEY = "wikimem.sync_root"

#: (st_mtime_ns, st_size): a file is re-read only when this changes.
Stamp = tuple[int, int]
#: on_done(outcome, doc id or path, detail); outcome is "added", "changed", "deleted", "unchanged" or "failed".
OnDone = Callable[[str, str, str], None]


@dataclass(frozen=True)
class LocalFile:
    doc_id: str
    path: Path
    stamp: Stamp
    sha256: str | None
    #: Why the file cannot be synced (unreadable, not UTF-8); sha256 is None then.
    error: str | None = None


@dataclass(frozen=True)
class RemoteDoc:
    doc_id: str
    revision: int
    sha256: str
    acl: tuple[str, ...]
    #: Put by a sync of this very folder: only such documents may be deleted.
    owned: bool


@dataclass
class SyncPlan:
    puts: list[LocalFile] = field(default_factory=list)
    deletes: list[RemoteDoc] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Files that cannot be read (`error` says why).
    unreadable: list[LocalFile] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return len(self.puts) + len(self.deletes)


@dataclass
class SyncReport(IngestReport):
    """An ingest report plus the documents deleted because their files are gone."""

    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.total} files: {len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed"
        )


def sync_root(path: str | Path) -> Path:
    """The folder to mirror, absolute; raises IngestUsageError if it is not a directory."""
    root = Path(path)
    if not root.exists():
        raise IngestUsageError(f"{path}: no such directory")
    if not root.is_dir():
        raise IngestUsageError(f"{path}: not a directory (sync mirrors a folder; use `wikimem ingest` for files)")
    return root.resolve()


class Mirror:
    """One folder mirrored into one collection. Not thread-safe: drive it from one thread."""

    def __init__(
        self,
        client: WikimemClient,
        root: str | Path,
        *,
        collection: str = "",
        acl: Sequence[str] = (),
        workers: int = 4,
    ) -> None:
        self.client = client
        self.root = sync_root(root)
        self.collection = collection
        self.acl = tuple(sorted(set(acl)))
        self.workers = max(1, workers)
        self.metadata = {SYNC_ROOT_KEY: str(self.root)}
        #: What the server holds, as far as this mirror knows (kept up to date by its own writes).
        self.remote: dict[str, RemoteDoc] = {}
        self._hashes: dict[Path, tuple[Stamp, str | None, str | None]] = {}
        #: Stamp of a local file whose last attempt failed: not retried (nor reported again) until it changes.
        self._failed: dict[str, Stamp] = {}

    # ------------------------------------------------------------------ state

    def load_remote(self) -> None:
        """Read the collection's documents (ListDocuments); raises WikimemError if the server cannot be asked."""
        self.remote = {d.doc_id: self._remote(d) for d in self.client.list_documents(collection=self.collection)}

    def _remote(self, doc: Document) -> RemoteDoc:
        return RemoteDoc(
            doc_id=doc.doc_id,
            revision=doc.revision,
            sha256=doc.content_sha256,
            acl=tuple(sorted(doc.acl)),
            owned=doc.metadata.get(SYNC_ROOT_KEY) == str(self.root),
        )

    def scan(self) -> dict[str, LocalFile]:
        """The folder's files (as `wikimem ingest` finds them), hashing only those whose stamp changed."""
        files = discover([str(self.root)])
        local: dict[str, LocalFile] = {}
        hashes: dict[Path, tuple[Stamp, str | None, str | None]] = {}
        for item in files:
            try:
                st = item.path.stat()
            except OSError:
                continue  # vanished between listing and stat: gone
            stamp = (st.st_mtime_ns, st.st_size)
            known = self._hashes.get(item.path)
            if known is not None and known[0] == stamp:
                sha, error = known[1], known[2]
            else:
                try:
                    sha, error = content_sha256(read_text(item.path)), None
                except ValueError as exc:
                    sha, error = None, str(exc)
            hashes[item.path] = (stamp, sha, error)
            local[item.doc_id] = LocalFile(item.doc_id, item.path, stamp, sha, error)
        self._hashes = hashes
        return local

    def plan(self, local: dict[str, LocalFile], retry_failed: bool = True) -> SyncPlan:
        """What to send. With `retry_failed=False` a file that failed is skipped until it changes (watch mode)."""
        plan = SyncPlan()
        for doc_id, f in sorted(local.items()):
            if not retry_failed and self._failed.get(doc_id) == f.stamp:
                continue
            if f.error is not None:
                plan.unreadable.append(f)
                continue
            r = self.remote.get(doc_id)
            if r is not None and r.owned and r.sha256 == f.sha256 and r.acl == self.acl:
                plan.unchanged.append(doc_id)
            else:
                plan.puts.append(f)
        plan.deletes = [r for doc_id, r in sorted(self.remote.items()) if r.owned and doc_id not in local]
        return plan

    # ------------------------------------------------------------------ writes

    def apply(self, plan: SyncPlan, on_done: OnDone | None = None) -> SyncReport:
        """Send the plan's puts and deletes concurrently; per-document failures are reported, not raised.
        An unreachable server (or one that is not wikimem) raises UnavailableError / UnimplementedError."""
        report = SyncReport(unchanged=list(plan.unchanged))
        lock = threading.Lock()
        stop = threading.Event()
        for f in plan.unreadable:
            self._record(report, "failed", str(f.path), f.error or "", on_done, lock, failed_stamp=(f.doc_id, f.stamp))

        def put(f: LocalFile) -> None:
            if stop.is_set():
                return
            before = self.remote.get(f.doc_id)
            try:
                text = read_text(f.path)
                result = self.client.put_document(
                    f.doc_id,
                    text,
                    source=str(f.path),
                    collection=self.collection,
                    acl=list(self.acl),
                    metadata=self.metadata,
                )
            except (UnavailableError, UnimplementedError):
                stop.set()
                raise
            except (ValueError, WikimemError) as exc:
                reason = exc.message if isinstance(exc, WikimemError) else str(exc)
                self._record(report, "failed", str(f.path), reason, on_done, lock, failed_stamp=(f.doc_id, f.stamp))
                return
            outcome = put_outcome(result)
            if outcome != "unchanged":
                outcome = "changed" if before is not None else "added"
            with lock:
                self.remote[f.doc_id] = self._remote(result.document)
                self._failed.pop(f.doc_id, None)
            self._record(report, outcome, f.doc_id, f"rev {result.document.revision}", on_done, lock)

        def delete(r: RemoteDoc) -> None:
            if stop.is_set():
                return
            try:
                revision = self.client.delete_document(r.doc_id, collection=self.collection, if_revision=r.revision)
                detail = f"rev {revision}"
            except NotFoundError:
                detail = "already gone"
            except AbortedError:
                with lock:
                    self.remote.pop(r.doc_id, None)  # re-read on the next full sync
                self._record(
                    report,
                    "failed",
                    r.doc_id,
                    f"changed on the server since revision {r.revision}; not deleted (sync again to re-check)",
                    on_done,
                    lock,
                )
                return
            except (UnavailableError, UnimplementedError):
                stop.set()
                raise
            except WikimemError as exc:
                self._record(report, "failed", r.doc_id, exc.message, on_done, lock)
                return
            with lock:
                self.remote.pop(r.doc_id, None)
            self._record(report, "deleted", r.doc_id, detail, on_done, lock)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sync") as pool:
            futures = [pool.submit(put, f) for f in plan.puts] + [pool.submit(delete, r) for r in plan.deletes]
            error: BaseException | None = None
            for fut in futures:
                exc = fut.exception()
                if exc is not None and error is None:
                    error = exc
            if error is not None:
                raise error
        return report

    def _record(
        self,
        report: SyncReport,
        outcome: str,
        name: str,
        detail: str,
        on_done: OnDone | None,
        lock: threading.Lock,
        failed_stamp: tuple[str, Stamp] | None = None,
    ) -> None:
        with lock:
            if outcome == "failed":
                report.failed.append((name, detail))
                if failed_stamp is not None:
                    self._failed[failed_stamp[0]] = failed_stamp[1]
            else:
                getattr(report, outcome).append(name)
            if on_done is not None:
                on_done(outcome, name, detail)

    def sync(self, on_done: OnDone | None = None, *, dry_run: bool = False) -> tuple[SyncPlan, SyncReport]:
        """One full pass: read the server's state, scan the folder, apply the difference (unless `dry_run`)."""
        self.load_remote()
        plan = self.plan(self.scan())
        if dry_run:
            failed = [(str(f.path), f.error or "") for f in plan.unreadable]
            return plan, SyncReport(unchanged=list(plan.unchanged), failed=failed)
        return plan, self.apply(plan, on_done)

    def step(self, on_done: OnDone | None = None) -> SyncReport:
        """One watch tick: rescan (cheap when nothing changed) and apply changes against the known state.
        A file that failed is not retried until it changes."""
        plan = self.plan(self.scan(), retry_failed=False)
        plan.unchanged = []
        if not plan.actions and not plan.unreadable:
            return SyncReport()
        return self.apply(plan, on_done)
