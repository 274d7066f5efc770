"""The 18F handbook workload shared by the latency and peer suites: questions written by hand (each answered on one
obvious page), the pages to ingest (all 246, or a small subset in quick runs) and ingest through Rag.PutDocument."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import Context, progress
from tests.e2e.handbook_questions import QUESTIONS as E2E_QUESTIONS
from tests.e2e.handbook_questions import HandbookQuestion

Q = HandbookQuestion

#: More questions in the style of the e2e test's six (doc ids are paths under pages/; answers are lower-cased
#: substrings any of which in the answer counts). Each answer was checked to be on the named page(s).
MORE_QUESTIONS: tuple[HandbookQuestion, ...] = (
    Q("Which Tock code do you bill when you are out of office for less than 3 weeks?", ("tools/tock.md",), ("670",)),
    Q("Which Tock code is for being out of office 3 weeks or longer?", ("tools/tock.md",), ("1810",)),
    Q(
        "What is the address of the Chicago office?",
        ("general-information-and-resources/chicago.md",),
        ("230 s. dearborn", "dearborn"),
    ),
    Q(
        "On which floor of One World Trade Center is the New York office?",
        ("general-information-and-resources/new-york-city.md",),
        ("55",),
    ),
    Q(
        "What is the street address of the San Francisco office?",
        ("general-information-and-resources/san-francisco.md",),
        ("50 united nations plaza", "united nations plaza"),
    ),
    Q(
        "Which algorithm should you use to create an SSH key for signing git commits?",
        ("tools/git-signing.md",),
        ("ed25519",),
    ),
    Q(
        "Which configuration-management tool monitors TTS GitHub repositories and can require signed commits?",
        ("tools/git-signing.md",),
        ("allstar",),
    ),
    Q(
        "Who does the initial triage of bug bounty reports?",
        ("general-information-and-resources/tech-policies/bug-bounty.md",),
        ("h1", "hackerone"),
    ),
    Q(
        "Which organizational code do TTS employees use when enrolling in the transit benefit?",
        ("general-information-and-resources/employee-resources-policies/transit-benefit.md",),
        ("t-tech transformation service", "tech transformation service"),
    ),
    Q(
        "Which service can a lender use to verify my employment and income?",
        ("general-information-and-resources/employee-resources-policies/employment-verification.md",),
        ("work number",),
    ),
    Q(
        "How many hours does a full-time TTS employee work in a two week pay period?",
        ("general-information-and-resources/employee-resources-policies/work-schedules.md",),
        ("80",),
    ),
    Q("How long does Slack retain messages?", ("tools/slack/records.md",), ("forever",)),
    Q("Meetings longer than how many minutes need a licensed Zoom user?", ("tools/zoom.md",), ("40",)),
    Q(
        "What captioning service does GSA contract for deaf and hard of hearing employees?",
        (
            "general-information-and-resources/employee-resources-policies/deaf-hoh.md",
            "general-information-and-resources/employee-resources-policies/supporting-deaf-hoh-colleagues.md",
        ),
        ("cart", "communication access"),
    ),
    Q("When did 18F launch?", ("about-us/tts-history.md", "18f/history-and-values.md"), ("2014",)),
    Q(
        "How many Presidential Innovation Fellows left the fellowship in December 2013 to become GSA employees?",
        ("about-us/tts-history.md",),
        ("eight", "8"),
    ),
    Q(
        "Which vulnerability severities must be resolved before the ATO is granted?",
        ("launching-software/security.md",),
        ("high", "critical"),
    ),
    Q(
        "How many weeks of paid parental leave are you entitled to?",
        ("travel-and-leave/paid-parental-leave.md",),
        ("12 weeks", "12"),
    ),
    Q("How many hours of advanced sick leave can you request?", ("travel-and-leave/advanced-sick-leave.md",), ("240",)),
    Q(
        "How many weeks of unpaid FMLA leave can you take to care for an ill servicemember?",
        ("travel-and-leave/fmla.md",),
        ("26",),
    ),
    Q(
        "How much annual leave per pay period do you accrue with fewer than 3 years of federal service?",
        ("travel-and-leave/leave.md",),
        ("4 hours", "4"),
    ),
    Q(
        "How many hours of work time can you use for the Employee Assistance Program?",
        ("travel-and-leave/leave.md",),
        ("4 hours", "4"),
    ),
    Q("What does GSA issue every TTS employee?", ("getting-started/equipment.md",), ("badge", "laptop", "phone")),
    Q("In which year was 18F funding approved?", ("18f/history-and-values.md",), ("2013",)),
)

QUESTIONS: tuple[HandbookQuestion, ...] = (*E2E_QUESTIONS, *MORE_QUESTIONS)

#: Quick runs: this many questions (the first ones) over their own pages plus a few others.
QUICK_QUESTIONS = 6
QUICK_EXTRA_PAGES = 12


@dataclass(frozen=True)
class Page:
    doc_id: str
    path: Path
    text: str


def questions(ctx: Context) -> tuple[HandbookQuestion, ...]:
    return QUESTIONS[:QUICK_QUESTIONS] if ctx.quick else QUESTIONS


def pages(ctx: Context) -> list[Page]:
    """All 246 pages; in quick runs the pages the quick questions cite plus every 10th other page."""
    root = ctx.dataset("handbook-18f") / "pages"
    files = sorted(root.rglob("*.md"))
    all_pages = [Page(f.relative_to(root).as_posix(), f, f.read_text(encoding="utf-8")) for f in files]
    if not ctx.quick:
        return all_pages
    cited = {p for q in questions(ctx) for p in q.pages}
    others = [p for p in all_pages if p.doc_id not in cited][:: max(1, len(all_pages) // QUICK_EXTRA_PAGES)]
    return [p for p in all_pages if p.doc_id in cited] + others[:QUICK_EXTRA_PAGES]


def correct(q: HandbookQuestion, answer: str, cited: str | None) -> tuple[bool, bool]:
    """(answer right, page right)."""
    return any(a in answer.lower() for a in q.answers), cited in q.pages


@dataclass(frozen=True)
class IngestStats:
    pages: int
    chunks: int
    seconds: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else float("nan")

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else float("nan")


def ingest(address: str, docs: list[Page], writers: int = 4) -> IngestStats:
    """PutDocument every page through the orchestrator (`writers` concurrent callers, as `wikimem ingest` does)."""
    from wikimem.client import WikimemClient

    chunks = 0
    t0 = time.perf_counter()
    with WikimemClient(address, timeout=600) as client, ThreadPoolExecutor(writers) as pool:

        def put(page: Page) -> int:
            return client.put_document(page.doc_id, page.text, source=str(page.path)).document.chunk_count

        for n in progress(pool.map(put, docs), "ingest (PutDocument)", total=len(docs)):
            chunks += n
    return IngestStats(len(docs), chunks, time.perf_counter() - t0)
