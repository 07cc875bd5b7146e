#!/usr/bin/env bash
# bench/basebackup.sh — a standby from a running primary, walship against the recipes DBAs use,
# in one run, on the same database, over the same sshd on 127.0.0.1.
#
# Run as root on Debian 12, from the repository:
#   bash bench/basebackup.sh            # SCALE=70 (pgbench, about 1.1 GiB): ~4 min
#   SCALE=20 bash bench/basebackup.sh   # smaller
#
# Lines (wall seconds from "start" to "the standby's data directory is complete on disk"):
#   walship      walship basebackup --to standby (zstd -1, 2 threads, stream checked by
#                walship restore --from-stdin on the standby side)
#   bzip2-recipe pg_basebackup -Ft -D - -X fetch | bzip2 > file; scp file; ssh 'tar -xjf'
#                (the seed recipe, as written: compress, copy, untar)
#   pigz-stream  pg_basebackup -Ft -D - -X fetch | pigz | ssh 'pigz -d | tar -x'
#                (the fastest form of the pigz pipeline: streamed, no file)
# Peak memory (max RSS, KiB) is GNU time's, of the process on the primary's side and, for
# walship, of the restore on the standby's side. Everything runs as the unprivileged user
# `walbench-bb`; servers are stopped by PID at the end.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SCALE=${SCALE:-70}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[[ $EUID -eq 0 ]] || { echo "run as root (it creates a bench user and runs sshd)" >&2; exit 1; }
for p in pigz bzip2 sshd; do
    command -v $p >/dev/null || [[ -x /usr/sbin/$p ]] || {
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz bzip2 openssh-server openssh-client >/dev/null
        rm -f /usr/sbin/policy-rc.d; break; }
done
(cd "$REPO" && cargo build --release --quiet)

U=walbench-bb
id $U >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash $U
W=$(mktemp -d /tmp/walship-bb.XXXXXX)
chown $U: "$W"; chmod 755 "$W"
as() { runuser -u $U -- "$@"; }
PGPORT=$((20000 + RANDOM % 20000)); SSHPORT=$((PGPORT + 1))
PIDS=()
cleanup() {
    for d in "$W"/primary "$W"/standby-*; do
        [[ -f $d/postmaster.pid ]] && as "$PGBIN/pg_ctl" -D "$d" stop -m immediate >/dev/null 2>&1 || true
    done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

install -m 755 "$REPO/target/release/walship" "$W/walship"
as mkdir -p "$W/repo" "$W/sock"
# sshd on loopback, public-key only, its own host key, a pinned known_hosts.
as ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
as ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
cp "$W/client_key.pub" "$W/authorized_keys"
echo "[127.0.0.1]:$SSHPORT $(cut -d' ' -f1,2 "$W/host_key.pub")" >"$W/known_hosts"
chown $U: "$W"/*
mkdir -p /run/sshd
cat >"$W/sshd_config" <<EOF
Port $SSHPORT
ListenAddress 127.0.0.1
HostKey $W/host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AllowUsers $U
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log" & PIDS+=($!)
SSH=(ssh -q -i "$W/client_key" -o UserKnownHostsFile="$W/known_hosts" -o BatchMode=yes -p $SSHPORT $U@127.0.0.1)
SCP=(scp -q -i "$W/client_key" -o UserKnownHostsFile="$W/known_hosts" -o BatchMode=yes -P $SSHPORT)

cat >"$W/walship.toml" <<EOF
repo = '$W/repo'
ssh_key = '$W/client_key'
known_hosts = '$W/known_hosts'
worker_idle_timeout = 5

[targets.standby]
host = '127.0.0.1'
port = $SSHPORT
user = '$U'
pgdata = '$W/standby-walship'
walship = '$W/walship-timed'
config = '$W/walship.toml'
EOF
chown $U: "$W/walship.toml"
# the standby side's walship, under GNU time for its peak memory
printf '#!/bin/sh\nexec /usr/bin/time -f %%M -o %s/rss.remote %s/walship "$@"\n' "$W" "$W" >"$W/walship-timed"
chmod 755 "$W/walship-timed"

echo "== primary: pgbench scale $SCALE"
as "$PGBIN/initdb" -D "$W/primary" -A trust --no-sync >/dev/null
cat >>"$W/primary/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$W/sock'
archive_mode = on
archive_command = '$W/walship --config $W/walship.toml push %p %f'
max_wal_size = 4GB
EOF
as "$PGBIN/pg_ctl" -D "$W/primary" -l "$W/primary.log" -w start >/dev/null
as "$PGBIN/pgbench" -h "$W/sock" -p $PGPORT -U $U -i -s "$SCALE" -q postgres 2>/dev/null
SIZE=$(as "$PGBIN/psql" -h "$W/sock" -p $PGPORT -U $U -Atc "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database" postgres)
echo "   database: $SIZE"
PGB=("$PGBIN/pg_basebackup" -h "$W/sock" -p $PGPORT -U $U -Ft -D - -X fetch -c fast)

results=()
measure() { # name, command...: wall seconds and max RSS of the local side
    local name=$1; shift
    sync
    local t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$W/rss.$name" "$@"
    local t1=$(date +%s.%N)
    local s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    results+=("$name $s $(cat "$W/rss.$name")")
    echo "   $name: $s s, max RSS $(cat "$W/rss.$name") KiB"
}

echo "== runs"
# warm the page cache the same way for everyone
as tar -cf /dev/null -C "$W/primary" . 2>/dev/null || true
measure walship runuser -u $U -- "$W/walship" --config "$W/walship.toml" \
    --pgdata "$W/primary" basebackup --to standby --wal-timeout 120
measure bzip2-recipe runuser -u $U -- bash -c "set -o pipefail; ${PGB[*]} | bzip2 > $W/base.tar.bz2 \
    && ${SCP[*]} $W/base.tar.bz2 $U@127.0.0.1:$W/copied.tar.bz2 \
    && ${SSH[*]} 'mkdir -m 700 $W/standby-bzip2 && tar -xjf $W/copied.tar.bz2 -C $W/standby-bzip2 && sync'"
measure pigz-stream runuser -u $U -- bash -c "set -o pipefail; ${PGB[*]} | pigz | ${SSH[*]} \
    'mkdir -m 700 $W/standby-pigz && pigz -d | tar -x -C $W/standby-pigz && sync'"

for d in walship bzip2 pigz; do
    echo "   standby-$d: $(du -sh "$W/standby-$d" | cut -f1), $(find "$W/standby-$d" -type f | wc -l) files"
done
echo
echo "| line | s | max RSS MiB (sending side) | walship / line |"
echo "|---|--:|--:|--:|"
ws=$(echo "${results[0]}" | cut -d' ' -f2)
for r in "${results[@]}"; do
    set -- $r
    awk -v n="$1" -v s="$2" -v m="$3" -v w="$ws" 'BEGIN { printf "| %s | %.1f | %.0f | %.2f |\n", n, s, m / 1024, w / s }'
done
echo "walship's receiving side (walship restore --from-stdin): max RSS $(( $(cat "$W/rss.remote") / 1024 )) MiB"
echo
echo "database $SIZE (pgbench scale $SCALE); $(nproc) cores; walship $(git -C "$REPO" rev-parse --short HEAD)"
