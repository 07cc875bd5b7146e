//! The repository object header reader: any 128 bytes (or fewer) are refused or decoded, and a
//! decoded header encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::repo::object::ObjectHeader;

fuzz_target!(|data: &[u8]| {
    for name in ["000000010000000000000001", "00000002.history"] {
        if let Ok(h) = ObjectHeader::decode(data, name) {
            assert_eq!(&h.encode()[..], &data[..h.encode().len()]);
        }
    }
});
