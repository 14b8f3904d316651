#!/usr/bin/env python3
"""The summary of bench-gateway.sh's rows: medians per peer and mode, then
per-round ratios against nginx (flat out: requests/s; at a fixed rate:
server CPU per request) and binding's added server CPU at a fixed rate."""
import statistics
import sys

rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
peers = ["a_nginx", "b_gateway_bound", "c_gateway_static"]
modes = list(dict.fromkeys(r[2] for r in rows))


def med(peer, mode, col):
    v = [float(r[col]) for r in rows if r[1] == peer and r[2] == mode]
    return statistics.median(v) if v else None


def per_round(x, y, mode, col, op):
    return [op(float(a[col]), float(b[col])) for a in rows for b in rows
            if a[0] == b[0] and a[2] == b[2] == mode and a[1] == x and b[1] == y]


def spread(v):
    return ", ".join(f"{p:.3f}" for p in v)


print()
print(f"{'medians':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server us/req':>14}")
for mode in modes:
    for p in peers:
        if med(p, mode, 3) is None:
            continue
        print(f"{p + ' ' + mode:<30} {med(p, mode, 3):>8.0f} {med(p, mode, 5):>8.3f} "
              f"{med(p, mode, 6):>8.3f} {med(p, mode, 7):>14.2f}")
print()
for mode in modes:
    col, what = (7, "server CPU/request") if "rate" in mode else (3, "req/s")
    for x, y in [("c_gateway_static", "a_nginx"), ("b_gateway_bound", "a_nginx"),
                 ("b_gateway_bound", "c_gateway_static")]:
        per = per_round(x, y, mode, col, lambda a, b: a / b)
        if per:
            print(f"{mode}: {what} {x} / {y}: {statistics.median(per):.3f} (rounds: {spread(per)})")
    added = per_round("b_gateway_bound", "c_gateway_static", mode, 7, lambda a, b: a - b)
    if added and "rate" in mode:
        print(f"{mode}: binding's added server CPU: {statistics.median(added):.2f} us/request "
              f"(rounds: {spread(added)})")
