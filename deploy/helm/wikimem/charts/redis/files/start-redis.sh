#!/bin/sh
# Starts redis as the master (pod 0 of a fresh set) or as a replica of the current master.
set -eu
. "$(dirname "$0")/common.sh"

master="$(current_master)"
# A restarted master that the Sentinels still name (they have not noticed it was gone yet) waits for their
# failover instead of coming back empty: as master it would make every replica copy its empty data set.
if [ "$master" = "$self" ] && [ "${SENTINEL_ENABLED:-0}" = 1 ] && [ "$REDIS_NODES" -gt 1 ]; then
  waited=0
  limit=$(( ${SENTINEL_DOWN_AFTER_MS:-5000} * 3 / 1000 + 15 ))
  while [ "$master" = "$self" ] && [ "$waited" -lt "$limit" ]; do
    log "the Sentinels still name this pod as master; waiting for their failover ($waited/$limit s)"
    sleep 3
    waited=$((waited + 3))
    master="$(current_master)"
  done
fi

mkdir -p "$REDIS_DIR/data"
conf="$REDIS_DIR/redis.conf"
cp "${REDIS_BASE_CONF:-/etc/redis/redis.conf}" "$conf"
{
  echo "port $REDIS_PORT"
  echo "bind ${REDIS_BIND:-* -::*}"
  echo "dir $REDIS_DIR/data"
  echo "replica-announce-ip $self"
  echo "replica-announce-port $REDIS_PORT"
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    echo "requirepass \"$REDIS_PASSWORD\""
    echo "masterauth \"$REDIS_PASSWORD\""
  fi
  if [ "$master" != "$self" ]; then
    echo "replicaof $master $REDIS_PORT"
  fi
} >> "$conf"
if [ "$master" = "$self" ]; then log "starting as master"; else log "starting as a replica of $master"; fi
exec redis-server "$conf"
