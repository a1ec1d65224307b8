#!/usr/bin/env bash
# A fleet at scale (default 10,000,000 terminals, shaped like a real export: shuffled, codes
# of 7 to 10 digits, a KID per 20): one `nameserver import` (it must complete; timed), then
# ROUNDS restarts after a clean stop, each timed from the launch to the first correct answer
# for a code of the fleet, with the serving process's RSS once answering.
#
#   bash bench/scripts/scale.sh [COUNT (10000000)] [ROUNDS (3)]
#
# Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-10000000}; rounds=${2:-3}
cargo build --release --quiet -p nameserver
ns=target/release/nameserver
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/scripts/fleet.py "$count" shuffled "$work/fleet.txt"
read -r code _ _ address _ < "$work/fleet.txt"
port=$((20000 + RANDOM % 20000)); data="$work/data"

start_server() {
  "$ns" serve --listen "127.0.0.1:$port" --data "$data" 2>>"$work/server.log" &
  pid=$!
}

# Seconds from $1 (the launch) to the first answer with the code's address (at most 600 s).
first_answer() {
  python3 - "$port" "$1" "$code" "$address" <<'PY'
import socket, struct, sys, time
port, t0, code, address = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
name = b"".join(bytes([len(l)]) + l for l in (code + ".dial.example").encode().split(b".")) + b"\0"
want = socket.inet_aton(address)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.005)
qid = 0
while time.time() - t0 < 600:
    qid = (qid + 1) & 0xffff
    s.sendto(struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + name + b"\0\1\0\1", ("127.0.0.1", port))
    try:
        reply = s.recv(512)
    except OSError:
        continue
    if reply[:2] == struct.pack(">H", qid) and reply.endswith(want):
        print(f"{time.time() - t0:.3f}"); sys.exit(0)
sys.exit("no answer within 600 s")
PY
}

rss_mib() { awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$pid/status"; }

start_server
for _ in $(seq 100); do [ -S "$data/control.sock" ] && break; sleep 0.1; done
t=$(date +%s.%N)
"$ns" import "$work/fleet.txt" --data "$data" >/dev/null 2>"$work/import.log" \
  || { echo "import failed:"; tail -5 "$work/import.log"; exit 1; }
echo "fleet: $count terminals, shuffled, codes of 7 to 10 digits, a KID per 20; $(nproc) cores"
printf 'import (one run): %.1f s; serving process peak RSS %d MiB\n' \
  "$(echo "$(date +%s.%N) - $t" | bc)" "$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$pid/status")"
kill -TERM "$pid"; wait "$pid" || true
printf 'store: %d bytes per terminal\n' $(( $(du -s --block-size=1 "$data/store" | cut -f1) / count ))
for round in $(seq "$rounds"); do
  t=$(date +%s.%N); start_server
  took=$(first_answer "$t")
  echo "restart $round after a clean stop: first answer $took s, RSS $(rss_mib) MiB"
  kill -TERM "$pid"; wait "$pid" || true
done
