//! TAP output (`--tap`), as autotest's `TAPReport` writes it:
//!
//! - `keyval.tap` next to each keyval file a test writes through `write_test_keyval`,
//!   `write_perf_keyval` or `write_attr_keyval` (not a direct `write_iteration_keyval`),
//!   one `ok N - results` entry per write with the keys as a YAML block;
//! - at the job's end, `status.tap` in each folder that has a status log, one line per END
//!   record (`ok` for END GOOD and END BUG, `not ok` otherwise), then `meta.yml` listing
//!   every `.tap` file and `tap.tar.gz` holding them all.
//!
//! `status.tap` is made from the status files themselves (autotest keeps the lines in the
//! job process's memory), so it also holds what forked processes recorded, and
//! `autorun report` can make it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::events::{Event, Subscriber};
use crate::keyval::Tag;
use crate::logging;
use crate::status_log;

/// Set in the job process with `--tap`; forks inherit it.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns TAP output on for this process and the tests it forks.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// True under `--tap`.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `ok N - message` or `not ok N - message`.
fn tap_line(ok: bool, n: usize, message: &str) -> String {
    format!("{}ok {n} - {message}\n", if ok { "" } else { "not " })
}

/// The `.tap` file of `path` (`keyval` → `keyval.tap`).
fn tap_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tap");
    PathBuf::from(s)
}

/// The entry of one keyval write: `ok N - results`, then `  key_perf: value` lines between
/// `---` and `...`.
pub fn keyval_entry(n: usize, pairs: &[(String, String)], tag: Tag) -> String {
    let mut pairs = pairs.to_vec();
    crate::keyval::sort_tagged(&mut pairs, tag);
    let mut out = tap_line(true, n, "results");
    out.push_str("  ---\n");
    let suffix = match tag {
        Tag::None => "",
        Tag::Attr => "_attr",
        Tag::Perf => "_perf",
    };
    for (k, v) in pairs {
        out.push_str(&format!("  {k}{suffix}: {v}\n"));
    }
    out.push_str("  ...\n");
    out
}

thread_local! {
    /// The `keyval.tap` files this process writes: the count of entries and the text after
    /// the plan, so each write rewrites the file without reading it back (as autotest's
    /// `TAPReport` keeps them).
    static KEYVAL_TAPS: std::cell::RefCell<HashMap<PathBuf, (usize, String)>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Adds one keyval write to `<path>.tap` under `--tap`: the file is rewritten with its
/// plan (`1..N`) raised by one. A failure is logged; the keyval itself is already written.
pub fn record_keyval(path: &Path, pairs: &[(String, String)], tag: Tag) {
    if !enabled() {
        return;
    }
    let path = if path.is_dir() {
        path.join("keyval")
    } else {
        path.to_path_buf()
    };
    let tap = tap_path(&path);
    let text = KEYVAL_TAPS.with(|taps| {
        let mut taps = taps.borrow_mut();
        // First write here in this process: carry on from what an earlier run left (a
        // job continued after a reboot).
        let (count, body) = taps.entry(tap.clone()).or_insert_with(|| {
            let old = std::fs::read_to_string(&tap).unwrap_or_default();
            match old.split_once('\n') {
                Some((plan, rest)) => (
                    plan.strip_prefix("1..")
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(0),
                    rest.to_string(),
                ),
                None => (0, String::new()),
            }
        });
        *count += 1;
        body.push_str(&keyval_entry(*count, pairs, tag));
        format!("1..{count}\n{body}")
    });
    if let Err(e) = crate::report::replace_file(&tap, text.as_bytes()) {
        logging::warning("tap", &format!("cannot write {}: {e}", tap.display()));
    }
}

/// The `status.tap` text of one status log: one line per END record, or `None` when it
/// has none.
pub fn status_tap(log: &str) -> Option<String> {
    let mut lines = Vec::new();
    for line in log.lines().filter_map(status_log::parse_line) {
        if !line.code.starts_with("END ") {
            continue;
        }
        let ok = matches!(line.code.as_str(), "END GOOD" | "END BUG");
        // autotest names an END without operation by the level it closes: `job` for the
        // job itself (the indentation it was recorded at is one more than its tabs).
        let op = match &line.operation {
            Some(op) => op.clone(),
            None if line.indent == 0 => "job".to_string(),
            None => "unknown".to_string(),
        };
        lines.push(tap_line(ok, lines.len() + 1, &op));
    }
    if lines.is_empty() {
        return None;
    }
    Some(format!("1..{}\n{}", lines.len(), lines.concat()))
}

/// Writes `status.tap` next to every status log of the job folder (`status` and each test
/// folder's), then `meta.yml` and `tap.tar.gz` with every `.tap` file: one walk of the
/// folder finds both the status logs and the `keyval.tap` files.
pub fn write_reports(resultdir: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    let mut taps: Vec<PathBuf> = Vec::new();
    for entry in walkdir::WalkDir::new(resultdir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let name = entry.file_name().to_string_lossy();
        if name == "status" {
            let status = entry.path();
            let log = std::fs::read_to_string(status).map_err(|e| io(status, e))?;
            if let Some(text) = status_tap(&log) {
                let tap = tap_path(status);
                crate::report::replace_file(&tap, text.as_bytes()).map_err(|e| io(&tap, e))?;
                taps.push(tap);
            }
        } else if name.ends_with(".tap") && name != "status.tap" {
            taps.push(entry.into_path());
        }
    }
    let mut rel: Vec<String> = taps
        .iter()
        .filter_map(|p| p.strip_prefix(resultdir).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    rel.sort();
    write_archive(resultdir, &rel)
}

/// `meta.yml` (`file_order:` and each `.tap` file of `taps`, paths in the job folder) and
/// `tap.tar.gz` (those files under the same paths, then `meta.yml`).
fn write_archive(resultdir: &Path, taps: &[String]) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    let mut meta = String::from("file_order:\n");
    for t in taps {
        meta.push_str(&format!("  - {t}\n"));
    }
    let meta_path = resultdir.join("meta.yml");
    crate::report::replace_file(&meta_path, meta.as_bytes()).map_err(|e| io(&meta_path, e))?;
    let tar_path = resultdir.join("tap.tar.gz");
    let tmp = resultdir.join(".tap.tar.gz.tmp");
    let build = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for t in taps {
            tar.append_path_with_name(resultdir.join(t), t)?;
        }
        tar.append_path_with_name(&meta_path, "meta.yml")?;
        tar.into_inner()?.finish()?.sync_all()?;
        std::fs::rename(&tmp, &tar_path)
    };
    build().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&tar_path, e)
    })
}

/// Writes the TAP reports when the job ends (the subscriber `--tap` adds).
#[derive(Debug)]
pub struct TapWriter {
    resultdir: PathBuf,
}

impl TapWriter {
    /// A writer for the job folder `resultdir`.
    pub fn new(resultdir: &Path) -> TapWriter {
        TapWriter {
            resultdir: resultdir.to_path_buf(),
        }
    }
}

impl Subscriber for TapWriter {
    fn name(&self) -> &str {
        "status.tap"
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::JobFinished { .. } => write_reports(&self.resultdir),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tap_has_one_line_per_end() {
        let log = "START\t----\t----\ttimestamp=1\tlocaltime=x\t\n\
                   \tSTART\tt\tt\ttimestamp=1\tlocaltime=x\t\n\
                   \t\tFAIL\tt\tt\ttimestamp=1\tlocaltime=x\tboom\n\
                   \tEND FAIL\tt\tt\ttimestamp=1\tlocaltime=x\t\n\
                   \tSTART\t----\tgrp\ttimestamp=1\tlocaltime=x\t\n\
                   \tEND BUG\t----\tgrp\ttimestamp=1\tlocaltime=x\t\n\
                   \tEND GOOD\t----\t----\ttimestamp=1\tlocaltime=x\t\n\
                   END GOOD\t----\t----\ttimestamp=1\tlocaltime=x\t\n";
        assert_eq!(
            status_tap(log).unwrap(),
            "1..4\nnot ok 1 - t\nok 2 - grp\nok 3 - unknown\nok 4 - job\n"
        );
        assert_eq!(
            status_tap("START\t----\t----\ttimestamp=1\tlocaltime=x\t\n"),
            None
        );
    }

    #[test]
    fn keyval_entries_sort_by_suffixed_key() {
        let pairs = vec![
            ("lat".to_string(), "1".to_string()),
            ("lat_p99".into(), "2".into()),
        ];
        assert_eq!(
            keyval_entry(2, &pairs, Tag::Perf),
            "ok 2 - results\n  ---\n  lat_p99_perf: 2\n  lat_perf: 1\n  ...\n"
        );
    }
}
