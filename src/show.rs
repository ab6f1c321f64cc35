//! `autorun show RESULTS_DIR`: a job folder as a terminal table, with each test's perf
//! means and a summary line. Finished, interrupted and running jobs alike.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{exit, Error};
use crate::results::{JobResults, Kind, ResultsError, RUNNING};
use crate::stats::Summary;
use crate::table::{self, Align, Table};

/// Longest reason shown; longer ones are cut.
const REASON_WIDTH: usize = 60;

/// Order of the per-status counts in the summary line: passing first, then by severity.
const STATUS_ORDER: [&str; 10] = [
    "GOOD", "WARN", "FAIL", "ERROR", "ABORT", "TEST_NA", "BUG", "ALERT", "RUNNING", "NOSTATUS",
];

/// Loads a job folder for a command: a folder that is missing or holds no status log is a
/// usage error (exit 64).
pub fn load(dir: &Path) -> Result<JobResults, Error> {
    let r = JobResults::load(dir).map_err(|e| match e {
        ResultsError::Missing(_) | ResultsError::NotAJobFolder(_) => Error::Usage(e.to_string()),
        ResultsError::Io(..) => Error::Io(e.to_string()),
    })?;
    for w in &r.warnings {
        eprintln!("autorun: warning: {w} (line left out)");
    }
    Ok(r)
}

/// Runs `autorun show DIR`.
pub fn run(dir: &Path) -> Result<i32, Error> {
    let r = load(dir)?;
    table::print(&render(&r));
    Ok(exit::OK)
}

/// The report: one row per test and group (nested ones indented), the perf means under
/// each test, then the summary line.
pub fn render(r: &JobResults) -> String {
    let mut out = String::new();
    if r.nodes.is_empty() {
        out.push_str("No tests ran.\n");
    } else {
        let mut t = Table::new(&[Align::Left, Align::Left, Align::Right, Align::Left]);
        t.row(["TEST", "STATUS", "TIME", "REASON"]);
        for node in &r.nodes {
            let indent = "  ".repeat(node.depth);
            let name = match node.kind {
                Kind::Test => format!("{indent}{}", node.name),
                Kind::Group => format!("{indent}{} (group)", node.name),
            };
            let time = node.duration().map(table::duration).unwrap_or("-".into());
            t.row([
                name,
                node.status.clone(),
                time,
                table::truncate(&node.reason, REASON_WIDTH),
            ]);
            for line in perf_lines(&node.perf_samples()) {
                t.line(format!("{indent}    {line}"));
            }
        }
        out.push_str(&t.render());
        out.push('\n');
    }
    out.push_str(&summary(r));
    out.push('\n');
    out
}

/// `key  mean  (n=N)` lines, keys and means aligned.
fn perf_lines(samples: &BTreeMap<String, Vec<f64>>) -> Vec<String> {
    let rows: Vec<(String, String, usize)> = samples
        .iter()
        .filter_map(|(k, v)| {
            let s = Summary::of(v)?;
            Some((k.clone(), table::num(s.mean), s.n))
        })
        .collect();
    let kw = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let mw = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(k, m, n)| format!("{k:<kw$}  {m:>mw$}  (n={n})"))
        .collect()
}

/// `3 tests: 2 GOOD, 1 FAIL. Job GOOD, 12s in total.`
fn summary(r: &JobResults) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in r.tests() {
        match counts.iter_mut().find(|(s, _)| *s == t.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.status.clone(), 1)),
        }
    }
    let rank = |s: &str| {
        STATUS_ORDER
            .iter()
            .position(|o| *o == s)
            .unwrap_or(STATUS_ORDER.len())
    };
    counts.sort_by_key(|(s, _)| rank(s));
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let plural = if total == 1 { "test" } else { "tests" };
    let mut line = format!("{total} {plural}");
    if !counts.is_empty() {
        let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    line.push_str(&format!(". Job {}", r.status));
    if !r.reason.is_empty() {
        // Not cut: it is the one message that tells why a job aborted.
        line.push_str(&format!(" ({})", r.reason));
    }
    match (r.duration(), r.status == RUNNING) {
        (Some(d), false) => line.push_str(&format!(", {} in total.", table::duration(d))),
        (Some(d), true) => line.push_str(&format!(
            " (no END line: interrupted or still running), {} so far.",
            table::duration(d)
        )),
        (None, true) => line.push_str(" (no END line: interrupted or still running)."),
        (None, false) => line.push('.'),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tests_groups_perf_and_summary() {
        let log = "START\t----\t----\ttimestamp=100\tlocaltime=x\t
\tSTART\tkv\tkv\ttimestamp=100\tlocaltime=x\t
\t\tGOOD\tkv\tkv\ttimestamp=102\tlocaltime=x\tcompleted successfully
\tEND GOOD\tkv\tkv\ttimestamp=102\tlocaltime=x\t
\tSTART\t----\tgrp\ttimestamp=102\tlocaltime=x\t
\t\tSTART\tf\tf\ttimestamp=102\tlocaltime=x\t
\t\t\tFAIL\tf\tf\ttimestamp=170\tlocaltime=x\tboom
\t\tEND FAIL\tf\tf\ttimestamp=170\tlocaltime=x\t
\tEND GOOD\t----\tgrp\ttimestamp=170\tlocaltime=x\t
END GOOD\t----\t----\ttimestamp=171\tlocaltime=x\t
";
        let mut r = JobResults::from_log(Path::new("/j"), log);
        r.nodes[0].iterations =
            crate::results::parse_iterations("tput{perf}=10\nlat_ms{perf}=1.5\n\ntput{perf}=20\n");
        let text = render(&r);
        assert_eq!(
            text,
            "TEST         STATUS   TIME  REASON
kv           GOOD       2s  completed successfully
    lat_ms  1.5  (n=1)
    tput     15  (n=2)
grp (group)  GOOD    1m08s
  f          FAIL    1m08s  boom

2 tests: 1 GOOD, 1 FAIL. Job GOOD, 1m11s in total.
"
        );
    }

    #[test]
    fn an_interrupted_job() {
        let log = "START\t----\t----\ttimestamp=100\tlocaltime=x\t
\tSTART\tslow\tslow\ttimestamp=101\tlocaltime=x\t
";
        let r = JobResults::from_log(Path::new("/j"), log);
        let text = render(&r);
        assert!(text.contains("slow  RUNNING     -"), "{text}");
        assert!(
            text.ends_with(
                "1 test: 1 RUNNING. Job RUNNING (no END line: interrupted or still running), 1s so far.\n"
            ),
            "{text}"
        );
        let aborted = JobResults::from_log(
            Path::new("/j"),
            "START\t----\t----\ttimestamp=5\tlocaltime=x\t\nEND ABORT\t----\t----\ttimestamp=5\tlocaltime=x\tboom\n",
        );
        assert_eq!(
            render(&aborted),
            "No tests ran.\n0 tests. Job ABORT (boom), 0s in total.\n"
        );
        let empty = JobResults::from_log(Path::new("/j"), "");
        assert_eq!(
            render(&empty),
            "No tests ran.\n0 tests. Job RUNNING (no END line: interrupted or still running).\n"
        );
    }
}
