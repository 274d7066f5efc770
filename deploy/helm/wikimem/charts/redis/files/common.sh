# Shared by start-redis.sh and start-sentinel.sh. Settings come from the environment (set by the StatefulSet):
# HOSTNAME, REDIS_NODE_PREFIX, REDIS_HEADLESS, REDIS_NODES, REDIS_PORT, SENTINEL_ENABLED, SENTINEL_PORT,
# SENTINEL_MASTER, REDIS_DIR; REDIS_PASSWORD / REDISCLI_AUTH when auth is on. (REDIS_BIND and REDIS_BASE_CONF only
# for deploy/helm/redis-failover-test.sh, which runs three "pods" on one host.)
self="${HOSTNAME}.${REDIS_HEADLESS}"
ordinal="${HOSTNAME##*-}"
first="${REDIS_NODE_PREFIX}-0.${REDIS_HEADLESS}"

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) ${HOSTNAME}: $*"; }

# The master's host name as any Sentinel knows it; nothing when no Sentinel answers (a fresh set).
ask_sentinels() {
  [ "${SENTINEL_ENABLED:-0}" = 1 ] || return 0
  i=0
  while [ "$i" -lt "$REDIS_NODES" ]; do
    host="${REDIS_NODE_PREFIX}-${i}.${REDIS_HEADLESS}"
    answer="$(timeout 3 redis-cli -h "$host" -p "$SENTINEL_PORT" --raw \
      sentinel get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null | head -n 1 || true)"
    case "$answer" in
      "" | *" "*) ;;  # no answer, or an error line ("NOAUTH ...", "ERR ...")
      *) echo "$answer"; return 0 ;;
    esac
    i=$((i + 1))
  done
}

# The current master: what the Sentinels say, else pod 0.
current_master() {
  m="$(ask_sentinels)"
  echo "${m:-$first}"
}
