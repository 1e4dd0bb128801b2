#!/bin/bash
# Appends the operator's reconcile, status-write and Healthy transition counters to $1 every
# 2 s, for as long as it runs, finding the operator's /metrics port with `ss`. Run it beside
# `make soak` and stop it after; `tests/soak/status_rates.py $1` prints the rates.
# Used for "Region outages: the status lags the verdict" in RELIABILITY.md.
set -u
out=$1
while true; do
  port=$(ss -ltnp 2>/dev/null | grep cvs-operator | grep -o "127.0.0.1:[0-9]*" | head -1)
  if [ -n "$port" ]; then
    m=$(curl -s --max-time 1 "http://$port/metrics")
    echo "T $(date +%T.%N | cut -c1-12)" >> "$out"
    echo "$m" | grep -E '^cvs_(reconcile_duration_seconds_(sum|count)|status_writes_total|status_detail_writes_deferred_total|condition_transitions_total\{kind="StreamInstance",condition="Healthy"|verdict_to_cluster_seconds|events_queued|instance_status_writes_total)' >> "$out"
  fi
  sleep 2
done
