#!/usr/bin/env bash
# bench/run.sh — walship beside its peers, in one run, on the same 64 real WAL segments.
#
# Run as root on Debian 12, from the repository (the shared harness is expected in ../shared/bench,
# or set PEERS_DIR):
#   bash bench/run.sh                 # ~20 min: builds walship, runs every line 3 times, prints ratios
#   ROUNDS=1 bash bench/run.sh        # ~7 min: one round
#   ONLY='walship|pgbr-zst1' bash bench/run.sh   # a subset (peers.sh's ONLY)
#
# What it does: builds target/release/walship; runs the shared setup.sh (packages, the walbench
# user, a PostgreSQL 15 corpus of 64 x 16 MiB segments, sshd on 127.0.0.1:2222, pgBackRest);
# copies the shared peers.sh next to a scratch copy and adds walship's SSH lines (push and fetch
# over ssh://walbench@127.0.0.1:2222 with the bench's pinned known_hosts) beside its local lines;
# runs it ROUNDS times; and prints the ratios the project's goals are stated in, for each round
# and their median. Each ratio is taken within one round (both sides a few minutes apart at most):
# this VM drifts (the same cp + fsync of the corpus takes 1.3 s in one minute and 2.4 s in another),
# so one round's ratio is one sample and the median of rounds is the figure to quote. Results stay
# in /srv/walship-bench/results (never committed), one peers-*.tsv per round.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/bench}
ROUNDS=${ROUNDS:-3}
[[ $EUID -eq 0 ]] || { echo "run as root (the harness switches to its bench user and runs sshd)" >&2; exit 1; }
[[ -f $PEERS_DIR/peers.sh ]] || { echo "no peers harness in $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }

(cd "$REPO" && cargo build --release --quiet)
BIN=/usr/local/lib/walship-bench/walship          # a path the bench user can execute
install -D -m 755 "$REPO/target/release/walship" "$BIN"

bash "$PEERS_DIR/setup.sh"

SCRATCH=$(mktemp -d /tmp/walship-bench.XXXXXX)
chmod 755 "$SCRATCH"                             # the bench user runs run-one.sh from here
trap 'rm -rf "$SCRATCH"' EXIT
cp "$PEERS_DIR"/*.sh "$SCRATCH/"
# walship over SSH: the same command PostgreSQL would run, repository on the bench's sshd.
SSH_ENV='WALSHIP_SSH_KEY=$SSHDIR/${BUSER}_ed25519 WALSHIP_KNOWN_HOSTS=$SSHDIR/known_hosts'
awk -v env="$SSH_ENV" '
    { print }
    /^push walship / {
        print "[[ -n ${WALSHIP_BIN:-} ]] &&"
        print "push walship-ssh     \x27\x27                      \"WALSHIP_REPO=ssh://$BUSER@127.0.0.1:$SSHPORT@DEST@ " env " $WALSHIP_BIN push %p %f\""
    }
    /^fetch walship / {
        print "[[ -n ${WALSHIP_BIN:-} ]] &&"
        print "fetch walship-ssh    walship-ssh     \x27\x27                \"WALSHIP_REPO=ssh://$BUSER@127.0.0.1:$SSHPORT@SRC@ " env " $WALSHIP_BIN fetch %f %p\""
    }' "$PEERS_DIR/peers.sh" >"$SCRATCH/peers.sh"
grep -q 'push walship-ssh' "$SCRATCH/peers.sh" || { echo "could not add the SSH lines to peers.sh" >&2; exit 1; }

TSVS=()
for ((round = 1; round <= ROUNDS; round++)); do
    echo "## round $round of $ROUNDS"
    # The worker idles 30 s by default; peers.sh's wait_quiet does not see it (its command line
    # names pg_wal, not the line's work directory), so it would still be polling during the
    # next lines. 1 s lets it go before the next line starts, as pgBackRest's async helper does.
    WALSHIP_CONFIG=/dev/null WALSHIP_WORKER_IDLE_TIMEOUT=1 WALSHIP_BIN=$BIN bash "$SCRATCH/peers.sh"
    TSVS+=("$(ls -t /srv/walship-bench/results/peers-*.tsv | head -1)")
done

echo
echo "## walship against its peers: ratio of wall time for 64 serial calls (lower is better)"
echo
echo "Rounds: $(for t in "${TSVS[@]}"; do basename "$t" .tsv; done | paste -sd' ')"
echo
awk -F'\t' -f "$HERE/ratios.awk" -f <(cat <<'AWK'
    END {
        print "| comparison | walship (median) | peer (median) | ratio per round | median ratio | goal |"
        print "|---|--:|--:|--:|--:|---|"
        row("push local vs pgBackRest sync (zst 1)",  "push:walship", "push:pgbr-zst1", "<= 1.0 (issue 2); <= 0.6 (issue 3)")
        row("push local vs pgBackRest async (2 proc)", "push:walship", "push:pgbr-async-zst1", "<= 1.0 (issue 3)")
        row("push local vs zstd -1 + fsync",          "push:walship", "push:zstd-1+fsync", "floor")
        row("push local vs cp + fsync",               "push:walship", "push:cp+fsync", "floor")
        row("push SSH vs rsync over ssh",             "push:walship-ssh", "push:rsync-ssh", "<= 0.125 (issue 3)")
        row("push SSH vs pgBackRest SSH repository",  "push:walship-ssh", "push:pgbr-ssh-zst1", "<= 0.125 (issue 3)")
        row("push SSH vs walship push local",         "push:walship-ssh", "push:walship", "<= 1.3 (issue 3)")
        row("fetch local vs pgBackRest archive-get",  "fetch:walship", "fetch:pgbr", "<= 0.6 (issue 3)")
        row("fetch local vs zstd -d",                 "fetch:walship", "fetch:zstd-d", "floor")
        row("fetch SSH vs rsync over ssh",            "fetch:walship-ssh", "fetch:rsync-ssh", "<= 0.125 (issue 3)")
    }
AWK
) "${TSVS[@]}"
bad=$(awk -F'\t' 'FNR > 1 && $3 != "ok" {print FILENAME ": " $1 ":" $2 " " $3}' "${TSVS[@]}")
[[ -z $bad ]] || { echo; echo "lines that did not finish: $bad" >&2; exit 1; }
