"""Validation of what writers and readers send, and the document-level helpers of the memory."""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Iterable, Mapping

from wikimem_common import identifiers
from wikimem_common.errors import InvalidArgument, ResourceExhausted

from .store.base import PUBLIC

DEFAULT_COLLECTION = "default"
MAX_NAME_CHARS = 256
MAX_ACL_GROUPS = 256
MAX_METADATA_KEYS = 128
MAX_METADATA_VALUE_CHARS = 8192


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def collection_name(name: str) -> str:
    """'' means the default collection."""
    if not name:
        return DEFAULT_COLLECTION
    if len(name) > MAX_NAME_CHARS or _has_control(name) or not name.strip():
        raise InvalidArgument(f"collection {name[:80]!r} is invalid: use up to {MAX_NAME_CHARS} printable characters")
    return name


def doc_id(value: str, max_chars: int) -> str:
    """The NFC form of the id; invisible, bidi-control and look-alike characters are refused (identifiers.py)."""
    return identifiers.doc_id(value, max_chars)


def lookup_doc_id(value: str, max_chars: int) -> str:
    """Get and Delete take an id as stored, even one from before the rules above (so it can be removed)."""
    if _has_control(value):
        raise InvalidArgument(f"doc_id {value[:80]!r} contains control characters; use printable characters only")
    return identifiers.lookup_doc_id(value, max_chars)


def revision(value: int, field: str = "revision") -> int:
    """0..2**63-1 (what SQLite and Redis hold); more is INVALID_ARGUMENT, not an overflow inside the store."""
    return identifiers.revision(value, field)


def groups(values: Iterable[str], field: str = "groups") -> list[str]:
    out = list(dict.fromkeys(values))
    if len(out) > MAX_ACL_GROUPS:
        raise InvalidArgument(f"{field} has {len(out)} entries; the limit is {MAX_ACL_GROUPS}")
    for group in out:
        if not group.strip() or len(group) > MAX_NAME_CHARS or _has_control(group):
            raise InvalidArgument(f"{field} entry {group[:80]!r} is invalid: use non-empty printable names")
    return out


def acl(values: Iterable[str]) -> list[str]:
    out = groups(values, "acl")
    if PUBLIC in out:
        raise InvalidArgument(f"acl entry {PUBLIC!r} is reserved; an empty acl already means everyone")
    return sorted(out)


def metadata(values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_METADATA_KEYS:
        raise InvalidArgument(f"metadata has {len(values)} keys; the limit is {MAX_METADATA_KEYS}")
    for key, value in values.items():
        if not key or len(key) > MAX_NAME_CHARS or _has_control(key):
            raise InvalidArgument(f"metadata key {key[:80]!r} is invalid: use non-empty printable names")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidArgument(
                f"metadata[{key!r}] is {len(value)} characters; the limit is {MAX_METADATA_VALUE_CHARS}"
            )
    return dict(sorted(values.items()))


def document_text(text: str, max_bytes: int) -> str:
    if not text or not text.strip():
        raise InvalidArgument("text must not be empty")
    # Every code point takes at least one UTF-8 byte, at most four: only encode when it could matter.
    size = len(text) if len(text) > max_bytes else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ResourceExhausted(
            f"document is {size} bytes; the limit is {max_bytes} bytes (WIKIMEM_MAX_DOC_BYTES): split it into "
            "several documents or raise the limit"
        )
    return text


def top_k(value: int, default: int, maximum: int) -> int:
    if value == 0:
        return default
    if value > maximum:
        raise InvalidArgument(f"top_k is {value}; the limit is {maximum}")
    return value


def encode_page_token(collection: str, cursor: str) -> str:
    raw = json.dumps({"c": collection, "a": cursor}, ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_page_token(token: str, collection: str) -> str | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        cursor = data["a"]
        token_collection = data["c"]
    except Exception as exc:
        raise InvalidArgument("page_token is not one this memory issued; start again without it") from exc
    if token_collection != collection or not isinstance(cursor, str):
        raise InvalidArgument("page_token belongs to another listing (different collection); start again")
    return cursor


def chunk_key(doc: str, revision: int, ordinal: int) -> str:
    """The public chunk id: '<doc_id>@<revision>#<ordinal>'."""
    return f"{doc}@{revision}#{ordinal}"
