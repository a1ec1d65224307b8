#!/bin/bash
# DNSSEC at 1,000,000 codes, outside the pinned harness (the first signing uses both cores):
# the time of the first signing, and start-up with stored signatures against start-up of
# the same store unsigned (warm and cold), alternating over ROUNDS rounds. Start-up is to
# the first correct answer without DO, and with DO to the first signed one, each probed
# every 2 ms from the launch (bench/scripts/first-answers.py). A signed
# restart after a clean stop reads the signatures saved at that stop; one after kill -9
# reads the store's table. Release build; loopback only.
# Three more unsigned starts per round measure what any work beside the terminals' read
# costs on this machine: beside a process that only starts and exits (python3 -c pass),
# beside one that keeps the other core busy for 0.6 s (CPU only), and beside one that reads
# the unsigned store's file (page cache to memory).
#   bash bench/scripts/dnssec-1m.sh [ROUNDS (3)]
#   NS_BINARY=path/to/nameserver bash bench/scripts/dnssec-1m.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# NS_BINARY: another build of the nameserver to measure (an earlier commit's, say).
if [ -z "${NS_BINARY:-}" ]; then
  cargo build --release --quiet -p nameserver --manifest-path "$ROOT/Cargo.toml"
fi
NS=${NS_BINARY:-$ROOT/target/release/nameserver}
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$WORK/fleet.txt" <<'PY'
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(1000000):
        v6 = f" 2001:db8::{i>>16:x}:{i&0xffff:x}" if i % 10 == 0 else ""
        f.write(f"{5000000+i} fleet {i:016x} 10.{(i>>16)&255}.{(i>>8)&255}.{i&255}{v6}\n")
PY
PID=
# Starts the server on DATA with extra flags (--any: any reply will do, for an empty
# store; not passed on); prints seconds to the first correct answer
# without DO, seconds to the first signed one (with DO and its RRSIG; "-" when unsigned),
# the RSS in KiB then, and the CPU seconds (user and system, every thread) it had used by
# then.
start() {
  local data=$1 log=$2; shift 2
  local t0 times flags=() a; t0=$(date +%s.%N)
  for a in "$@"; do [ "$a" = --any ] || flags+=("$a"); done
  RUST_LOG=info "$NS" serve --listen "127.0.0.1:$PORT" --data "$data" --rate-limit 0 "${flags[@]}" >"$log" 2>&1 &
  PID=$!
  # Probed every 2 ms, with and without DO side by side (see first-answers.py).
  times=$(python3 "$ROOT/bench/scripts/first-answers.py" "$PORT" "$t0" "$@")
  if [ "${1:-}" = --dnssec ]; then
    for _ in $(seq 1 600); do grep -q 'ready signed=true' "$log" && break; sleep 0.05; done
  fi
  local cpu; cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' /proc/$PID/stat)
  echo "$times $(awk '/VmRSS/ {print $2}' /proc/$PID/status) $cpu"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; sync; }
# Stops as stop does; prints the seconds the server took to exit (a signed one saves its
# signatures for the next start). Not in a subshell: only this shell can wait for it.
timed_stop() {
  local t0; t0=$(date +%s.%N)
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  echo "$(date +%s.%N) - $t0" | bc; sync
}
# As start for the unsigned store, with a second process launched beside it: launch (one
# that exits at once), cpu (a busy loop of 0.6 s) or read (the store's file read into memory).
beside() {
  local what=$1
  case $what in
    launch) python3 -c pass & ;;
    cpu) python3 -c 'import time
t = time.monotonic()
while time.monotonic() - t < 0.6: pass' & ;;
    read) python3 -c 'import sys; open(sys.argv[1], "rb").read()' "$WORK/unsigned/store/directory.redb" & ;;
  esac
  local other=$!
  start "$WORK/unsigned" "$WORK/plain.log"
  wait "$other"
}
crash() { kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=; sync; }

start "$WORK/unsigned" "$WORK/import.log" --any >/dev/null
"$NS" import "$WORK/fleet.txt" --data "$WORK/unsigned" >/dev/null 2>&1
stop
# Warm: the store read into the page cache first. Cold: the page cache dropped first (root
# only; "-" otherwise). This machine's page cache does not keep a store that sat unread for
# long, so a start without either is somewhere in between.
warm() { cat "$1"/store/* >/dev/null; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
echo "round | first signing s (log) | first start, no DO / DO s | signed stop s | warm signed restart, no DO / DO s | signed RSS KiB | signed CPU s | warm unsigned restart s | unsigned RSS KiB | unsigned CPU s | cold signed, no DO / DO s | cold unsigned s | warm signed restart after kill -9, no DO / DO s | warm unsigned restart beside a launch / a busy core / a read s"
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/signed"; cp -a "$WORK/unsigned" "$WORK/signed"
  # (start runs in this shell, not a subshell, so that stop knows its process)
  start "$WORK/signed" "$WORK/first.log" --dnssec >"$WORK/t"
  read -r first first_do _ _ <"$WORK/t"
  timed_stop >"$WORK/t"; read -r stopped <"$WORK/t"
  signing=$(grep "signed the zone's terminals" "$WORK/first.log" | grep -o 'seconds=[0-9.]*' | cut -d= -f2)
  warm "$WORK/signed"
  start "$WORK/signed" "$WORK/signed.log" --dnssec >"$WORK/t"; stop
  read -r signed signed_do signed_rss signed_cpu <"$WORK/t"
  warm "$WORK/unsigned"
  start "$WORK/unsigned" "$WORK/plain.log" >"$WORK/t"; stop
  read -r plain _ plain_rss plain_cpu <"$WORK/t"
  if [ -w /proc/sys/vm/drop_caches ]; then
    cold; start "$WORK/signed" "$WORK/signed.log" --dnssec >"$WORK/t"; stop
    read -r cold_signed cold_signed_do _ _ <"$WORK/t"
    cold; start "$WORK/unsigned" "$WORK/plain.log" >"$WORK/t"; stop
    read -r cold_plain _ _ _ <"$WORK/t"
  else
    cold_signed=- cold_signed_do=- cold_plain=-
  fi
  # The signed store as a crash leaves it: no saved signatures.
  start "$WORK/signed" "$WORK/signed.log" --dnssec >/dev/null; crash
  warm "$WORK/signed"
  start "$WORK/signed" "$WORK/signed.log" --dnssec >"$WORK/t"; stop
  read -r crashed crashed_do _ _ <"$WORK/t"
  warm "$WORK/unsigned"
  beside launch >"$WORK/t"; stop
  read -r launched _ _ _ <"$WORK/t"
  warm "$WORK/unsigned"
  beside cpu >"$WORK/t"; stop
  read -r busy _ _ _ <"$WORK/t"
  warm "$WORK/unsigned"
  beside read >"$WORK/t"; stop
  read -r reading _ _ _ <"$WORK/t"
  echo "$r | $signing | $first / $first_do | $stopped | $signed / $signed_do | $signed_rss | $signed_cpu | $plain | $plain_rss | $plain_cpu | $cold_signed / $cold_signed_do | $cold_plain | $crashed / $crashed_do | $launched / $busy / $reading"
done
echo "store: unsigned $(du -sk "$WORK/unsigned/store" | cut -f1) KiB, signed $(du -sk "$WORK/signed/store" | cut -f1) KiB"
