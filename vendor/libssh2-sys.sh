#!/usr/bin/env bash
# vendor/libssh2-sys.sh: vendor/libssh2-sys is the published libssh2-sys crate plus
# vendor/libssh2-sys.patch, nothing else (vendor/libssh2-sys/WALSHIP.md says why).
#
#   bash vendor/libssh2-sys.sh            rebuild vendor/libssh2-sys from the crate and the patch
#   bash vendor/libssh2-sys.sh --check    fail if vendor/libssh2-sys differs from crate + patch (CI)
#   bash vendor/libssh2-sys.sh --diff     rewrite the patch from vendor/libssh2-sys (after an edit)
#   VERSION=0.3.5 bash vendor/libssh2-sys.sh   start from another published version
#
# The crate comes from crates.io through cargo itself (cargo fetch of a throwaway project).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=${1:-apply}
version=${VERSION:-0.3.4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/fetch/src" "$tmp/a"
cat >"$tmp/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-libssh2-sys"
version = "0.0.0"
edition = "2021"
[dependencies]
libssh2-sys = "=$version"
TOML
echo 'fn main() {}' >"$tmp/fetch/src/main.rs"
cargo fetch --quiet --manifest-path "$tmp/fetch/Cargo.toml"
src=$(cargo metadata --quiet --format-version 1 --manifest-path "$tmp/fetch/Cargo.toml" |
    python3 -c 'import json, os, sys
print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "libssh2-sys"))')
cp -a "$src" "$tmp/a/libssh2-sys"
rm -f "$tmp/a/libssh2-sys/.cargo-ok" # cargo's own marker, not part of the crate

case $mode in
--diff)
    rm -rf "$tmp/b" && mkdir "$tmp/b" && cp -a vendor/libssh2-sys "$tmp/b/"
    (cd "$tmp" && diff -ruN a/libssh2-sys b/libssh2-sys) >vendor/libssh2-sys.patch || [[ $? == 1 ]]
    echo "vendor/libssh2-sys.patch rewritten from vendor/libssh2-sys ($version)"
    ;;
apply | --check)
    cp -a "$tmp/a" "$tmp/b"
    (cd "$tmp/b" && patch -p1 --quiet --no-backup-if-mismatch) <vendor/libssh2-sys.patch
    if [[ $mode == --check ]]; then
        if diff -r "$tmp/b/libssh2-sys" vendor/libssh2-sys; then
            echo "vendor/libssh2-sys is libssh2-sys $version plus vendor/libssh2-sys.patch"
        else
            echo "vendor/libssh2-sys differs from libssh2-sys $version plus vendor/libssh2-sys.patch" >&2
            exit 1
        fi
    else
        rm -rf vendor/libssh2-sys
        cp -a "$tmp/b/libssh2-sys" vendor/libssh2-sys
        echo "vendor/libssh2-sys rebuilt: libssh2-sys $version plus vendor/libssh2-sys.patch"
    fi
    ;;
*)
    echo "usage: vendor/libssh2-sys.sh [--check|--diff]" >&2
    exit 2
    ;;
esac
