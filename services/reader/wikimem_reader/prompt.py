"""The prompt that keeps a generative reader to the passages, and how its "I don't know" is recognised.

The model gets numbered passages, is told they are the current truth (also where they contradict what it has
memorised) and to answer only from them in a few plain sentences, or to say exactly "I don't know". It is not
asked to cite: small models cite badly, so the orchestrator links each sentence to passage spans itself
(wikimem_orchestrator.verify).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .backend import Passage

NO_ANSWER = "I don't know."

SYSTEM = (
    "You answer questions about a company wiki using only the numbered passages the user gives you. "
    "The passages are the current truth: where they disagree with what you know, the passages are right. "
    "Answer in one to three short, complete sentences in your own words. Do not add anything that the "
    "passages do not state. If the passages do not contain the answer, reply exactly: I don't know."
)

Message = dict[str, str]

_ABSTAIN = re.compile(
    r"^\W*(?:i\s+(?:do\s+not|don['’]t|cannot|can['’]t)\s+(?:know|answer|tell|find|say)"
    r"|(?:the\s+)?(?:passages?|documents?|context|wiki)\s+(?:do(?:es)?\s+not|don['’]t|doesn['’]t)\s+"
    r"(?:contain|mention|say|state|provide|include|specify|answer|have)"
    r"|(?:there\s+is\s+)?no\s+(?:information|answer|mention)\b"
    r"|(?:this|that|it)\s+is\s+not\s+(?:mentioned|stated|specified)"
    r"|unknown\b|not\s+(?:mentioned|stated|specified|provided)\b)",
    re.IGNORECASE,
)


def _fold(text: str) -> str:
    return " ".join(text.split())


def build_messages(question: str, passages: Sequence[Passage], max_chars: int) -> list[Message]:
    """System + user message: "[n] title\\ntext" per passage (white space folded), within `max_chars` of text."""
    blocks: list[str] = []
    room = max_chars
    for number, passage in enumerate(passages, 1):
        text = _fold(passage.text)
        if not text or room <= 0:
            continue
        if len(text) > room:
            cut = text.rfind(" ", 0, room)
            text = text[: cut if cut > room // 2 else room] + " …"
        room -= len(text)
        title = _fold(passage.title)
        blocks.append(f"[{number}] {title}\n{text}" if title else f"[{number}]\n{text}")
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {_fold(question)}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def is_no_answer(text: str) -> bool:
    """True when the model's text starts by saying the passages do not answer ("I don't know", "The passages
    do not mention ...", "Not mentioned.") or is empty."""
    return not text.strip() or _ABSTAIN.match(text.strip()) is not None
