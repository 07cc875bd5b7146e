//! The `tablespace_map` a backup carries, rewritten for where the restore put each tablespace.
//! The file is PostgreSQL's: at startup it links each tablespace to the path written there, so a
//! path left as it was on the primary would link the restored cluster to the primary's
//! directories (or to nothing).

use std::collections::HashMap;
use std::path::PathBuf;

/// `tablespace_map` with each restored tablespace's path replaced by the directory it was
/// restored to. One `<oid> <path>` entry per line, where a backslash makes the next character
/// literal (so a path may hold a line break, a backslash); read and written that way, or
/// PostgreSQL would link a tablespace to another path at startup.
pub(super) fn rewrite(map: &[u8], tablespaces: &HashMap<u32, PathBuf>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::with_capacity(map.len());
    let mut entry: Vec<u8> = Vec::new(); // raw bytes, escapes kept
    let mut escaped = false;
    let finish = |entry: &mut Vec<u8>, out: &mut Vec<u8>| {
        if entry.is_empty() {
            return;
        }
        let oid = entry
            .iter()
            .position(|&b| b == b' ')
            .and_then(|sp| std::str::from_utf8(&entry[..sp]).ok()?.parse::<u32>().ok());
        match oid.and_then(|oid| Some((oid, tablespaces.get(&oid)?))) {
            Some((oid, dir)) => {
                out.extend_from_slice(format!("{oid} ").as_bytes());
                for &b in dir.as_os_str().as_bytes() {
                    if matches!(b, b'\\' | b'\n' | b'\r') {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
            }
            None => out.extend_from_slice(entry),
        }
        out.push(b'\n');
        entry.clear();
    };
    for &b in map {
        if !escaped && (b == b'\n' || b == b'\r') {
            finish(&mut entry, &mut out);
            continue;
        }
        escaped = !escaped && b == b'\\';
        entry.push(b);
    }
    finish(&mut entry, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_map_paths_with_backslashes_and_line_breaks_survive_the_rewrite() {
        let map = b"16384 /srv/ts\\\n1\n16385 /srv/a\\\\b\n\n99 /kept/as\\\nit was\n";
        let dirs: HashMap<u32, PathBuf> = [
            (16384, PathBuf::from("/new/it's \"a\" 100% $HOME\\dir\nx")),
            (16385, PathBuf::from("/new/b")),
        ]
        .into_iter()
        .collect();
        let out = rewrite(map, &dirs);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "16384 /new/it's \"a\" 100% $HOME\\\\dir\\\nx\n16385 /new/b\n99 /kept/as\\\nit was\n"
        );
    }
}
