#!/usr/bin/env python3
"""CPU per request by component, from `perf report -n --no-children
--sort dso,sym --stdio -g none` on stdin: each symbol's samples put in a bucket by
its library or Rust crate, printed as share and microseconds per request.

    profile-buckets.py SAMPLE_PERIOD_US REQUESTS < report.txt
"""
import re
import sys

period_us, requests = float(sys.argv[1]), int(sys.argv[2])
RULES = [  # first match wins: (bucket, test on dso, test on symbol)
    ("kernel", lambda d, s: d.startswith("[kernel"), None),
    ("libc malloc/free", lambda d, s: d.startswith("libc"),
     lambda s: re.search(r"malloc|free|_int_|unlink_chunk|cfree|realloc|tcache", s)),
    ("libc memmove/memcpy", lambda d, s: d.startswith("libc"), lambda s: "mem" in s),
    ("libc other", lambda d, s: d.startswith("libc"), None),
    ("nginx", lambda d, s: d == "nginx", None),
    ("OpenSSL", lambda d, s: d.startswith("libcrypto") or d.startswith("libssl"), None),
    ("aws-lc (crypto)", None, lambda s: "aws_lc" in s),
    ("rustls", None, lambda s: "rustls" in s),
    ("tokio", None, lambda s: "tokio" in s or "mio::" in s),
    ("hyper-util (pool, client)", None, lambda s: "hyper_util" in s),
    ("hyper", None, lambda s: "hyper::" in s or "httparse" in s),
    ("h2", None, lambda s: "h2::" in s),
    ("http (header maps)", None, lambda s: re.search(r"\bhttp::", s)),
    ("jose-binding", None, lambda s: "jose_binding" in s),
    ("bytes", None, lambda s: "bytes::" in s),
    ("metrics, tracing", None, lambda s: "metrics" in s or "tracing" in s),
]
buckets, total = {}, 0
for line in sys.stdin:
    m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
    if not m:
        continue
    n, dso, sym = int(m.group(1)), m.group(2), m.group(3).strip()
    total += n
    name = "other"
    for bucket, on_dso, on_sym in RULES:
        if (on_dso is None or on_dso(dso, sym)) and (on_sym is None or on_sym(sym)):
            name = bucket
            break
    buckets[name] = buckets.get(name, 0) + n
per = period_us / requests
print(f"{'component':<28} {'share':>7} {'us/request':>11}")
for name, n in sorted(buckets.items(), key=lambda kv: -kv[1]):
    print(f"{name:<28} {100 * n / total:>6.1f}% {n * per:>11.2f}")
print(f"{'total':<28} {100.0:>6.1f}% {total * per:>11.2f}")
