#!/usr/bin/env python3
"""Times a starting server's first answers, for bench/scripts/dnssec-1m.sh.

    first-answers.py PORT T0 [--dnssec | --any]

From T0 (the Unix time the server was launched) it asks for 5000007.dial.example A over UDP
on 127.0.0.1:PORT every 2 ms, without DO and (with --dnssec) with DO side by side, until the
first correct answer of each: 10.0.0.7 without DO, 10.0.0.7 with its RRSIG (algorithm 13)
with DO. Prints the seconds from T0 to each ("-" for DO when not asked), or fails after 120 s.
With --any, any reply without DO counts (a server with nothing in it yet).
"""

import socket
import struct
import sys
import time

NAME = b"5000007.dial.example"
ADDRESS = bytes([10, 0, 0, 7])


def query(qid, do):
    name = b"".join(bytes([len(label)]) + label for label in NAME.split(b".")) + b"\0"
    header = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if do else 0, 0)
    return header + name + struct.pack(">HH", 1, 1) + opt


def skip_name(msg, at):
    while True:
        length = msg[at]
        if length >= 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def answers(msg):
    """The answer section's (type, rdata), or None for an error or a truncated reply."""
    if len(msg) < 12:
        return None
    flags, qdcount, ancount = struct.unpack(">HHH", msg[2:8])
    if flags & 0x020F:  # TC, or an RCODE other than NOERROR
        return None
    at = 12
    for _ in range(qdcount):
        at = skip_name(msg, at) + 4
    records = []
    for _ in range(ancount):
        at = skip_name(msg, at)
        rtype, _, _, length = struct.unpack(">HHIH", msg[at : at + 10])
        records.append((rtype, msg[at + 10 : at + 10 + length]))
        at += 10 + length
    return records


def correct(msg, do, any_reply):
    if any_reply:
        return True
    records = answers(msg)
    if not records or (1, ADDRESS) not in records:
        return False
    # An RRSIG covering A (type covered 1) by algorithm 13.
    return not do or any(t == 46 and r[:3] == b"\0\x01\x0d" for t, r in records)


def main():
    port, t0 = int(sys.argv[1]), float(sys.argv[2])
    dnssec, any_reply = "--dnssec" in sys.argv[3:], "--any" in sys.argv[3:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    pending = {False: None, True: None} if dnssec else {False: None}
    qid = 0
    sent = {}  # query id -> with DO; a late reply still counts
    while any(v is None for v in pending.values()):
        if time.time() - t0 > 120:
            sys.exit("no answer within 120 s")
        for do, at in pending.items():
            if at is None:
                qid = (qid + 1) & 0xFFFF
                sent[qid] = do
                try:
                    sock.sendto(query(qid, do), ("127.0.0.1", port))
                except OSError:
                    pass
        time.sleep(0.002)
        while True:
            try:
                msg = sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                break
            do = sent.get(struct.unpack(">H", msg[:2])[0])
            if do is not None and pending[do] is None and correct(msg, do, any_reply):
                pending[do] = time.time() - t0
    no_do = pending[False]
    with_do = "-" if not dnssec else f"{pending[True]:.3f}"
    print(f"{no_do:.3f} {with_do}")


if __name__ == "__main__":
    main()
