#!/usr/bin/env bash
# `nameserver import` of a fleet shaped like a real export (shuffled, codes of 7 to 10
# digits, a KID per 20 terminals), alternating two builds over ROUNDS rounds in one run:
# import seconds, the serving process's peak RSS, and the store's bytes per terminal.
#
#   bash bench/scripts/import-1m.sh [ROUNDS (3)] [COUNT (1000000)]
#   NS_BEFORE=/path/to/an/earlier/nameserver bash bench/scripts/import-1m.sh
#
# Loopback only; every import is bounded by its file.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}; count=${2:-1000000}
cargo build --release --quiet -p nameserver
now=target/release/nameserver
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/scripts/fleet.py "$count" shuffled "$work/fleet.txt"

import_once() {
  local ns=$1 d port pid start end rss alloc
  d=$(mktemp -d "$work/data.XXXX"); port=$((20000 + RANDOM % 20000))
  "$ns" serve --listen "127.0.0.1:$port" --data "$d" 2>"$d.log" &
  pid=$!
  for _ in $(seq 100); do [ -S "$d/control.sock" ] && break; sleep 0.1; done
  start=$(date +%s.%N)
  "$ns" import "$work/fleet.txt" --data "$d" >/dev/null 2>"$d.import.log"
  end=$(date +%s.%N)
  rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  alloc=$(du -s --block-size=1 "$d/store" | cut -f1)
  printf 'import_s=%.2f peak_rss_mib=%d bytes_per_terminal=%d\n' \
    "$(echo "$end - $start" | bc)" $((rss / 1024)) $((alloc / count))
  rm -rf "$d" "$d.log" "$d.import.log" "$work/fleet.txt.keys"
}

echo "fleet: $count terminals, shuffled, codes of 7 to 10 digits, a KID per 20; $(nproc) cores"
for round in $(seq "$rounds"); do
  echo "round $round this build: $(import_once "$now")"
  if [ -n "${NS_BEFORE:-}" ]; then
    echo "round $round NS_BEFORE: $(import_once "$NS_BEFORE")"
  fi
done
