#!/usr/bin/env python3
"""One row of the bench scripts' tables: the labels given as arguments,
then the figures of `jwt-client bench --rounds 1 --json` read from stdin
(req/s, errors, p50 ms, p99 ms, server CPU us/request, client CPU us/request)."""
import json
import sys

r = json.load(sys.stdin)["median_runs"][0]
print(*sys.argv[1:], round(r["requests_per_s"]), r["errors"], r["p50_ms"], r["p99_ms"],
      round(r["server_cpu_us_per_request"], 2), round(r["client_cpu_us_per_request"], 2))
