#!/usr/bin/env bash
# Serve the gateway and the demo provider on 127.0.0.1 until Ctrl-C.
#
# `make run` calls this after migrating and seeding the database. The demo
# provider runs in the background with its output in var/fake_provider.log;
# the gateway runs under gunicorn with gunicorn.conf.py. Stopping this script
# stops both. With --check-ports it only checks that both ports are free.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
PORT=${PORT:-8000}
PROVIDER_PORT=${PROVIDER_PORT:-8100}
PROVIDER_LOG=var/fake_provider.log
BASE_URL="http://127.0.0.1:${PORT}"
export HOST=127.0.0.1 PORT

provider_pid=""
gateway_pid=""

stop_servers() {
  trap - EXIT INT TERM
  for pid in $gateway_pid $provider_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait || true
}
trap stop_servers EXIT
trap 'stop_servers; exit 130' INT
trap 'stop_servers; exit 143' TERM

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

fail() {
  echo "$*" >&2
  exit 1
}

for port in "$PORT" "$PROVIDER_PORT"; do
  if port_in_use "$port"; then
    fail "Port $port on 127.0.0.1 is already in use. Stop the process that" \
      "listens there, or choose other ports: make run PORT=... PROVIDER_PORT=..."
  fi
done
# `make run` checks the ports before it seeds, so that a second `make run`
# does not replace the demo key of the one already serving.
if [[ ${1:-} == --check-ports ]]; then
  exit 0
fi

mkdir -p var
# Two gunicorn workers share their metrics through this directory, so that
# /metrics counts the requests of both; gunicorn.conf.py empties it at start.
export PROMETHEUS_MULTIPROC_DIR=var/prometheus
"$BIN/python" -m saasllm.fake_provider --host 127.0.0.1 --port "$PROVIDER_PORT" \
  >"$PROVIDER_LOG" 2>&1 &
provider_pid=$!

for _ in $(seq 100); do
  port_in_use "$PROVIDER_PORT" && break
  kill -0 "$provider_pid" 2>/dev/null || {
    tail -n 20 "$PROVIDER_LOG" >&2
    fail "The demo provider failed to start; its log is above and in $PROVIDER_LOG."
  }
  sleep 0.1
done
port_in_use "$PROVIDER_PORT" ||
  fail "The demo provider did not listen on port $PROVIDER_PORT within 10 seconds."

"$BIN/gunicorn" -c gunicorn.conf.py saasllm.asgi:application &
gateway_pid=$!

# Each worker imports Django and litellm before it serves requests, which
# takes a few seconds.
for _ in $(seq 120); do
  kill -0 "$gateway_pid" 2>/dev/null ||
    fail "The gateway failed to start. Its log is above."
  if "$BIN/python" -c \
    'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$BASE_URL/health" 2>/dev/null; then
    break
  fi
  sleep 0.5
done

cat <<EOF

saasllm is serving on $BASE_URL (demo provider: http://127.0.0.1:${PROVIDER_PORT}/v1).

  make demo          run one job with three calls and print its cost
  API docs           $BASE_URL/api/docs/
  Django admin       $BASE_URL/admin/  (user admin, password printed above)
  curl               KEY=\$(cat var/demo-key), then the job sequence in README.md

Press Ctrl-C to stop the gateway and the demo provider.

EOF

wait "$gateway_pid"
