#!/usr/bin/env bash
# Exact marginals by elimination against ln Z alone, on the UAI models of data/uai.
#
#   benches/marginals.sh AFTER_EBM [BEFORE_EBM] [REPEATS] [MODELS...]
#
# For each model, REPEATS rounds (default 3) alternate, in this order: `ebm partition --model M
# --method eliminate` (ln Z) with AFTER_EBM, the same with `--marginals`, and, when BEFORE_EBM
# is given, `--marginals` with BEFORE_EBM (an older build, e.g. one clamped elimination per
# variable). Prints one line per model: medians (min-max) of the wall times of the whole
# process, and the ratio marginals / ln Z of the medians. BEFORE_REPEATS (environment, default
# REPEATS) caps the slow before-runs. Wall times from `date +%s.%N`; run on an idle machine for
# figures that mean anything.
set -euo pipefail
after=${1:?usage: benches/marginals.sh AFTER_EBM [BEFORE_EBM] [REPEATS] [MODELS...]}
before=${2:-}
repeats=${3:-3}
before_repeats=${BEFORE_REPEATS:-$repeats}
shift $(( $# < 3 ? $# : 3 ))
dir=$(cd "$(dirname "$0")/.." && pwd)/data/uai
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    models=(Grids_12 Segmentation_12 Grids_11 Grids_13 Grids_14 DBN_11 Grids_15)
fi
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
stats() { # median (min-max) of the arguments
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "%.3f (%.3f-%.3f)", m, v[1], v[NR] }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-16s %-24s %-24s %-28s %s\n' model "ln Z s" "marginals s" "marginals before s" "ratio after/lnZ"
for m in "${models[@]}"; do
    file=$dir/$m.uai
    lz=(); mg=(); bf=()
    for r in $(seq 1 "$repeats"); do
        lz+=("$(wall "$after" partition --model "$file" --method eliminate -q --json)")
        mg+=("$(wall "$after" partition --model "$file" --method eliminate --marginals -q --json)")
        if [ -n "$before" ] && [ "$r" -le "$before_repeats" ]; then
            bf+=("$(wall "$before" partition --model "$file" --method eliminate --marginals -q --json)")
        fi
    done
    ratio=$(echo "$(median "${mg[@]}") / $(median "${lz[@]}")" | bc -l)
    printf '%-16s %-24s %-24s %-28s %.2f\n' "$m" "$(stats "${lz[@]}")" "$(stats "${mg[@]}")" \
        "$( [ ${#bf[@]} -gt 0 ] && stats "${bf[@]}" || echo -)" "$ratio"
done
