//! The unpacking as a whole, on small streams made by `backup::source`: byte-for-byte restores,
//! damaged and cut streams, entries and links that would lead outside the target, and
//! pg_control written last and never over something there.

use std::path::Path;

use super::*;
use crate::backup::source::{Item, StreamWriter, plan};
use crate::backup::{FORMAT_NAME, FORMAT_VERSION};
use crate::compress::Compression;

fn header() -> StreamHeader {
    StreamHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        id: "20261122T210000Z".into(),
        system_identifier: "1".into(),
        pg_version: 15,
        tablespaces: Vec::new(),
    }
}

fn manifest() -> Manifest {
    toml::from_str(&format!(
        "format = '{FORMAT_NAME}'\nversion = {FORMAT_VERSION}\nid = '20261122T210000Z'\nlabel = 'l'\n\
         system_identifier = '1'\npg_version = 15\nwal_segment_size = 16777216\ntimeline = 1\n\
         start_lsn = '0/2000028'\nstop_lsn = '0/2000100'\nstart_segment = '000000010000000000000002'\n\
         stop_segment = '000000010000000000000002'\nbackup_record = 'x'\nstarted_at = 0\nstopped_at = 0\n\
         compression = 'zstd'\noriginal_bytes = 0\nfiles = []\n"
    ))
    .unwrap()
}

/// A small data directory and its backup stream.
fn stream_in(dir: &Path, compression: Compression) -> Vec<u8> {
    for (f, n) in [
        ("PG_VERSION", 3usize),
        ("base/1/1259", 20000),
        ("global/pg_control", 8192),
    ] {
        let p = dir.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
    }
    let plan = plan(dir).unwrap();
    let enc = compression
        .stream_encoder(Vec::new(), compression.default_level(), 1)
        .unwrap();
    let mut w = StreamWriter::new(enc, &header()).unwrap();
    let progress = Progress::silent();
    for item in &plan.items {
        w.add(item, &progress).unwrap();
    }
    w.add_generated("data/backup_label", b"START WAL LOCATION: 0/2000028\n")
        .unwrap();
    w.finish(&mut manifest()).unwrap().finish().unwrap()
}

fn stream_of(dir: &Path) -> Vec<u8> {
    stream_in(dir, Compression::Zstd)
}

fn target(dir: &Path) -> Target {
    Target {
        pgdata: dir.to_path_buf(),
        tablespace_map: Vec::new(),
        force: false,
    }
}

fn restore(stream: &[u8], out: &Path, expected: Option<&StoredData>) -> Result<Restored> {
    let prepared = prepare(&target(out), "test", &[])?;
    unpack(stream, prepared, expected, &Progress::silent())
}

#[test]
fn a_stream_restores_byte_for_byte_and_pg_control_comes_last() {
    let d = tempfile::tempdir().unwrap();
    let stream = stream_of(&d.path().join("src"));
    let out = d.path().join("out");
    let r = restore(&stream, &out, None).unwrap();
    assert!(
        !out.join("global/pg_control").exists(),
        "pg_control before complete()"
    );
    assert!(out.join(INCOMPLETE_MARKER).exists());
    r.complete().unwrap();
    for f in ["PG_VERSION", "base/1/1259", "global/pg_control"] {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(d.path().join("src").join(f)).unwrap()
        );
    }
    assert!(!out.join(INCOMPLETE_MARKER).exists());
    // a second restore into the now complete directory is refused without --force
    let e = restore(&stream, &out, None).err().unwrap();
    assert_eq!(e.kind, crate::error::Kind::Conflict, "{e}");
}

#[test]
fn a_cut_or_damaged_stream_never_yields_a_startable_directory() {
    let d = tempfile::tempdir().unwrap();
    let stream = stream_of(&d.path().join("src"));
    for (i, damaged) in [
        stream[..stream.len() / 2].to_vec(),
        stream[..stream.len() - 8].to_vec(),
        {
            let mut s = stream.clone();
            let n = s.len();
            s[n / 3] ^= 1;
            s
        },
    ]
    .into_iter()
    .enumerate()
    {
        let out = d.path().join(format!("out{i}"));
        match restore(&damaged, &out, None) {
            Ok(_) => panic!("case {i}: a damaged stream was accepted"),
            Err(e) => assert_eq!(e.kind, crate::error::Kind::Corrupt, "case {i}: {e}"),
        }
        assert!(!out.join("global/pg_control").exists(), "case {i}");
    }
    // the repository's length and checksum are checked too
    let out = d.path().join("outsum");
    let wrong = StoredData {
        object: "data.tar.zst".into(),
        bytes: stream.len() as u64,
        sha256: "00".into(),
    };
    let e = restore(&stream, &out, Some(&wrong)).err().unwrap();
    assert!(e.message.contains("SHA-256"), "{e}");
}

#[test]
fn entries_outside_the_target_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let h = toml::to_string(&header()).unwrap();
    let mut th = tar::Header::new_gnu();
    th.set_size(h.len() as u64);
    th.set_mode(0o600);
    b.append_data(&mut th, HEADER_ENTRY, h.as_bytes()).unwrap();
    let mut evil = tar::Header::new_gnu();
    evil.set_size(1);
    evil.set_mode(0o600);
    // tar refuses to *write* "..", so the name is set in the raw header
    evil.as_old_mut().name[..16].copy_from_slice(b"data/../../evilX");
    evil.set_cksum();
    b.append(&evil, &b"x"[..]).unwrap();
    let stream = b.into_inner().unwrap();
    let out = d.path().join("out");
    let e = restore(&stream, &out, None).err().unwrap();
    assert_eq!(e.kind, crate::error::Kind::Corrupt, "{e}");
    assert!(!d.path().join("evilX").exists());
}

/// The source stream with `extra` items put in before its last file.
fn stream_with(dir: &Path, extra: Vec<Item>) -> Vec<u8> {
    stream_of(dir);
    let mut plan = plan(dir).unwrap();
    let last = plan.items.pop().unwrap();
    plan.items.extend(extra);
    plan.items.push(last);
    let mut w = StreamWriter::new(Vec::new(), &header()).unwrap();
    for item in &plan.items {
        w.add(item, &Progress::silent()).unwrap();
    }
    w.finish(&mut manifest()).unwrap()
}

#[test]
fn a_symlink_from_the_stream_never_leads_a_restore_into_another_cluster() {
    let d = tempfile::tempdir().unwrap();
    let other = d.path().join("other");
    fs::create_dir_all(other.join("global")).unwrap();
    fs::write(other.join("global/pg_control"), b"the other cluster's").unwrap();
    fs::write(
        other.join("postgresql.auto.conf"),
        b"the other's settings\n",
    )
    .unwrap();
    // links from the stream are not made (the restore says so): everything is written into
    // the restored directory itself
    for (i, (path, to)) in [
        ("data/global", other.join("global")),
        (
            "data/postgresql.auto.conf",
            other.join("postgresql.auto.conf"),
        ),
        ("data/base/1/evil", other.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        let link = Item::Symlink {
            path: path.into(),
            target: to,
        };
        let stream = stream_with(&d.path().join(format!("src{i}")), vec![link]);
        let out = d.path().join(format!("out{i}"));
        let r = restore(&stream, &out, None).unwrap_or_else(|e| panic!("{path}: {e}"));
        crate::pg::server::append_auto_conf(&out, "restore_command = 'x'\n").unwrap();
        r.complete().unwrap();
        assert!(
            !out.join(path.strip_prefix("data/").unwrap()).is_symlink(),
            "{path}"
        );
        assert!(out.join("global/pg_control").is_file());
    }
    assert_eq!(
        fs::read(other.join("global/pg_control")).unwrap(),
        b"the other cluster's"
    );
    assert_eq!(
        fs::read(other.join("postgresql.auto.conf")).unwrap(),
        b"the other's settings\n"
    );
    assert_eq!(fs::read_dir(&other).unwrap().count(), 2);
    // a tablespace link the header does not declare: the stream is not what it says
    let link = Item::Symlink {
        path: "data/pg_tblspc/16999".into(),
        target: other.clone(),
    };
    let stream = stream_with(&d.path().join("src_ts"), vec![link]);
    let out = d.path().join("out_ts");
    let e = restore(&stream, &out, None)
        .err()
        .unwrap_or_else(|| panic!("an undeclared tablespace link was restored"));
    assert_eq!(e.kind, crate::error::Kind::Corrupt, "{e}");
    assert!(e.message.contains("pg_tblspc/16999"), "{e}");
    assert!(!out.join("pg_tblspc/16999").is_symlink());
}

#[test]
fn pg_control_is_never_written_over_a_file_that_is_there() {
    let d = tempfile::tempdir().unwrap();
    let stream = stream_of(&d.path().join("src"));
    let out = d.path().join("out");
    let r = restore(&stream, &out, None).unwrap();
    // something put a pg_control there meanwhile (a link to another cluster's, say)
    let other = d.path().join("other_pg_control");
    fs::write(&other, b"the other cluster's").unwrap();
    std::os::unix::fs::symlink(&other, out.join("global/pg_control")).unwrap();
    let e = r
        .complete()
        .err()
        .unwrap_or_else(|| panic!("pg_control replaced what was there"));
    assert!(e.message.contains("pg_control"), "{e}");
    assert_eq!(fs::read(&other).unwrap(), b"the other cluster's");
}
