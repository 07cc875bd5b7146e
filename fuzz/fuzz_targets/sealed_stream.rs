//! The opening of a sealed stream (crypto::OpenReader, FORMAT.md "Encryption"): any bytes are
//! refused or opened without a panic, a valid stream with one byte flipped never opens, and
//! nothing is handed out that did not authenticate.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use walship::crypto::{Keyring, OpenReader, SealWriter};

fuzz_target!(|data: &[u8]| {
    let key = Keyring::parse(&"5a".repeat(32), "fuzz").unwrap().current().clone();
    // arbitrary bytes as a sealed stream: an error, never a panic (and a forgery that opens
    // would need the key)
    let mut out = Vec::new();
    assert!(OpenReader::new(data, &key, b"aad").read_to_end(&mut out).is_err());
    // the input sealed, then one byte flipped where the input says
    if data.is_empty() {
        return;
    }
    let mut w = SealWriter::new(Vec::new(), &key, b"aad").unwrap();
    w.write_all(data).unwrap();
    let mut sealed = w.finish().unwrap();
    let mut back = Vec::new();
    OpenReader::new(&sealed[..], &key, b"aad").read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    let at = usize::from(data[0]) * 257 % sealed.len();
    sealed[at] ^= 1 << (data[data.len() - 1] % 8);
    let mut spoiled = Vec::new();
    assert!(OpenReader::new(&sealed[..], &key, b"aad").read_to_end(&mut spoiled).is_err());
});
