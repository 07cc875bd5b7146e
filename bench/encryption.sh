#!/usr/bin/env bash
# bench/encryption.sh — walship push and fetch into an encrypted local repository against the
# same into an unencrypted one, in alternating pairs on the shared 64-segment corpus, so that
# this machine's drift falls on both sides of each pair. Prints every pair and the median ratios
# (the goal: encryption at most 10 % slower, i.e. ratios at most 1.10).
#
# Run as root after bench/run.sh (or ../shared/bench/setup.sh) has set up the corpus once:
#   bash bench/encryption.sh             # 5 pairs of push and of fetch, about 2 minutes
#   PAIRS=9 bash bench/encryption.sh
#   WALSHIP_BIN=/path/to/walship bash bench/encryption.sh   # another build (no cargo build)
# A push plays PostgreSQL's archiver as bench/run.sh does (the shared run-one.sh: 64 serial
# calls, .ready renamed to .done after each); a fetch plays the startup process (64 serial
# restore_command calls into pg_wal/RECOVERYXLOG, prefetch on as configured by default).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/bench}
PAIRS=${PAIRS:-5}
[[ $EUID -eq 0 ]] || { echo "run as root (the harness switches to its bench user)" >&2; exit 1; }
source "$PEERS_DIR/lib.sh"
[[ -s $WALDIR/SHA256SUMS ]] || { echo "run bash bench/run.sh (or $PEERS_DIR/setup.sh) first" >&2; exit 1; }

if [[ -z ${WALSHIP_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    WALSHIP_BIN=$REPO/target/release/walship
fi
BIN=/usr/local/lib/walship-bench/walship-encryption   # a path the bench user can execute
install -D -m 755 "$WALSHIP_BIN" "$BIN"
RUNS=$BD/run/encryption
trap 'rm -rf "$RUNS"' EXIT
install -d -o "$BUSER" -g "$BUSER" "$RUNS"
KEY=$RUNS/repo.key
runuser -u "$BUSER" -- "$BIN" keygen --output "$KEY" 2>/dev/null

# settings mode: the walship environment for plain or encrypted
settings() {
    if [[ $1 == aead ]]; then echo "WALSHIP_ENCRYPTION=aead WALSHIP_ENCRYPTION_KEY_FILE=$KEY"; else echo "WALSHIP_ENCRYPTION=none"; fi
}

# one_round mode: a fresh pg_wal of hard links and an empty repository, 64 serial pushes, then
# 64 serial fetches from it; prints "push_seconds fetch_seconds".
one_round() {
    local mode=$1 RUN env
    RUN=$(mktemp -d "$RUNS/run.XXXXXX")
    install -d -o "$BUSER" -g "$BUSER" "$RUN" "$RUN/pg_wal" "$RUN/pg_wal/archive_status" "$RUN/dest" "$RUN/restore" "$RUN/restore/pg_wal"
    awk '{print $2}' "$WALDIR/SHA256SUMS" >"$RUN/segments"
    while read -r s; do
        ln "$WALDIR/$s" "$RUN/pg_wal/$s"
        : >"$RUN/pg_wal/archive_status/$s.ready"
    done <"$RUN/segments"
    chown -R "$BUSER:$BUSER" "$RUN"
    env="WALSHIP_CONFIG=/dev/null WALSHIP_WORKER_IDLE_TIMEOUT=1 WALSHIP_REPO=$RUN/dest $(settings "$mode")"
    sync; sleep 1
    runuser -u "$BUSER" -- bash "$PEERS_DIR/run-one.sh" push \
        "$env $BIN push %p %f" "$RUN/segments" "$RUN/pg_wal" "$RUN"
    [[ $(grep -c $'\t0\t' "$RUN/latency.tsv") == 64 ]] || { echo "a $mode push failed: $(tail -3 "$RUN/calls.log")" >&2; return 1; }
    local push; push=$(awk '{printf "%.2f", $1 / 1e6}' "$RUN/wall_us")
    sleep 2   # the push-ahead worker exits (idle timeout 1 s)
    touch "$RUN/restore/standby.signal"; chown "$BUSER:$BUSER" "$RUN/restore/standby.signal"
    local t0 t1
    t0=$(date +%s.%N)
    while read -r s; do
        (cd "$RUN/restore" && runuser -u "$BUSER" -- env $env "$BIN" fetch "$s" pg_wal/RECOVERYXLOG 2>/dev/null) \
            || { echo "a $mode fetch of $s failed" >&2; return 1; }
    done <"$RUN/segments"
    t1=$(date +%s.%N)
    sleep 2   # the prefetch worker exits
    rm -rf "$RUN"
    echo "$push $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "| pair | push plain s | push encrypted s | ratio | fetch plain s | fetch encrypted s | ratio |"
echo "|--:|--:|--:|--:|--:|--:|--:|"
pr=(); fr=()
for ((i = 1; i <= PAIRS; i++)); do
    if ((i % 2)); then read -r pp fp < <(one_round none); read -r pe fe < <(one_round aead)
    else read -r pe fe < <(one_round aead); read -r pp fp < <(one_round none); fi
    a=$(awk -v e="$pe" -v p="$pp" 'BEGIN { printf "%.2f", e / p }'); pr+=("$a")
    b=$(awk -v e="$fe" -v p="$fp" 'BEGIN { printf "%.2f", e / p }'); fr+=("$b")
    echo "| $i | $pp | $pe | $a | $fp | $fe | $b |"
done
echo
echo "median encrypted / plain over $PAIRS pairs: push $(printf '%s\n' "${pr[@]}" | median), fetch $(printf '%s\n' "${fr[@]}" | median) (goal: at most 1.10)"
