"""Storage backends of the memory (see base.py for the contract)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from wikimem_common.config import ConfigError

from ..config import MemoryConfig
from .base import DocRecord, Registry, VectorStore
from .edge import BackgroundOptimizer, EdgeVectorStore
from .qdrant import Layout, QdrantRegistry, QdrantVectorStore, connect
from .sqlite_registry import SqliteRegistry

__all__ = ["Backend", "DocRecord", "Registry", "VectorStore", "open_backend"]


@dataclass
class Backend:
    store: VectorStore
    registry: Registry
    _closers: list[object] = field(default_factory=list)

    def close(self) -> None:
        for closer in self._closers:
            close = getattr(closer, "close", None)
            if callable(close):
                close()


def _lock_dir(path: Path) -> IO[str]:
    """One process per data directory (Qdrant Edge requires it): fail fast with a clear message."""
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / "LOCK", "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise ConfigError(
            f"the memory data directory {path} is in use by another process; give each memory its own "
            "WIKIMEM_DATA, or use WIKIMEM_MEMORY_BACKEND=qdrant to share one store between replicas"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class _Unlock:
    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def close(self) -> None:
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()


def open_backend(config: MemoryConfig, optimize_in_background: bool = True) -> Backend:
    if config.backend == "edge":
        lock = _lock_dir(config.data_dir)
        try:
            store = EdgeVectorStore(config.data_dir / "shard", config.dim)
            registry = SqliteRegistry(config.data_dir / "registry.sqlite3")
        except BaseException:
            _Unlock(lock).close()
            raise
        closers: list[object] = []
        if optimize_in_background:
            closers.append(BackgroundOptimizer(store, config.optimize_interval_s, config.optimize_min_changes))
        closers += [store, registry, _Unlock(lock)]
        return Backend(store, registry, closers)
    if config.backend == "qdrant":
        client = connect(config.qdrant_url or "", config.qdrant_api_key)
        try:
            layout = Layout(config.qdrant_shards, config.qdrant_replication, config.qdrant_write_consistency)
            qstore = QdrantVectorStore(client, f"{config.qdrant_prefix}_chunks", config.dim, layout)
            qregistry = QdrantRegistry(client, f"{config.qdrant_prefix}_documents", layout)
        except ConfigError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise ConfigError(f"cannot reach Qdrant at {config.qdrant_url}: {exc}") from exc
        return Backend(qstore, qregistry, [client])
    raise ConfigError(f"unknown memory backend {config.backend!r}")
