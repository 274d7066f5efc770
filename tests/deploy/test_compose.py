"""docker-compose.yml, run for real: build the images, start the stack, ingest the sample wiki, ask, edit a page, ask
again, recreate the memory container on its volume and check nothing was lost; tear down also on failure.

The stack runs as shipped, secure by default: development secrets from deploy/docker/dev-secrets.py (internal CA
and certificates, an API-keys file), mutual TLS on every internal hop and API keys at the orchestrator. The client
uses the admin key (WIKIMEM_API_KEY); an Ask without a key or with an unknown one is UNAUTHENTICATED, and a direct
call to an internal service from another container on the network (plaintext, or TLS without a client
certificate) is refused while the same call with a service's certificate succeeds.

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
    DevSecrets,
    Timings,
    ask_json,
    dev_secrets,
    docs,
    free_port,
    probe_internal,
    run,
    wikimem,
)

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(2400)]

QUESTION = "When are expense reports due?"
OLD_FACT, NEW_FACT = "30 days", "45 days"
#: The default profile: five services and Redis; no Qdrant server.
SERVICES = ("embedder", "memory", "reranker", "reader", "orchestrator", "redis")
QDRANT_IMAGE = "qdrant/qdrant:v1.16.0"
INTERNAL = ("embedder", "memory", "reranker", "reader")


@pytest.fixture()
def secrets(tmp_path: Path) -> DevSecrets:
    return dev_secrets(tmp_path / "secrets")


@pytest.fixture()
def stack(images: str, secrets: DevSecrets) -> Iterator[ComposeStack]:
    stack = ComposeStack(f"wikimem-test-{os.getpid()}", free_port(), secrets=secrets)
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

    _check_security(stack, timings)

    key = stack.api_key
    wiki = tmp_path / "wiki"
    shutil.copytree(REPO / "examples" / "wiki", wiki)
    pages = len(list(wiki.glob("*.md")))
    with timings.step(f"ingest examples/wiki ({pages} pages)"):
        out = wikimem(stack.address, "ingest", str(wiki), api_key=key).stdout
    assert f"{pages} files: {pages} added, 0 changed" in out, out

    with timings.step("ask"):
        before = ask_json(stack.address, QUESTION, api_key=key)
    assert OLD_FACT in _answer(before), before
    assert before["citations"][0]["doc_id"] == "expenses.md"

    page = wiki / "expenses.md"
    text = page.read_text(encoding="utf-8")
    assert f"due within {OLD_FACT}" in text
    page.write_text(text.replace(f"due within {OLD_FACT}", f"due within {NEW_FACT}"), encoding="utf-8")
    with timings.step("edit expenses.md + ingest again"):
        out = wikimem(stack.address, "ingest", str(wiki), api_key=key).stdout
    assert f"{pages} files: 0 added, 1 changed, {pages - 1} unchanged" in out, out

    with timings.step("ask again (the answer cache is on)"):
        after = ask_json(stack.address, QUESTION, api_key=key)
    assert NEW_FACT in _answer(after) and OLD_FACT not in _answer(after), after
    assert after["citations"][0]["revision"] == 2

    listed = docs(stack.address, api_key=key)
    assert len(listed) == pages and listed["expenses.md"]["revision"] == 2, listed
    assert {doc["revision"] for name, doc in listed.items() if name != "expenses.md"} == {1}

    # A new memory container on the same named volume: what survives is what the volume holds.
    old_id = stack.containers()["memory"]["Id"]
    with timings.step("recreate the memory container"):
        stack.compose("up", "-d", "--no-deps", "--force-recreate", "memory")
    timings.add("... until memory is healthy", stack.wait_healthy(["memory"], timeout=180))
    assert stack.containers()["memory"]["Id"] != old_id, "the memory container was not replaced"

    with timings.step("list documents after the restart"):
        relisted = docs(stack.address, api_key=key)
    assert relisted == listed, "documents or revisions changed across the memory restart"
    with timings.step("ask after the restart (no cache, no QA memory)"):
        final = ask_json(stack.address, QUESTION, "--no-cache", "--no-qa-memory", api_key=key)
    assert NEW_FACT in _answer(final) and OLD_FACT not in _answer(final), final
    assert final["cached"] is False and final["citations"][0]["revision"] == 2

    with timings.step("docker-compose down --volumes"):
        stack.down()


def _check_security(stack: ComposeStack, timings: Timings) -> None:
    """Auth at the orchestrator and mutual TLS inside, as the stack runs by default."""
    with timings.step("ask without an API key / with an unknown one"):
        anonymous = wikimem(stack.address, "ask", QUESTION, check=False)
        unknown = wikimem(stack.address, "ask", QUESTION, api_key="wmk_" + "0" * 43, check=False)
    for proc, why in ((anonymous, "missing credentials"), (unknown, "unknown API key")):
        said = proc.stdout + proc.stderr
        # the CLI prints the gRPC status in words: "wikimem: unauthenticated: missing credentials: ..."
        assert proc.returncode != 0 and "unauthenticated:" in said.lower() and why in said, (proc.returncode, said)

    containers = stack.containers()
    orchestrator = containers["orchestrator"]
    networks = list(orchestrator["NetworkSettings"]["Networks"])
    assert len(networks) == 1, networks
    ca_pem = Path(stack.env["WIKIMEM_SECRETS"]) / "orchestrator" / "ca.pem"
    # an outsider: a new container on the stack's network, with the image's Python and stubs but no certificate
    outsider = ["docker", "run", "--rm", "--network", networks[0], "--read-only", "--cap-drop", "ALL",
                "-e", f"PROBE_CA_PEM={ca_pem.read_text(encoding='utf-8')}", orchestrator["Config"]["Image"]]
    with timings.step("direct internal calls from an outsider container"):
        refused = probe_internal(outsider, "plaintext", "tls-no-cert")
    with timings.step("the same calls with the orchestrator's certificate"):
        allowed = probe_internal(["docker", "exec", orchestrator["Id"]], "mtls")
    calls = [f"{svc}.health" for svc in INTERNAL] + ["memory.stats"]
    assert refused == {f"{c}/{m}": "UNAVAILABLE" for c in calls for m in ("plaintext", "tls-no-cert")}, refused
    assert allowed == {f"{c}/mtls": "OK" for c in calls}, allowed
    for service in INTERNAL:  # every internal service (and so every hop to it) was configured for mutual TLS
        env = dict(item.split("=", 1) for item in containers[service]["Config"]["Env"])
        assert env.get("WIKIMEM_INTERNAL_CA") == "/run/secrets/wikimem/ca.pem", (service, env)


def test_qdrant_profile(images: str, tmp_path: Path) -> None:
    """The `qdrant` profile is a valid compose file that puts the memory on a Qdrant server; it runs only where the
    Qdrant image can be pulled."""
    env_file = DOCKER_DIR / "qdrant.env"
    secrets = dev_secrets(tmp_path / "secrets")
    stack = ComposeStack(f"wikimem-qdrant-{os.getpid()}", free_port(), env_file=env_file, secrets=secrets)
    config = yaml.safe_load(stack.compose("config").stdout)
    memory_env = config["services"]["memory"]["environment"]
    assert memory_env["WIKIMEM_MEMORY_BACKEND"] == "qdrant" and memory_env["QDRANT_URL"] == "http://qdrant:6333"
    assert config["services"]["qdrant"]["image"] == QDRANT_IMAGE
    assert "qdrant" in config["services"]["qdrant"]["profiles"]
    default = yaml.safe_load(ComposeStack("wikimem-default", 1).compose("config").stdout)
    assert default["services"]["memory"]["environment"]["WIKIMEM_MEMORY_BACKEND"] == "edge"
    # secure by default: API keys at the orchestrator, every service with its own certificate folder, read-only
    assert default["services"]["orchestrator"]["environment"]["WIKIMEM_AUTH"] == "apikey"
    for service in ("embedder", "memory", "reranker", "reader", "orchestrator"):
        spec = default["services"][service]
        assert spec["environment"]["WIKIMEM_INTERNAL_KEY"] == "/run/secrets/wikimem/tls.key", service
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}:{'ro' if v.get('read_only') else 'rw'}"
                  for v in spec["volumes"]]
        assert any(m.endswith(f"/secrets/{service}:/run/secrets/wikimem:ro") for m in mounts), (service, mounts)

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
        out = wikimem(stack.address, "ingest", str(wiki), api_key=stack.api_key).stdout
        assert re.search(r"(\d+) files: \1 added", out), out
        assert OLD_FACT in _answer(ask_json(stack.address, QUESTION, api_key=stack.api_key))
        assert "qdrant" in stack.containers()
    except BaseException:
        print(f"\n== compose logs (qdrant profile, failure)\n{stack.logs()}")
        raise
    finally:
        stack.down()
