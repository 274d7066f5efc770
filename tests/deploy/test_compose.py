"""docker-compose.yml, run for real: build the images, start the stack, ingest the sample wiki, ask, edit a page, ask
again, recreate the memory container on its volume and check nothing was lost; tear down also on failure.

`make compose-test` (WIKIMEM_TEST_COMPOSE=1). The container engine is installed and started where it is missing
(deploy/docker/ensure-engine.sh); the tests skip only where none can be installed. Figures (build time and size per
image, time to healthy, step timings) are printed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .compose_support import (
    DOCKER_DIR,
    REPO,
    ComposeStack,
    Engine,
    Timings,
    ask_json,
    docs,
    ensure_engine,
    free_port,
    run,
    wikimem,
)

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(2400)]

QUESTION = "When are expense reports due?"
OLD_FACT, NEW_FACT = "30 days", "45 days"
#: The default profile: five services and Redis; no Qdrant server.
SERVICES = ("embedder", "memory", "reranker", "reader", "orchestrator", "redis")
QDRANT_IMAGE = "qdrant/qdrant:v1.16.0"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    found, reason = ensure_engine(tmp_path_factory.mktemp("engine") / "dockerd.pid")
    if found is None:
        pytest.skip(f"no container engine can be installed here: {reason}")
    print(f"\n{found.output}")
    try:
        yield found
    finally:
        found.stop_if_started()


@pytest.fixture(scope="module")
def images(engine: Engine) -> str:
    """Build every image with deploy/docker/build.sh; its report (build time and size per image)."""
    proc = run([str(DOCKER_DIR / "build.sh")], timeout=1800)
    print(f"\n== deploy/docker/build.sh\n{proc.stdout}")
    return proc.stdout


@pytest.fixture()
def stack(images: str) -> Iterator[ComposeStack]:
    stack = ComposeStack(f"wikimem-test-{os.getpid()}", free_port())
    try:
        yield stack
    finally:
        stack.down()
        assert stack.containers() == {}, "docker-compose down left containers behind"
        assert stack.volumes() == [], "docker-compose down --volumes left volumes behind"


def _answer(reply: dict[str, Any]) -> str:
    return str(reply["answer"])


def test_compose_stack_ingest_ask_edit_and_memory_restart(stack: ComposeStack, tmp_path: Path) -> None:
    timings = Timings()
    try:
        _scenario(stack, tmp_path, timings)
    except BaseException:
        print(f"\n== compose logs (failure)\n{stack.logs()}")
        raise
    finally:
        print(f"\n== compose test steps\n{timings.table()}")


def _scenario(stack: ComposeStack, tmp_path: Path, timings: Timings) -> None:
    with timings.step("docker-compose up -d"):
        stack.compose("up", "-d")
    timings.add("... until all six are healthy", stack.wait_healthy(SERVICES))

    with timings.step("check containers (users, ports, profile)"):
        containers = stack.containers()
        assert sorted(containers) == sorted(SERVICES), "the default profile runs the five services and Redis only"
        for service, info in containers.items():
            uid = run(["docker", "exec", info["Id"], "id", "-u"]).stdout.strip()
            assert uid != "0", f"{service} runs as root"
            published = {
                port: [(b["HostIp"], b["HostPort"]) for b in bindings]
                for port, bindings in (info["NetworkSettings"]["Ports"] or {}).items()
                if bindings
            }
            if service == "orchestrator":
                assert published == {"50051/tcp": [("127.0.0.1", str(stack.port))]}
            else:
                assert published == {}, f"{service} publishes {published}; only the orchestrator may"

    wiki = tmp_path / "wiki"
    shutil.copytree(REPO / "examples" / "wiki", wiki)
    pages = len(list(wiki.glob("*.md")))
    with timings.step(f"ingest examples/wiki ({pages} pages)"):
        out = wikimem(stack.address, "ingest", str(wiki)).stdout
    assert f"{pages} files: {pages} added, 0 changed" in out, out

    with timings.step("ask"):
        before = ask_json(stack.address, QUESTION)
    assert OLD_FACT in _answer(before), before
    assert before["citations"][0]["doc_id"] == "expenses.md"

    page = wiki / "expenses.md"
    text = page.read_text(encoding="utf-8")
    assert f"due within {OLD_FACT}" in text
    page.write_text(text.replace(f"due within {OLD_FACT}", f"due within {NEW_FACT}"), encoding="utf-8")
    with timings.step("edit expenses.md + ingest again"):
        out = wikimem(stack.address, "ingest", str(wiki)).stdout
    assert f"{pages} files: 0 added, 1 changed, {pages - 1} unchanged" in out, out

    with timings.step("ask again (the answer cache is on)"):
        after = ask_json(stack.address, QUESTION)
    assert NEW_FACT in _answer(after) and OLD_FACT not in _answer(after), after
    assert after["citations"][0]["revision"] == 2

    listed = docs(stack.address)
    assert len(listed) == pages and listed["expenses.md"]["revision"] == 2, listed
    assert {doc["revision"] for name, doc in listed.items() if name != "expenses.md"} == {1}

    # A new memory container on the same named volume: what survives is what the volume holds.
    old_id = stack.containers()["memory"]["Id"]
    with timings.step("recreate the memory container"):
        stack.compose("up", "-d", "--no-deps", "--force-recreate", "memory")
    timings.add("... until memory is healthy", stack.wait_healthy(["memory"], timeout=180))
    assert stack.containers()["memory"]["Id"] != old_id, "the memory container was not replaced"

    with timings.step("list documents after the restart"):
        relisted = docs(stack.address)
    assert relisted == listed, "documents or revisions changed across the memory restart"
    with timings.step("ask after the restart (no cache, no QA memory)"):
        final = ask_json(stack.address, QUESTION, "--no-cache", "--no-qa-memory")
    assert NEW_FACT in _answer(final) and OLD_FACT not in _answer(final), final
    assert final["cached"] is False and final["citations"][0]["revision"] == 2

    with timings.step("docker-compose down --volumes"):
        stack.down()


def test_qdrant_profile(images: str, tmp_path: Path) -> None:
    """The `qdrant` profile is a valid compose file that puts the memory on a Qdrant server; it runs only where the
    Qdrant image can be pulled."""
    env_file = DOCKER_DIR / "qdrant.env"
    stack = ComposeStack(f"wikimem-qdrant-{os.getpid()}", free_port(), env_file=env_file)
    config = yaml.safe_load(stack.compose("config").stdout)
    memory_env = config["services"]["memory"]["environment"]
    assert memory_env["WIKIMEM_MEMORY_BACKEND"] == "qdrant" and memory_env["QDRANT_URL"] == "http://qdrant:6333"
    assert config["services"]["qdrant"]["image"] == QDRANT_IMAGE
    assert "qdrant" in config["services"]["qdrant"]["profiles"]
    default = yaml.safe_load(ComposeStack("wikimem-default", 1).compose("config").stdout)
    assert default["services"]["memory"]["environment"]["WIKIMEM_MEMORY_BACKEND"] == "edge"

    have = run(["docker", "image", "inspect", QDRANT_IMAGE], check=False).returncode == 0
    if not have and run(["timeout", "120", "docker", "pull", QDRANT_IMAGE], check=False).returncode != 0:
        pytest.skip(
            f"qdrant profile not started: {QDRANT_IMAGE} cannot be pulled here (no image registry is reachable); "
            "its compose configuration is checked above"
        )
    try:
        stack.compose("up", "-d")
        stack.wait_healthy(SERVICES)
        wiki = tmp_path / "wiki"
        shutil.copytree(REPO / "examples" / "wiki", wiki)
        out = wikimem(stack.address, "ingest", str(wiki)).stdout
        assert re.search(r"(\d+) files: \1 added", out), out
        assert OLD_FACT in _answer(ask_json(stack.address, QUESTION))
        assert "qdrant" in stack.containers()
    except BaseException:
        print(f"\n== compose logs (qdrant profile, failure)\n{stack.logs()}")
        raise
    finally:
        stack.down()
