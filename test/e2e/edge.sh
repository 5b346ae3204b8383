#!/usr/bin/env bash
# End-to-end: a local Worker (wrangler dev), two moq-worker-edge relays on
# 127.0.0.1, a publisher on relay A and a subscriber on relay B. B knows
# nothing about A except what the Worker tells it.
#
# Checks:
#   1. objects published on A reach a subscriber on B (cross-relay via Worker)
#   2. a connection path mapped READ_ONLY cannot publish (PUBLISH_NAMESPACE refused)
#      while a READ_ONLY path in the same scope can read what a READ_WRITE path publishes
#   3. an unknown connection path is refused
#   4. more viewers joining the track relay B already pulls make no Worker
#      call (B answers from its lookup cache, kept exact by the watch
#      channel), counted from the Worker's /metrics; B's own /metrics
#      (--metrics-bind) shows the cache hits
#
# Usage: test/e2e/edge.sh               (from anywhere; builds what it needs)
# Env:   CARGO_TARGET_DIR (default ~/.cache/moq-worker/target), KEEP_LOGS=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moq-worker/target}"
export WRANGLER_SEND_METRICS=false NO_COLOR=1
ADMIN_TOKEN="${MOQ_ADMIN_TOKEN:-dev-admin-token}"
WORK="$(mktemp -d -t moq-edge-e2e.XXXXXX)"
PGIDS=()
START=$(date +%s)

log() { printf '[edge-e2e %3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

stop_groups() { # pgid... : TERM, wait up to 8s (the Worker launcher's own stop takes up to 5s), then KILL
  local pgid alive
  for pgid in "$@"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
  for _ in $(seq 1 80); do
    alive=0
    for pgid in "$@"; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pgid in "$@"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
}

cleanup() {
  local status=$?
  # Clients and relays first, so the relays can still send Shutdown to the
  # Worker; the Worker (first group started) last.
  if [ "${#PGIDS[@]}" -gt 1 ]; then stop_groups "${PGIDS[@]:1}"; fi
  if [ "${#PGIDS[@]}" -gt 0 ]; then stop_groups "${PGIDS[0]}"; fi
  if [ "$status" != 0 ]; then
    log "FAILED; logs:"
    for f in "$WORK"/*.log; do echo "----- $f (last 40 lines)"; tail -n 40 "$f"; done
  fi
  if [ "${KEEP_LOGS:-}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { log "FAIL: $*"; exit 1; }

# Start "$@" in its own process group (so cleanup can kill its whole tree),
# logging to $WORK/$name.log.
spawn() {
  local name=$1; shift
  setsid "$@" >"$WORK/$name.log" 2>&1 < /dev/null &
  PGIDS+=("$!")
}

# A free port for $1 (tcp|udp) on 127.0.0.1.
free_port() {
  local proto=$1 port
  for _ in $(seq 1 50); do
    port=$(( 20000 + RANDOM % 20000 ))
    # Without ss (iproute2) a random high port is very likely free anyway.
    if ! command -v ss >/dev/null; then echo "$port"; return; fi
    if ! ss -Hln --"$proto" "sport = :$port" | grep -q .; then echo "$port"; return; fi
  done
  fail "no free $proto port"
}

wait_for_log() { # name pattern seconds
  local deadline=$(( $(date +%s) + $3 ))
  until grep -q -- "$2" "$WORK/$1.log" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$1: no '$2' within $3s"
    sleep 0.2
  done
}

cd "$ROOT"
log "building moq-worker-edge and the tick example (target: $CARGO_TARGET_DIR)"
B0=$(date +%s)
(cd "$ROOT/edge" && cargo build --quiet --bin moq-worker-edge --example tick)
log "build took $(( $(date +%s) - B0 ))s"
EDGE="$CARGO_TARGET_DIR/debug/moq-worker-edge"
TICK="$CARGO_TARGET_DIR/debug/examples/tick"

# --- Worker: the project's one launcher (npm start's Worker), on our port and state dir.
WPORT=$(free_port tcp)
WORKER="http://127.0.0.1:$WPORT"
NODE="$ROOT/node_modules/.bin/node"
[ -x "$NODE" ] || fail "run 'npm ci' in $ROOT first"
spawn worker "$NODE" "$ROOT/test/e2e/lib/worker.mjs" --port "$WPORT" --persist-to "$WORK/state"
# The launcher prints the URL once /healthz answers (it gives up after 120 s).
wait_for_log worker "^$WORKER\$" 130
log "Worker up at $WORKER"

admin() { # method json
  curl -fsS -m 10 -X POST "$WORKER/moqworker.v1.AdminService/$1" \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $ADMIN_TOKEN" -d "$2"
}
token_for() { admin CreateRelayToken "{\"relayUrl\":\"$1\"}" | sed -E 's/.*"token":"([^"]+)".*/\1/'; }

RUN="r$RANDOM$RANDOM"
admin PutPath "{\"path\":\"/$RUN/pub\",\"scope\":\"$RUN\",\"permissions\":\"PERMISSIONS_READ_WRITE\"}" >/dev/null
admin PutPath "{\"path\":\"/$RUN/watch\",\"scope\":\"$RUN\",\"permissions\":\"PERMISSIONS_READ_ONLY\"}" >/dev/null

# --- Two relays: each its own port, URL and token. Neither is told about the other.
start_relay() { # name port peer-port [extra flags]
  local url="https://127.0.0.1:$2"
  local extra=("${@:4}")
  # --internal-peer: the other relay dials from its bind socket, so its
  # sessions here are tagged relay-to-relay (safe on loopback only).
  spawn "relay-$1" env MOQ_COORDINATOR_TOKEN="$(token_for "$url")" "$EDGE" \
    --bind "127.0.0.1:$2" --public-url "$url" \
    --coordinator-url "$WORKER" \
    --tls-self-signed --tls-disable-verify --internal-peer "127.0.0.1:$3" "${extra[@]}"
}
PA=$(free_port udp); PB=$(free_port udp)
while [ "$PB" = "$PA" ]; do PB=$(free_port udp); done
MB=$(free_port tcp)
start_relay a "$PA" "$PB"
start_relay b "$PB" "$PA" --metrics-bind "127.0.0.1:$MB"
wait_for_log relay-a "edge: relay listening" 30
wait_for_log relay-b "edge: relay listening" 30
log "relay A https://127.0.0.1:$PA, relay B https://127.0.0.1:$PB"

TICKOPTS=(--tls-disable-verify --bind 127.0.0.1:0)

# --- 1. Publisher on A, subscriber on B.
NS="e2e/$RUN/clock"
spawn pub-a "$TICK" "${TICKOPTS[@]}" publish --url "https://127.0.0.1:$PA/" --namespace "$NS" --track ticks
wait_for_log pub-a "published tick-1" 15
S0=$(date +%s)
timeout 45 "$TICK" "${TICKOPTS[@]}" subscribe --url "https://127.0.0.1:$PB/" --namespace "$NS" --track ticks \
  --count 5 --timeout 30 >"$WORK/sub-b.log" 2>&1 \
  || fail "subscriber on relay B did not receive 5 objects"
[ "$(grep -c '^received tick-' "$WORK/sub-b.log")" -ge 5 ] || fail "subscriber output lacks ticks"
grep -q "edge: upstream link opened.*upstream=https://127.0.0.1:$PA/" "$WORK/relay-b.log" \
  || fail "relay B was not handed relay A as its upstream"
grep -q "edge: session accepted remote_addr=127.0.0.1:$PB .*internal=true" "$WORK/relay-a.log" \
  || fail "relay A did not see relay B as an internal peer"
log "ok: 5 objects from a publisher on A reached a subscriber on B via the Worker ($(( $(date +%s) - S0 ))s)"

# --- 2. READ_ONLY path cannot publish; READ_WRITE can, and READ_ONLY can watch it.
set +e
timeout 20 "$TICK" "${TICKOPTS[@]}" publish --url "https://127.0.0.1:$PA/$RUN/watch" --namespace "e2e/$RUN/ro" \
  --track ticks --count 25 >"$WORK/pub-ro.log" 2>&1
ro_status=$?
set -e
[ "$ro_status" = 3 ] || fail "publish on a READ_ONLY path: expected exit 3 (rejected), got $ro_status"
grep -q "PUBLISH_NAMESPACE" "$WORK/pub-ro.log" || fail "READ_ONLY publisher was not refused by PUBLISH_NAMESPACE"
log "ok: READ_ONLY path cannot publish"

spawn pub-rw "$TICK" "${TICKOPTS[@]}" publish --url "https://127.0.0.1:$PA/$RUN/pub" --namespace "e2e/$RUN/scoped" \
  --track ticks
wait_for_log pub-rw "published tick-1" 15
timeout 30 "$TICK" "${TICKOPTS[@]}" subscribe --url "https://127.0.0.1:$PA/$RUN/watch" --namespace "e2e/$RUN/scoped" \
  --track ticks --count 3 --timeout 20 >"$WORK/sub-ro.log" 2>&1 \
  || fail "READ_ONLY path could not subscribe to its scope's READ_WRITE publisher"
log "ok: READ_ONLY path reads what the READ_WRITE path of its scope publishes"

# --- 3. Unknown connection path is refused at session setup.
set +e
timeout 20 "$TICK" "${TICKOPTS[@]}" subscribe --url "https://127.0.0.1:$PA/$RUN/nobody" --namespace "$NS" --track ticks \
  --count 1 --timeout 5 >"$WORK/sub-unknown.log" 2>&1
unknown_status=$?
set -e
[ "$unknown_status" != 0 ] || fail "a session on an unknown path received objects"
grep -q "edge: session refused at scope resolution path=\"/$RUN/nobody\"" "$WORK/relay-a.log" \
  || fail "relay A did not reject the unknown path"
log "ok: unknown path refused (client exit $unknown_status)"

# --- 4. Viewers joining a track B already pulls: answered by B's cache.
worker_calls() { # CoordinatorService calls the Worker served, heartbeats excepted
  curl -fsS -m 10 "$WORKER/metrics" -H "Authorization: Bearer $ADMIN_TOKEN" \
    | awk '/^moq_worker_rpc_requests_total[{]/ && /CoordinatorService/ && !/method="Heartbeat"/ {s += $NF} END {print s + 0}'
}
VIEWERS=10
# One viewer first, so B pulls the track again if its idle timeout dropped it.
timeout 30 "$TICK" "${TICKOPTS[@]}" subscribe --url "https://127.0.0.1:$PB/" --namespace "$NS" --track ticks \
  --count 1 --timeout 20 >"$WORK/sub-first.log" 2>&1 || fail "first viewer on B received nothing"
C0=$(worker_calls)
VPIDS=()
for i in $(seq 1 "$VIEWERS"); do
  timeout 30 "$TICK" "${TICKOPTS[@]}" subscribe --url "https://127.0.0.1:$PB/" --namespace "$NS" --track ticks \
    --count 1 --timeout 20 >"$WORK/sub-viewer-$i.log" 2>&1 &
  VPIDS+=("$!")
done
for pid in "${VPIDS[@]}"; do wait "$pid" || fail "a viewer on B received nothing"; done
C1=$(worker_calls)
[ "$((C1 - C0))" = 0 ] || fail "$VIEWERS viewer joins on B made $((C1 - C0)) Worker calls (want 0)"
HITS=$(curl -fsS -m 5 "http://127.0.0.1:$MB/metrics" | awk '/^moq_edge_cache_hits_total/ {s += $NF} END {print s + 0}')
[ "$HITS" -ge "$VIEWERS" ] || fail "relay B's /metrics shows $HITS cache hits for $VIEWERS viewers"
PUBLIC=$(curl -fsS -m 5 "http://127.0.0.1:$MB/metrics" | awk '/^moq_edge_sessions_accepted_total[{].*interface="public"/ {s += $NF} END {print s + 0}')
[ "$PUBLIC" -ge "$((VIEWERS + 1))" ] || fail "relay B's /metrics counts $PUBLIC public sessions for $((VIEWERS + 1)) viewers"
log "ok: $VIEWERS more viewers on B made no Worker call ($HITS cache hits on B's /metrics)"

log "PASS in $(( $(date +%s) - START ))s"
