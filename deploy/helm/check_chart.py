"""Checks on the rendered wikimem chart that a schema cannot make (run by deploy/helm/lint.sh, `make helm-lint`).

kubernetes-validate says each object is well formed; this says the objects do what the chart promises: gRPC probes on
every service, non-root and read-only pods, metrics announced, HPAs for the stateless services only, a
PodDisruptionBudget and a NetworkPolicy for every workload, internal services reachable only from their callers,
the Qdrant and Redis settings that reach memory, and the secure defaults: mutual TLS between the services in both
renders (certificates from the Secret, TLS probes with the environment the health check needs), authentication
at the orchestrator in the production values, round-robin channels with headless Services.

usage: check_chart.py default.yaml production.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

Obj = dict[str, Any]
SERVICES = ("orchestrator", "embedder", "memory", "reranker", "reader")
STATELESS = ("orchestrator", "embedder", "reranker", "reader")
CALLERS = {"embedder": {"orchestrator", "memory"}, "memory": {"orchestrator"}, "reranker": {"orchestrator"},
           "reader": {"orchestrator"}}
RELEASE = "wikimem"


class Failures:
    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        self.checks = 0

    def check(self, ok: bool, message: str) -> None:
        self.checks += 1
        if not ok:
            self.errors.append(f"{self.name}: {message}")


def load(path: str) -> list[Obj]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def of_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    yield from (o for o in objs if o["kind"] in ("Deployment", "StatefulSet"))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match.items())


def env_of(container: Obj, configmaps: dict[str, Obj]) -> dict[str, Any]:
    """The container's environment: its ConfigMaps' data, then env entries (values, or the secretKeyRef itself)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def check_render(objs: list[Obj], f: Failures, production: bool) -> None:
    deployments = of_kind(objs, "Deployment")
    configmaps = of_kind(objs, "ConfigMap")
    name = RELEASE  # the release is called wikimem, so the objects are wikimem-<service>
    f.check(sorted(deployments) == sorted(f"{name}-{s}" for s in SERVICES), f"Deployments: {sorted(deployments)}")
    public_tls = production  # the production example has TLS on the public port; internal mutual TLS is the default

    for svc in SERVICES:
        d = deployments.get(f"{name}-{svc}")
        if d is None:
            continue
        pod = d["spec"]["template"]
        spec = pod["spec"]
        (c,) = spec["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        tls = public_tls if svc == "orchestrator" else True  # does this service's own port speak TLS
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if tls:  # the kubelet's gRPC probe speaks no TLS: the image's health check runs instead
                ok = c.get(probe, {}).get("exec", {}).get("command") == ["python", "/opt/wikimem/healthcheck.py"]
                ok = ok and int(c[probe].get("timeoutSeconds", 1)) >= 10  # it starts a Python process
            else:
                ok = c.get(probe, {}).get("grpc", {}).get("port") == ports.get("grpc")
            f.check(ok, f"{svc}: {probe} is not {'the TLS health check' if tls else 'a gRPC probe'}: {c.get(probe)}")
        f.check(c["image"].endswith(f"wikimem/{svc}:0.1.0"), f"{svc}: image {c['image']}")
        f.check(spec["securityContext"].get("runAsNonRoot") is True, f"{svc}: pod not runAsNonRoot")
        f.check(c["securityContext"].get("readOnlyRootFilesystem") is True, f"{svc}: root fs writable")
        f.check(c["securityContext"].get("allowPrivilegeEscalation") is False, f"{svc}: privilege escalation")
        f.check("cpu" in c["resources"].get("requests", {}) and "memory" in c["resources"].get("limits", {}),
                f"{svc}: resources {c['resources']}")
        f.check(ports.get("metrics") == 9464, f"{svc}: metrics port {ports.get('metrics')}")
        annotations = pod["metadata"].get("annotations", {})
        f.check(annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == "9464",
                f"{svc}: prometheus annotations {annotations}")
        f.check(spec.get("automountServiceAccountToken") is False, f"{svc}: service account token mounted")
        env = env_of(c, configmaps)
        f.check(env.get("WIKIMEM_LISTEN") == f"0.0.0.0:{ports.get('grpc')}", f"{svc}: WIKIMEM_LISTEN")
        f.check(env.get("WIKIMEM_METRICS_PORT") == "9464", f"{svc}: WIKIMEM_METRICS_PORT")
        f.check(int(spec["terminationGracePeriodSeconds"]) > float(env.get("WIKIMEM_DRAIN_GRACE_S", "inf")),
                f"{svc}: the pod is killed before its drain ends")
        f.check(env.get("WIKIMEM_DRAIN_GRACE_S") == "30", f"{svc}: WIKIMEM_DRAIN_GRACE_S")
        # mutual TLS between the services, on by default: every service (the orchestrator as a client) gets the
        # three variables, pointing into the mounted Secret; the health check learns the service from WIKIMEM_SERVICE
        f.check(env.get("WIKIMEM_SERVICE") == svc, f"{svc}: WIKIMEM_SERVICE {env.get('WIKIMEM_SERVICE')}")
        internal = {k: env.get(f"WIKIMEM_INTERNAL_{k}") for k in ("CA", "CERT", "KEY")}
        f.check(internal == {"CA": "/etc/wikimem/tls-internal/ca.crt", "CERT": "/etc/wikimem/tls-internal/tls.crt",
                             "KEY": "/etc/wikimem/tls-internal/tls.key"}, f"{svc}: internal TLS settings {internal}")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        mount = mounts.get("/etc/wikimem/tls-internal", {})
        secret = volumes.get(mount.get("name", ""), {}).get("secret", {})
        f.check(mount.get("readOnly") is True and secret.get("secretName") == f"{name}-internal-tls",
                f"{svc}: internal TLS Secret not mounted read-only from {name}-internal-tls: {mount} {secret}")
        # round robin over the pods of a headless Service, for the services that call peers
        want_lb = "round_robin" if production and svc in ("orchestrator", "memory") else None
        f.check(env.get("WIKIMEM_GRPC_LB") == want_lb, f"{svc}: WIKIMEM_GRPC_LB {env.get('WIKIMEM_GRPC_LB')}")
        if svc == "orchestrator" and public_tls:
            f.check(env.get("WIKIMEM_TLS_CERT") == "/etc/wikimem/tls-public/tls.crt", "orchestrator: public TLS")
            f.check(env.get("WIKIMEM_HEALTHCHECK_CA") == "/etc/wikimem/tls-public/ca.crt",
                    f"orchestrator: the TLS probe has no CA: {env.get('WIKIMEM_HEALTHCHECK_CA')}")
        if svc == "orchestrator" and not public_tls:
            f.check("WIKIMEM_TLS_CERT" not in env and "WIKIMEM_HEALTHCHECK_CA" not in env, "orchestrator: public TLS")
        if svc == "orchestrator":
            for peer in ("EMBEDDER", "MEMORY", "RERANKER", "READER"):
                f.check(f"WIKIMEM_{peer}_ADDR" in env, f"orchestrator: no WIKIMEM_{peer}_ADDR")
            if production:
                auth_ok = (
                    env.get("WIKIMEM_AUTH") == "jwt,apikey"
                    and str(env.get("WIKIMEM_JWKS_URL")).startswith("https://")
                    and bool(env.get("WIKIMEM_JWT_ISSUER"))
                    and bool(env.get("WIKIMEM_JWT_AUDIENCE"))
                    and env.get("WIKIMEM_API_KEYS_FILE") == "/etc/wikimem/auth/api-keys/api-keys.json"
                )
                f.check(auth_ok, "orchestrator: auth settings")
                keys = mounts.get("/etc/wikimem/auth/api-keys", {})
                source = volumes.get(keys.get("name", ""), {}).get("secret", {})
                f.check(keys.get("readOnly") is True and source.get("secretName") == "wikimem-api-keys",
                        f"orchestrator: API keys Secret not mounted: {keys} {source}")
            else:  # the dev default: auth off (the chart refuses to expose it outside the cluster so)
                f.check(not any(k.startswith(("WIKIMEM_AUTH", "WIKIMEM_JWT", "WIKIMEM_JWKS", "WIKIMEM_API_KEYS"))
                                for k in env), "orchestrator: auth settings in the default values")
                f.check(of_kind(objs, "Service")[f"{name}-orchestrator"]["spec"]["type"] == "ClusterIP",
                        "orchestrator: exposed outside the cluster without auth")
        if svc in ("orchestrator", "memory"):
            if production:
                sentinels = str(env.get("WIKIMEM_REDIS_SENTINELS", "")).split(",")
                f.check(len(sentinels) == 3 and env.get("WIKIMEM_REDIS_MASTER") == "wikimem",
                        f"{svc}: Sentinel settings {sentinels}")
                f.check(isinstance(env.get("WIKIMEM_REDIS_PASSWORD"), dict), f"{svc}: Redis password not a secret")
            else:
                f.check(str(env.get("REDIS_URL", "")).startswith("redis://"), f"{svc}: REDIS_URL")
        if svc == "memory":
            want = ("3", "2", "2") if production else ("1", "1", "1")
            got = tuple(env.get(f"WIKIMEM_QDRANT_{k}") for k in ("SHARDS", "REPLICATION", "WRITE_CONSISTENCY"))
            f.check(got == want, f"memory: Qdrant shards/replication/write consistency {got}, expected {want}")
            f.check(env.get("WIKIMEM_MEMORY_BACKEND") == "qdrant", "memory: backend")
            f.check(env.get("WIKIMEM_MEMORY_COORDINATION") == "redis", "memory: coordination through Redis")
            f.check(str(env.get("QDRANT_URL", "")).startswith(f"http://{RELEASE}-qdrant:6333"), "memory: QDRANT_URL")
            replicas = d["spec"].get("replicas")
            f.check(replicas == (3 if production else 1), f"memory: replicas {replicas}")
            if production:
                f.check(env.get("QDRANT_API_KEY") == {"secretKeyRef": {"name": "wikimem-qdrant", "key": "api-key"}},
                        f"memory: QDRANT_API_KEY {env.get('QDRANT_API_KEY')}")

    hpas = of_kind(objs, "HorizontalPodAutoscaler")
    want_hpa = sorted(f"{name}-{s}" for s in STATELESS) if production else []
    f.check(sorted(hpas) == want_hpa, f"HPAs {sorted(hpas)}, expected {want_hpa}")
    for hpa in hpas.values():
        target = hpa["spec"]["scaleTargetRef"]["name"]
        f.check("replicas" not in deployments.get(target, {}).get("spec", {}), f"{target}: replicas fixed under an HPA")

    pdbs = list(of_kind(objs, "PodDisruptionBudget").values())
    policies = list(of_kind(objs, "NetworkPolicy").values())
    for w in workloads(objs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        wname = w["metadata"]["name"]
        f.check(any(selects(p["spec"]["selector"], labels) for p in pdbs), f"{wname}: no PodDisruptionBudget")
        f.check(any(selects(p["spec"]["podSelector"], labels) for p in policies), f"{wname}: no NetworkPolicy")
        for c in w["spec"]["template"]["spec"]["containers"]:
            sc = {**w["spec"]["template"]["spec"].get("securityContext", {}), **c.get("securityContext", {})}
            f.check(sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True,
                    f"{wname}/{c['name']}: not non-root with a read-only root fs")

    # internal services: their gRPC port only from their callers' pods (and memory's writers)
    for svc, callers in CALLERS.items():
        policy = next((p for p in policies if p["metadata"]["name"] == f"{name}-{svc}"), None)
        f.check(policy is not None, f"{svc}: no NetworkPolicy")
        if policy is None:
            continue
        port = deployments[f"{name}-{svc}"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == port for p in r.get("ports", []))]
        f.check(len(rules) == 1 and "from" in rules[0], f"{svc}: gRPC port open to anyone: {rules}")
        if len(rules) != 1 or "from" not in rules[0]:
            continue
        sources = rules[0]["from"]
        allowed = {s["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for s in sources}
        allowed_want: set[str | None] = set(callers) | ({None} if svc == "memory" else set())
        f.check(allowed == allowed_want and all(set(s) == {"podSelector"} for s in sources),
                f"{svc}: gRPC port open to {sources}")
        if svc == "memory":
            f.check({"wikimem.io/memory-writer": "true"} in [s["podSelector"]["matchLabels"] for s in sources],
                    "memory: writers' label not allowed")

    # Qdrant: distributed mode, the peers find each other before they are ready
    statefulsets = of_kind(objs, "StatefulSet")
    qdrant = statefulsets.get(f"{RELEASE}-qdrant")
    f.check(qdrant is not None, "no Qdrant StatefulSet")
    if qdrant is not None:
        f.check(qdrant["spec"]["replicas"] == (3 if production else 1), f"Qdrant replicas {qdrant['spec']['replicas']}")
        config = yaml.safe_load(configmaps[f"{RELEASE}-qdrant"]["data"]["production.yaml"])
        f.check(config["cluster"]["enabled"] is True and config["cluster"]["p2p"]["port"] == 6335, "Qdrant cluster")
        script = configmaps[f"{RELEASE}-qdrant"]["data"]["initialize.sh"]
        f.check(f"--bootstrap \"http://{RELEASE}-qdrant-0." in script, "Qdrant peers do not bootstrap from peer 0")
        headless = of_kind(objs, "Service").get(f"{RELEASE}-qdrant-headless", {})
        f.check(headless.get("spec", {}).get("publishNotReadyAddresses") is True, "Qdrant headless service")
    redis = statefulsets.get(f"{RELEASE}-redis-node")
    f.check(redis is not None, "no Redis StatefulSet")
    if redis is not None:
        names = [c["name"] for c in redis["spec"]["template"]["spec"]["containers"]]
        f.check(names == (["redis", "sentinel"] if production else ["redis"]), f"Redis containers {names}")
        f.check(redis["spec"]["replicas"] == (3 if production else 1), "Redis replicas")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    total, errors = 0, []
    for path, production in ((argv[1], False), (argv[2], True)):
        f = Failures("production" if production else "default")
        check_render(load(path), f, production)
        total += f.checks
        errors += f.errors
    for e in errors:
        print(f"FAIL {e}")
    print(f"check_chart: {total - len(errors)} passed, {len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
