#!/usr/bin/env bash
# Multi-spin checkerboard throughput, builds of the `sampling` bench side by side.
#
#   benches/multispin_ab.sh ROUNDS BENCH...
#
# Each BENCH is a copy of target/release/deps/sampling-* built with
# `cargo bench --bench sampling --no-run` on some commit (say /tmp/before/sampling and
# /tmp/after/sampling). ROUNDS rounds run `BENCH kernel quick multispin` for every BENCH in
# turn (1024 x 1024 torus at beta_c, Metropolis and Gibbs, 1 and 2 threads, each line a median
# of 3 x 100 sweeps), and the script prints, for every line of every BENCH (labelled by its
# path), the median and min-max over the rounds of flips per wall ns and of flips per CPU-ns
# (per core). Run it on an idle machine for figures that mean anything.
set -euo pipefail
rounds=${1:?usage: benches/multispin_ab.sh ROUNDS BENCH...}
shift
[ $# -gt 0 ] || { echo "usage: benches/multispin_ab.sh ROUNDS BENCH..." >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        "$bin" kernel quick multispin | grep 'checkerboard' | sed "s|^ *|$bin \| |" >> "$out"
    done
done
# Line: "<which> | checkerboard <rule>, <kernel>, <n> thread(s): <w> flips/ns wall, <c> flips per CPU-ns ..."
awk -F': ' '
    {
        key = $1
        split($2, f, " ")
        n[key]++
        wall[key, n[key]] = f[1]
        cpu[key, n[key]] = f[4]
        if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
    }
    function stat(arr, key, m,    i, j, t, v) {
        for (i = 1; i <= m; i++) v[i] = arr[key, i]
        for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
            t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
        }
        return sprintf("%.3f (%.3f-%.3f)", v[int((m + 1) / 2)], v[1], v[m])
    }
    END {
        print "line | flips per wall ns | flips per CPU-ns (per core); median (min-max) of " n[order[1]] " rounds"
        for (k = 1; k <= keys; k++) {
            key = order[k]
            print key " | " stat(wall, key, n[key]) " | " stat(cpu, key, n[key])
        }
    }' "$out"
