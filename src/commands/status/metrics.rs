//! `walship status --prometheus`: the status report in Prometheus' text exposition format, for
//! node_exporter's textfile collector. Gauges only; every name starts with `walship_`. A part of
//! `status`, not a command of its own: it renders the report `status` made, and nothing else.

use std::fmt::Write;

use super::StatusReport;

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP walship_{name} {help}");
        let _ = writeln!(self.0, "# TYPE walship_{name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(self.0, "walship_{name}{labels} {v}");
        }
    }
    fn one(&mut self, name: &str, help: &str, v: f64) {
        self.metric(name, help, &[(String::new(), v)]);
    }
}

pub fn render(r: &StatusReport, now: i64) -> String {
    let mut o = Out(String::new());
    let per_tli = |f: &dyn Fn(&crate::repo::inventory::TimelineSummary) -> f64| {
        r.timelines
            .iter()
            .map(|t| (format!("{{timeline=\"{}\"}}", t.timeline), f(t)))
            .collect::<Vec<_>>()
    };
    o.one(
        "repository_up",
        "1 if the repository was read (it has an identity file).",
        f64::from(u8::from(r.system_identifier.is_some())),
    );
    o.metric(
        "segments",
        "WAL segments in the repository.",
        &per_tli(&|t| t.segments as f64),
    );
    o.metric(
        "missing_segments",
        "Segments missing between a timeline's first and last.",
        &per_tli(&|t| t.missing as f64),
    );
    o.metric(
        "stored_bytes",
        "Bytes stored, headers included.",
        &per_tli(&|t| t.stored_bytes as f64),
    );
    o.metric(
        "original_bytes",
        "Bytes of the WAL stored, uncompressed.",
        &per_tli(&|t| t.original_bytes as f64),
    );
    o.one("backups", "Base backups recorded.", r.backups.len() as f64);
    o.one(
        "backups_restorable",
        "Stored base backups restore can use (data and all WAL in the repository).",
        r.backups.iter().filter(|b| b.restorable).count() as f64,
    );
    if let Some(t) = r
        .backups
        .iter()
        .rev()
        .filter(|b| b.restorable)
        .find_map(|b| b.record.stopped_at)
    {
        o.one(
            "newest_restorable_backup_age_seconds",
            "Seconds since the newest restorable backup stopped.",
            (now - t) as f64,
        );
    }
    o.one(
        "damaged_backup_records",
        "Backup history files that cannot be read.",
        r.damaged_backup_records.len() as f64,
    );
    o.one(
        "strays",
        "Files in the repository that are not walship objects.",
        r.strays.len() as f64,
    );
    if let Some(last) = &r.drills.last {
        o.one(
            "drill_last_passed",
            "1 if the newest drill passed.",
            f64::from(u8::from(last.passed)),
        );
        o.one(
            "drill_last_timestamp_seconds",
            "When the newest drill ended, passed or failed.",
            last.finished_at,
        );
    }
    if let Some(p) = &r.drills.last_passed {
        o.one(
            "drill_last_success_timestamp_seconds",
            "When the newest drill that passed ended.",
            p.finished_at,
        );
        if let Some(rto) = p.rto_seconds {
            o.one(
                "drill_rto_seconds",
                "Newest passed drill: seconds from the start of the restore until the copy had replayed everything and opened.",
                rto,
            );
        }
        if let Some(rpo) = p.rpo_seconds {
            o.one(
                "drill_rpo_seconds",
                "Newest passed drill: age of the newest archived commit when the drill started.",
                rpo,
            );
        }
    }
    if let Some(pg) = &r.postgres {
        o.one(
            "pg_up",
            "1 if PostgreSQL answered.",
            f64::from(u8::from(pg.view.is_some())),
        );
        if let Some(v) = &pg.view {
            o.one(
                "pg_in_recovery",
                "1 on a standby.",
                f64::from(u8::from(v.in_recovery)),
            );
            o.one(
                "pg_matches_repository",
                "1 if the server's system identifier is the repository's.",
                f64::from(u8::from(pg.matches_repository == Some(true))),
            );
            o.one(
                "pg_archived_count",
                "pg_stat_archiver.archived_count.",
                v.archived_count as f64,
            );
            o.one(
                "pg_failed_count",
                "pg_stat_archiver.failed_count.",
                v.failed_count as f64,
            );
            o.one(
                "pg_archiver_failing",
                "1 if the last archive attempt failed.",
                f64::from(u8::from(v.archiver_failing)),
            );
            if let Some(a) = v.last_archived_age_seconds {
                o.one(
                    "pg_last_archived_age_seconds",
                    "Seconds since the last successful archive.",
                    a,
                );
            }
            if let Some(n) = pg.archive_behind_segments {
                o.one(
                    "pg_archive_behind_segments",
                    "Complete segments not yet in the repository.",
                    n as f64,
                );
            }
            if let Some(n) = pg.archived_not_replayed_segments {
                o.one(
                    "pg_archived_not_replayed_segments",
                    "Standby: archived segments beyond the replay position.",
                    n as f64,
                );
            }
            if let Some(l) = v.replay_lag_seconds {
                o.one(
                    "pg_replay_lag_seconds",
                    "Standby: age of the last replayed transaction.",
                    l,
                );
            }
        }
    }
    o.0
}
