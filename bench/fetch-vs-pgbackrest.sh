#!/usr/bin/env bash
# bench/fetch-vs-pgbackrest.sh — `walship fetch` from a local repository against pgBackRest's
# archive-get, in alternating pairs, so that this machine's drift (the same work takes 20-40 %
# longer in some minutes than in others) falls on both sides of each pair. Prints every pair
# (wall and machine CPU seconds) and the median ratio of wall times.
#
# Run as root after bench/run.sh has set up the shared harness once (corpus, bench user,
# pgBackRest configuration):
#   bash bench/fetch-vs-pgbackrest.sh            # 7 pairs, about 2 minutes
#   PAIRS=15 bash bench/fetch-vs-pgbackrest.sh
#   WALSHIP_BIN=/path/to/walship bash bench/fetch-vs-pgbackrest.sh   # another build (no cargo build)
# Both repositories are filled once by the shared peers.sh (its `walship` and `pgbr-zst1` push
# lines, zstd level 1 on both sides); each fetch run then plays PostgreSQL's startup process as
# bench/run.sh does (the shared run-one.sh: 64 serial restore_command calls into an empty pg_wal).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/bench}
PAIRS=${PAIRS:-7}
[[ $EUID -eq 0 ]] || { echo "run as root (the harness switches to its bench user)" >&2; exit 1; }
source "$PEERS_DIR/lib.sh"
[[ -s $PGBR_CONF && -s $WALDIR/SHA256SUMS ]] || { echo "run bash bench/run.sh (or $PEERS_DIR/setup.sh) first" >&2; exit 1; }

if [[ -z ${WALSHIP_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    WALSHIP_BIN=$REPO/target/release/walship
fi
BIN=/usr/local/lib/walship-bench/walship-fetch-vs-pgbackrest   # a path the bench user can execute
install -D -m 755 "$WALSHIP_BIN" "$BIN"
PEERS_RUN=$BD/run/peers                      # where peers.sh keeps its repositories (KEEP_RUN)
RUN=$BD/run/fetch-vs-pgbackrest
trap 'rm -rf "$RUN" "$PEERS_RUN"' EXIT

echo "filling both repositories (peers.sh, push lines only)..." >&2
KEEP_RUN=1 ONLY='^push:(walship|pgbr-zst1)$' WALSHIP_CONFIG=/dev/null WALSHIP_BIN=$BIN \
    bash "$PEERS_DIR/peers.sh" >/dev/null 2>&1
for d in walship pgbr-zst1; do
    [[ $(grep -c $'\t0\t' "$PEERS_RUN/push-$d/latency.tsv") == 64 ]] || { echo "push:$d failed" >&2; exit 1; }
done

# one_fetch walship|pgbr: 64 serial calls into an empty pg_wal; prints "wall_s cpu_s".
one_fetch() {
    local who=$1 cmd
    rm -rf "$RUN"
    install -d -o "$BUSER" -g "$BUSER" "$RUN" "$RUN/pg_wal" "$RUN/lock" "$RUN/log"
    if [[ $who == walship ]]; then
        cmd="WALSHIP_CONFIG=/dev/null WALSHIP_WORKER_IDLE_TIMEOUT=1 WALSHIP_REPO=$PEERS_RUN/push-walship/dest $BIN fetch %f %p"
    else
        cmd="pgbackrest --config=$PGBR_CONF --stanza=$STANZA --pg1-path=$PEERS_RUN/pgdata --lock-path=$RUN/lock"
        cmd+=" --log-path=$RUN/log --repo1-path=$PEERS_RUN/push-pgbr-zst1/dest archive-get %f %p"
    fi
    sync; sleep 1
    runuser -u "$BUSER" -- bash "$PEERS_DIR/run-one.sh" fetch "$cmd" "$PEERS_RUN/segments" "$RUN/pg_wal" "$RUN"
    [[ $(grep -c $'\t0\t' "$RUN/latency.tsv") == 64 ]] || { echo "a $who fetch failed: $(tail -3 "$RUN/calls.log")" >&2; return 1; }
    (cd "$RUN/pg_wal" && sha256sum --quiet -c "$WALDIR/SHA256SUMS") || { echo "$who fetched wrong bytes" >&2; return 1; }
    sleep 2   # let the prefetch worker exit before the next run (idle timeout 1 s above)
    awk -v ticks="$(<"$RUN/cpu_ticks")" -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f", $1 / 1e6, ticks / hz }' "$RUN/wall_us"
}

echo "| pair | walship s (CPU s) | archive-get s (CPU s) | walship / archive-get |"
echo "|--:|--:|--:|--:|"
ratios=()
for ((i = 1; i <= PAIRS; i++)); do
    # alternate which side goes first, so neither always runs in the other's wake
    if ((i % 2)); then w=$(one_fetch walship); g=$(one_fetch pgbr); else g=$(one_fetch pgbr); w=$(one_fetch walship); fi
    read -r ws wc <<<"$w"; read -r gs gc <<<"$g"
    r=$(awk -v w="$ws" -v g="$gs" 'BEGIN { printf "%.2f", w / g }')
    ratios+=("$r")
    echo "| $i | $ws ($wc) | $gs ($gc) | $r |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo
echo "median walship fetch / pgBackRest archive-get over $PAIRS pairs: $median (issue 3's goal: at most 0.6)"
