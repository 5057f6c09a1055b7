"""Prints the tables of benches/load.sh from its key=value result lines.

usage: table.py RESULTS CLK_TCK DURATION
"""

import datetime
import os
import statistics
import sys


def parse(path):
    rows, notes = [], []
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if "=" not in words[0]:
                notes.append((words[0], dict(w.split("=", 1) for w in words[1:] if "=" in w)))
                continue
            rows.append(dict(w.split("=", 1) for w in words if "=" in w))
    return rows, notes


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def us(v):
    v = num(v)
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 10000 else f"{v:.0f} µs"


def added(v, base):
    v, base = num(v), num(base)
    if v is None or base is None:
        return "-"
    d = v - base
    sign = "+" if d >= 0 else "−"
    d = abs(d)
    return f"{sign}{d / 1000:.2f} ms" if d >= 10000 else f"{sign}{d:.0f} µs"


def pass_ratios(rows):
    """Adds each row's requests/s as a percentage of the pass-through's in the same round and
    cell ("vs_pass"): targets run in turn, so two figures of one round were taken minutes
    apart at most, and the machine's drift between rounds cancels out of their ratio."""
    base = {(r["mode"], r["c"], r.get("round")): num(r.get("rps"))
            for r in rows if r["target"] == "passthrough"}
    for r in rows:
        p = base.get((r["mode"], r["c"], r.get("round")))
        if (r["target"] not in ("direct", "passthrough") and r["mode"] in ("plain", "stream")
                and p and num(r.get("rps")) is not None):
            r["vs_pass"] = str(100 * num(r["rps"]) / p)


def median_rows(rows, ticks):
    """One row per (target, mode, c): the median of each figure over the rounds (errors
    summed, peak RSS the highest). CPU is turned into seconds per 1,000 requests first."""
    groups = {}
    for r in rows:
        r = dict(r)
        if num(r.get("cpu_ticks")) is not None and num(r.get("requests")):
            r["cpu_per_k"] = str(num(r["cpu_ticks"]) / ticks / num(r["requests"]) * 1000)
        groups.setdefault((r["target"], r["mode"], r["c"]), []).append(r)
    out = []
    for group in groups.values():
        merged = dict(group[0])
        for k in merged:
            values = [num(r.get(k)) for r in group]
            if k in ("c", "round") or any(v is None for v in values):
                continue
            if k == "errors":
                merged[k] = str(sum(values))
            elif k == "hwm_kib":
                merged[k] = str(max(values))
            else:
                merged[k] = str(statistics.median(values))
        merged["rounds"] = str(len(group))
        out.append(merged)
    return out


def main():
    raw, notes = parse(sys.argv[1])
    ticks = float(sys.argv[2])
    duration = sys.argv[3]
    pass_ratios(raw)
    rows = median_rows(raw, ticks)
    rounds = max((int(r["rounds"]) for r in rows), default=1)
    key = lambda r: (r["mode"], r["c"])
    direct = {key(r): r for r in rows if r["target"] == "direct"}

    print()
    each = f"median of {rounds} rounds, " if rounds > 1 else ""
    print(f"tollgate load benchmark, {datetime.date.today().isoformat()}, "
          f"{os.cpu_count()} cores, {duration} s per cell, {each}loopback; "
          "added = this target's percentile minus direct's; own = time in tollgate itself "
          "(its overhead histogram: request time minus upstream waits); steal = CPU time taken by the "
          "hypervisor for other guests")
    print()
    head = ("| target | stream | c | req/s | vs pass-through | p50 | p99 | added p50 | added p99 "
            "| own p50 | own p99 | TTFT p50 | TTFT p99 | added TTFT p50 | proxy CPU s/1k req | peak RSS | errors "
            "| steal |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        if r["mode"] not in ("plain", "stream"):
            continue
        d = direct.get(key(r), {})
        rps = num(r.get("rps"))
        ratio = "-"
        if num(r.get("vs_pass")) is not None:
            ratio = f"{num(r['vs_pass']):.0f}%"
        cpu = "-"
        if r["target"] != "direct" and num(r.get("cpu_per_k")) is not None:
            cpu = f"{num(r['cpu_per_k']):.3f}"
        steal = "-" if num(r.get("steal_pct")) is None else f"{num(r['steal_pct']):.0f}%"
        rss = "-" if r["target"] == "direct" else f"{num(r['hwm_kib']) / 1024:.0f} MiB"
        is_direct = r["target"] == "direct"
        print("| " + " | ".join([
            r["target"], "yes" if r["mode"] == "stream" else "no", r["c"],
            f"{rps:.0f}", ratio, us(r["p50_us"]), us(r["p99_us"]),
            "-" if is_direct else added(r["p50_us"], d.get("p50_us")),
            "-" if is_direct else added(r["p99_us"], d.get("p99_us")),
            us(r.get("own_p50_us")), us(r.get("own_p99_us")),
            us(r.get("ttft_p50_us")), us(r.get("ttft_p99_us")),
            "-" if is_direct or r["mode"] != "stream"
            else added(r.get("ttft_p50_us"), d.get("ttft_p50_us")),
            cpu, rss, f"{num(r['errors']):.0f}", steal,
        ]) + " |")

    if rounds > 1:
        per_round = {}
        for r in raw:
            if num(r.get("vs_pass")) is not None:
                k = (r["target"], "streams" if r["mode"] == "stream" else "requests", r["c"])
                per_round.setdefault(k, []).append(f"{num(r['vs_pass']):.0f}")
        if per_round:
            print()
            print("vs pass-through: the median of the per-round ratios; per round: " + "; ".join(
                f"{t} {m} c={c} {', '.join(v)}%" for (t, m, c), v in per_round.items()))

    paced = [r for r in rows if r["mode"] == "paced"]
    if paced:
        base = next((r for r in paced if r["target"] == "direct"), {})
        print()
        print("Paced stream, c=1: 10 words, 20 ms between upstream events (a chunk held back "
              "would add 20 ms)")
        print()
        print("| target | TTFT p50 | added | stream end p50 | added | errors |")
        print("|---|---|---|---|---|---|")
        for r in paced:
            print(f"| {r['target']} | {us(r['ttft_p50_us'])} | "
                  f"{added(r['ttft_p50_us'], base.get('ttft_p50_us'))} | "
                  f"{us(r['total_p50_us'])} | {added(r['total_p50_us'], base.get('total_p50_us'))} "
                  f"| {num(r['errors']):.0f} |")

    if notes:
        print()
        firsts = {}
        for kind, n in notes:
            firsts.setdefault((kind, n.get("target")), n)
        for (kind, _), n in firsts.items():
            if kind == "idle":
                print(f"{n['target']}: RSS after start {num(n['rss_kib']) / 1024:.1f} MiB")
            elif kind == "warm":
                print(f"{n['target']}: RSS after 6 requests {num(n['rss_kib']) / 1024:.1f} MiB "
                      f"(routed to {n.get('route', '?')})")


main()
