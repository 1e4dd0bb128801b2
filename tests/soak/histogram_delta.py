#!/usr/bin/env python3
"""Quantiles of a Prometheus histogram over part of a run, from the samples
`tests/soak/scrape_status.sh` wrote: the buckets of the last sample minus those of the first
sample at or after FROM (HH:MM:SS, the scrape's clock), interpolated linearly within a bucket.
Usage: histogram_delta.py <samples file> <histogram name> [FROM]
e.g.   histogram_delta.py scrape.txt cvs_verdict_to_cluster_seconds 01:57:10"""
import sys

path, name = sys.argv[1], sys.argv[2]
start = sys.argv[3] if len(sys.argv) > 3 else ""
samples, cur = [], None
for line in open(path):
    if line.startswith("T "):
        cur = {"t": line.split()[1], "b": {}}
        samples.append(cur)
    elif cur is not None and line.startswith(name + "_bucket{le=\""):
        le = line.split('le="', 1)[1].split('"', 1)[0]
        cur["b"][float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
samples = [s for s in samples if s["b"]]
first = next((s for s in samples if s["t"] >= start), None)
if first is None:
    sys.exit(f"no sample of {name} at or after {start!r}")
last = samples[-1]
bounds = sorted(last["b"])
counts = [last["b"][b] - first["b"].get(b, 0.0) for b in bounds]
total = counts[-1]
print(f"{name} from {first['t']} to {last['t']}: {total:.0f} observations")
if total == 0:
    sys.exit(0)
for q in (0.5, 0.9, 0.99, 1.0):
    want = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= want:
            if bound == float("inf"):
                print(f"  p{q * 100:g}: above {prev_bound:g} s")
            else:
                share = (want - prev_count) / max(count - prev_count, 1e-9)
                print(f"  p{q * 100:g}: {prev_bound + share * (bound - prev_bound):.2f} s (bucket up to {bound:g})")
            break
        prev_bound, prev_count = bound, count
