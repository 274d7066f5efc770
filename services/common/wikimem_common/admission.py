"""Admission control: bounded concurrency and a bounded queue per service, deadlines honoured, rate limits.

`Admission` is a server interceptor (`server.run` installs it; `server.start(admission=...)` for tests). A call
(health and reflection excepted) runs at once while fewer than `max_inflight` calls of the service run; otherwise it
waits in a queue of at most `max_queue` calls, first come first served. Refused at once, before any work (see
`Limiter`): RESOURCE_EXHAUSTED when the queue is full or when the service, at its current pace, would not finish
the call within the caller's deadline (with a retry hint in the trailing metadata `retry-after-ms`,
wikimem_contract.metadata.RETRY_AFTER_MS); DEADLINE_EXCEEDED when the deadline is shorter than such a call takes at
best, or ran out in the queue. docs/overload.md has the whole picture.

Lanes: writes (PutDocument, DeleteDocument; memory's Upsert, Delete) and cheap reads (GetSource, ListDocuments;
memory's Get, List, GetChunks, Stats) have slots and a queue of their own (LANE_METHODS), so that a 40 ms wiki edit
is not refused because Asks fill the service: the Asks are shed, the edit goes through.

Settings (per service defaults in DEFAULTS, sized for a 2-core machine; `WIKIMEM_<SERVICE>_MAX_INFLIGHT` and
`WIKIMEM_<SERVICE>_MAX_QUEUE` override one service, `WIKIMEM_MAX_INFLIGHT` / `WIKIMEM_MAX_QUEUE` all of them;
`WIKIMEM_MAX_INFLIGHT=0` turns admission control off). A lane: `WIKIMEM_[<SERVICE>_]MAX_INFLIGHT_WRITES` /
`…_MAX_QUEUE_WRITES` (`…_READS`), defaults in LANE_DEFAULTS; 0 in flight: its calls share the main lane.

`RateLimiter`: token buckets keyed by caller (the orchestrator's limit on generative reads, WIKIMEM_LLM_RATE).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from wikimem_contract import metadata

from .config import ConfigError

#: Methods never counted nor refused: probes and tooling.
EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.")

#: (max in flight, max queued) per service, for 2 cores. The orchestrator's bound is what callers meet first: its
#: Asks fan out to the model services, whose bounds are wider so that one orchestrator never hits them (several
#: orchestrators, or direct callers, can). Little's law: latency = calls in the system / throughput; 2 cores answer
#: ~2-3 uncached Asks/s, so 4 running + 4 queued keeps an admitted Ask near 2-4 s (the 13-15 s measured before came
#: from an unbounded queue), and 4 running keep both cores busy.
DEFAULTS: dict[str, tuple[int, int]] = {
    "orchestrator": (4, 4),
    "embedder": (16, 64),
    "memory": (8, 32),
    "reranker": (8, 16),
    "reader": (8, 16),
}
FALLBACK = (8, 16)

#: Per service: the methods (full gRPC names) that have a lane of their own, apart from the main lane (every other
#: method). Writes are short (~40 ms) and must not wait behind (or be refused because of) Asks of seconds; the cheap
#: reads likewise. The write path of the orchestrator reaches memory's writes and reads lanes, never its Searches'.
LANE_METHODS: dict[str, dict[str, frozenset[str]]] = {
    "orchestrator": {
        "writes": frozenset({"/wikimem.v1.Rag/PutDocument", "/wikimem.v1.Rag/DeleteDocument"}),
        "reads": frozenset({"/wikimem.v1.Rag/GetSource", "/wikimem.v1.Rag/ListDocuments"}),
    },
    "memory": {
        "writes": frozenset({"/wikimem.v1.Memory/Upsert", "/wikimem.v1.Memory/Delete"}),
        "reads": frozenset(
            {
                "/wikimem.v1.Memory/Get",
                "/wikimem.v1.Memory/List",
                "/wikimem.v1.Memory/GetChunks",
                "/wikimem.v1.Memory/Stats",
            }
        ),
    },
}
#: (max in flight, max queued) of a lane, for 2 cores: four writes at once, as many as `wikimem ingest` sends (its
#: 4 workers keep the embedder's batches full; an edit alone is ~40 ms); the queue is long because a write is short
#: and is what a user waits for (16 queued edits wait about a second).
LANE_DEFAULTS: dict[str, tuple[int, int]] = {"writes": (4, 16), "reads": (4, 16)}
MAIN_LANE = "main"

#: A call left with less than this is refused (no useful work fits), whatever the method's history.
MIN_DEADLINE_S = 0.005
#: Samples of a method's duration before they are used to refuse calls.
MIN_SAMPLES = 4
#: Weight of the newest duration in a method's running mean.
EWMA_ALPHA = 0.2
RETRY_MIN_S, RETRY_MAX_S = 0.05, 10.0
#: An overload estimate must fit the deadline with this much to spare (the pace of the calls ahead varies: other
#: processes share the cores, a batch may hold longer passages).
HEADROOM = 1.5

REJECTED = Counter(
    "wikimem_admission_rejected",
    "Calls refused by admission control: reason=queue_full|overloaded (RESOURCE_EXHAUSTED), deadline "
    "(DEADLINE_EXCEEDED); lane=main|writes|reads",
    ["grpc_service", "lane", "reason"],
)
QUEUED = Gauge("wikimem_admission_queued", "Calls waiting for admission", ["service", "lane"])
RUNNING = Gauge("wikimem_admission_running", "Calls admitted and running", ["service", "lane"])
RATE_LIMITED = Counter("wikimem_rate_limited", "Calls refused by a per-caller rate limit", ["limit"])


@dataclass(frozen=True)
class Lane:
    """A share of a service of its own: `methods` (full gRPC names) run at most `max_inflight` at once and queue at
    most `max_queue` more, whatever the other calls do. The main lane (no methods named) takes every other call."""

    name: str
    max_inflight: int
    max_queue: int
    methods: frozenset[str] = frozenset()

    @property
    def settings(self) -> str:
        """The variables that size it (for messages)."""
        suffix = "" if self.name == MAIN_LANE else "_" + self.name.upper()
        return f"WIKIMEM_MAX_INFLIGHT{suffix} / WIKIMEM_MAX_QUEUE{suffix}"


@dataclass(frozen=True)
class AdmissionConfig:
    service: str
    max_inflight: int
    max_queue: int
    #: Lanes apart from the main one (from_env: LANE_METHODS of the service).
    lanes: tuple[Lane, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.max_inflight > 0

    @property
    def main(self) -> Lane:
        return Lane(MAIN_LANE, self.max_inflight, self.max_queue)

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> AdmissionConfig:
        import os

        values = os.environ if env is None else env
        inflight, queue = DEFAULTS.get(service, FALLBACK)
        prefix = f"WIKIMEM_{service.upper()}_"
        lanes = []
        for name, methods in LANE_METHODS.get(service, {}).items():
            lane_inflight, lane_queue = LANE_DEFAULTS[name]
            suffix = "_" + name.upper()
            lane = Lane(
                name,
                _int(values, (f"{prefix}MAX_INFLIGHT{suffix}", f"WIKIMEM_MAX_INFLIGHT{suffix}"), lane_inflight),
                _int(values, (f"{prefix}MAX_QUEUE{suffix}", f"WIKIMEM_MAX_QUEUE{suffix}"), lane_queue),
                methods,
            )
            if lane.max_inflight < 0 or lane.max_queue < 0:
                raise ConfigError(
                    f"{lane.settings} for {service} must be >= 0 (0 in flight: {name} share the main lane), got "
                    f"{lane.max_inflight} / {lane.max_queue}"
                )
            if lane.max_inflight > 0:
                lanes.append(lane)
        config = cls(
            service=service,
            max_inflight=_int(values, (prefix + "MAX_INFLIGHT", "WIKIMEM_MAX_INFLIGHT"), inflight),
            max_queue=_int(values, (prefix + "MAX_QUEUE", "WIKIMEM_MAX_QUEUE"), queue),
            lanes=tuple(lanes),
        )
        if config.max_inflight < 0 or config.max_queue < 0:
            raise ConfigError(
                f"WIKIMEM_MAX_INFLIGHT / WIKIMEM_MAX_QUEUE for {service} must be >= 0 (0 in flight: admission "
                f"control off), got {config.max_inflight} / {config.max_queue}"
            )
        return config

    def workers(self, configured: int) -> int:
        """gRPC worker threads needed: a queued call holds a thread while it waits, so the pool must hold every
        admitted and queued call (plus a few for health checks), or gRPC's own unbounded queue takes over."""
        if not self.enabled:
            return configured
        held = sum(lane.max_inflight + lane.max_queue for lane in (self.main, *self.lanes))
        return max(configured, held + 4)


def _int(values: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    for name in names:
        raw = values.get(name)
        if raw is not None and raw.strip() != "":
            try:
                return int(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    return default


class _Durations:
    """A kind of call's recent history: its work (EWMA of duration / calls running meanwhile: what one call costs
    when the service shares itself among several) and its shortest recent duration (a deadline below it can never
    be met)."""

    RECENT = 32

    def __init__(self) -> None:
        self.work = 0.0
        self.samples = 0
        self.recent: deque[float] = deque(maxlen=self.RECENT)

    def add(self, seconds: float, sharing: float) -> None:
        work = seconds / max(1.0, sharing)
        self.work = work if self.samples == 0 else (1 - EWMA_ALPHA) * self.work + EWMA_ALPHA * work
        self.samples += 1
        self.recent.append(seconds)

    @property
    def best(self) -> float:
        return min(self.recent)


@dataclass(frozen=True)
class Ticket:
    """An admitted call: what it is, when it was admitted and how many calls were running then (itself included)."""

    kind: str
    at: float
    running: int


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class Limiter:
    """The bounded slots and FIFO queue of one lane of a service (the interceptor's core; usable without gRPC).

    A call is refused at once
    - with DEADLINE_EXCEEDED when its deadline is shorter than its kind of call takes at best (never met);
    - with RESOURCE_EXHAUSTED when the queue is full, or when the service is overloaded: sharing itself among the
      calls running and queued ahead, at the cost each has had lately, it would not finish the call within its
      deadline. Callers learn it at once and back off, instead of timing out after the work was done for nothing.
    A queued call that waited until its deadline no longer fits is refused with DEADLINE_EXCEEDED."""

    def __init__(self, service: str, lane: Lane) -> None:
        self.service = service
        self.lane = lane
        #: How messages name it: the service, and the lane unless it is the main one.
        self.name = service if lane.name == MAIN_LANE else f"{service} ({lane.name})"
        self._lock = threading.Lock()
        self._running = 0
        self._queue: deque[threading.Event] = deque()
        self._history: dict[str, _Durations] = {}

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def _known(self, kind: str) -> _Durations | None:
        history = self._history.get(kind)
        return history if history is not None and history.samples >= MIN_SAMPLES else None

    def _retry_after(self, kind: str) -> float:
        """When the service has likely worked off one call per queued one, plus one (lock held)."""
        history = self._history.get(kind)
        work = history.work if history is not None and history.samples else 0.5
        return min(RETRY_MAX_S, max(RETRY_MIN_S, work * (len(self._queue) + 1)))

    def _hopeless(self, kind: str, remaining: float | None, waited: float) -> Refused | None:
        """DEADLINE_EXCEEDED when the time left is below what the call takes at best (lock held)."""
        if remaining is None:
            return None
        known = self._known(kind)
        floor = max(MIN_DEADLINE_S, known.best if known is not None else 0.0)
        if remaining >= floor:
            return None
        REJECTED.labels(self.service, self.lane.name, "deadline").inc()
        queued = f" after {waited:.2f}s in the queue" if waited > 0 else ""
        usual = f"; it takes at least {known.best:.3f}s" if known is not None else ""
        return Refused(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"{self.name}: {kind} refused{queued}: the caller's deadline leaves {remaining:.3f}s{usual}",
        )

    def _overloaded(self, kind: str, remaining: float | None, ahead: int) -> Refused | None:
        """RESOURCE_EXHAUSTED when, shared with the calls running and `ahead` of it, the call would not finish
        within its deadline (lock held). Never while nothing runs: an idle service admits (and learns its pace)."""
        known = self._known(kind)
        if remaining is None or known is None or self._running == 0:
            return None
        expected = known.work * (self._running + ahead + 1)
        if expected * HEADROOM <= remaining:
            return None
        REJECTED.labels(self.service, self.lane.name, "overloaded").inc()
        retry = self._retry_after(kind)
        return Refused(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{self.name} is overloaded: {kind} would take ~{expected:.2f}s ({self._running} calls "
            f"running, {ahead} queued ahead, ~{known.work:.2f}s of work each), the caller's deadline leaves "
            f"{remaining:.2f}s: retry in {retry:.2f}s",
            retry,
        )

    def acquire(self, kind: str, time_remaining: Callable[[], float | None]) -> Ticket:
        """Take a slot (waiting in the queue, within the deadline) or raise Refused; `release` gives it back."""
        name, lane = self.name, self.lane
        remaining = time_remaining()
        with self._lock:
            refused = self._hopeless(kind, remaining, 0.0)
            if refused is None and self._running < lane.max_inflight and not self._queue:
                refused = self._overloaded(kind, remaining, 0)
                if refused is None:
                    self._running += 1
                    RUNNING.labels(self.service, lane.name).set(self._running)
                    return Ticket(kind, time.monotonic(), self._running)
            elif refused is None and len(self._queue) >= lane.max_queue:
                REJECTED.labels(self.service, lane.name, "queue_full").inc()
                retry = self._retry_after(kind)
                refused = Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{name} is at capacity ({self._running} calls running, {len(self._queue)} queued; "
                    f"{lane.settings}): retry in {retry:.2f}s",
                    retry,
                )
            elif refused is None:
                refused = self._overloaded(kind, remaining, len(self._queue))
            if refused is not None:
                raise refused
            event = threading.Event()
            self._queue.append(event)
            QUEUED.labels(self.service, lane.name).set(len(self._queue))
            known = self._known(kind)
            best = known.best if known is not None else 0.0
        started = time.monotonic()
        wait = None if remaining is None else max(0.0, remaining - max(MIN_DEADLINE_S, best))
        granted = event.wait(wait)
        with self._lock:
            if not granted and not event.is_set():
                self._queue.remove(event)
                QUEUED.labels(self.service, lane.name).set(len(self._queue))
                REJECTED.labels(self.service, lane.name, "deadline").inc()
                raise Refused(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{name}: {kind} waited {time.monotonic() - started:.2f}s in the queue "
                    f"({lane.max_inflight} calls running) and the caller's deadline leaves too little time "
                    "to run it",
                )
            # the releaser handed its slot over (running count unchanged)
            refused = self._hopeless(kind, time_remaining(), time.monotonic() - started)
            ticket = Ticket(kind, time.monotonic(), self._running)
        if refused is not None:
            self.release(ticket, ran=False)
            raise refused
        return ticket

    def release(self, ticket: Ticket, ran: bool = True) -> None:
        """Give the slot back (to the first queued call, if any); `ran`: the call ran to its end (its duration
        counts, also when its caller gave up meanwhile), rather than failing at once."""
        with self._lock:
            if ran:
                sharing = (ticket.running + self._running) / 2  # calls running at its start and at its end
                self._history.setdefault(ticket.kind, _Durations()).add(time.monotonic() - ticket.at, sharing)
            if self._queue:
                event = self._queue.popleft()
                QUEUED.labels(self.service, self.lane.name).set(len(self._queue))
                event.set()  # the slot passes to it
                return
            self._running -= 1
            RUNNING.labels(self.service, self.lane.name).set(self._running)


def _abort(context: grpc.ServicerContext, refused: Refused) -> None:
    if refused.retry_after_s is not None:
        context.set_trailing_metadata(((metadata.RETRY_AFTER_MS, str(math.ceil(refused.retry_after_s * 1000))),))
    context.abort(refused.code, refused.message)


def _ok(context: grpc.ServicerContext) -> bool:
    try:
        code = context.code()
    except Exception:
        return True
    return code is None or code == grpc.StatusCode.OK


def duration_class(method: str, request: Any) -> str:
    """What a call's duration is compared with: its method, and for Ask/Read the reader it names (a generative
    read takes 100x an extractive one; one must not make the other look slow)."""
    options = getattr(request, "options", None)
    reader = getattr(options, "reader", None) or getattr(options, "backend", None)
    return f"{method}[{reader}]" if isinstance(reader, str) and reader else method


class Admission(grpc.ServerInterceptor):
    """Bounded concurrency and queue for every method of a server (health and reflection exempt): the methods of
    each lane in `config.lanes` apart, every other one in the main lane (`limiter`)."""

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self.limiter = Limiter(config.service, config.main)
        self.lanes = {lane.name: Limiter(config.service, lane) for lane in config.lanes}
        self._by_method = {method: self.lanes[lane.name] for lane in config.lanes for method in lane.methods}

    def limiter_for(self, method: str) -> Limiter:
        """The lane a method (full gRPC name) is admitted in."""
        return self._by_method.get(method, self.limiter)

    @classmethod
    def from_env(cls, service: str) -> Admission | None:
        config = AdmissionConfig.from_env(service)
        return cls(config) if config.enabled else None

    def _unary(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        limiter = self.limiter_for(method)

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            kind = duration_class(method, request)
            try:
                ticket = limiter.acquire(kind, context.time_remaining)
            except Refused as refused:
                _abort(context, refused)
            ok = False
            try:
                result = behavior(request, context)
                ok = _ok(context)
                return result
            finally:
                limiter.release(ticket, ran=ok)

        return call

    def _streaming(
        self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[..., Any]:
        limiter = self.limiter_for(method)

        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            kind = duration_class(method, request)
            try:
                ticket = limiter.acquire(kind, context.time_remaining)
            except Refused as refused:
                _abort(context, refused)
            ok = False
            try:
                yield from behavior(request, context)
                ok = _ok(context)
            finally:
                limiter.release(ticket, ran=ok)

        return call

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method = str(details.method)
        if handler is None or method.startswith(EXEMPT):
            return handler
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary), des, ser)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._streaming(method, handler.unary_stream), des, ser)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(method, handler.stream_unary), des, ser)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(self._streaming(method, handler.stream_stream), des, ser)
        return handler


# ------------------------------------------------------------------------------------------------ rate limits


def parse_rate(raw: str, name: str) -> float:
    """"N/min", "N/s", "N/h" or a bare N (per minute) -> tokens per second; "0" or "off": 0 (no limit)."""
    text = raw.strip().lower()
    if text in ("", "0", "off", "none"):
        return 0.0
    number, _, unit = text.partition("/")
    per = {"": 60.0, "min": 60.0, "m": 60.0, "s": 1.0, "sec": 1.0, "h": 3600.0, "hour": 3600.0}.get(unit.strip())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or value < 0 or not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a rate; use e.g. 10/min, 1/s or 0 (no limit)")
    return value / per


class RateLimiter:
    """Token buckets keyed by caller: `rate` tokens per second, at most `burst` saved up. The least recently used
    buckets are forgotten beyond `max_keys` (a forgotten caller starts full again)."""

    def __init__(self, rate: float, burst: float, name: str, max_keys: int = 10_000) -> None:
        if rate > 0 and burst < 1:
            raise ConfigError(f"the burst of rate limit {name} must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self.name = name
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for `key`: 0.0 if granted, else the seconds until one is available (nothing taken)."""
        if not self.enabled:
            return 0.0
        at = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, at))
            tokens = min(self.burst, tokens + (at - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, at)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, at)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        if wait:
            RATE_LIMITED.labels(self.name).inc()
        return wait
