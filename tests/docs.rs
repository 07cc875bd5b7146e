//! The documentation against the code: the Grafana dashboard in contrib/ queries only metrics
//! walship emits, and every relative link in the markdown documents resolves to a file.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `walship_*` identifier in a PromQL expression (or any text).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("walship_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        if start == 0 || !ident(b[start - 1]) {
            out.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// The query strings of a Grafana dashboard: every `expr`, and the template variables' queries.
fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The metric names `src/commands/status/metrics.rs` can emit: the first argument of each
/// `o.one(` and `o.metric(` call, a string literal, prefixed as the renderer prefixes it.
fn names_in_metrics_rs() -> BTreeSet<String> {
    let src = fs::read_to_string(root().join("src/commands/status/metrics.rs")).unwrap();
    let mut out = BTreeSet::new();
    for call in ["o.one(", "o.metric("] {
        for (at, _) in src.match_indices(call) {
            let rest = src[at + call.len()..].trim_start();
            let Some(lit) = rest.strip_prefix('"') else {
                continue;
            };
            let name = &lit[..lit.find('"').unwrap()];
            out.insert(format!("walship_{name}"));
        }
    }
    out
}

/// The metric names `walship status --prometheus` prints for a small local repository.
fn names_in_status_output(dir: &Path) -> BTreeSet<String> {
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let pgdata = dir.join("pgdata");
    let name = "000000010000000000000001";
    write_segment(&pgdata.join("pg_wal"), name, 7_300_000_000_000_000_021, 1);
    let (code, err) = run(walship()
        .arg("--repo")
        .arg(&repo)
        .current_dir(&pgdata)
        .arg("push")
        .arg(format!("pg_wal/{name}"))
        .arg(name));
    assert_eq!(code, 0, "{err}");
    let out = walship()
        .arg("--repo")
        .arg(&repo)
        .args(["status", "--prometheus"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_walship_emits() {
    let text = fs::read_to_string(root().join("contrib/grafana-walship.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(
        used.len() >= 15,
        "the dashboard should chart most of walship's metrics, found {used:?}"
    );

    let from_source = names_in_metrics_rs();
    let dir = tempfile::tempdir().unwrap();
    let emitted = names_in_status_output(dir.path());
    // what status printed without a PostgreSQL connection is a part of what the source can emit
    assert!(emitted.contains("walship_segments"), "{emitted:?}");
    let unknown: Vec<&String> = emitted.difference(&from_source).collect();
    assert!(
        unknown.is_empty(),
        "status --prometheus printed metrics this test cannot find in metrics.rs: {unknown:?}"
    );

    let known: BTreeSet<&String> = from_source.iter().chain(&emitted).collect();
    let made_up: Vec<&String> = used.iter().filter(|m| !known.contains(m)).collect();
    assert!(
        made_up.is_empty(),
        "contrib/grafana-walship.json queries metrics walship does not emit: {made_up:?} \
         (walship emits {from_source:?})"
    );
}

#[test]
fn metric_names_are_found_in_promql() {
    let got = metric_names(
        "sum by (instance) (walship_stored_bytes{instance=~\"$i\"}) / rate(walship_pg_failed_count[5m]) + my_walship_x",
    );
    let want: BTreeSet<String> = ["walship_stored_bytes", "walship_pg_failed_count"]
        .map(String::from)
        .into();
    assert_eq!(got, want);
}

/// README.md, CONTRIBUTING.md, SECURITY.md, CHANGELOG.md, FORMAT.md and everything under docs/.
fn markdown_documents() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "CHANGELOG.md",
        "FORMAT.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .filter(|p| p.exists())
    .collect();
    walk(&root().join("docs"), &mut out);
    out
}

/// The targets of the inline links `[text](target)` outside fenced code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // drop code spans: `[x](y)` inside backticks is not a link
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let docs = markdown_documents();
    assert!(
        docs.iter().any(|p| p.ends_with("docs/guide/archiving.md")),
        "{docs:?}"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = fs::read_to_string(doc).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = doc.parent().unwrap().join(path);
            checked += 1;
            if !resolved.exists() {
                broken.push(format!(
                    "{}: {target}",
                    doc.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(
        broken.is_empty(),
        "links that resolve to nothing: {broken:#?}"
    );
}

#[test]
fn link_targets_skip_code() {
    let text = "see [a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n[d](w.md#part)";
    assert_eq!(link_targets(text), ["x.md", "w.md#part"]);
}

// ---- docs/reference: generated from the clap definitions ----

/// The command line as users see it, made deterministic: a fixed width, and environment
/// variables named without the values this process happens to have.
fn reference_command() -> clap::Command {
    let mut cmd = settle(<walship::cli::Cli as clap::CommandFactory>::command());
    cmd.build();
    cmd
}

fn settle(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd
        .term_width(100)
        .max_term_width(100)
        .mut_args(|a| a.hide_env_values(true));
    for n in names {
        cmd = cmd.mut_subcommand(n, settle);
    }
    cmd
}

const GENERATED: &str = "<!-- Generated from walship's command-line definitions by tests/docs.rs; do not edit. \
     After changing src/cli.rs or a command's flags: WALSHIP_BLESS=1 cargo test --test docs -->";

fn page(title: &str, intro: &str, body: &str) -> String {
    // without trailing blanks, which editors strip
    let body: Vec<&str> = body.trim_end().lines().map(str::trim_end).collect();
    let body = body.join("\n");
    format!("# {title}\n\n{GENERATED}\n\n{intro}\n\n```text\n{body}\n```\n")
}

/// Every page of docs/reference, by file name.
fn reference_pages() -> Vec<(String, String)> {
    let mut cmd = reference_command();
    let mut pages = Vec::new();
    let mut index = String::from("# Command reference\n\n");
    index.push_str(GENERATED);
    index.push_str(
        "\n\nThe help walship prints, one page per command. The guide explains when and why to use \
         each: [docs/guide](../guide/). Every flag of the global options also has a configuration \
         key and an environment variable: [configuration](configuration.md).\n\n",
    );

    let config_help = cmd
        .get_after_help()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let top = cmd
        .clone()
        .after_help(None::<&str>)
        .after_long_help(None::<&str>)
        .render_long_help()
        .to_string();
    pages.push((
        "walship.md".to_string(),
        page(
            "walship",
            "`walship --help`, without the configuration table (see [configuration](configuration.md)).",
            &top,
        ),
    ));
    index.push_str("* [walship](walship.md): the commands and the global options\n");
    pages.push((
        "configuration.md".to_string(),
        page(
            "Configuration keys, PostgreSQL settings and exit codes",
            "The end of `walship --help`. Each key explained at length: \
             [docs/guide/configuration.md](../guide/configuration.md).",
            &config_help,
        ),
    ));
    index.push_str(
        "* [configuration](configuration.md): every key, the PostgreSQL settings, the exit codes\n",
    );

    fn walk(
        cmd: &mut clap::Command,
        path: Vec<String>,
        pages: &mut Vec<(String, String)>,
        index: &mut String,
    ) {
        let names: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| s.get_name().to_string())
            .collect();
        for n in names {
            // a command's help shows only the global options it uses (walship::cli::help_command)
            let mut own = if path.is_empty() {
                let mut c = settle(walship::cli::help_command(&n));
                c.build();
                Some(c)
            } else {
                None
            };
            let sub = match own.as_mut() {
                Some(c) => c.find_subcommand_mut(&n).unwrap(),
                None => cmd.find_subcommand_mut(&n).unwrap(),
            };
            let mut p = path.clone();
            p.push(n);
            let title = format!("walship {}", p.join(" "));
            let file = format!("walship-{}.md", p.join("-"));
            let about = sub.get_about().map(|s| s.to_string()).unwrap_or_default();
            let help = sub.render_long_help().to_string();
            pages.push((
                file.clone(),
                page(&title, &format!("`{title} --help`"), &help),
            ));
            index.push_str(&format!(
                "* [{title}]({file}): {}\n",
                about.lines().next().unwrap_or("")
            ));
            walk(sub, p, pages, index);
        }
    }
    walk(&mut cmd, Vec::new(), &mut pages, &mut index);
    pages.push(("README.md".to_string(), index));
    pages
}

#[test]
fn the_command_reference_is_up_to_date() {
    let dir = root().join("docs/reference");
    let pages = reference_pages();
    assert!(pages.len() > 10, "{}", pages.len());
    if std::env::var_os("WALSHIP_BLESS").is_some() {
        if dir.exists() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "md") {
                    fs::remove_file(p).unwrap();
                }
            }
        }
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in &pages {
            fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, text) in &pages {
        match fs::read_to_string(dir.join(name)) {
            Ok(committed) if &committed == text => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(_) => stale.push(format!("{name} is missing")),
        }
    }
    let wanted: BTreeSet<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if !wanted.contains(name.as_str()) {
                stale.push(format!("{name} is no command's page"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/reference is stale: {stale:?}. Regenerate it: WALSHIP_BLESS=1 cargo test --test docs"
    );
}

/// The field names of a `pub struct NAME {` in src/config.rs.
fn struct_fields(src: &str, name: &str) -> Vec<String> {
    let start = src
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name} in src/config.rs"));
    let body = &src[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.trim().to_string())
        .collect()
}

/// The guide's row of each setting must say what src/settings.rs says in its key, env / flag and
/// default columns (backticks aside); its meaning column is the guide's own, longer prose.
#[test]
fn the_configuration_guide_agrees_with_the_settings_table() {
    use walship::settings::SETTINGS;
    let guide = fs::read_to_string(root().join("docs/guide/configuration.md")).unwrap();
    let mut wrong = Vec::new();
    for s in SETTINGS {
        let key = s.shown_key();
        let prefix = format!("| `{key}` |");
        let Some(row) = guide.lines().find(|l| l.starts_with(&prefix)) else {
            wrong.push(format!("no row for {key}"));
            continue;
        };
        let cells: Vec<String> = row
            .split('|')
            .skip(1)
            .map(|c| c.trim().replace('`', ""))
            .collect();
        let want = [s.env_flag_text(), s.default.to_string()];
        if cells.len() < 4 || cells[1..3] != want {
            wrong.push(format!(
                "{key}: the row says {:?}; src/settings.rs: | `{key}` | {} | {} |",
                cells.get(1..3),
                want[0],
                want[1]
            ));
        }
    }
    let src = fs::read_to_string(root().join("src/config.rs")).unwrap();
    let target_keys = struct_fields(&src, "Target");
    assert!(target_keys.len() > 5, "{target_keys:?}");
    for k in &target_keys {
        let shown = match k.as_str() {
            "tablespace_map" | "settings" => format!("`[targets.NAME.{k}]`"),
            _ => format!("`{k}`"),
        };
        if !guide.contains(&shown) {
            wrong.push(format!(
                "target key {shown} is not in docs/guide/configuration.md"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
