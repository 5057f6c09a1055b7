"""Time tollgate itself spent on the requests of one load cell, from its own histogram.

usage: overhead.py BEFORE AFTER

BEFORE and AFTER are scrapes of tollgate's /metrics taken around the cell. The histogram
`tollgate_gateway_overhead_seconds` holds, per request, its time in the gateway minus the
time spent waiting on upstreams: unlike the end-to-end percentiles, it leaves out the extra
loopback hop and the scheduling of the client and the upstream. Prints
`own_p50_us=N own_p99_us=N`, interpolated within buckets as Prometheus'
histogram_quantile does, or `-` when no request was observed.
"""

import re
import sys

BUCKET = re.compile(r'^tollgate_gateway_overhead_seconds_bucket\{.*le="([^"]+)".*\} (\S+)$')


def buckets(path):
    counts = {}
    with open(path) as f:
        for line in f:
            m = BUCKET.match(line.strip())
            if m:
                le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
                counts[le] = counts.get(le, 0) + float(m.group(2))
    return counts


def quantile(q, cumulative):
    """cumulative: sorted (upper bound, count) pairs, the last one +Inf."""
    total = cumulative[-1][1]
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def main():
    before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
    cumulative = sorted((le, after[le] - before.get(le, 0)) for le in after)
    out = []
    for name, q in (("own_p50_us", 0.5), ("own_p99_us", 0.99)):
        v = quantile(q, cumulative) if cumulative else None
        out.append(f"{name}={'-' if v is None else round(v * 1e6)}")
    print(" ".join(out))


main()
