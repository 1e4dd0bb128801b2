#!/usr/bin/env python3
"""Per `hang` (or `refuse`) outage of a soak (`cvs-bench soak`): the distinct instances of the hung region
the operator itself declared unhealthy within 10/20/30/40 s of the fault, from its "instance
health changed" log lines, beside the number the watch saw. Usage: engine_judged.py <summary.json> <operator log> [kind]
(the log is <state dir>/logs/<namespace>-operator.log; kind is `hang`, the default, or `refuse`)."""
import json, sys, datetime
summary, log = sys.argv[1], sys.argv[2]
kind = sys.argv[3] if len(sys.argv) > 3 else "hang"
faults = json.load(open(summary))["fault_list"]
changes = []
for line in open(log):
    if "instance health changed" not in line:
        continue
    d = json.loads(line)
    f = d["fields"]
    if f.get("healthy") is not False:
        continue
    t = datetime.datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
    changes.append((t, f["instance"]))
for fault in faults:
    if fault["kind"] != kind:
        continue
    at = fault["applied_at_ms"]
    firsts = {}
    for t, inst in changes:
        if inst.endswith(fault["region"]) and at <= t <= at + 60000 and inst not in firsts:
            firsts[inst] = t - at
    row = [sum(1 for v in firsts.values() if v <= s * 1000) for s in (10, 20, 30, 40)]
    ts = sorted(firsts.values())
    print(f'{fault["region"]}: of {fault["instances"]}: within 10/20/30/40 s: {row}; watch saw {fault["went_false"]}; last {ts[-1]/1000 if ts else None:.1f} s' if ts else fault)
