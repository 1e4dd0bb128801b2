#!/usr/bin/env python3
"""Rates from the samples `tests/soak/scrape_status.sh` wrote: per 2 s interval in which an
instance's Healthy condition changed, the instance and ClusteredStream reconciliations a second
with their mean duration, the status writes a second of each controller, the non-verdict
writes put off a second, and the cumulative Healthy=False / Healthy=True transitions written.
Usage: status_rates.py <samples file> [--all] (--all: every interval)."""
import sys

rows, cur = [], None
for line in open(sys.argv[1]):
    if line.startswith("T "):
        cur = {"t": line.split()[1]}
        rows.append(cur)
        continue
    if cur is None or " " not in line:
        continue
    key, value = line.rsplit(" ", 1)
    cur[key] = float(value)

K = {
    "icount": 'cvs_reconcile_duration_seconds_count{controller="instance"}',
    "isum": 'cvs_reconcile_duration_seconds_sum{controller="instance"}',
    "ccount": 'cvs_reconcile_duration_seconds_count{controller="cluster"}',
    "csum": 'cvs_reconcile_duration_seconds_sum{controller="cluster"}',
    "iw": 'cvs_status_writes_total{controller="instance"}',
    "cw": 'cvs_status_writes_total{controller="cluster"}',
    "deferred": "cvs_status_detail_writes_deferred_total",
    "false": 'cvs_condition_transitions_total{kind="StreamInstance",condition="Healthy",status="False"}',
    "true": 'cvs_condition_transitions_total{kind="StreamInstance",condition="Healthy",status="True"}',
}
show_all = "--all" in sys.argv[2:]
print("time          inst rec/s mean ms | cluster rec/s mean ms | writes/s inst cluster | put off/s | Healthy->False ->True (cumulative)")
for a, b in zip(rows, rows[1:]):
    d = {k: b.get(v, 0.0) - a.get(v, 0.0) for k, v in K.items()}
    if not show_all and d["false"] == 0 and d["true"] == 0:
        continue
    dt = 2.0
    print(
        f'{b["t"]}  {d["icount"] / dt:9.1f} {1000 * d["isum"] / max(d["icount"], 1):7.0f} |'
        f' {d["ccount"] / dt:13.1f} {1000 * d["csum"] / max(d["ccount"], 1):7.0f} |'
        f' {d["iw"] / dt:13.1f} {d["cw"] / dt:7.1f} | {d["deferred"] / dt:9.1f} |'
        f' {b.get(K["false"], 0):14.0f} {b.get(K["true"], 0):6.0f}'
    )
