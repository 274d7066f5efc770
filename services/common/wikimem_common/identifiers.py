"""Rules for the identifiers callers send: document ids (no invisible or look-alike characters) and revisions.

The orchestrator checks them at the edge and the memory again (defence in depth), with the same function, so the
id a caller sees in a citation is exactly the one stored and cannot print like another.

A document id is normalised to NFC, then refused (InvalidArgument, naming the code point) when it contains:
- control (Cc), format (Cf: zero-width space/joiners, bidi embeddings, overrides and isolates, soft hyphen, ...),
  private-use (Co), surrogate (Cs) or unassigned (Cn) code points, or a line/paragraph separator (Zl, Zp) — except
  a zero-width joiner between two emoji (an emoji sequence, which renders as one glyph);
- a space other than U+0020 (no-break, en/em, ideographic, ... spaces print like U+0020 or like nothing), or a
  character that renders blank (Hangul fillers, Braille blank);
- a compatibility form (its NFKC form differs: fullwidth Latin, mathematical letters, ligatures, superscripts):
  they print like the plain letters;
- letters of two scripts in one word where one is Latin and the other a script with Latin look-alikes (Cyrillic,
  Greek, Armenian, Cherokee, Coptic, ...), e.g. "fmlа" with a Cyrillic "а". A whole word in one such script is
  allowed (it cannot print like a Latin word without a confusables table; see docs/security.md).
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidArgument

#: Largest revision the stores keep (SQLite INTEGER, Redis INCR: signed 64 bit).
MAX_REVISION = 2**63 - 1

#: Categories refused anywhere in a document id.
_REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cf": "format (invisible) character",
    "Co": "private-use character",
    "Cs": "surrogate",
    "Cn": "unassigned code point",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
#: Letters (category Lo/So) that render as nothing or as blank space.
_BLANK = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x180E, 0x17B4, 0x17B5}
#: Scripts whose letters include look-alikes of Latin letters.
_LATIN_LOOKALIKE_SCRIPTS = {"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC", "GEORGIAN", "LISU", "VAI"}


def describe(ch: str) -> str:
    """'U+200B ZERO WIDTH SPACE'."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')}"


def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name ('LATIN SMALL LETTER A' -> 'LATIN')."""
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def _emoji(ch: str) -> bool:
    return unicodedata.category(ch) == "So" or 0x1F3FB <= ord(ch) <= 0x1F3FF or ord(ch) == 0xFE0F


def _emoji_joiner(value: str, index: int) -> bool:
    """A zero-width joiner inside an emoji sequence (U+1F469 U+200D U+1F4BB): it changes the glyph, it hides
    nothing."""
    if value[index] != "\u200d" or not 0 < index < len(value) - 1:
        return False
    return _emoji(value[index - 1]) and _emoji(value[index + 1])


def _refusal(ch: str) -> str | None:
    category = unicodedata.category(ch)
    if category in _REFUSED_CATEGORIES:
        return _REFUSED_CATEGORIES[category]
    if category == "Zs" and ch != " ":
        return "space other than U+0020"
    if ord(ch) in _BLANK:
        return "blank character"
    if unicodedata.normalize("NFKC", ch) != ch:
        return f"compatibility form of {unicodedata.normalize('NFKC', ch)!r}"
    return None


def _mixed_script_word(value: str) -> tuple[str, str] | None:
    """(a Latin letter, a look-alike-script letter) sharing one word, or None."""
    latin: str | None = None
    other: str | None = None
    for ch in [*value, " "]:
        if not unicodedata.category(ch).startswith(("L", "M")):
            if latin and other:
                return latin, other
            latin = other = None
            continue
        script = _script(ch)
        if script == "LATIN":
            latin = latin or ch
        elif script in _LATIN_LOOKALIKE_SCRIPTS:
            other = other or ch
    return None


def doc_id(value: str, max_chars: int, field: str = "doc_id") -> str:
    """The NFC form of a document id, or InvalidArgument naming the offending code point."""
    if not value or not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    normal = unicodedata.normalize("NFC", value)
    if len(normal) > max_chars:
        raise InvalidArgument(f"{field} is {len(normal)} characters; the limit is {max_chars}")
    for index, ch in enumerate(normal):
        reason = _refusal(ch)
        if reason is not None and not _emoji_joiner(normal, index):
            raise InvalidArgument(
                f"{field} {normal[:80]!r} contains {describe(ch)} ({reason}) at index {index}; document ids must "
                "be visible characters that print only one way"
            )
    if normal != normal.strip():
        raise InvalidArgument(f"{field} {normal[:80]!r} starts or ends with white space")
    mixed = _mixed_script_word(normal)
    if mixed is not None:
        raise InvalidArgument(
            f"{field} {normal[:80]!r} mixes {describe(mixed[0])} with the look-alike {describe(mixed[1])} in one "
            "word; write the word in one script"
        )
    return normal


def lookup_doc_id(value: str, max_chars: int, field: str = "doc_id") -> str:
    """An id to look up or delete, as sent (no normalisation, no code-point rules), so that a document stored
    before these rules (an id with a zero-width space, say) can still be read and removed."""
    if not value or not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > max_chars:
        raise InvalidArgument(f"{field} is {len(value)} characters; the limit is {max_chars}")
    return value


def revision(value: int, field: str = "revision") -> int:
    """A revision (or if_revision) the stores can hold: 0..2**63-1."""
    if not 0 <= value <= MAX_REVISION:
        raise InvalidArgument(f"{field} is {value}; the limit is {MAX_REVISION} (2**63-1)")
    return value
