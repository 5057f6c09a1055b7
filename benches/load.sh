#!/usr/bin/env bash
# What tollgate adds to a request, measured on one machine over loopback.
#
#   benches/load.sh [load]   four targets x {non-streaming, streaming} x concurrency, one table
#   benches/load.sh soak     2,000 slow streams held open through tollgate for a minute
#   benches/load.sh instructions
#                            user-space instructions per request of tollgate and of the bare
#                            Pingora proxy, counted by valgrind's callgrind: unlike times,
#                            the same on a busy machine, so fit to compare two builds (the
#                            config reload check, which runs on a timer, is left out)
#
# `load` starts `tollgate sim` (the simulated providers, no added latency) and measures the
# same chat request, with wrk (Debian: apt-get install wrk) and the streaming probe
# benches/load/ttft.rs, against:
#   direct       the simulated OpenAI API itself
#   passthrough  a bare Pingora proxy in front of it (benches/load/passthrough.rs)
#   tollgate     tollgate with benches/load/routes.toml: the shipped routes.toml with its
#                base URLs on the simulator (classifier, budgets and SQLite ledger all on)
#   cluster      the same with [state] backend = "redis", against a private redis-server
# and prints requests/s, p50/p99 latency and what each adds over `direct`, time to first
# token of streams, CPU seconds per 1,000 requests and peak RSS of the proxy process. For
# tollgate it also prints its own time per non-streaming request ("own p50/p99", from its
# tollgate_gateway_overhead_seconds histogram: request time minus upstream waits), which
# leaves out the loopback hop and the scheduling of the other processes.
#
# The `steal` column is the share of CPU time the hypervisor gave to other guests during the
# cell (from /proc/stat): on a shared VM, cells with steal are slower for reasons outside
# the machine. ROUNDS=N runs every target N times, in turn, and prints the median of each
# figure, so a noisy minute does not decide a comparison; "vs pass-through" is then the
# median of the per-round ratios to the pass-through (each ratio pairs two cells taken
# minutes apart at most, so the machine's drift between rounds cancels out of it).
#
# Settings (environment): DURATION seconds per cell (5), TTFT_DURATION seconds of the
# streaming probe per cell (3), CONCURRENCY ("1 32 256"), TARGETS ("direct passthrough
# tollgate cluster"), ROUNDS (1), SOAK_STREAMS (2000), SOAK_SECONDS (60), NO_BUILD=1 to use
# the binaries already in target/release. Everything listens on 127.0.0.1 on free ports;
# every process started here is stopped on exit.

set -euo pipefail

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  exit 2
}

MODE=${1:-load}
case "$MODE" in
  load | soak | instructions) ;;
  -h | --help | help) usage ;;
  *) echo "unknown mode: $MODE" >&2; usage ;;
esac

DURATION=${DURATION:-5}
TTFT_DURATION=${TTFT_DURATION:-3}
CONCURRENCY=${CONCURRENCY:-"1 32 256"}
TARGETS=${TARGETS:-"direct passthrough tollgate cluster"}
ROUNDS=${ROUNDS:-1}
SOAK_STREAMS=${SOAK_STREAMS:-2000}
SOAK_SECONDS=${SOAK_SECONDS:-60}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release"
HERE="$ROOT/benches/load"
TICKS=$(getconf CLK_TCK)

for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
if [ "$MODE" = load ]; then
  command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 1; }
  case " $TARGETS " in
    *" cluster "*) command -v redis-server >/dev/null ||
      { echo "redis-server is needed for the cluster target (apt-get install -y redis-server)" >&2; exit 1; } ;;
  esac
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-load.XXXXXX")
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet --bin tollgate --example passthrough --example ttft)
fi

# --- helpers ---------------------------------------------------------------------------------

# Prints the first of N consecutive free loopback ports.
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    sys.exit("no free ports")
EOF
}

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log; sets $PID.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}

# stop PID: fast shutdown (SIGINT), then SIGKILL.
stop() {
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# wait_port PORT NAME: until something accepts on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start; its log:" >&2
  cat "$WORK/$2.log" >&2
  exit 1
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# "steal total" jiffies of all CPUs since boot.
steal_ticks() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# Request bodies: the same question for every target; tollgate routes `auto` (classifier on).
bodies() {
  local fault=$1 q='Summarise in one sentence why the sky is blue.'
  local msg="\"messages\": [{\"role\": \"user\", \"content\": \"$q [[sim: $fault]]\"}]"
  local so='"stream": true, "stream_options": {"include_usage": true}'
  for model in gpt-4o-mini auto; do
    echo "{\"model\": \"$model\", \"max_tokens\": 100, $msg}" >"$WORK/$model.$2.json"
    echo "{\"model\": \"$model\", \"max_tokens\": 100, $so, $msg}" >"$WORK/$model.$2.stream.json"
  done
}

# The scratch copy of the bench routes: simulator on $SIM, listeners on $1 and $2, state $3.
routes_copy() {
  local dir="$WORK/$4"
  mkdir -p "$dir"
  cp -r "$HERE/budgets" "$dir/budgets"
  sed -e "s/127\.0\.0\.1:18180/127.0.0.1:$SIM/" \
    -e "s/127\.0\.0\.1:18181/127.0.0.1:$((SIM + 1))/" \
    -e "s/127\.0\.0\.1:18182/127.0.0.1:$((SIM + 2))/" \
    -e "s/127\.0\.0\.1:18183/127.0.0.1:$((SIM + 3))/" \
    -e "s/127\.0\.0\.1:18280/127.0.0.1:$1/" \
    -e "s/127\.0\.0\.1:18290/127.0.0.1:$2/" \
    -e "s#^backend = \"embedded\"#backend = \"$3\"#" \
    -e "s#^redis_url = .*#redis_url = \"redis://127.0.0.1:${REDIS_PORT:-6379}/\"#" \
    "$HERE/routes.toml" >"$dir/routes.toml"
  echo "$dir/routes.toml"
}

# Credentials the simulators accept (any non-empty value).
export OPENAI_API_KEY=sk-bench ANTHROPIC_API_KEY=sk-ant-bench MISTRAL_API_KEY=bench SNOWFLAKE_PAT=bench
# The gateway's admin listener serves /metrics, read around each cell for its own time.
export TOLLGATE_ADMIN_TOKEN=bench
METRICS=""

# start_gateway NAME BACKEND: tollgate on free ports; sets $PID, $URL and $METRICS.
start_gateway() {
  local port admin cfg
  port=$(free_ports 2)
  admin=$((port + 1))
  cfg=$(routes_copy "$port" "$admin" "$2" "$1")
  start "$1" "$BIN/tollgate" serve --config "$cfg"
  wait_port "$port" "$1"
  URL="http://127.0.0.1:$port/v1/chat/completions"
  METRICS="http://127.0.0.1:$admin/metrics"
}

# scrape FILE: the gateway's metrics now (nothing for targets that have none).
scrape() {
  if [ -n "$METRICS" ]; then
    curl -sf -H "authorization: Bearer $TOLLGATE_ADMIN_TOKEN" "$METRICS" >"$1" || : >"$1"
  else
    : >"$1"
  fi
}

if [ "$MODE" = instructions ]; then
  command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install -y valgrind)" >&2; exit 1; }
fi

if [ "$MODE" = soak ]; then
  # Each stream holds a client, a gateway and an upstream socket open.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  need=$((SOAK_STREAMS * 3 + 1000))
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "open files limit $(ulimit -n) < $need; raise the hard limit" >&2
    exit 1
  fi
fi

SIM=$(free_ports 4)
start sim "$BIN/tollgate" sim --listen "127.0.0.1:$SIM" --threads 1
SIM_PID=$PID
wait_port "$SIM" sim
DIRECT_URL="http://127.0.0.1:$SIM/v1/chat/completions"

# --- load ------------------------------------------------------------------------------------

RESULTS="$WORK/results.tsv"

# cell TARGET PID URL BODY_PREFIX AUTH: every concurrency, non-streaming and streaming.
cells() {
  local target=$1 pid=$2 url=$3 model=$4 auth=$5
  local mode c threads out t0 t1 s0 s1 a0 a1 steal line ttft cpu hwm
  for mode in plain stream; do
    local body="$WORK/$model.load.json"
    [ "$mode" = stream ] && body="$WORK/$model.load.stream.json"
    for c in $CONCURRENCY; do
      threads=$((c < 2 ? 1 : 2))
      scrape "$WORK/metrics.before"
      t0=$(cpu_ticks "$pid")
      read -r s0 a0 < <(steal_ticks)
      out=$(BODY_FILE=$body AUTHORIZATION=$auth wrk -t"$threads" -c"$c" -d"${DURATION}s" \
        --timeout 10s -s "$HERE/wrk.lua" "$url")
      read -r s1 a1 < <(steal_ticks)
      t1=$(cpu_ticks "$pid")
      scrape "$WORK/metrics.after"
      # Time in the gateway itself (its histogram), for non-streaming requests.
      own="own_p50_us=- own_p99_us=-"
      if [ "$mode" = plain ] && [ -s "$WORK/metrics.after" ]; then
        own=$(python3 "$HERE/overhead.py" "$WORK/metrics.before" "$WORK/metrics.after")
      fi
      steal=$(awk -v s=$((s1 - s0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.1f", a ? 100 * s / a : 0}')
      line=$(grep '^requests=' <<<"$out")
      ttft="ttft_p50_us=- ttft_p99_us=-"
      if [ "$mode" = stream ]; then
        ttft=$("$BIN/examples/ttft" "$url" "$c" "$TTFT_DURATION" "$body" ${auth:+"$auth"} |
          grep -o 'ttft_p50_us=[0-9]* ttft_p99_us=[0-9]*')
      fi
      cpu=$((t1 - t0))
      hwm=$(status_kib "$pid" VmHWM)
      echo "target=$target round=$ROUND mode=$mode c=$c $line $ttft $own cpu_ticks=$cpu" \
        "hwm_kib=$hwm steal_pct=$steal" | tee -a "$RESULTS"
    done
  done
  # A paced stream (20 ms between upstream events): a chunk held back would show here.
  echo "target=$target round=$ROUND mode=paced c=1 $("$BIN/examples/ttft" "$url" 1 "$TTFT_DURATION" \
    "$WORK/$model.paced.stream.json" ${auth:+"$auth"})" | tee -a "$RESULTS"
}

warm() {
  local i
  for i in 1 2 3; do
    curl -sf -o /dev/null -H 'content-type: application/json' ${3:+-H "authorization: $3"} \
      --data-binary "@$WORK/$2.load.json" "$1"
    curl -sf -o /dev/null -H 'content-type: application/json' ${3:+-H "authorization: $3"} \
      --data-binary "@$WORK/$2.load.stream.json" "$1"
  done
}

run_load() {
  bodies "words=24" load
  bodies "words=10 chunk_delay_ms=20" paced
  : >"$RESULTS"
  local target pid url
  for ROUND in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
      echo "== $target (round $ROUND of $ROUNDS)" >&2
      case $target in
        direct)
          warm "$DIRECT_URL" gpt-4o-mini "Bearer sk-bench"
          cells direct "$SIM_PID" "$DIRECT_URL" gpt-4o-mini "Bearer sk-bench"
          ;;
        passthrough)
          local port
          port=$(free_ports 1)
          start passthrough "$BIN/examples/passthrough" "127.0.0.1:$port" "127.0.0.1:$SIM" 2
          pid=$PID
          wait_port "$port" passthrough
          url="http://127.0.0.1:$port/v1/chat/completions"
          warm "$url" gpt-4o-mini "Bearer sk-bench"
          cells passthrough "$pid" "$url" gpt-4o-mini "Bearer sk-bench"
          stop "$pid"
          ;;
        tollgate | cluster)
          local backend=embedded redis_pid=
          if [ "$target" = cluster ]; then
            REDIS_PORT=$(free_ports 1)
            start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
              --appendonly no --protected-mode yes
            redis_pid=$PID
            wait_port "$REDIS_PORT" redis
            backend=redis
          fi
          start_gateway "$target" "$backend"
          pid=$PID
          echo "idle target=$target rss_kib=$(status_kib "$pid" VmRSS)" | tee -a "$RESULTS"
          warm "$URL" auto ""
          sleep 1
          echo "warm target=$target rss_kib=$(status_kib "$pid" VmRSS) route=$(curl -s -o /dev/null \
            -D - -H 'content-type: application/json' --data-binary "@$WORK/auto.load.json" "$URL" |
            tr -d '\r' | awk -F': ' '$1 == "x-tollgate-model" {m=$2} $1 == "x-tollgate-tier" {t=$2} END {print t "/" m}')" |
            tee -a "$RESULTS"
          cells "$target" "$pid" "$URL" auto ""
          stop "$pid"
          METRICS=""
          if [ -n "$redis_pid" ]; then stop "$redis_pid"; fi
          ;;
        *) echo "unknown target: $target" >&2; exit 2 ;;
      esac
    done
  done
  python3 "$HERE/table.py" "$RESULTS" "$TICKS" "$DURATION"
}

# --- soak ------------------------------------------------------------------------------------

run_soak() {
  bodies "words=24" load
  bodies "words=$SOAK_SECONDS chunk_delay_ms=1000" soak
  start_gateway tollgate embedded
  local pid=$PID
  warm "$URL" auto ""
  sleep 1
  local idle_rss idle_fd t0
  idle_rss=$(status_kib "$pid" VmRSS)
  idle_fd=$(find "/proc/$pid/fd" -mindepth 1 | wc -l)
  t0=$(cpu_ticks "$pid")
  echo "soak: $SOAK_STREAMS streams through tollgate, one upstream event per second" >&2
  start probe "$BIN/examples/ttft" "$URL" "$SOAK_STREAMS" 1 "$WORK/auto.soak.stream.json"
  local probe=$PID max_rss=0 max_fd=0 rss fd samples="$WORK/soak.samples"
  : >"$samples"
  while kill -0 "$probe" 2>/dev/null; do
    rss=$(status_kib "$pid" VmRSS)
    fd=$(find "/proc/$pid/fd" -mindepth 1 | wc -l)
    ((rss > max_rss)) && max_rss=$rss
    ((fd > max_fd)) && max_fd=$fd
    echo "$(date +%s) rss_kib=$rss fds=$fd" >>"$samples"
    sleep 2
  done
  wait "$probe" || true
  local t1 hwm
  t1=$(cpu_ticks "$pid")
  hwm=$(status_kib "$pid" VmHWM)
  cat "$samples" >&2
  echo
  echo "soak ($(date -u +%Y-%m-%d), $(nproc) cores): $SOAK_STREAMS concurrent streams of $SOAK_SECONDS words, one upstream event per second (total_p50_us: how long they were held)"
  echo "probe:        $(cat "$WORK/probe.log")"
  echo "tollgate RSS: idle $((idle_rss / 1024)) MiB, max sampled $((max_rss / 1024)) MiB, peak (VmHWM) $((hwm / 1024)) MiB"
  echo "tollgate fds: idle $idle_fd, max sampled $max_fd"
  echo "tollgate CPU: $(awk -v t=$((t1 - t0)) -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}') s over the soak"
}

# --- instructions ----------------------------------------------------------------------------

# requests URL BODY N [AUTH]: N requests one after another on one connection.
requests() {
  python3 - "$@" <<'EOF2'
import http.client, sys, urllib.parse
url, body, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
headers = {"content-type": "application/json"}
if len(sys.argv) > 4:
    headers["authorization"] = sys.argv[4]
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port)
for _ in range(n):
    c.request("POST", u.path, body, headers)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
EOF2
}

# counted NAME N BODY AUTH CMD...: CMD (a proxy whose URL is $URL once it listens on $PORT)
# under callgrind, N requests, then a clean stop; prints the instructions it executed.
counted() {
  local name=$1 n=$2 body=$3 auth=$4
  shift 4
  local out="$WORK/$name.$n.callgrind"
  start "$name" valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
  local pid=$PID
  wait_port "$PORT" "$name"
  requests "$URL" "$body" "$n" ${auth:+"$auth"}
  kill -INT "$pid"
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  # The config reload check (every 200 ms it reads and hashes routes.toml and the budget
  # files) runs on a timer, so under valgrind, which runs the process tens of times slower,
  # it would count as thousands of instructions per request; it is left out.
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '
    /PROGRAM TOTALS/ {gsub(",", "", $1); total = $1}
    /Reloader::fingerprint/ && !poll {gsub(",", "", $1); poll = $1}
    END {print total - poll}'
}

# per_request NAME BODY AUTH CMD...: instructions of 1,100 requests minus those of 100
# (start-up, first-request work and shutdown cancel out), per request.
per_request() {
  local name=$1 body=$2 auth=$3
  shift 3
  local few many
  few=$(counted "$name" 100 "$body" "$auth" "$@")
  many=$(counted "$name" "${CALLGRIND_REQUESTS:-1100}" "$body" "$auth" "$@")
  echo $(((many - few) / (${CALLGRIND_REQUESTS:-1100} - 100)))
}

run_instructions() {
  bodies "words=24" load
  local mode kind body model p t
  echo "| proxy | request | instructions per request |"
  echo "|---|---|---|"
  for mode in plain stream; do
    kind=non-streaming
    [ "$mode" = stream ] && kind=streaming
    PORT=$(free_ports 1)
    URL="http://127.0.0.1:$PORT/v1/chat/completions"
    body="$WORK/gpt-4o-mini.load.json"
    [ "$mode" = stream ] && body="$WORK/gpt-4o-mini.load.stream.json"
    p=$(per_request passthrough "$body" "Bearer sk-bench" \
      "$BIN/examples/passthrough" "127.0.0.1:$PORT" "127.0.0.1:$SIM" 2)
    echo "| pass-through | $kind | $p |"
    local port admin cfg
    port=$(free_ports 2)
    admin=$((port + 1))
    cfg=$(routes_copy "$port" "$admin" embedded "tollgate-$mode")
    PORT=$port
    URL="http://127.0.0.1:$port/v1/chat/completions"
    body="$WORK/auto.load.json"
    [ "$mode" = stream ] && body="$WORK/auto.load.stream.json"
    t=$(per_request tollgate "$body" "" "$BIN/tollgate" serve --config "$cfg")
    echo "| tollgate | $kind | $t |"
  done
}

case "$MODE" in
  load) run_load ;;
  soak) run_soak ;;
  instructions) run_instructions ;;
esac
