//! The WAL file name parser: any string is either refused or parsed into a name whose derived
//! values (kind, timeline, repository path, segment number) can be computed without a panic,
//! and which prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::pg::WalFileName;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = WalFileName::parse(s) {
        assert_eq!(name.as_str(), s);
        let _ = (
            name.kind(),
            name.timeline(),
            name.has_wal_header(),
            walship::repo::object_path(&name),
        );
        for size in [1 << 20, 16 << 20, 1 << 30] {
            let _ = name.segment_number(size);
        }
    }
});
