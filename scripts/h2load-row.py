#!/usr/bin/env python3
"""One row of bench-gateway.sh's table from an h2load run: the labels
given as arguments, then req/s, errors, p50 ms, p99 ms (from h2load's
--log-file), the server's CPU us/request (from the CPU ticks given), and
"-" for the load tool's CPU, which h2load does not report.

    h2load-row.py ROUND PEER MODE H2LOAD_OUTPUT LOG_FILE SERVER_CPU_TICKS
"""
import os
import re
import sys

round_, peer, mode, out_path, log_path, ticks = sys.argv[1:7]
out = open(out_path).read()
rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done", out)
total, done = map(int, m.groups())
codes = re.search(r"status codes: (\d+) 2xx", out)
errors = total - (int(codes.group(1)) if codes else 0)  # anything but a 2xx
lat = sorted(int(l.split("\t")[2]) for l in open(log_path) if l.strip())
p50 = lat[len(lat) // 2] / 1000
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000
cpu_us = int(ticks) * 1_000_000 / os.sysconf("SC_CLK_TCK") / max(done, 1)
print(round_, peer, mode, round(rps), errors, round(p50, 3), round(p99, 3), round(cpu_us, 2), "-")
