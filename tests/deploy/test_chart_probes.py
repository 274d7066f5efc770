"""The Helm chart's TLS probes, run for real against the images (`make compose-test`; no cluster is reachable here).

The chart is rendered with its default values (internal mutual TLS on) plus public TLS; the embedder and the
orchestrator then run as containers with exactly the environment of their rendered ConfigMaps, the Secrets mounted
where the Deployments mount them (internal: `deploy/docker/dev-secrets.py --helm`, as the chart's README says;
public: a certificate from another CA), and the rendered probe command is executed in each, as the kubelet would.
It must pass; without the TLS settings it gets (what the kubelet's plaintext gRPC probe would get, and a check
against the system's roots instead of WIKIMEM_HEALTHCHECK_CA) it must fail. The orchestrator also calls the
embedder by its Service name with the chart's certificate, as it does in the cluster.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .compose_support import DOCKER_DIR, REPO, run

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(900)]

CHART = REPO / "deploy" / "helm" / "wikimem"
RELEASE = "wikimem"
#: The images' user, and the pod's fsGroup: Secret files are root:10001, mode 0440, as the chart mounts them.
FS_GROUP = 10001


def _helm() -> str:
    proc = run(["bash", str(REPO / "deploy" / "k8s-tools.sh")], timeout=900)
    return str(Path(proc.stdout.strip().splitlines()[-1]) / "helm")


def _render(*args: str) -> list[dict[str, Any]]:
    out = run([_helm(), "template", RELEASE, str(CHART), "--namespace", "wikimem", *args], timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _as_secret(folder: Path) -> Path:
    """Files as a mounted Secret has them (root:fsGroup 0440); not root: readable by all."""
    for path in folder.iterdir():
        if os.geteuid() == 0:
            os.chown(path, 0, FS_GROUP)
            path.chmod(0o440)
        else:
            path.chmod(0o444)
    return folder


def _public_pki(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    from wikimem_common import tls

    folder.mkdir()
    ca_key, ca_cert = tls.new_ca("wikimem public test CA")
    key, cert = tls.issue(ca_key, ca_cert, "wikimem.example.com", ["wikimem.example.com", "localhost"])
    tls.write_pair(key, cert, folder / "tls.crt", folder / "tls.key")
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return _as_secret(folder)


@pytest.fixture()
def network() -> Iterator[str]:
    name = f"wikimem-probes-{uuid.uuid4().hex[:8]}"
    run(["docker", "network", "create", name])
    try:
        yield name
    finally:
        ids = run(["docker", "ps", "-aq", "--filter", f"network={name}"]).stdout.split()
        if ids:
            run(["docker", "rm", "-f", *ids], check=False)
        run(["docker", "network", "rm", name], check=False)


def _probe(container: str, command: list[str], *env: str) -> tuple[int, str]:
    extra = [arg for item in env for arg in ("-e", item)]
    proc = run(["docker", "exec", *extra, container, *command], check=False, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def test_chart_tls_probes_pass_in_the_images(images: str, network: str, tmp_path: Path) -> None:
    objs = _render("--set", "tls.public.enabled=true", "--set", "tls.public.existingSecret=wikimem-public-tls")
    configmaps = {o["metadata"]["name"]: o["data"] for o in objs if o["kind"] == "ConfigMap"}
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}

    internal = tmp_path / "internal"
    run([sys.executable, str(DOCKER_DIR / "dev-secrets.py"), "--helm", RELEASE, "--namespace", "wikimem",
         "--out", str(internal)], timeout=120)
    _as_secret(internal)
    public = _public_pki(tmp_path / "public")

    containers: dict[str, list[str]] = {}
    for svc in ("embedder", "orchestrator"):
        name = f"{RELEASE}-{svc}"
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        command = container["readinessProbe"]["exec"]["command"]
        assert all(container[p]["exec"]["command"] == command for p in ("startupProbe", "livenessProbe"))
        containers[name] = command
        env = [arg for k, v in configmaps[name].items() for arg in ("-e", f"{k}={v}")]
        mounts = ["-v", f"{internal}:/etc/wikimem/tls-internal:ro"]
        if svc == "orchestrator":
            mounts += ["-v", f"{public}:/etc/wikimem/tls-public:ro"]
        run(["docker", "run", "-d", "--name", name, "--network", network, "--read-only", "--tmpfs", "/tmp",
             "--tmpfs", "/var/lib/wikimem", "--cap-drop", "ALL", "--user", f"10001:{FS_GROUP}", *env, *mounts,
             f"wikimem/{svc}:latest"])

    # the kubelet runs the probe until it passes (startupProbe: 36 x 5 s); here up to 3 minutes
    for name, command in containers.items():
        deadline = time.monotonic() + 180
        while True:
            code, said = _probe(name, command)
            if code == 0:
                break
            if time.monotonic() > deadline:
                logs = run(["docker", "logs", "--tail", "30", name], check=False)
                pytest.fail(f"{name}: the chart's probe never passed: {said}\n{logs.stdout}{logs.stderr}")
            time.sleep(2)
        assert said == "SERVING", (name, said)

    # what the probe would see without the chart's settings: refused
    code, said = _probe(f"{RELEASE}-embedder", containers[f"{RELEASE}-embedder"],
                        "WIKIMEM_INTERNAL_CA=", "WIKIMEM_INTERNAL_CERT=", "WIKIMEM_INTERNAL_KEY=")
    assert code == 1 and "UNAVAILABLE" in said, ("a plaintext probe of an mTLS port passed", said)
    code, said = _probe(f"{RELEASE}-orchestrator", containers[f"{RELEASE}-orchestrator"], "WIKIMEM_HEALTHCHECK_CA=")
    assert code == 1 and "UNAVAILABLE" in said, ("the public certificate was trusted without its CA", said)

    # the orchestrator reaches the embedder by the Service name the chart gives it, with the chart's certificate
    call = (
        "import os, grpc\n"
        "from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g\n"
        "d = '/etc/wikimem/tls-internal/'\n"
        "creds = grpc.ssl_channel_credentials(*(open(d + n, 'rb').read() for n in ('ca.crt', 'tls.key', 'tls.crt')))\n"
        "ch = grpc.secure_channel(os.environ['WIKIMEM_EMBEDDER_ADDR'], creds)\n"
        "reply = g.HealthStub(ch).Check(h.HealthCheckRequest(), timeout=10)\n"
        "print(h.HealthCheckResponse.ServingStatus.Name(reply.status))\n"
    )
    proc = run(["docker", "exec", f"{RELEASE}-orchestrator", "python", "-c", call], check=False, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "SERVING", proc.stdout + proc.stderr
