#!/bin/sh
# Starts a Sentinel that watches the current master (what the other Sentinels say, else pod 0). Its configuration
# is written afresh on every start; it learns the replicas and the other Sentinels from the master.
set -eu
. "$(dirname "$0")/common.sh"

master="$(current_master)"
waited=0
until timeout 2 redis-cli -h "$master" -p "$REDIS_PORT" ping 2>/dev/null | grep -q -e PONG -e NOAUTH -e LOADING; do
  if [ "$waited" -ge 120 ]; then log "master $master does not answer after ${waited}s"; exit 1; fi
  sleep 2
  waited=$((waited + 2))
  master="$(current_master)"
done

mkdir -p "$REDIS_DIR/sentinel"
conf="$REDIS_DIR/sentinel/sentinel.conf"
{
  echo "port $SENTINEL_PORT"
  echo "bind ${REDIS_BIND:-* -::*}"
  echo "protected-mode no"
  echo "dir $REDIS_DIR/sentinel"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $self"
  echo "sentinel announce-port $SENTINEL_PORT"
  echo "sentinel monitor $SENTINEL_MASTER $master $REDIS_PORT $SENTINEL_QUORUM"
  echo "sentinel down-after-milliseconds $SENTINEL_MASTER $SENTINEL_DOWN_AFTER_MS"
  echo "sentinel failover-timeout $SENTINEL_MASTER $SENTINEL_FAILOVER_TIMEOUT_MS"
  echo "sentinel parallel-syncs $SENTINEL_MASTER $SENTINEL_PARALLEL_SYNCS"
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    echo "requirepass \"$REDIS_PASSWORD\""
    echo "sentinel auth-pass $SENTINEL_MASTER \"$REDIS_PASSWORD\""
    echo "sentinel sentinel-pass \"$REDIS_PASSWORD\""
  fi
} > "$conf"
log "Sentinel watching $SENTINEL_MASTER at $master"
exec redis-sentinel "$conf"
