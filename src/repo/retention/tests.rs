//! Property test: random archives (timelines, gaps, backups, times) under random retention
//! settings. After the plan is carried out every kept backup is restorable, nothing the
//! settings protect is gone, nothing before the cutoff but history files remains, no
//! timeline gains a hole, and a prune killed after any number of removals finishes with
//! the same result when run again.

use super::*;
use crate::pg::walname::segment_name;
use crate::repo::backups::{BackupRecord, assess};
use crate::repo::inventory::summarize;
use crate::repo::{ListedObject, Listing};
use std::collections::BTreeMap;

const SEG: u32 = 16 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn object(name: &str) -> ListedObject {
    ListedObject {
        name: WalFileName::parse(name).unwrap(),
        stored_bytes: 1000,
        modified: None,
    }
}

fn record(tli: u32, start: u64, stop: u64, stopped_at: i64) -> BackupRecord {
    let start_segment = segment_name(tli, start, SEG);
    let start_lsn = format!("{:X}/{:X}", start >> 8, ((start & 0xFF) << 24) | 0x28);
    BackupRecord {
        name: format!("{start_segment}.00000028.backup"),
        label: String::new(),
        stop_lsn: format!("{:X}/{:X}", stop >> 8, ((stop & 0xFF) << 24) | 0x100),
        start_lsn,
        start_segment,
        stop_segment: segment_name(tli, stop, SEG),
        start_timeline: tli,
        stop_timeline: tli,
        start_time: String::new(),
        stop_time: String::new(),
        stopped_at: Some(stopped_at),
    }
}

/// A random archive: timeline 1, maybe a branch to timeline 2, holes, and backups.
fn archive(rng: &mut Rng) -> (Vec<ListedObject>, Vec<BackupRecord>) {
    let first = rng.below(300);
    let len = 1 + rng.below(600);
    let branch = (rng.chance(40)).then(|| first + rng.below(len));
    let mut objects = Vec::new();
    for n in first..first + len {
        if rng.chance(2) {
            continue; // a hole
        }
        match branch {
            Some(b) if n >= b => {
                objects.push(object(&segment_name(2, n, SEG)));
                if n == b {
                    objects.push(object(&format!("{}.partial", segment_name(1, n, SEG))));
                }
            }
            _ => objects.push(object(&segment_name(1, n, SEG))),
        }
    }
    if branch.is_some() {
        objects.push(object("00000002.history"));
    }
    let mut records: Vec<BackupRecord> = Vec::new();
    let mut at = 1_000_000 + rng.below(86_400) as i64;
    let mut start = first;
    for _ in 0..rng.below(7) {
        start += rng.below(len / 3 + 1);
        let stop = start + rng.below(3);
        at += rng.below(3 * 86_400) as i64;
        let tli = match branch {
            Some(b) if start >= b => 2,
            _ => 1,
        };
        let mut r = record(tli, start, stop, at);
        if rng.chance(70) {
            r.label = "stored".into(); // see `assessed`
        }
        if !records.iter().any(|x| x.name == r.name) {
            objects.push(object(&r.name));
            records.push(r);
        }
    }
    objects.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    (objects, records)
}

fn retention(rng: &mut Rng, objects: &[ListedObject]) -> Retention {
    loop {
        let r = Retention {
            keep_backups: rng.chance(60).then(|| 1 + rng.below(4) as u32),
            keep_days: rng.chance(40).then(|| rng.below(10) as u32),
            before: rng
                .chance(25)
                .then(|| {
                    objects[rng.below(objects.len() as u64) as usize]
                        .name
                        .clone()
                })
                .filter(|n| n.kind() == WalKind::Segment),
        };
        if !r.is_empty() {
            return r;
        }
    }
}

/// Carry out removals on the listing and the records.
fn apply(
    objects: &[ListedObject],
    records: &[BackupRecord],
    remove: &[ListedObject],
) -> (Vec<ListedObject>, Vec<BackupRecord>) {
    let gone = |n: &str| remove.iter().any(|r| r.name.as_str() == n);
    (
        objects
            .iter()
            .filter(|o| !gone(o.name.as_str()))
            .cloned()
            .collect(),
        records.iter().filter(|r| !gone(&r.name)).cloned().collect(),
    )
}

/// `assess`, then what `backup::catalog::attach_stored` does: the records labelled "stored"
/// have their data in the repository; the others (pg_basebackup, re-seeds) are never
/// restorable.
fn assessed(records: &[BackupRecord], objects: &[ListedObject]) -> Vec<Backup> {
    let mut backups = assess(records.to_vec(), objects, SEG);
    for b in &mut backups {
        b.stored = (b.record.label == "stored").then(|| b.record.name.clone());
        b.restorable &= b.stored.is_some();
    }
    backups
}

fn run(objects: &[ListedObject], records: &[BackupRecord], r: &Retention, now: i64) -> Plan {
    let backups = assessed(records, objects);
    plan(objects, &backups, r, SEG, now, &[]).unwrap()
}

fn gaps(objects: &[ListedObject]) -> BTreeMap<u32, u64> {
    let listing = Listing {
        objects: objects.to_vec(),
        strays: Vec::new(),
    };
    summarize(&listing, SEG)
        .into_iter()
        .map(|t| (t.timeline, t.missing))
        .collect()
}

#[test]
fn prune_keeps_every_retained_backup_restorable_and_nothing_else() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for case in 0..1500 {
        let (objects, records) = archive(&mut rng);
        let r = retention(&mut rng, &objects);
        let now = 1_000_000 + rng.below(30 * 86_400) as i64;
        let ctx = format!("case {case}: {r:?}");
        let before = assessed(&records, &objects);
        let p = run(&objects, &records, &r, now);
        let (left, left_records) = apply(&objects, &records, &p.remove);
        let after = assessed(&left_records, &left);
        let cutoff = p.cutoff.as_ref().map_or(0, |c| c.0);

        // kept backups are still listed and exactly as restorable as before
        for pb in &p.backups {
            let was = before.iter().find(|b| b.record.name == pb.name).unwrap();
            let now_b = after.iter().find(|b| b.record.name == pb.name);
            match pb.kept {
                Some(_) => {
                    assert_eq!(now_b.map(|b| b.restorable), Some(was.restorable), "{ctx}")
                }
                None => assert!(now_b.is_none() && was.start_segno < cutoff, "{ctx}"),
            }
        }
        // the settings' promises
        let restorable: Vec<&Backup> = before.iter().rev().filter(|b| b.restorable).collect();
        let kept = |b: &Backup| after.iter().any(|a| a.record.name == b.record.name);
        if r.before.is_none() {
            if let Some(n) = r.keep_backups {
                for b in restorable.iter().take(n as usize) {
                    assert!(kept(b), "{ctx}: {} is one of the {n} newest", b.record.name);
                }
            }
            if let Some(d) = r.keep_days {
                let since = now - i64::from(d) * 86_400;
                let mut anchored = false;
                for b in &restorable {
                    if b.record.stopped_at.unwrap() >= since {
                        assert!(kept(b), "{ctx}: {} is inside the window", b.record.name);
                    } else if !anchored {
                        assert!(kept(b), "{ctx}: {} anchors the window", b.record.name);
                        anchored = true;
                    }
                }
            }
            if let Some(newest) = restorable.first() {
                assert!(kept(newest), "{ctx}: the newest restorable backup stays");
            }
        }
        if !r.retains() {
            for b in before.iter().filter(|b| b.stored.is_some()) {
                assert!(kept(b), "{ctx}: --before removed stored {}", b.record.name);
            }
        }
        // the cutoff is exactly where the oldest backup the settings protect starts:
        // nothing more is kept than they ask for
        let mut protect: Vec<&Backup> = Vec::new();
        if let Some(n) = r.keep_backups {
            protect.extend(restorable.iter().take(n as usize));
        }
        if let Some(d) = r.keep_days {
            let since = now - i64::from(d) * 86_400;
            let inside = restorable
                .iter()
                .take_while(|b| b.record.stopped_at.unwrap() >= since);
            protect.extend(inside.clone());
            protect.extend(restorable.get(inside.count()));
        }
        let by_retention = (r.keep_backups.is_some() || r.keep_days.is_some())
            .then(|| protect.iter().map(|b| b.start_segno).min().unwrap_or(0));
        let oldest_stored = before
            .iter()
            .filter(|b| b.stored.is_some())
            .map(|b| b.start_segno)
            .min();
        let by_before = r.before.as_ref().map(|b| {
            let n = b.segment_number(SEG).unwrap();
            match oldest_stored {
                Some(s) if !r.retains() => n.min(s),
                _ => n,
            }
        });
        let expected = match (by_retention, by_before) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap(),
        };
        assert_eq!(cutoff, expected, "{ctx}");
        // nothing before the cutoff but history files; everything from it on
        for o in &objects {
            let n = o.name.segment_number(SEG).unwrap_or(u64::MAX);
            let gone = !left.iter().any(|l| l.name == o.name);
            let expected_gone = match o.name.kind() {
                WalKind::TimelineHistory => false,
                _ => n < cutoff,
            };
            assert_eq!(gone, expected_gone, "{ctx}: {}", o.name.as_str());
        }
        // no new holes
        let (g0, g1) = (gaps(&objects), gaps(&left));
        for (tli, missing) in &g1 {
            assert!(
                missing <= g0.get(tli).unwrap_or(&0),
                "{ctx}: timeline {tli} gained a hole"
            );
        }
        // idempotent, and a prune killed after any removal finishes the same way
        assert!(
            run(&left, &left_records, &r, now).remove.is_empty(),
            "{ctx}: second prune"
        );
        let k = rng.below(p.remove.len() as u64 + 1) as usize;
        let (mid, mid_records) = apply(&objects, &records, &p.remove[..k]);
        let mid_after = assessed(&mid_records, &mid);
        for b in &mid_after {
            let was = before
                .iter()
                .find(|x| x.record.name == b.record.name)
                .unwrap();
            assert_eq!(
                b.restorable, was.restorable,
                "{ctx}: killed after {k}: {}",
                b.record.name
            );
        }
        let resumed = run(&mid, &mid_records, &r, now);
        let (end, _) = apply(&mid, &mid_records, &resumed.remove);
        let names = |v: &[ListedObject]| {
            v.iter()
                .map(|o| o.name.as_str().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&end),
            names(&left),
            "{ctx}: killed after {k} removals"
        );
    }
}

#[test]
fn without_a_restorable_backup_retention_removes_nothing() {
    let objects: Vec<ListedObject> = (1..20).map(|n| object(&segment_name(1, n, SEG))).collect();
    let r = Retention {
        keep_backups: Some(1),
        ..Retention::default()
    };
    let p = run(&objects, &[], &r, 0);
    assert!(p.remove.is_empty() && p.cutoff.is_none());
    assert!(p.notes[0].contains("no base backup"));
    // a backup whose WAL is missing is no anchor either
    let mut objects = objects;
    let rec = record(1, 30, 31, 5);
    objects.push(object(&rec.name));
    let p = run(&objects, &[rec], &r, 0);
    assert!(p.remove.is_empty(), "{:?}", p.remove);
    assert!(p.notes[0].contains("restorable"));
    assert!(plan(&objects, &[], &Retention::default(), SEG, 0, &[]).is_err());
}

#[test]
fn before_works_like_pg_archivecleanup_across_timelines() {
    let objects: Vec<ListedObject> = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003.partial",
        "00000002.history",
        "000000020000000000000003",
        "000000020000000000000004",
    ]
    .iter()
    .map(|n| object(n))
    .collect();
    let r = Retention {
        before: Some(WalFileName::parse("000000020000000000000004").unwrap()),
        ..Retention::default()
    };
    let p = run(&objects, &[], &r, 0);
    let removed: Vec<&str> = p.remove.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        removed,
        [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003.partial",
            "000000020000000000000003"
        ]
    );
}

fn stored(mut r: BackupRecord) -> BackupRecord {
    r.label = "stored".into();
    r
}

#[test]
fn before_alone_as_archive_cleanup_command_keeps_every_stored_backup_and_its_wal() {
    let mut objects: Vec<ListedObject> =
        (1..=30).map(|n| object(&segment_name(1, n, SEG))).collect();
    // a record without data at 3, stored backups at 5 and 12
    let records = vec![
        record(1, 3, 4, 1),
        stored(record(1, 5, 6, 2)),
        stored(record(1, 12, 13, 3)),
    ];
    objects.extend(records.iter().map(|r| object(&r.name)));
    let r = Retention {
        before: Some(WalFileName::parse(&segment_name(1, 20, SEG)).unwrap()),
        ..Retention::default()
    };
    let p = run(&objects, &records, &r, 0);
    assert_eq!(p.cutoff.as_ref().map(|c| c.0), Some(5), "{:?}", p.notes);
    let removed: Vec<&str> = p.remove.iter().map(|o| o.name.as_str()).collect();
    let mut expected = vec![records[0].name.clone()];
    expected.extend((1..5).map(|n| segment_name(1, n, SEG)));
    assert_eq!(removed, expected);
    let fates: Vec<Option<KeepReason>> = p.backups.iter().map(|b| b.kept).collect();
    assert_eq!(
        fates,
        [None, Some(KeepReason::Stored), Some(KeepReason::Stored)]
    );
    assert!(p.notes[0].contains("removes WAL only"), "{:?}", p.notes);
}

#[test]
fn a_reseed_record_without_stored_data_does_not_count_toward_keep_backups() {
    let mut objects: Vec<ListedObject> =
        (1..=30).map(|n| object(&segment_name(1, n, SEG))).collect();
    // the only stored backup at 5; a re-seed (basebackup --to) left its record at 20
    let records = vec![stored(record(1, 5, 6, 1)), record(1, 20, 21, 2)];
    objects.extend(records.iter().map(|r| object(&r.name)));
    let r = Retention {
        keep_backups: Some(1),
        ..Retention::default()
    };
    let p = run(&objects, &records, &r, 10);
    assert_eq!(p.cutoff.as_ref().map(|c| c.0), Some(5));
    assert_eq!(p.backups[0].kept, Some(KeepReason::Newest));
    assert_eq!(p.backups[1].kept, Some(KeepReason::AfterCutoff));
    assert!(!p.backups[1].restorable);
    assert_eq!(p.remove.len(), 4, "segments 1..4 only");
    // with only re-seed records there is no backup to keep WAL for, and nothing goes
    let p = run(&objects, &records[1..], &r, 10);
    assert!(p.remove.is_empty() && p.cutoff.is_none(), "{:?}", p.remove);
}

#[test]
fn a_readers_hold_keeps_its_wal_and_every_backup_after_it() {
    let mut objects: Vec<ListedObject> =
        (1..=30).map(|n| object(&segment_name(1, n, SEG))).collect();
    let records = vec![stored(record(1, 5, 6, 1)), stored(record(1, 20, 21, 2))];
    objects.extend(records.iter().map(|r| object(&r.name)));
    let r = Retention {
        keep_backups: Some(1),
        ..Retention::default()
    };
    let backups = assessed(&records, &objects);
    // a point-in-time restore of the backup at 5 is under way
    let holds = [(5, "restore of b5".to_string())];
    let p = plan(&objects, &backups, &r, SEG, 10, &holds).unwrap();
    assert_eq!(p.cutoff.as_ref().map(|c| c.0), Some(5));
    assert_eq!(p.remove.len(), 4, "segments 1..4 only: {:?}", p.remove);
    assert_eq!(p.backups[0].kept, Some(KeepReason::AfterCutoff));
    assert!(
        p.notes.iter().any(|n| n.contains("restore of b5")),
        "{:?}",
        p.notes
    );
    // --before too
    let r = Retention {
        before: Some(WalFileName::parse(&segment_name(1, 25, SEG)).unwrap()),
        ..Retention::default()
    };
    let p = plan(&objects, &backups, &r, SEG, 10, &[(3, "x".into())]).unwrap();
    assert_eq!(p.cutoff.as_ref().map(|c| c.0), Some(3));
}
