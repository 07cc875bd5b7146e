#!/usr/bin/env bash
# bench/ssh-vs-local.sh — walship's push over SSH against its push to a local directory, in
# alternating pairs, so that this machine's drift (the same work takes 20-40 % longer in some
# minutes than in others) falls on both sides of each pair. Prints every pair and the median
# ratio of wall times.
#
# Run as root after bench/run.sh has set up the shared harness once (corpus, bench user, sshd
# configuration):
#   bash bench/ssh-vs-local.sh            # 7 pairs, about 1 minute
#   PAIRS=15 bash bench/ssh-vs-local.sh
#   WALSHIP_BIN=/path/to/walship bash bench/ssh-vs-local.sh   # another build (no cargo build)
# Each push plays PostgreSQL's archiver exactly as bench/run.sh does (the shared run-one.sh: 64
# serial calls, .ready renamed to .done after each).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/bench}
PAIRS=${PAIRS:-7}
[[ $EUID -eq 0 ]] || { echo "run as root (the harness switches to its bench user and runs sshd)" >&2; exit 1; }
source "$PEERS_DIR/lib.sh"
[[ -f $SSHDIR/sshd_config && -s $WALDIR/SHA256SUMS ]] || { echo "run bash bench/run.sh (or $PEERS_DIR/setup.sh) first" >&2; exit 1; }

if [[ -z ${WALSHIP_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    WALSHIP_BIN=$REPO/target/release/walship
fi
BIN=/usr/local/lib/walship-bench/walship-ssh-vs-local   # a path the bench user can execute
install -D -m 755 "$WALSHIP_BIN" "$BIN"
RUNS=$BD/run/ssh-vs-local
cleanup() { sshd_stop; rm -rf "$RUNS"; }
trap cleanup EXIT
sshd_start >/dev/null

# one_push local|ssh: a fresh pg_wal of hard links and an empty repository, then 64 serial calls;
# prints the wall seconds. Earlier runs' files stay until the end, as the lines of bench/run.sh
# leave each other's, so that both measurements run under the same conditions; each run's worker
# exits 1 s after its last file (WALSHIP_WORKER_IDLE_TIMEOUT), before the next run starts.
install -d "$RUNS"
one_push() {
    local mode=$1 repo RUN
    RUN=$(mktemp -d "$RUNS/run.XXXXXX")
    install -d -o "$BUSER" -g "$BUSER" "$RUN" "$RUN/pg_wal" "$RUN/pg_wal/archive_status" "$RUN/dest"
    awk '{print $2}' "$WALDIR/SHA256SUMS" >"$RUN/segments"
    while read -r s; do
        ln "$WALDIR/$s" "$RUN/pg_wal/$s"
        : >"$RUN/pg_wal/archive_status/$s.ready"
    done <"$RUN/segments"
    chown -R "$BUSER:$BUSER" "$RUN"
    if [[ $mode == ssh ]]; then
        repo="ssh://$BUSER@127.0.0.1:$SSHPORT$RUN/dest WALSHIP_SSH_KEY=$SSHDIR/${BUSER}_ed25519 WALSHIP_KNOWN_HOSTS=$SSHDIR/known_hosts"
    else
        repo=$RUN/dest
    fi
    sync; sleep 1
    runuser -u "$BUSER" -- bash "$PEERS_DIR/run-one.sh" push \
        "WALSHIP_CONFIG=/dev/null WALSHIP_WORKER_IDLE_TIMEOUT=1 WALSHIP_REPO=$repo $BIN push %p %f" "$RUN/segments" "$RUN/pg_wal" "$RUN"
    [[ $(grep -c $'\t0\t' "$RUN/latency.tsv") == 64 ]] || { echo "a $mode push failed: $(tail -3 "$RUN/calls.log")" >&2; return 1; }
    sleep 2   # let the push-ahead worker exit before the next run (idle timeout 1 s above)
    awk '{printf "%.2f", $1 / 1e6}' "$RUN/wall_us"
}

echo "| pair | local s | SSH s | SSH / local |"
echo "|--:|--:|--:|--:|"
ratios=()
for ((i = 1; i <= PAIRS; i++)); do
    # alternate which side goes first, so neither always runs in the other's wake
    if ((i % 2)); then l=$(one_push local); s=$(one_push ssh); else s=$(one_push ssh); l=$(one_push local); fi
    r=$(awk -v s="$s" -v l="$l" 'BEGIN { printf "%.2f", s / l }')
    ratios+=("$r")
    echo "| $i | $l | $s | $r |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo
echo "median SSH / local over $PAIRS pairs: $median (issue 3's goal: at most 1.3)"
