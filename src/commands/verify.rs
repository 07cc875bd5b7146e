//! `walship verify`: read every object back, decompress it and compare its length, payload
//! digest and the SHA-256 of the original with its header (fetch checks all but the last), check that every timeline is continuous and that every
//! backup record is readable and has all the WAL it needs, and name every problem. Exit 0 only for a repository with none. Objects are checked in parallel, one
//! repository connection per thread.

use std::time::Instant;

use super::human_bytes;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::WalFileName;
use crate::pool::Pool;
use crate::repo::Repository;
use crate::repo::backups::catalog;
use crate::repo::inventory::summarize;
use crate::repo::read::verify_object;

pub fn run(config: &Config) -> Result<()> {
    let started = Instant::now();
    let repo = config.open_repository()?;
    // A root without walship.repo is an unmounted file system or a wrong path: a check that
    // passed there would hide that the archive is not where it should be.
    let identity = repo.require_identity()?.clone();
    let listing = repo.list_objects()?;
    let mut problems: Vec<String> = Vec::new();
    for s in &listing.strays {
        problems.push(format!(
            "{s}: not a walship object (a WAL name in the wrong place, or a foreign file)"
        ));
    }
    for t in summarize(&listing, identity.wal_segment_size) {
        for g in t.gaps {
            problems.push(format!(
                "timeline {}: segments {} .. {} are missing ({} segments)",
                t.timeline, g.from, g.to, g.segments
            ));
        }
    }
    let (backups, damaged) = catalog(&repo, &listing.objects, identity.wal_segment_size)?;
    for e in damaged {
        problems.push(e.message);
    }
    for b in &backups {
        if b.missing_segments > 0 {
            problems.push(format!(
                "backup {} is not restorable: {} of the {} segments from {} to {} are missing",
                b.record.name,
                b.missing_segments,
                b.wal_segments,
                b.record.start_segment,
                b.record.stop_segment
            ));
        }
        if let Some(h) = &b.missing_history {
            problems.push(format!(
                "backup {} is not restorable: timeline history file {h} is missing",
                b.record.name
            ));
        }
    }

    let (stored_backups, damaged) = crate::backup::stored_backups(&repo)?;
    problems.extend(damaged.into_iter().map(|e| e.message));
    for m in &stored_backups {
        if let Err(e) = crate::backup::catalog::check_stored_object(&repo, m) {
            problems.push(e.message);
        }
        if !backups.iter().any(|b| b.record.name == m.backup_record) {
            problems.push(format!(
                "stored backup {}: its backup history file {} is not in the repository",
                m.id, m.backup_record
            ));
        }
    }

    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .min(4);
    let pool = {
        let config = config.clone();
        Pool::new(
            threads,
            move |conn: &mut Option<Repository>, name: WalFileName| {
                let result = (|| {
                    if conn.is_none() {
                        *conn = Some(config.open_repository()?);
                    }
                    verify_object(conn.as_ref().expect("connected above"), &name)
                })();
                if result
                    .as_ref()
                    .is_err_and(|e| e.kind == crate::error::Kind::Unavailable)
                {
                    *conn = None;
                }
                (name, result)
            },
        )?
    };
    let total = listing.objects.len();
    for o in &listing.objects {
        pool.submit(o.name.clone());
    }
    let mut original = 0u64;
    // Objects per key id (encrypted repository), so that a rotation shows how far it got.
    let mut per_key: std::collections::BTreeMap<String, usize> = Default::default();
    let mut keys_missing = false;
    for _ in 0..total {
        let Some((name, result)) = pool.wait_done(std::time::Duration::from_secs(3600)) else {
            break;
        };
        match result {
            Ok(h) => {
                original += h.original_len;
                if let Some(id) = h.key_id {
                    *per_key.entry(crate::repo::object::hex(&id)).or_default() += 1;
                }
            }
            Err(e) => {
                keys_missing |= e.kind == crate::error::Kind::Conflict;
                problems.push(format!("{}: {}", name.as_str(), e.message))
            }
        }
    }
    pool.close();
    let stored: u64 = listing.objects.iter().map(|o| o.stored_bytes).sum();
    println!(
        "verified {total} objects and {} stored backups in {} ({} stored, {} original) in {:.1} s",
        stored_backups.len(),
        repo.describe(),
        human_bytes(stored),
        human_bytes(original),
        started.elapsed().as_secs_f64()
    );
    if identity.key_id.is_some() {
        let current = repo.keys().map(|k| k.current().id_hex());
        let known = repo.key_ids()?;
        let mut line = Vec::new();
        for id in known
            .iter()
            .chain(per_key.keys().filter(|k| !known.contains(k)))
        {
            line.push(format!(
                "{} under key {id}{}{}",
                per_key.get(id).copied().unwrap_or(0),
                if Some(id) == current.as_ref() {
                    " (current)"
                } else {
                    ""
                },
                if known.contains(id) {
                    ""
                } else {
                    " (not a key of this repository)"
                }
            ));
        }
        println!("encrypted: {}", line.join(", "));
    }
    if problems.is_empty() {
        println!("no problems found");
        return Ok(());
    }
    problems.sort();
    for p in &problems {
        println!("PROBLEM: {p}");
    }
    if keys_missing {
        return Err(Error::conflict(format!(
            "{} problem(s) found in {}; objects under a key this configuration lacks were not checked",
            problems.len(),
            repo.describe()
        ))
        .with_hint("Give every key the repository uses (encryption_key_file: one per line, current first)."));
    }
    Err(Error::corrupt(format!("{} problem(s) found in {}", problems.len(), repo.describe())).with_hint(
        "Each PROBLEM line names an object. Restore damaged or missing objects from another copy of the archive; \
         missing segments can be pushed again from a server that still has them.",
    ))
}
