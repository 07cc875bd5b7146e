#!/usr/bin/env bash
# fuzz/run.sh — run every fuzz target (cargo-fuzz, libFuzzer) for FUZZ_SECONDS each.
#
#   bash fuzz/run.sh                  # the long run: 300 s per target
#   FUZZ_SECONDS=15 bash fuzz/run.sh  # the short run CI does
#
# Targets: wal_name (WAL file name parser), wal_header (WAL page header reader), object_header
# (repository object header), backup_stream (restore's stream reader, seeded with valid streams
# from fuzz/seeds), sealed_stream (the opening of an encrypted object's chunks). Works on stable Rust (no sanitizer: -s none); installs cargo-fuzz if missing.
# A crash stops the run with libFuzzer's report; the input is kept in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH=${FUZZ_SECONDS:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
cargo fuzz build -s none -O
for t in wal_name wal_header object_header backup_stream sealed_stream; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus"
    [[ -d fuzz/seeds/$t ]] && cp -n fuzz/seeds/$t/* "$corpus/" 2>/dev/null || true
    out=$(cargo fuzz run -s none -O "$t" "$corpus" -- -max_total_time="$SECONDS_EACH" -timeout=10 2>&1) || {
        echo "$out" | tail -40
        echo "fuzz/run.sh: $t FAILED" >&2
        exit 1
    }
    echo "fuzz $t: $(echo "$out" | grep -E '^Done' | tail -1), no crash, no hang"
done
