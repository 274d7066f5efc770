"""The audit trail: every write (PutDocument, DeleteDocument) and every denied call, as one JSON line.

    {"time": "2026-12-03T14:02:11.123Z", "who": "jwt:alice", "groups": ["hr"], "roles": ["writer"],
     "method": "PutDocument", "collection": "hr", "doc_id": "travel-and-leave/fmla.md", "revision": 4,
     "outcome": "OK", "message": "", "peer": "ipv4:127.0.0.1:50312"}

`who` is "jwt:<sub>", "apikey:<id>" or "anonymous" (auth off, or no valid credential: then `groups` is empty
and `message` says what was wrong with it). Denied: UNAUTHENTICATED, PERMISSION_DENIED, and NOT_FOUND of a write
(which is what an outsider gets for a restricted document). Lines go to WIKIMEM_AUDIT_LOG (appended, flushed per
line) or, without it, to the service log as logger `wikimem.audit`. Lines are ASCII (JSON escapes for the rest).
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc

from wikimem_common.errors import ServiceError

from .auth.identity import Identity, anonymous

log = logging.getLogger("wikimem.audit")

WRITES = frozenset({"PutDocument", "DeleteDocument"})
DENIED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


@dataclass
class Entry:
    method: str
    peer: str
    collection: str = ""
    doc_id: str = ""
    revision: int | None = None
    identity: Identity = field(default_factory=anonymous)

    def line(self, outcome: str, message: str) -> str:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record: dict[str, Any] = {
            "time": now,
            "who": self.identity.who,
            "groups": list(self.identity.groups),
            "roles": sorted(self.identity.roles),
            "method": self.method,
            "collection": self.collection,
            "doc_id": self.doc_id,
            "revision": self.revision,
            "outcome": outcome,
            "message": message,
            "peer": self.peer,
        }
        # ASCII only: a doc id or token subject with a bidi override or zero-width character (refused, but still
        # audited) shows as \u202e, not as text that reorders or hides the rest of the line in a terminal
        return json.dumps(record, ensure_ascii=True)


class AuditLog:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._out: IO[str] | None = path.open("a", encoding="utf-8") if path is not None else None

    def write(self, line: str) -> None:
        if self._out is None:
            log.info(line)
            return
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    @contextmanager
    def record(self, method: str, context: grpc.ServicerContext, **fields: Any) -> Iterator[Entry]:
        """Yields the call's entry (set `identity`, `revision` on it); writes it when the call is a write or was
        denied. Exceptions pass through unchanged."""
        entry = Entry(method=method, peer=_peer(context), **fields)
        try:
            yield entry
        except ServiceError as exc:
            if method in WRITES or exc.code in DENIED:
                self.write(entry.line(exc.code.name, exc.message))
            raise
        except Exception as exc:
            if method in WRITES:
                self.write(entry.line(grpc.StatusCode.INTERNAL.name, f"{type(exc).__name__}: {exc}"))
            raise
        if method in WRITES:
            self.write(entry.line(grpc.StatusCode.OK.name, ""))

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return str(context.peer())
    except Exception:
        return ""
