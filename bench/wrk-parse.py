#!/usr/bin/env python3
"""Helper of bench/run.sh.

    wrk-parse.py SCENARIO SERVER CPU_TICKS CLK_TCK VMHWM_KB TTFB_S < wrk-output  → one TSV line
    wrk-parse.py --table results.tsv                                          → Markdown table

The table gives, per scenario and server, the mean over the rounds of requests/s, p50/p99
latency, server CPU milliseconds per request, peak RSS, and for the passthrough the transfer
rate and time to first byte; then the ratios ours/reference (and ours/nginx).
"""
import re
import sys
from collections import defaultdict

FIELDS = ["scenario", "server", "requests", "rps", "p50", "p99", "cpu_ms", "rss_mib",
          "mb_s", "ttfb_ms", "errors"]


def duration_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def size_mb(text):
    m = re.match(r"([\d.]+)([KMGT]?B)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576, "GB": 1073.741824,
                    "TB": 1099511.627776}[unit]


def parse(args, out):
    scenario, server, cpu_ticks, clk_tck, hwm_kb, ttfb = args
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = duration_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = duration_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    mb_s = size_mb(re.search(r"Transfer/sec:\s+(\S+)", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    cpu_ms = int(cpu_ticks) * 1000 / int(clk_tck) / max(requests, 1)
    row = [scenario, server, requests, rps, p50, p99, cpu_ms, int(hwm_kb) / 1024, mb_s,
           float(ttfb) * 1000 if ttfb else "", errors]
    print("\t".join(str(v) for v in row))


def table(path):
    runs = defaultdict(list)
    order = []
    for line in open(path):
        cells = line.rstrip("\n").split("\t")
        row = dict(zip(FIELDS, cells))
        key = (row["scenario"], row["server"])
        if row["scenario"] not in order:
            order.append(row["scenario"])
        runs[key].append(row)

    def mean(rows, field):
        values = [float(r[field]) for r in rows if r[field] != ""]
        return sum(values) / len(values) if values else None

    def spread(rows, field, fmt):
        values = [float(r[field]) for r in rows if r[field] != ""]
        if not values:
            return "—"
        return fmt.format(sum(values) / len(values)) + (
            " (" + "–".join(fmt.format(v) for v in (min(values), max(values))) + ")"
            if len(values) > 1 and min(values) != max(values) else "")

    print("| scenario | server | req/s | p50 / p99 ms | server CPU ms/request | peak RSS MiB | errors |")
    print("|---|---|---|---|---|---|---|")
    for scenario in order:
        for server in ("ours", "ours-thread", "reference", "nginx"):
            rows = runs.get((scenario, server))
            if not rows:
                continue
            errors = sum(int(r["errors"]) for r in rows)
            cpu = "—" if server == "nginx" else spread(rows, "cpu_ms", "{:.2f}")
            rss = "—" if server == "nginx" else spread(rows, "rss_mib", "{:.1f}")
            print(f"| {scenario} | {server} | {spread(rows, 'rps', '{:.1f}')} | "
                  f"{mean(rows, 'p50'):.1f} / {mean(rows, 'p99'):.1f} | {cpu} | {rss} | {errors} |")
    print()
    print("| scenario | reference CPU / ours | reference peak RSS / ours | ours req/s / reference | passthrough: ours MB/s (÷ nginx), first byte ms (ours / reference / nginx) |")
    print("|---|---|---|---|---|")
    for scenario in order:
        ours, ref = runs.get((scenario, "ours")), runs.get((scenario, "reference"))
        if not ours or not ref:
            continue
        extra = ""
        direct = runs.get((scenario, "nginx"))
        if direct:
            extra = (f"{mean(ours, 'mb_s'):.0f} (× {mean(ours, 'mb_s') / mean(direct, 'mb_s'):.2f} of nginx's "
                     f"{mean(direct, 'mb_s'):.0f}; reference {mean(ref, 'mb_s'):.0f}), "
                     f"{mean(ours, 'ttfb_ms'):.1f} / {mean(ref, 'ttfb_ms'):.1f} / {mean(direct, 'ttfb_ms'):.1f}")
        print(f"| {scenario} | {mean(ref, 'cpu_ms') / mean(ours, 'cpu_ms'):.2f}× | "
              f"{mean(ref, 'rss_mib') / mean(ours, 'rss_mib'):.2f}× | "
              f"{mean(ours, 'rps') / mean(ref, 'rps'):.2f}× | {extra} |")

    print()
    print("| scenario | the sandbox's cost: CPU ms/request (process − thread) | p50 ms (process − thread) | peak RSS MiB, process / thread |")
    print("|---|---|---|---|")
    for scenario in order:
        ours, thread = runs.get((scenario, "ours")), runs.get((scenario, "ours-thread"))
        if not ours or not thread:
            continue
        print(f"| {scenario} | {mean(ours, 'cpu_ms') - mean(thread, 'cpu_ms'):+.2f} "
              f"({(mean(ours, 'cpu_ms') / mean(thread, 'cpu_ms') - 1) * 100:+.1f} %) | "
              f"{mean(ours, 'p50') - mean(thread, 'p50'):+.2f} | "
              f"{mean(ours, 'rss_mib'):.1f} / {mean(thread, 'rss_mib'):.1f} |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        parse(sys.argv[1:], sys.stdin.read())
