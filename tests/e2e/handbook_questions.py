"""Questions about the 18F handbook whose answer sits on one obvious page (written by hand for the e2e test)."""

from __future__ import annotations

from typing import NamedTuple


class HandbookQuestion(NamedTuple):
    question: str
    # Doc ids (paths relative to pages/) any of which is a correct citation.
    pages: tuple[str, ...]
    # Lower-cased substrings, any of which in the answer counts as correct.
    answers: tuple[str, ...]


QUESTIONS: tuple[HandbookQuestion, ...] = (
    HandbookQuestion(
        "Which password manager does TTS recommend?",
        ("general-information-and-resources/tech-policies/password-requirements.md",),
        ("keepassxc",),
    ),
    HandbookQuestion(
        "How soon must you notify GSA IT of a suspected security incident?",
        ("general-information-and-resources/tech-policies/security-incidents.md",),
        ("1 hour", "one hour", "within 1 hour"),
    ),
    HandbookQuestion(
        "What is the street address of the GSA headquarters building in Washington, D.C.?",
        # The D.C. office page has the street address; the 18F mission and history pages name the same corner.
        (
            "general-information-and-resources/washington-dc.md",
            "about-us/tts-consulting/about/mission.md",
            "18f/history-and-values.md",
        ),
        ("1800 f st", "18th and f"),
    ),
    HandbookQuestion(
        "How far in advance should you submit leave requests?",
        # Both pages state the rule.
        ("travel-and-leave/going-out-of-office.md", "tools/hrlinks.md"),
        ("three business days", "3 business days", "three"),
    ),
    HandbookQuestion(
        "Who determines whether a new employee gets a MacBook Pro or a PC laptop?",
        ("getting-started/equipment.md",),
        ("supervisor",),
    ),
    HandbookQuestion(
        "How many business days does it take for a travel voucher to be reviewed?",
        # The travel guide pages say 3-5 business days; Travel 101 says "vouchers are reviewed within 5 business
        # days" (the wiki contradicts itself): citing it finds a right page, though "5" is not a right answer here.
        (
            "travel-and-leave/travel-and-leave-policies/travel-guide-4-reimbursement.md",
            "travel-and-leave/travel-and-leave-policies/travel-guide-faq.md",
            "getting-started/classes/travel-101.md",
        ),
        ("3-5", "3–5", "three to five"),
    ),
)
