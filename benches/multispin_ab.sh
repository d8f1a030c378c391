#!/usr/bin/env bash
# Multi-spin checkerboard throughput, two builds of the `sampling` bench side by side.
#
#   benches/multispin_ab.sh BEFORE_BENCH AFTER_BENCH [PAIRS]
#
# BEFORE_BENCH and AFTER_BENCH are copies of target/release/deps/sampling-* built with
# `cargo bench --bench sampling --no-run` on the two commits. PAIRS rounds (default 5) run
# `BEFORE kernel quick multispin` then `AFTER kernel quick multispin` (1024 x 1024 torus at
# beta_c, Metropolis and Gibbs, 1 and 2 threads, each line a median of 3 x 100 sweeps), and the
# script prints, for every line, the median and min-max over the rounds of flips per wall ns
# and of flips per CPU-ns (per core). Run it on an idle machine for figures that mean anything.
set -euo pipefail
before=${1:?usage: benches/multispin_ab.sh BEFORE_BENCH AFTER_BENCH [PAIRS]}
after=${2:?usage: benches/multispin_ab.sh BEFORE_BENCH AFTER_BENCH [PAIRS]}
pairs=${3:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$pairs"); do
    for which in before after; do
        bin=$before
        [ "$which" = after ] && bin=$after
        "$bin" kernel quick multispin | grep 'checkerboard' | sed "s/^ */$which | /" >> "$out"
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
