"""The deploy tests build the container images and run the compose stack: `make compose-test` (WIKIMEM_TEST_COMPOSE=1).

They need a container engine; `deploy/docker/ensure-engine.sh` installs (apt-get, as root) and starts one where it is
missing, and the tests skip only where that is impossible (not root, no apt-get).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .compose_support import DOCKER_DIR, Engine, ensure_engine, run

SKIP_REASON = (
    "the compose tests build images and start containers (minutes); they run with `make compose-test` "
    "(WIKIMEM_TEST_COMPOSE=1)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compose: builds the images and runs docker-compose (make compose-test)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("WIKIMEM_TEST_COMPOSE") == "1":
        return
    for item in items:
        if item.get_closest_marker("compose") is not None:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A docker daemon (installed and started where missing; stopped again at the end if this started it)."""
    found, reason = ensure_engine(tmp_path_factory.mktemp("engine") / "dockerd.pid")
    if found is None:
        pytest.skip(f"no container engine can be installed here: {reason}")
    print(f"\n{found.output}")
    try:
        yield found
    finally:
        found.stop_if_started()


@pytest.fixture(scope="session")
def images(engine: Engine) -> str:
    """Build every image with deploy/docker/build.sh; its report (build time and size per image)."""
    proc = run([str(DOCKER_DIR / "build.sh")], timeout=1800)
    print(f"\n== deploy/docker/build.sh\n{proc.stdout}")
    return proc.stdout
