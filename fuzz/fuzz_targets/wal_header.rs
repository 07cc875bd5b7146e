//! The WAL page header reader: any bytes are refused or parsed, never a panic; a parsed header
//! can be checked against any name and length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::pg::{WalFileName, WalHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = WalHeader::parse(data, "fuzz") {
        let name = WalFileName::parse("000000010000000000000001").expect("a valid name");
        let _ = h.check_matches(&name, data.len() as u64);
    }
});
