"""wikimem: question answering over a company wiki with an editable memory (client, CLI, launcher)."""

from wikimem.aio import AsyncWikimemClient
from wikimem.client import WikimemClient
from wikimem.errors import (
    AbortedError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
    WikimemError,
)
from wikimem.models import Answer, Citation, Document, Passage, PutResult, Source, answer_to_dict

__all__ = [
    "AbortedError",
    "Answer",
    "AsyncWikimemClient",
    "Citation",
    "DeadlineExceededError",
    "Document",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "Passage",
    "PermissionDeniedError",
    "PutResult",
    "ResourceExhaustedError",
    "Source",
    "UnavailableError",
    "WikimemClient",
    "WikimemError",
    "answer_to_dict",
]
