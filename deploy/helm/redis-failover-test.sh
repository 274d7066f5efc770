#!/usr/bin/env bash
# Runs the redis sub-chart's start scripts, as rendered by helm, for three "pods" on this host (Debian's
# redis-server, pod names mapped to 127.0.0.11-13 in a private /etc/hosts inside a mount namespace) and checks:
#   1. pod 0 starts as master, pods 1 and 2 replicate from it, three Sentinels watch it;
#   2. killing pod 0 (redis and Sentinel) makes the Sentinels promote a replica, and a key written before is there;
#   3. pod 0 started again comes back as a replica of the new master (not as a second, empty master);
#   4. the master's redis restarted at once (before the Sentinels notice) waits for the failover instead of coming
#      back as an empty master that its replicas would copy; nothing written before is lost.
# Needs root (unshare --mount), redis-server and redis-cli (`make redis`). About 40 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ "${1:-}" != "--inside" ]]; then
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "redis-failover-test: needs redis-server and redis-cli (make redis)"; exit 1; }
  [[ $(id -u) == 0 ]] || { echo "redis-failover-test: needs root (a private /etc/hosts via unshare --mount)"; exit 1; }
  BIN="$(bash "$ROOT/deploy/k8s-tools.sh" | tail -n 1)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$BIN/helm" template t "$ROOT/deploy/helm/wikimem" --namespace ns \
    --set redis.replicaCount=3 --set redis.sentinel.enabled=true --set redis.sentinel.downAfterMilliseconds=2000 \
    --set redis.sentinel.failoverTimeout=10000 --set redis.auth.enabled=true --set redis.auth.password=s3cret \
    --show-only charts/redis/templates/configmap.yaml --show-only charts/redis/templates/statefulset.yaml \
    > "$work/rendered.yaml"
  "$(dirname "$(readlink -f "$BIN/kubernetes-validate")")/python" - "$work" <<'EOF'
import os, sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(os.path.join(work, "rendered.yaml"))) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
for name, text in cm["data"].items():
    with open(os.path.join(work, name), "w") as f:
        f.write(text)
sts = next(d for d in docs if d["kind"] == "StatefulSet")
(redis, *_), = [sts["spec"]["template"]["spec"]["containers"]]
with open(os.path.join(work, "env.sh"), "w") as f:
    for item in redis["env"]:
        value = item.get("value", "s3cret")  # the secretKeyRefs: the password given to helm above
        f.write(f"export {item['name']}='{value}'\n")
EOF
  unshare --mount --propagation private bash "$0" --inside "$work"
  exit $?
fi

work="$2"
cd "$work"
cp /etc/hosts hosts
# shellcheck disable=SC1091
. ./env.sh
for i in 0 1 2; do echo "127.0.0.1$((i + 1)) ${REDIS_NODE_PREFIX}-$i.${REDIS_HEADLESS}" >> hosts; done
mount --bind "$work/hosts" /etc/hosts
mkdir -p shim
printf '#!/bin/sh\nexec redis-server "$1" --sentinel\n' > shim/redis-sentinel
chmod +x shim/redis-sentinel
export PATH="$work/shim:$PATH" REDIS_BASE_CONF="$work/redis.conf"

declare -A pids
start() {  # start POD: its redis and its Sentinel, each with its own data directory as in the pod
  local i=$1
  mkdir -p "pod$i/redis" "pod$i/sentinel"
  HOSTNAME="${REDIS_NODE_PREFIX}-$i" REDIS_BIND="127.0.0.1$((i + 1))" REDIS_DIR="$work/pod$i/redis" \
    sh ./start-redis.sh >> "pod$i/redis.log" 2>&1 &
  pids[redis$i]=$!
  HOSTNAME="${REDIS_NODE_PREFIX}-$i" REDIS_BIND="127.0.0.1$((i + 1))" REDIS_DIR="$work/pod$i/sentinel" \
    sh ./start-sentinel.sh >> "pod$i/sentinel.log" 2>&1 &
  pids[sentinel$i]=$!
}
stop() {  # stop POD
  kill -9 "${pids[redis$1]}" "${pids[sentinel$1]}" 2>/dev/null || true
  wait "${pids[redis$1]}" "${pids[sentinel$1]}" 2>/dev/null || true
}
cleanup() { for i in 0 1 2; do stop "$i"; done; }
trap cleanup EXIT

host() { echo "${REDIS_NODE_PREFIX}-$1.${REDIS_HEADLESS}"; }
cli() { timeout 3 redis-cli --no-auth-warning -a "$REDIS_PASSWORD" "$@" 2>/dev/null; }
role() { cli -h "$(host "$1")" -p "$REDIS_PORT" info replication | tr -d '\r' | sed -n 's/^role://p'; }
sentinel_master() { cli -h "$(host "$1")" -p "$SENTINEL_PORT" --raw sentinel get-master-addr-by-name "$SENTINEL_MASTER" | head -n 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for ((t = 0; t < limit * 2; t++)); do "$@" && return 0; sleep 0.5; done
  echo "FAIL: $what (after ${limit}s)"; for f in pod*/*.log; do echo "--- $f"; tail -n 8 "$f"; done; exit 1
}
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }

for i in 0 1 2; do start "$i"; done
master_has_two() { [[ "$(cli -h "$(host 0)" -p "$REDIS_PORT" info replication | grep -c '^slave[0-9]*:.*state=online')" == 2 ]]; }
wait_for 30 "pod 0 master with two replicas in sync" master_has_two
sentinels_know() { [[ "$(cli -h "$(host 0)" -p "$SENTINEL_PORT" sentinel master "$SENTINEL_MASTER" | tr -d '\r' | \
  awk 'p {print; exit} /^num-other-sentinels$/ {p=1}')" == 2 ]]; }
wait_for 30 "three Sentinels that know each other" sentinels_know
# a Sentinel learns the replicas from the master's INFO (every 10 s): until then it has no replica to promote
sentinels_see_replicas() {
  for i in 0 1 2; do
    [[ "$(cli -h "$(host "$i")" -p "$SENTINEL_PORT" --raw sentinel replicas "$SENTINEL_MASTER" | grep -c '^name$')" == 2 ]] \
      || return 1
  done
}
wait_for 30 "every Sentinel knows both replicas" sentinels_see_replicas
[[ "$(role 0)" == master && "$(role 1)" == slave && "$(role 2)" == slave ]] || { echo "FAIL: roles"; exit 1; }
ok "pod 0 master, pods 1 and 2 replicas, 3 Sentinels"

cli -h "$(host 0)" -p "$REDIS_PORT" set before-failover kept >/dev/null
acked="$(cli -h "$(host 0)" -p "$REDIS_PORT" wait 2 2500 || true)"
[[ "$acked" == 2 ]] || { echo "FAIL: the write reached $acked replicas, not 2"; exit 1; }
stop 0
new_master() { m="$(sentinel_master 1)"; [[ -n "$m" && "$m" != "$(host 0)" ]]; }
t0=$(date +%s)
wait_for 40 "failover to pod 1 or 2" new_master
m="$(sentinel_master 1)"
got="$(cli -h "$m" -p "$REDIS_PORT" get before-failover)"
[[ "$got" == kept ]] || { echo "FAIL: key lost on $m: got '$got'"; cli -h "$m" -p "$REDIS_PORT" info replication; tail -n 20 pod1/redis.log; exit 1; }
ok "pod 0 killed: Sentinels promoted $m in $(( $(date +%s) - t0 )) s; the key written before is there"

start 0
zero_is_replica() { [[ "$(role 0)" == slave ]] && cli -h "$(host 0)" -p "$REDIS_PORT" info replication | tr -d '\r' | \
  grep -q "^master_host:$m$" && [[ "$(cli -h "$(host 0)" -p "$REDIS_PORT" get before-failover)" == kept ]]; }
wait_for 60 "pod 0 back as a replica of $m" zero_is_replica
masters=0
for i in 0 1 2; do [[ "$(role "$i")" == master ]] && masters=$((masters + 1)); done
[[ $masters == 1 ]] || { echo "FAIL: $masters masters"; exit 1; }
ok "pod 0 restarted: a replica of $m with the data, one master in all"
# 4. the master's redis crashes and its container restarts at once, before the Sentinels notice: it must not come
#    back as an empty master (the replicas would copy the empty data set), but wait for the failover and rejoin.
for i in 0 1 2; do [[ "$(host "$i")" == "$m" ]] && crashed=$i; done
cli -h "$m" -p "$REDIS_PORT" set before-crash kept >/dev/null
acked="$(cli -h "$m" -p "$REDIS_PORT" wait 2 2500 || true)"
[[ "$acked" == 2 ]] || { echo "FAIL: the write reached $acked replicas, not 2"; exit 1; }
kill -9 "${pids[redis$crashed]}"; wait "${pids[redis$crashed]}" 2>/dev/null || true
HOSTNAME="${REDIS_NODE_PREFIX}-$crashed" REDIS_BIND="127.0.0.1$((crashed + 1))" REDIS_DIR="$work/pod$crashed/redis" \
  sh ./start-redis.sh >> "pod$crashed/redis.log" 2>&1 &
pids[redis$crashed]=$!
moved() { m2="$(sentinel_master "$(( (crashed + 1) % 3 ))")"; [[ -n "$m2" && "$m2" != "$m" ]]; }
wait_for 60 "failover away from the crashed master" moved
rejoined() { [[ "$(role "$crashed")" == slave ]] && [[ "$(cli -h "$m2" -p "$REDIS_PORT" get before-crash)" == kept ]] \
  && [[ "$(cli -h "$(host "$crashed")" -p "$REDIS_PORT" get before-crash)" == kept ]]; }
wait_for 60 "the crashed master back as a replica, the data kept" rejoined
ok "master's redis restarted at once: it waited for the failover to $m2, rejoined as a replica, nothing lost"
echo "redis-failover-test: $passed passed, 0 failed"
