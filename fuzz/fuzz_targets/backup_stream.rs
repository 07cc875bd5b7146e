//! The backup stream reader (restore): any bytes are refused with an error, never a panic, and
//! never a file outside the target directory; nothing is ever left startable (no pg_control)
//! from a stream that did not check out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::backup::unpack::{Target, prepare, unpack};
use walship::progress::Progress;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pgdata = dir.path().join("data");
    let target = Target {
        pgdata: pgdata.clone(),
        tablespace_map: Vec::new(),
        force: false,
    };
    let prepared = prepare(&target, "fuzz", &[]).expect("an empty target");
    if let Ok(restored) = unpack(data, prepared, None, &Progress::silent()) {
        let _ = restored.complete();
    }
    // nothing escaped the data directory
    for e in std::fs::read_dir(dir.path()).expect("readable") {
        assert_eq!(e.expect("entry").file_name(), "data");
    }
});
