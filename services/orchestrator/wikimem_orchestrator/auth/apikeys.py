"""API keys for service accounts: a JSON or YAML file of hashed keys, re-read when it changes (revocation needs no
restart), and a small CLI to mint and revoke them.

The file (WIKIMEM_API_KEYS_FILE)::

    {"keys": [{"id": "ci-bot", "sha256": "<hex of the key>", "groups": ["eng"], "roles": ["writer"],
               "revoked": false}]}

(YAML: the same structure.) A key is `wmk_` + 43 random URL-safe characters (256 bits), so a plain SHA-256 at rest
is enough: nothing to brute-force, and no secret is stored. The file is checked on every call (one stat); when it
changed it is re-read; a file that no longer parses refuses every key (fail closed) until it is fixed.

    python -m wikimem_orchestrator.apikeys new --id ci-bot --groups eng --roles writer [--file keys.json]
    python -m wikimem_orchestrator.apikeys revoke --id ci-bot --file keys.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .identity import API_KEY, Identity, Unauthenticated, string_list

log = logging.getLogger("wikimem.orchestrator.auth")

PREFIX = "wmk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def mint() -> str:
    return PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyEntry:
    id: str
    sha256: str
    groups: tuple[str, ...]
    roles: frozenset[str]
    revoked: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "groups": list(self.groups), "roles": sorted(self.roles),
                "revoked": self.revoked}


def parse(text: str, name: str) -> list[KeyEntry]:
    """Entries of a keys file (JSON, or YAML for .yaml/.yml); ValueError saying what is wrong."""
    if name.endswith((".yaml", ".yml")):
        import yaml

        document = yaml.safe_load(text)
    else:
        document = json.loads(text)
    items = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError("expected {'keys': [...]} or a list of entries")
    entries: list[KeyEntry] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"entry {n} has no 'id'")
        sha = str(item.get("sha256", "")).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"entry {item['id']!r}: 'sha256' must be 64 hex digits")
        entries.append(KeyEntry(
            id=item["id"], sha256=sha, groups=string_list(item.get("groups", [])),
            roles=frozenset(string_list(item.get("roles", []))), revoked=bool(item.get("revoked", False)),
        ))
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("two entries share an id")
    return entries


class ApiKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._by_hash: dict[str, KeyEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._error: str | None = None
        self._refresh()
        if self._error is not None:  # fail fast at start
            raise ValueError(f"WIKIMEM_API_KEYS_FILE={path}: {self._error}")

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._stamp, self._by_hash, self._error = None, {}, f"cannot read it: {exc.strerror}"
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            entries = parse(self.path.read_text(encoding="utf-8"), self.path.name)
        except Exception as exc:
            self._by_hash, self._error = {}, f"cannot parse it: {exc}"
            log.error("API keys file invalid: every key is refused until it is fixed",
                      extra={"path": str(self.path), "error": str(exc)})
        else:
            self._by_hash, self._error = {e.sha256: e for e in entries}, None
            log.info("API keys loaded", extra={"path": str(self.path), "keys": len(entries),
                                               "revoked": sum(e.revoked for e in entries)})
        self._stamp = stamp

    def verify(self, key: str) -> Identity:
        with self._lock:
            self._refresh()
            if self._error is not None:
                raise Unauthenticated("API keys are unavailable (the server's key file is invalid); try again later")
            hashed = digest(key.strip())
            entry = self._by_hash.get(hashed)
        if entry is None or not hmac.compare_digest(entry.sha256, hashed):
            raise Unauthenticated("unknown API key")
        if entry.revoked:
            raise Unauthenticated(f"API key {entry.id!r} is revoked")
        return Identity(kind=API_KEY, subject=entry.id, groups=entry.groups, roles=entry.roles)


def _write_atomically(path: Path, entries: Sequence[KeyEntry]) -> None:
    text = json.dumps({"keys": [e.to_json() for e in entries]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load_for_edit(path: Path) -> list[KeyEntry]:
    if path.suffix in (".yaml", ".yml"):
        raise SystemExit(f"{path}: the CLI edits JSON key files; add the printed line to a YAML file by hand")
    return parse(path.read_text(encoding="utf-8"), path.name) if path.exists() else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wikimem_orchestrator.apikeys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="mint a key: prints it once, and its entry for the keys file")
    new.add_argument("--id", required=True, help="the service account's name (shown in the audit log)")
    new.add_argument("--groups", default="", help="comma-separated groups (ACL filtering)")
    new.add_argument("--roles", default="", help="comma-separated roles (writer, llm, admin, ...)")
    new.add_argument("--file", type=Path, help="also add the entry to this JSON keys file")
    revoke = sub.add_parser("revoke", help="mark a key revoked in a JSON keys file (takes effect at once)")
    revoke.add_argument("--id", required=True)
    revoke.add_argument("--file", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "new":
        key = mint()
        entry = KeyEntry(id=args.id, sha256=digest(key), groups=string_list(args.groups),
                         roles=frozenset(string_list(args.roles)), revoked=False)
        if args.file is not None:
            entries = _load_for_edit(args.file)
            if any(e.id == entry.id for e in entries):
                print(f"{args.file} already has a key {entry.id!r}; revoke it or choose another id", file=sys.stderr)
                return 1
            _write_atomically(args.file, [*entries, entry])
        print(f"key (shown once, give it to {entry.id}): {key}")
        print(f"entry{' (added to ' + str(args.file) + ')' if args.file else ' for the keys file'}: "
              f"{json.dumps(entry.to_json())}")
        return 0
    entries = _load_for_edit(args.file)
    if not any(e.id == args.id for e in entries):
        print(f"{args.file} has no key {args.id!r}", file=sys.stderr)
        return 1
    _write_atomically(args.file, [KeyEntry(e.id, e.sha256, e.groups, e.roles, e.revoked or e.id == args.id)
                                  for e in entries])
    print(f"revoked {args.id!r} in {args.file}")
    return 0
