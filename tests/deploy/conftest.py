"""The deploy tests build the container images and run the compose stack: `make compose-test` (WIKIMEM_TEST_COMPOSE=1).

They need a container engine; `deploy/docker/ensure-engine.sh` installs (apt-get, as root) and starts one where it is
missing, and the tests skip only where that is impossible (not root, no apt-get).
"""

from __future__ import annotations

import os

import pytest

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
