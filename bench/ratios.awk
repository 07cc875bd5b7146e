# bench/ratios.awk — the ratios bench/run.sh and bench/object-storage.sh print: read peers.sh's
# TSV files (one per round), keep the wall time of every line that finished, and let the caller's
# END block print rows of row(label, line a, line b, goal): a / b per round and their median.
# Used as: awk -F'\t' -f bench/ratios.awk -f <(END block) round1.tsv round2.tsv ...
FNR == 1 { n++; next }
$3 == "ok" { w[n, $1 ":" $2] = $5 }
function median(v, k,   i, j, t) {
    for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
}
function row(label, a, b, goal,   i, k, list, r, sa, sb) {
    k = 0; list = ""; split("", r); split("", sa); split("", sb)
    for (i = 1; i <= n; i++) {
        if (!(((i, a) in w) && ((i, b) in w))) continue
        k++; r[k] = w[i, a] / w[i, b]; sa[k] = w[i, a]; sb[k] = w[i, b]
        list = list sprintf("%s%.2f", k > 1 ? " " : "", r[k])
    }
    if (k == 0) { printf "| %s | - | - | - | - | %s |\n", label, goal; return }
    printf "| %s | %.2f s | %.2f s | %s | **%.2f** | %s |\n", label, median(sa, k), median(sb, k), list, median(r, k), goal
}
