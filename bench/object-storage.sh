#!/usr/bin/env bash
# bench/object-storage.sh — walship push and fetch to an S3-compatible store beside walship's own
# local lines and pgBackRest's S3 repository type on the same store, in one run, on the shared
# 64-segment corpus.
#
# Run as root on Debian 12 after bench/run.sh (or ../shared/bench/setup.sh) has set up the corpus:
#   bash bench/object-storage.sh            # 3 rounds, about 6 minutes
#   ROUNDS=1 bash bench/object-storage.sh
#   WALSHIP_BIN=/path/to/walship bash bench/object-storage.sh   # another build (no cargo build)
#
# The store is s3s-fs (tests/run installs it) on 127.0.0.1, its data under the bench's directory.
# pgBackRest 2.45 (Debian 12) speaks only HTTPS to S3, so both walship and pgBackRest reach the
# store through a TLS terminator (stunnel4) with a throwaway certificate: the same path for both,
# TLS included. Then it prints the ratios the goals are stated in (median of rounds), and the
# maximum resident memory of a walship push and fetch against the store (/usr/bin/time).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/bench}
ROUNDS=${ROUNDS:-3}
[[ $EUID -eq 0 ]] || { echo "run as root (the harness switches to its bench user)" >&2; exit 1; }
source "$PEERS_DIR/lib.sh"
[[ -s $WALDIR/SHA256SUMS && -f $PGBR_CONF ]] || { echo "run bash bench/run.sh (or $PEERS_DIR/setup.sh) first" >&2; exit 1; }
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || apt-get install -y -qq stunnel4 >/dev/null
S3S=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[[ -x $S3S ]] || cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet

if [[ -z ${WALSHIP_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    WALSHIP_BIN=$REPO/target/release/walship
fi
BIN=/usr/local/lib/walship-bench/walship-object-storage   # a path the bench user can execute
install -D -m 755 "$WALSHIP_BIN" "$BIN"

S3PORT=${S3PORT:-18014}
TLSPORT=${TLSPORT:-18443}
KEY=AKWALSHIPBENCH
SECRET=walship-bench-secret
SCRATCH=$(mktemp -d /tmp/walship-bench-s3.XXXXXX)
chmod 755 "$SCRATCH"
S3ROOT=$BD/s3
rm -rf "$S3ROOT"; mkdir -p "$S3ROOT/walship"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$SCRATCH" "$S3ROOT"; }
trap cleanup EXIT

RUST_LOG=${S3S_LOG:-warn} "$S3S" --host 127.0.0.1 --port "$S3PORT" --access-key "$KEY" --secret-key "$SECRET" "$S3ROOT" \
    >"$BD/results/s3s-fs.log" 2>&1 &
pids+=($!)
# a certificate both rustls (walship) and pgBackRest 2.45 accept for 127.0.0.1
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth" -keyout "$SCRATCH/key.pem" -out "$SCRATCH/cert.pem" 2>/dev/null
chmod 644 "$SCRATCH/cert.pem"
cat >"$SCRATCH/stunnel.conf" <<CONF
foreground = yes
debug = 3
pid =
output = $SCRATCH/stunnel.log
[s3]
accept = 127.0.0.1:$TLSPORT
connect = 127.0.0.1:$S3PORT
cert = $SCRATCH/cert.pem
key = $SCRATCH/key.pem
CONF
"$(command -v stunnel4 || command -v stunnel)" "$SCRATCH/stunnel.conf" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$TLSPORT) 2>/dev/null && break; sleep 0.1; done

# pgBackRest's S3 repository on the same store (repo1-path per line, as peers.sh does locally)
cat >"$SCRATCH/pgbackrest-s3.conf" <<CONF
[global]
repo1-type=s3
repo1-s3-bucket=walship
repo1-s3-endpoint=127.0.0.1:$TLSPORT
repo1-s3-uri-style=path
repo1-s3-region=us-east-1
repo1-s3-key=$KEY
repo1-s3-key-secret=$SECRET
repo1-storage-ca-file=$SCRATCH/cert.pem
# one request per segment, as walship makes (pgBackRest's default is 5 MiB parts)
repo1-storage-upload-chunk-size=64MiB
compress-type=zst
compress-level=1
log-level-console=warn
log-level-file=info

[$STANZA]
pg1-path=$PGDATA
CONF
chmod 644 "$SCRATCH/pgbackrest-s3.conf"

S3ENV="AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_EC2_METADATA_DISABLED=true WALSHIP_S3_ENDPOINT=https://127.0.0.1:$TLSPORT WALSHIP_S3_CA_FILE=$SCRATCH/cert.pem"
cp "$PEERS_DIR"/*.sh "$SCRATCH/"
awk -v env="$S3ENV" -v conf="$SCRATCH/pgbackrest-s3.conf" '
    /^PGBR_SSH=/ { print; print "PGBR_S3=\"pgbackrest --config=" conf " --stanza=$STANZA --pg1-path=$SIMDATA --lock-path=@WORK@/lock --log-path=@WORK@/log\""; next }
    /^repohost_stanza\(\)/ { print; print "stanza_s3() { pgbackrest --config=" conf " --stanza=$STANZA --pg1-path=$SIMDATA --repo1-path=\"\\$1\" --lock-path=@WORK@/lock --log-path=@WORK@/log --no-online stanza-create; }"; next }
    { print }
    /^push walship / {
        print "[[ -n ${WALSHIP_BIN:-} ]] &&"
        print "push walship-s3      \x27\x27                      \"" env " WALSHIP_REPO=s3://walship/ws $WALSHIP_BIN push %p %f\""
        print "push pgbr-s3-zst1    \x27stanza_s3 /ps\x27      \"$PGBR_S3 --repo1-path=/ps $ZST1 archive-push %p\""
        print "push pgbr-s3-async-zst1 \x27stanza_s3 /pa\x27   \"$PGBR_S3 --repo1-path=/pa $ZST1 --archive-async --spool-path=@WORK@/spool --process-max=2 archive-push %p\""
    }
    /^fetch walship / {
        print "[[ -n ${WALSHIP_BIN:-} ]] &&"
        print "fetch walship-s3     walship-s3      \x27\x27                \"" env " WALSHIP_REPO=s3://walship/ws $WALSHIP_BIN fetch %f %p\""
        print "fetch pgbr-s3        pgbr-s3-zst1    \x27\x27                \"$PGBR_S3 --repo1-path=/ps archive-get %f %p\""
    }' "$PEERS_DIR/peers.sh" >"$SCRATCH/peers.sh"
grep -q 'push walship-s3' "$SCRATCH/peers.sh" && grep -q '^stanza_s3()' "$SCRATCH/peers.sh" \
    || { echo "could not add the object-storage lines to peers.sh" >&2; exit 1; }

TSVS=()
for ((round = 1; round <= ROUNDS; round++)); do
    echo "## round $round of $ROUNDS"
    # every line starts from an empty repository (short prefixes: s3s-fs keeps a key's
    # temporary file under a name made from the whole key, which must fit in 255 bytes)
    find "$S3ROOT/walship" -mindepth 1 -delete
    ONLY=${ONLY:-'^(push|fetch):(walship|walship-s3|pgbr-s3.*)$'} WALSHIP_CONFIG=/dev/null WALSHIP_WORKER_IDLE_TIMEOUT=1 \
        WALSHIP_BIN=$BIN bash "$SCRATCH/peers.sh"
    TSVS+=("$(ls -t "$BD"/results/peers-*.tsv | head -1)")
done

echo
echo "## walship on object storage: ratio of wall time for 64 serial calls (lower is better)"
echo
awk -F'\t' -f "$HERE/ratios.awk" -f <(cat <<'AWK'
    END {
        print "| comparison | walship (median) | other (median) | ratio per round | median ratio | goal |"
        print "|---|--:|--:|--:|--:|---|"
        row("push S3 vs walship push local",            "push:walship-s3", "push:walship", "<= 1.5")
        row("push S3 vs pgBackRest async S3 (2 proc)",  "push:walship-s3", "push:pgbr-s3-async-zst1", "<= 1.0")
        row("push S3 vs pgBackRest sync S3",            "push:walship-s3", "push:pgbr-s3-zst1", "")
        row("fetch S3 vs pgBackRest archive-get S3",    "fetch:walship-s3", "fetch:pgbr-s3", "<= 1.0")
        row("fetch S3 vs walship fetch local",          "fetch:walship-s3", "fetch:walship", "")
    }
AWK
) "${TSVS[@]}"

# Memory: one push and one fetch of a corpus segment against the store, as the bench user.
MEM=$SCRATCH/mem
install -d -o "$BUSER" -g "$BUSER" "$MEM" "$MEM/pg_wal" "$MEM/pg_wal/archive_status"
first=$(awk 'NR == 1 {print $2}' "$WALDIR/SHA256SUMS")
ln "$WALDIR/$first" "$MEM/pg_wal/$first"; chown -h "$BUSER:$BUSER" "$MEM/pg_wal/$first"
rss() { # command...: max resident set size in MiB
    (cd "$MEM" && runuser -u "$BUSER" -- env $S3ENV WALSHIP_CONFIG=/dev/null WALSHIP_REPO=s3://walship/memory \
        WALSHIP_PUSH_AHEAD=0 WALSHIP_PREFETCH=0 /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1 / 1024}')
}
echo
echo "max resident memory: push $(rss "$BIN" push "pg_wal/$first" "$first") MiB, fetch $(rss "$BIN" fetch "$first" pg_wal/RECOVERYXLOG) MiB (goal: under 64 MiB)"
bad=$(awk -F'\t' 'FNR > 1 && $3 != "ok" {print FILENAME ": " $1 ":" $2 " " $3}' "${TSVS[@]}")
[[ -z $bad ]] || { echo; echo "lines that did not finish: $bad" >&2; exit 1; }
