"""Where a service's Redis is: one URL, or Sentinels that name the current master (failover without a restart).

Shared by the orchestrator (answer cache, QA memory) and the memory (write coordination of replicas). `redis` is
imported only when a connection is made: services without Redis do not need the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    import redis

URL_SCHEMES = ("redis://", "rediss://", "unix://")


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """"host:port,host:port" -> ((host, port), ...); a bad entry is a ConfigError."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"WIKIMEM_REDIS_SENTINELS entry {item!r} must be host:port")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


@dataclass(frozen=True)
class RedisTarget:
    url: str | None = None
    #: Sentinels (host, port); with them, `master` names the monitored master and `url` is not used.
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"
    #: Password of the Redis servers (Sentinel mode; with a URL, put it in the URL).
    password: str | None = None

    @classmethod
    def from_env(cls) -> RedisTarget | None:
        """REDIS_URL, or WIKIMEM_REDIS_SENTINELS + WIKIMEM_REDIS_MASTER (+ WIKIMEM_REDIS_PASSWORD); None if unset."""
        url = os.environ.get("REDIS_URL", "").strip() or None
        sentinels = parse_sentinels(os.environ.get("WIKIMEM_REDIS_SENTINELS", ""))
        if url is None and not sentinels:
            return None
        target = cls(
            url=url,
            sentinels=sentinels,
            master=os.environ.get("WIKIMEM_REDIS_MASTER", "").strip() or "mymaster",
            password=os.environ.get("WIKIMEM_REDIS_PASSWORD") or None,
        )
        target.validate()
        return target

    def validate(self) -> None:
        if not self.sentinels and not (self.url or "").startswith(URL_SCHEMES):
            raise ConfigError(f"REDIS_URL={self.url!r} must start with redis://, rediss:// or unix://")

    def describe(self) -> str:
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"redis master {self.master!r} via sentinels {hosts}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.url or "")
        return f"redis at {parts.path if parts.scheme == 'unix' else f'{parts.hostname}:{parts.port or 6379}'}"

    def connect(self, **kwargs: Any) -> redis.Redis:
        """A client; `kwargs` (timeouts, retry) apply to the data connections."""
        import redis

        if self.sentinels:
            timeouts = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
            sentinel = redis.Sentinel(list(self.sentinels), sentinel_kwargs=dict(timeouts), **timeouts)
            client: redis.Redis = sentinel.master_for(self.master, password=self.password, **kwargs)
            return client
        return redis.Redis.from_url(self.url or "", **kwargs)
