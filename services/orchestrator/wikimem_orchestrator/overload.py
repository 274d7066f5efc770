"""What the orchestrator does when it is overloaded: the reranker policy and the generative reader's rate limit.

Reranker (WIKIMEM_ON_RERANK_OVERLOAD): when the reranker is overloaded (RESOURCE_EXHAUSTED), too slow for the
deadline (DEADLINE_EXCEEDED) or down (UNAVAILABLE), an Ask either
- `fail` (default): fails with that status and a message naming the reranker and the policy; or
- `degrade`: answers from the vector order, marked `reranked=false` with a warning that says so; such an answer is
  never cached.
Never silently: every such Ask is counted (`wikimem_rerank_failures{reason, outcome}`) and logged.

Generative reader (WIKIMEM_LLM_RATE, default 10/min, WIKIMEM_LLM_BURST, default 3): a token bucket per caller —
the verified identity when authentication is on, else the anonymous caller's claimed groups — charged once per
Ask that names a generative reader; past it, RESOURCE_EXHAUSTED with the wait in the message and the trailing
`retry-after-ms`.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from wikimem_common.admission import RateLimiter
from wikimem_common.errors import DeadlineExceeded, ResourceExhausted, ServiceError, Unavailable

from .auth.identity import Identity
from .auth.settings import CHEAP_READERS
from .config import OrchestratorConfig

log = logging.getLogger("wikimem.orchestrator.overload")

RERANK_FAILURES = Counter(
    "wikimem_rerank_failures",
    "Asks whose rerank failed: reason=overloaded|timeout|unavailable|failed, outcome=failed|degraded (the policy)",
    ["reason", "outcome"],
)

_REASONS: tuple[tuple[type[ServiceError], str], ...] = (
    (ResourceExhausted, "overloaded"),
    (DeadlineExceeded, "timeout"),
    (Unavailable, "unavailable"),
)


def rerank_reason(exc: ServiceError) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "failed"


def on_rerank_failure(exc: ServiceError, policy: str) -> str:
    """Apply the policy to a failed rerank: raise (fail) or return the warning of the degraded answer."""
    reason = rerank_reason(exc)
    outcome = "failed" if policy == "fail" else "degraded"
    RERANK_FAILURES.labels(reason, outcome).inc()
    log.warning(
        "reranker failed; Ask %s by policy", outcome, extra={"reason": reason, "policy": policy, "error": exc.message}
    )
    if policy == "fail":
        message = f"reranker {reason}: {exc.message} (WIKIMEM_ON_RERANK_OVERLOAD=fail: no answer without reranking)"
        if isinstance(exc, ResourceExhausted):
            raise ResourceExhausted(message, exc.retry_after_s) from None
        error = type(exc)(message) if type(exc) in (DeadlineExceeded, Unavailable) else ServiceError(message)
        raise error from None
    return (
        f"reranker {reason}, passages in vector order (degraded answer, WIKIMEM_ON_RERANK_OVERLOAD=degrade): "
        f"{exc.message}"
    )


def caller_key(identity: Identity) -> str:
    """Whom a rate limit counts: the verified subject, else the anonymous caller's claimed groups."""
    if identity.verified:
        return identity.who
    return "anonymous:" + ",".join(identity.groups)


class ReaderRateLimit:
    def __init__(self, config: OrchestratorConfig) -> None:
        self.limiter = RateLimiter(config.llm_rate_per_s, config.llm_burst, "generative_reader")

    def check(self, identity: Identity, reader: str) -> None:
        """Charge one generative read to the caller, or raise RESOURCE_EXHAUSTED with the wait."""
        if reader.strip().lower() in CHEAP_READERS or not self.limiter.enabled:
            return
        key = caller_key(identity)
        wait = self.limiter.take(key)
        if wait:
            per_min = self.limiter.rate * 60
            raise ResourceExhausted(
                f"{key} has used its generative reads ({per_min:g}/min, burst {self.limiter.burst:g}; "
                f"WIKIMEM_LLM_RATE / WIKIMEM_LLM_BURST): retry in {wait:.1f}s, or use the extractive reader",
                wait,
            )
