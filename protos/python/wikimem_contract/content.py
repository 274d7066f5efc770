"""The content hash of a document: what the memory stores as `Document.content_sha256`.

One definition for server and clients: `wikimem sync` compares it with local files to skip unchanged ones.
"""

from __future__ import annotations

import hashlib


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
