"""The edge backend's document registry: sqlite3 (stdlib, WAL) in the data directory.

Holds each document's current revision, metadata and full text (for GetSource-style context), the memory's
write generation and the embedding model of its vectors. Revisions are mirrored in a dict so the search
post-filter never touches sqlite.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from .base import LEGACY_EMBEDDING_MODEL, LEGACY_EMBEDDING_MODEL_ADOPTED, DocRecord, WriteConflict, next_generation

log = logging.getLogger("wikimem.memory.registry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;
-- Text settings (the embedding model); added later, so older registries get it on open.
CREATE TABLE IF NOT EXISTS meta_text (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
"""


class SqliteRegistry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._revisions: dict[tuple[str, str], int] = {
            (c, d): int(r) for c, d, r in self._db.execute("SELECT collection, doc_id, revision FROM documents")
        }
        self._generation = int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
        self._embedding_model = self._read_embedding_model()
        if not self._embedding_model and self._revisions:
            log.warning(LEGACY_EMBEDDING_MODEL_ADOPTED, extra={"registry": str(path)})
            self.record_embedding_model(LEGACY_EMBEDDING_MODEL)

    def _read_embedding_model(self) -> str:
        row = self._db.execute("SELECT value FROM meta_text WHERE key='embedding_model'").fetchone()
        return str(row[0]) if row else ""

    def get(self, collection: str, doc_id: str) -> DocRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM documents WHERE collection=? AND doc_id=?", (collection, doc_id)
            ).fetchone()
        return DocRecord.from_json(json.loads(row[0])) if row else None

    def deleted_revision(self, collection: str, doc_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT revision FROM tombstones WHERE collection=? AND doc_id=?", (collection, doc_id)
            ).fetchone()
        return int(row[0]) if row else 0

    def get_text(self, collection: str, doc_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text FROM documents WHERE collection=? AND doc_id=?", (collection, doc_id)
            ).fetchone()
        return str(row[0]) if row else None

    def revisions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        revs = self._revisions
        return {k: revs[k] for k in keys if k in revs}

    def _bump(self) -> int:
        self._generation = next_generation(self._generation)
        self._db.execute("UPDATE meta SET value=? WHERE key='generation'", (self._generation,))
        return self._generation

    def _check(self, collection: str, doc_id: str, expect: int | None) -> None:
        """Inside the write transaction: the compare of a compare-and-set (see Registry.put)."""
        if expect is None:
            return
        row = self._db.execute(
            "SELECT revision FROM documents WHERE collection=? AND doc_id=?", (collection, doc_id)
        ).fetchone()
        current = int(row[0]) if row else 0
        if current != expect:
            raise WriteConflict(f"document {doc_id!r} is at revision {current}, not {expect}")

    def put(self, record: DocRecord, text: str, expect: int | None = None) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._check(record.collection, record.doc_id, expect)
                self._db.execute(
                    "INSERT OR REPLACE INTO documents (collection, doc_id, revision, record, text) VALUES (?,?,?,?,?)",
                    (record.collection, record.doc_id, record.revision, json.dumps(record.to_json()), text),
                )
                generation = self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._generation = int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
                raise
            self._revisions[(record.collection, record.doc_id)] = record.revision
            return generation

    def delete(self, collection: str, doc_id: str, expect: int | None = None) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._check(collection, doc_id, expect)
                row = self._db.execute(
                    "SELECT revision FROM documents WHERE collection=? AND doc_id=?", (collection, doc_id)
                ).fetchone()
                if row:
                    self._db.execute(
                        "INSERT OR REPLACE INTO tombstones (collection, doc_id, revision) VALUES (?,?,?)",
                        (collection, doc_id, int(row[0])),
                    )
                self._db.execute("DELETE FROM documents WHERE collection=? AND doc_id=?", (collection, doc_id))
                generation = self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._generation = int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
                raise
            self._revisions.pop((collection, doc_id), None)
            return generation

    def list(
        self,
        collection: str,
        groups: Sequence[str] | None,
        doc_ids: Sequence[str] | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[DocRecord], str | None]:
        out: list[DocRecord] = []
        cursor = after or ""
        wanted = set(doc_ids) if doc_ids else None
        batch = max(limit, 64)
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT doc_id, record FROM documents WHERE collection=? AND doc_id>? ORDER BY doc_id LIMIT ?",
                    (collection, cursor, batch),
                ).fetchall()
            for doc_id, raw in rows:
                cursor = doc_id
                if wanted is not None and doc_id not in wanted:
                    continue
                record = DocRecord.from_json(json.loads(raw))
                if groups is not None and not record.visible_to(groups):
                    continue
                out.append(record)
                if len(out) == limit:
                    return out, cursor
            if len(rows) < batch:
                return out, None

    def generation(self) -> int:
        return self._generation

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT collection, COUNT(*) FROM documents GROUP BY collection").fetchall()
        return {str(c): int(n) for c, n in rows}

    def embedding_model(self) -> str:
        return self._embedding_model

    def record_embedding_model(self, model_id: str) -> str:
        with self._lock:
            if not self._embedding_model:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta_text (key, value) VALUES ('embedding_model', ?)", (model_id,)
                )
                self._embedding_model = self._read_embedding_model()
            return self._embedding_model

    def close(self) -> None:
        with self._lock:
            self._db.close()
