"""Hide wiki markup from the models without moving a single character.

Wiki pages carry HTML tags, Liquid/Jekyll tags (`{% ... %}`, `{{ ... }}`) and link targets (`[text](url)`).
They are noise to the embedder, reranker and reader, yet citations must point into the original text. So markup
is replaced by spaces of the same length: every offset into the masked text is the same offset into the original
(the tokenizers fold runs of spaces, so the padding costs nothing).
"""

from __future__ import annotations

import re

# HTML tags and comments, Liquid tags/outputs, and the "(target)" of a Markdown link or image.
_MARKUP = re.compile(
    r"<!--.*?-->"
    r"|</?[A-Za-z][^<>]{0,500}?>"
    r"|\{%.*?%\}"
    r"|\{\{.*?\}\}"
    r"|(?<=\])\([^()\s]{1,2000}(?:\s+\"[^\"]*\")?\)",
    re.DOTALL,
)


def mask_markup(text: str) -> str:
    """`text` with markup replaced by spaces (line breaks kept); `len(result) == len(text)`."""
    return _MARKUP.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
