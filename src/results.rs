//! A job folder read back as data: the tests and groups of its status log, nested by
//! indentation, with each test's keyvals and its iterations as autotest's tko reads them.
//! Finished, interrupted and still-running jobs all load.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rhai::{Array, Dynamic, Map};

use crate::keyval;
use crate::status::Status;
use crate::status_log::{self, ParsedLine};

/// The status of a job or test whose END line has not been written.
pub const RUNNING: &str = "RUNNING";

/// Why a job folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The folder does not exist.
    #[error("cannot read job folder {0}: no such folder")]
    Missing(PathBuf),
    /// The folder exists but holds no status log.
    #[error("{0} is not a job folder: it holds no status log")]
    NotAJobFolder(PathBuf),
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// One iteration record of `results/keyval` (the same type the reports use).
pub use crate::keyval::Iteration;

/// What a START line opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A test: a START with a subdir.
    Test,
    /// A group (`run_group`): a START without a subdir.
    Group,
}

/// A test or group of the status log.
#[derive(Debug, Clone)]
pub struct Node {
    /// Test or group.
    pub kind: Kind,
    /// The operation: the test name with its tags (`kvtest.three`), or the group's name.
    pub name: String,
    /// The test's folder relative to the job folder; `None` for a group.
    pub subdir: Option<String>,
    /// How many tests and groups enclose this one (0: directly in the job).
    pub depth: usize,
    /// The index (in [`JobResults::nodes`]) of the enclosing test or group.
    pub parent: Option<usize>,
    /// The END status (`GOOD`, `FAIL`, ...), or `RUNNING` without an END line.
    pub status: String,
    /// The first message line of the test's own status line, else of its END line.
    pub reason: String,
    /// The START line's timestamp (seconds since the epoch).
    pub started: Option<i64>,
    /// The END line's timestamp.
    pub finished: Option<i64>,
    /// The test keyval (`<subdir>/keyval`), read as `read_keyval` reads it.
    pub keyval: Map,
    /// The records of `<subdir>/results/keyval`, as tko reads them.
    pub iterations: Vec<Iteration>,
}

impl Node {
    /// Seconds from START to END, for a finished test or group with both timestamps.
    pub fn duration(&self) -> Option<i64> {
        Some(self.finished? - self.started?)
    }

    /// Each perf key with its finite values, one per iteration that holds the key (file
    /// order); `inf` and `nan` are left out, and so is a key with no other value.
    pub fn perf_samples(&self) -> BTreeMap<String, Vec<f64>> {
        let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for it in &self.iterations {
            for (k, v) in it.perf.iter().filter(|(_, v)| v.is_finite()) {
                out.entry(k.clone()).or_default().push(*v);
            }
        }
        out
    }

    /// The node as `results(dir)` gives it to scripts.
    pub fn to_rhai(&self) -> Map {
        let mut m = Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("subdir".into(), opt_string(&self.subdir));
        m.insert("status".into(), self.status.clone().into());
        m.insert("reason".into(), self.reason.clone().into());
        m.insert("started".into(), opt_int(self.started));
        m.insert("finished".into(), opt_int(self.finished));
        m.insert("duration".into(), opt_int(self.duration()));
        m.insert("keyval".into(), self.keyval.clone().into());
        let iterations: Array = self
            .iterations
            .iter()
            .map(|it| {
                let attr: Map = it
                    .attr
                    .iter()
                    .map(|(k, v)| (k.into(), Dynamic::from(v.clone())))
                    .collect();
                let perf: Map = it
                    .perf
                    .iter()
                    .map(|(k, v)| (k.into(), Dynamic::from_float(*v)))
                    .collect();
                let mut m = Map::new();
                m.insert("attr".into(), attr.into());
                m.insert("perf".into(), perf.into());
                Dynamic::from_map(m)
            })
            .collect();
        m.insert("iterations".into(), iterations.into());
        m
    }
}

/// A job folder as data.
#[derive(Debug, Clone)]
pub struct JobResults {
    /// The job folder.
    pub dir: PathBuf,
    /// The job's END status, or `RUNNING` without one (interrupted or still running).
    pub status: String,
    /// The first message line of the job's END line (why it aborted), if any.
    pub reason: String,
    /// The job START's timestamp.
    pub started: Option<i64>,
    /// The job END's timestamp.
    pub finished: Option<i64>,
    /// The latest timestamp in the status log.
    pub last_timestamp: Option<i64>,
    /// Every test and group, in the order of their START lines.
    pub nodes: Vec<Node>,
    /// Lines of keyval files that could not be read (they are left out).
    pub warnings: Vec<String>,
}

impl JobResults {
    /// Reads the job folder `dir`: `status` (and the `status.<i>` files that parallel tasks
    /// leave while they run), then each test's `keyval` and `results/keyval`.
    pub fn load(dir: &Path) -> Result<JobResults, ResultsError> {
        let mut nodes = Vec::new();
        let mut r = scan(dir, Detail::All, |n| nodes.push(n))?;
        r.nodes = nodes;
        Ok(r)
    }

    /// The tests and groups of a status log's text (no keyvals are read).
    pub fn from_log(dir: &Path, log: &str) -> JobResults {
        let mut b = Builder::default();
        for line in log.lines() {
            b.line(line);
        }
        b.flush_all();
        let nodes = std::mem::take(&mut b.done);
        let mut r = b.finish(dir);
        r.nodes = nodes;
        r
    }

    /// The tests (not the groups), in the order they started.
    pub fn tests(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.kind == Kind::Test)
    }

    /// Seconds from the job's START to its END, or to the latest line of a job that has
    /// not ended.
    pub fn duration(&self) -> Option<i64> {
        Some(self.finished.or(self.last_timestamp)? - self.started?)
    }

    /// The job as `results(dir)` gives it to scripts: `status`, `reason`, `tests` and
    /// timings.
    pub fn to_rhai(&self) -> Map {
        let mut m = Map::new();
        m.insert("status".into(), self.status.clone().into());
        m.insert("reason".into(), self.reason.clone().into());
        m.insert("started".into(), opt_int(self.started));
        m.insert("finished".into(), opt_int(self.finished));
        m.insert("duration".into(), opt_int(self.duration()));
        let tests: Array = self
            .tests()
            .map(|t| Dynamic::from_map(t.to_rhai()))
            .collect();
        m.insert("tests".into(), tests.into());
        m
    }
}

/// What [`scan`] reads of each test besides its status-log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Nothing: `keyval` and `iterations` stay empty.
    Log,
    /// `results/keyval` (the iterations), not the test keyval.
    Iterations,
    /// Both keyval files.
    All,
}

/// Reads the job folder `dir` line by line and hands each test and group to `each`, in
/// the order of their START lines, as soon as it and every test or group around it have
/// ended (or the log ends), with the files `detail` asks for. Returns the job without its
/// nodes (`nodes` is empty). A reader holds only the tests still open, however many the
/// job ran: this is how the job writes `report.html` at its end, and how `autorun show`
/// and `autorun report` read a folder of thousands of tests.
pub fn scan(
    dir: &Path,
    detail: Detail,
    mut each: impl FnMut(Node),
) -> Result<JobResults, ResultsError> {
    if !dir.is_dir() {
        return Err(ResultsError::Missing(dir.to_path_buf()));
    }
    let status = dir.join("status");
    if !status.is_file() {
        return Err(ResultsError::NotAJobFolder(dir.to_path_buf()));
    }
    let mut b = Builder::default();
    let mut warnings = Vec::new();
    let mut failed = None;
    let mut hand_over = |b: &mut Builder, warnings: &mut Vec<String>| {
        for mut node in b.done.drain(..) {
            if failed.is_none() {
                match read_detail(dir, &mut node, detail, warnings) {
                    Ok(()) => each(node),
                    Err(e) => failed = Some(e),
                }
            }
        }
    };
    let mut buf = Vec::with_capacity(4096);
    for (i, path) in std::iter::once(status)
        .chain(parallel_logs(dir))
        .enumerate()
    {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            // A task's log is merged into `status` and removed when the task ends.
            Err(e) if i > 0 && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ResultsError::Io(path, e)),
        };
        let mut reader = BufReader::new(file);
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ResultsError::Io(path, e)),
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.strip_suffix('\n').unwrap_or(&line);
            b.line(line.strip_suffix('\r').unwrap_or(line));
            if !b.done.is_empty() {
                hand_over(&mut b, &mut warnings);
            }
        }
    }
    b.flush_all();
    hand_over(&mut b, &mut warnings);
    if let Some(e) = failed {
        return Err(e);
    }
    let mut r = b.finish(dir);
    r.warnings = warnings;
    Ok(r)
}

/// Reads the keyval files of a test node that `detail` asks for.
fn read_detail(
    dir: &Path,
    node: &mut Node,
    detail: Detail,
    warnings: &mut Vec<String>,
) -> Result<(), ResultsError> {
    let Some(sub) = &node.subdir else {
        return Ok(());
    };
    if detail == Detail::Log {
        return Ok(());
    }
    let test_dir = dir.join(sub);
    if detail == Detail::All {
        node.keyval = read_keyval_lenient(&test_dir.join("keyval"), warnings)?;
    }
    let iter_kv = test_dir.join("results").join("keyval");
    node.iterations = match std::fs::read_to_string(&iter_kv) {
        Ok(text) => parse_iterations(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ResultsError::Io(iter_kv, e)),
    };
    Ok(())
}

/// `status.<i>` and `status.<i>.<j>` files in `dir`, outermost first.
fn parallel_logs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut logs: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let path = name
                .strip_prefix("status.")?
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((path, e.path()))
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, p)| p).collect()
}

/// Reads a keyval file as `read_keyval` does, but a bad line is left out with a warning
/// instead of failing the whole job. A missing file is an empty map.
fn read_keyval_lenient(path: &Path, warnings: &mut Vec<String>) -> Result<Map, ResultsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(ResultsError::Io(path.to_path_buf(), e)),
    };
    let mut map = Map::new();
    for (n, line) in text.lines().enumerate() {
        match keyval::parse(line) {
            Ok(pairs) => map.extend(pairs.into_iter().map(|(k, v)| (k.into(), v))),
            Err(e) => warnings.push(format!("{} line {}: {e}", path.display(), n + 1)),
        }
    }
    Ok(map)
}

/// Parses a `results/keyval` as tko does (see [`crate::keyval::iterations`], shared with
/// the reports).
pub fn parse_iterations(text: &str) -> Vec<Iteration> {
    crate::keyval::iterations(text)
}

fn opt_int(v: Option<i64>) -> Dynamic {
    v.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT)
}

fn opt_string(v: &Option<String>) -> Dynamic {
    v.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

/// An open START on the way through the status log.
struct Open {
    /// The node it opened; `None` for the job's own START.
    node: Option<usize>,
    indent: usize,
}

/// One test as a status log tells it: the START, the last result line for its subdir (with
/// its continuation lines), the END. What [`finished_tests`] reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedTest {
    /// The test's folder, relative to the job folder.
    pub subdir: String,
    /// The operation (test name with its tags).
    pub operation: String,
    /// The END's status.
    pub status: Status,
    /// The result line's message with its continuation lines (the END's message when
    /// there is no result line).
    pub reason: String,
    /// The START's `timestamp`.
    pub started: i64,
    /// The END's `timestamp`.
    pub ended: i64,
}

/// The tests whose START and END are both in `log`, in the order of their ENDs (a nested
/// test before the test that ran it): how the job's events are replayed from what forked
/// processes logged. Groups and blocks left open are skipped. The same reader as
/// [`scan`]'s, so both agree on what a log says.
pub fn finished_tests(log: &str) -> Vec<LoggedTest> {
    let mut b = Builder {
        capture: true,
        ..Builder::default()
    };
    for line in log.lines() {
        b.line(line);
        b.done.clear();
    }
    b.ended
}

/// Builds the nodes of a status log line by line. Nodes wait in `open_nodes` while a test
/// or group around them is open, then move to `done`, to be taken by the reader.
#[derive(Default)]
struct Builder {
    /// Nodes not handed over yet; `open_nodes[0]` has the index `base`.
    open_nodes: Vec<Node>,
    /// The index of `open_nodes[0]` among all the nodes of the log.
    base: usize,
    /// Nodes whose subtree has ended, in START order.
    done: Vec<Node>,
    open: Vec<Open>,
    job_status: Option<String>,
    job_reason: String,
    job_started: Option<i64>,
    job_finished: Option<i64>,
    last_timestamp: Option<i64>,
    /// [`finished_tests`]: collect each test as its END is read, into `ended`, with its
    /// full result message (`full`, by node) and continuation lines (`more`).
    capture: bool,
    ended: Vec<LoggedTest>,
    full: BTreeMap<usize, String>,
    more: Option<usize>,
}

fn is_job_line(l: &ParsedLine) -> bool {
    l.indent == 0 && l.subdir.is_none() && l.operation.is_none()
}

impl Builder {
    /// Reads one line of the log; continuation lines and malformed lines are skipped.
    fn line(&mut self, text: &str) {
        if let Some(rest) = text.strip_prefix("  ") {
            if let Some(reason) = self.more.and_then(|i| self.full.get_mut(&i)) {
                reason.push('\n');
                reason.push_str(rest);
            }
            return;
        }
        self.more = None;
        let Some(l) = status_log::parse_line(text) else {
            return;
        };
        let ts = l
            .fields
            .iter()
            .find(|(k, _)| k == "timestamp")
            .and_then(|(_, v)| v.parse::<i64>().ok());
        if let Some(ts) = ts {
            self.last_timestamp = Some(self.last_timestamp.map_or(ts, |t| t.max(ts)));
        }
        if l.code == "START" {
            self.start(&l, ts);
        } else if let Some(status) = l.code.strip_prefix("END ") {
            self.end(&l, status, ts);
        } else {
            self.status_line(&l);
        }
        if !self.open.iter().any(|o| o.node.is_some()) {
            self.flush_all();
        }
    }

    /// Moves every waiting node to `done`.
    fn flush_all(&mut self) {
        self.base += self.open_nodes.len();
        self.done.append(&mut self.open_nodes);
    }

    /// The node with index `i` among all the nodes of the log; it is still waiting.
    fn node(&mut self, i: usize) -> &mut Node {
        &mut self.open_nodes[i - self.base]
    }

    /// The job as read so far, without nodes.
    fn finish(self, dir: &Path) -> JobResults {
        JobResults {
            dir: dir.to_path_buf(),
            status: self.job_status.unwrap_or_else(|| RUNNING.to_string()),
            reason: self.job_reason,
            started: self.job_started,
            finished: self.job_finished,
            last_timestamp: self.last_timestamp,
            nodes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn start(&mut self, l: &ParsedLine, ts: Option<i64>) {
        // A START at or outside the level of one still open means that one never ended:
        // it stays RUNNING.
        while self.open.last().is_some_and(|o| o.indent >= l.indent) {
            self.open.pop();
        }
        if is_job_line(l) {
            self.job_started = self.job_started.or(ts);
            self.open.push(Open {
                node: None,
                indent: 0,
            });
            return;
        }
        let parent = self.open.iter().rev().find_map(|o| o.node);
        let depth = self.open.iter().filter(|o| o.node.is_some()).count();
        let kind = if l.subdir.is_some() {
            Kind::Test
        } else {
            Kind::Group
        };
        let name = l
            .operation
            .clone()
            .or_else(|| l.subdir.clone())
            .unwrap_or_else(|| "----".to_string());
        self.open_nodes.push(Node {
            kind,
            name,
            subdir: l.subdir.clone(),
            depth,
            parent,
            status: RUNNING.to_string(),
            reason: String::new(),
            started: ts,
            finished: None,
            keyval: Map::new(),
            iterations: Vec::new(),
        });
        self.open.push(Open {
            node: Some(self.base + self.open_nodes.len() - 1),
            indent: l.indent,
        });
    }

    fn end(&mut self, l: &ParsedLine, status: &str, ts: Option<i64>) {
        // An END is written one level out from what it closes: at its START's indentation.
        match self.open.iter().rposition(|o| o.indent == l.indent) {
            Some(pos) => {
                let open = self.open.remove(pos);
                self.open.truncate(pos);
                match open.node {
                    Some(i) => {
                        let node = self.node(i);
                        node.status = status.to_string();
                        node.finished = ts;
                        if node.reason.is_empty() {
                            node.reason = l.message.clone();
                        }
                        if self.capture {
                            self.capture_end(i, l, status, ts);
                        }
                    }
                    None => self.job_end(l, status, ts),
                }
            }
            None if is_job_line(l) => self.job_end(l, status, ts),
            None => {}
        }
    }

    /// Adds the test node `i`, just ended, to `ended`.
    fn capture_end(&mut self, i: usize, l: &ParsedLine, status: &str, ts: Option<i64>) {
        let full = self.full.remove(&i);
        let node = self.node(i);
        let (Some(subdir), Kind::Test, Ok(status)) =
            (node.subdir.clone(), node.kind, status.parse::<Status>())
        else {
            return;
        };
        let test = LoggedTest {
            subdir,
            operation: node.name.clone(),
            status,
            reason: full.unwrap_or_else(|| l.message.clone()),
            started: node.started.unwrap_or(0),
            ended: ts.unwrap_or(0),
        };
        self.ended.push(test);
    }

    fn job_end(&mut self, l: &ParsedLine, status: &str, ts: Option<i64>) {
        self.job_status = Some(status.to_string());
        self.job_reason = l.message.clone();
        self.job_finished = ts;
    }

    /// A GOOD/FAIL/... line directly inside an open test with the test's own subdir is
    /// the test's result line: its message is the reason.
    fn status_line(&mut self, l: &ParsedLine) {
        if l.code == "INFO" {
            return;
        }
        let Some(owner) = self.open.iter().rev().find(|o| o.indent < l.indent) else {
            return;
        };
        let Some(i) = owner.node else { return };
        let node = self.node(i);
        if node.kind == Kind::Test && node.subdir == l.subdir {
            node.reason = l.message.clone();
            if self.capture {
                self.full.insert(i, l.message.clone());
                self.more = Some(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "START\t----\t----\ttimestamp=100\tlocaltime=x\t
\tSTART\tkv.a\tkv.a\ttimestamp=101\ttimeout=30\tlocaltime=x\t
\t\tGOOD\tkv.a\tkv.a\ttimestamp=103\tlocaltime=x\tcompleted successfully
\tEND GOOD\tkv.a\tkv.a\ttimestamp=104\tlocaltime=x\t
\tSTART\tfailing\tfailing\ttimestamp=104\tlocaltime=x\t
\t\tFAIL\tfailing\tfailing\ttimestamp=105\tlocaltime=x\tfirst line
  second line
\tEND FAIL\tfailing\tfailing\ttimestamp=105\tlocaltime=x\t
\tSTART\t----\tgrp\ttimestamp=106\tlocaltime=x\t
\t\tGOOD\t----\tgrp.step\ttimestamp=106\tlocaltime=x\tinside group
\t\tSTART\tkv.in\tkv.in\ttimestamp=106\tlocaltime=x\t
\t\t\tSTART\tkv.in/child\tchild\ttimestamp=107\tlocaltime=x\t
\t\t\t\tTEST_NA\tkv.in/child\tchild\ttimestamp=107\tlocaltime=x\tnot here
\t\t\tEND TEST_NA\tkv.in/child\tchild\ttimestamp=107\tlocaltime=x\t
\t\t\tGOOD\tkv.in\tkv.in\ttimestamp=108\tlocaltime=x\tcompleted successfully
\t\tEND GOOD\tkv.in\tkv.in\ttimestamp=108\tlocaltime=x\t
\tEND ERROR\t----\tgrp\ttimestamp=109\tlocaltime=x\tUnhandled boom
  at line 3
END GOOD\t----\t----\ttimestamp=110\tlocaltime=x\t
";

    #[test]
    fn nests_tests_and_groups_by_indentation() {
        let r = JobResults::from_log(Path::new("/j"), LOG);
        assert_eq!(r.status, "GOOD");
        assert_eq!(
            (r.started, r.finished, r.duration()),
            (Some(100), Some(110), Some(10))
        );
        let names: Vec<(&str, usize, &str, &str)> = r
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.depth,
                    n.status.as_str(),
                    n.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("kv.a", 0, "GOOD", "completed successfully"),
                ("failing", 0, "FAIL", "first line"),
                ("grp", 0, "ERROR", "Unhandled boom"),
                ("kv.in", 1, "GOOD", "completed successfully"),
                ("child", 2, "TEST_NA", "not here"),
            ]
        );
        assert_eq!(r.nodes[0].duration(), Some(3));
        assert_eq!(r.nodes[2].kind, Kind::Group);
        assert_eq!(r.nodes[3].parent, Some(2));
        assert_eq!(r.nodes[4].parent, Some(3));
        assert_eq!(r.nodes[4].subdir.as_deref(), Some("kv.in/child"));
        assert_eq!(r.tests().count(), 4);
    }

    #[test]
    fn open_starts_are_running() {
        let log = "START\t----\t----\ttimestamp=100\tlocaltime=x\t
\tSTART\tdone\tdone\ttimestamp=101\tlocaltime=x\t
\t\tGOOD\tdone\tdone\ttimestamp=102\tlocaltime=x\tcompleted successfully
\tEND GOOD\tdone\tdone\ttimestamp=102\tlocaltime=x\t
\tSTART\t----\tg\ttimestamp=103\tlocaltime=x\t
\t\tSTART\tslow\tslow\ttimestamp=104\tlocaltime=x\t
";
        let r = JobResults::from_log(Path::new("/j"), log);
        assert_eq!(r.status, RUNNING);
        assert_eq!(r.duration(), Some(4));
        let st: Vec<&str> = r.nodes.iter().map(|n| n.status.as_str()).collect();
        assert_eq!(st, ["GOOD", RUNNING, RUNNING]);
        assert_eq!(r.nodes[2].duration(), None);
    }

    #[test]
    fn a_restarted_level_leaves_the_earlier_start_running() {
        // Killed inside `a`, then continued without repair: `b` starts at `a`'s level.
        let log = "START\t----\t----\ttimestamp=1\tlocaltime=x\t
\tSTART\ta\ta\ttimestamp=2\tlocaltime=x\t
\tSTART\tb\tb\ttimestamp=3\tlocaltime=x\t
\tEND GOOD\tb\tb\ttimestamp=4\tlocaltime=x\t
END GOOD\t----\t----\ttimestamp=5\tlocaltime=x\t
";
        let r = JobResults::from_log(Path::new("/j"), log);
        let st: Vec<(&str, &str, usize)> = r
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.status.as_str(), n.depth))
            .collect();
        assert_eq!(st, [("a", RUNNING, 0), ("b", "GOOD", 0)]);
        assert_eq!(r.status, "GOOD");
    }

    #[test]
    fn an_aborted_job_keeps_its_reason() {
        let log = "START\t----\t----\ttimestamp=1\tlocaltime=x\t
END ABORT\t----\t----\ttimestamp=2\tlocaltime=x\tcontrol.rhai: syntax error (line 3)
  more
";
        let r = JobResults::from_log(Path::new("/j"), log);
        assert_eq!(r.status, "ABORT");
        assert_eq!(r.reason, "control.rhai: syntax error (line 3)");
        assert!(r.nodes.is_empty());
    }

    #[test]
    fn loads_a_folder_with_running_parallel_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let line = |indent: usize, code: &str, sub: &str, ts: i64, msg: &str| {
            format!(
                "{}{code}\t{sub}\t{sub}\ttimestamp={ts}\tlocaltime=x\t{msg}\n",
                "\t".repeat(indent)
            )
        };
        let status = format!(
            "START\t----\t----\ttimestamp=10\tlocaltime=x\t\n{}{}",
            line(1, "START", "first", 10, ""),
            line(1, "END GOOD", "first", 11, "")
        );
        let task0 = line(1, "START", "p0", 12, "");
        let task1 = format!(
            "{}{}{}",
            line(1, "START", "p1", 12, ""),
            line(2, "GOOD", "p1", 13, "completed successfully"),
            line(1, "END GOOD", "p1", 13, "")
        );
        for (rel, text) in [
            ("status", status.as_str()),
            ("status.0", &task0),
            ("status.1", &task1),
            ("first/keyval", "version=1\nbad line\nowner=me\n"),
            ("p1/results/keyval", "ops{perf}=3\n\n"),
        ] {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let r = JobResults::load(d).unwrap();
        let st: Vec<(&str, &str)> = r
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.status.as_str()))
            .collect();
        assert_eq!(st, [("first", "GOOD"), ("p0", RUNNING), ("p1", "GOOD")]);
        assert_eq!((r.status.as_str(), r.duration()), (RUNNING, Some(3)));
        assert_eq!(r.nodes[0].keyval.len(), 2);
        assert_eq!(r.nodes[0].keyval["owner"].to_string(), "me");
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].ends_with("first/keyval line 2: Invalid format line: bad line"),
            "{:?}",
            r.warnings
        );
        assert_eq!(r.nodes[2].iterations[0].perf["ops"], 3.0);
        assert!(matches!(
            JobResults::load(&d.join("first")),
            Err(ResultsError::NotAJobFolder(_))
        ));
        assert!(matches!(
            JobResults::load(&d.join("nowhere")),
            Err(ResultsError::Missing(_))
        ));
    }

    #[test]
    fn a_scan_hands_each_subtree_over_when_it_ends() {
        let mut b = Builder::default();
        let lines: Vec<&str> = LOG.lines().collect();
        let mut handed = Vec::new();
        for line in &lines {
            b.line(line);
            handed.push(b.done.drain(..).map(|n| n.name).collect::<Vec<_>>());
        }
        // kv.a at its END (line 4), failing at its END (line 8), the group with both
        // tests inside it at the group's END (line 17); nothing else is held.
        let at: Vec<(usize, Vec<String>)> = handed
            .into_iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| (i + 1, h))
            .collect();
        assert_eq!(
            at,
            [
                (4, vec!["kv.a".to_string()]),
                (8, vec!["failing".to_string()]),
                (17, vec!["grp".into(), "kv.in".into(), "child".into()]),
            ]
        );
        // Parents keep their indices among all the nodes of the log.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), LOG).unwrap();
        let mut parents = Vec::new();
        let r = scan(dir.path(), Detail::Log, |n| parents.push(n.parent)).unwrap();
        assert_eq!(parents, [None, None, None, Some(2), Some(3)]);
        assert!(r.nodes.is_empty());
        assert_eq!((r.status.as_str(), r.duration()), ("GOOD", Some(10)));
    }

    #[test]
    fn iterations_as_tko_reads_them() {
        let text = "label{attr}=lbl\n\nratio{perf}=0.30000000000000004\nthroughput{perf}=20\nwhole{perf}=3.0\n\n\nplain=7\nbad{perf}=abc\nodd{xyz}=1\nnoequals\n  spaced{perf}= 1e3 \nk{a}{perf}=2\n";
        let its = parse_iterations(text);
        assert_eq!(its.len(), 4);
        assert_eq!(its[0].attr["label"], "lbl");
        assert!(its[0].perf.is_empty());
        assert_eq!(its[1].perf["throughput"], 20.0);
        assert_eq!(its[1].perf["ratio"], 0.30000000000000004);
        assert_eq!(its[2], Iteration::default());
        assert_eq!(its[3].perf.len(), 3, "{:?}", its[3]);
        assert_eq!(its[3].perf["plain"], 7.0);
        assert_eq!(its[3].perf["spaced"], 1000.0);
        assert_eq!(its[3].perf["k{a}"], 2.0);
        assert!(its[3].attr.is_empty());
        // A record with nothing after its last line still counts; an empty tail does not.
        assert_eq!(parse_iterations("a=1").len(), 1);
        assert_eq!(parse_iterations("a=1\n").len(), 1);
        assert_eq!(parse_iterations("a=1\n\n").len(), 1);
        assert_eq!(parse_iterations("").len(), 0);
    }

    #[test]
    fn perf_samples_per_key() {
        let node = Node {
            kind: Kind::Test,
            name: "t".into(),
            subdir: Some("t".into()),
            depth: 0,
            parent: None,
            status: "GOOD".into(),
            reason: String::new(),
            started: None,
            finished: None,
            keyval: Map::new(),
            iterations: parse_iterations("a=1\nb=2\nc=nan\n\nlabel{attr}=x\n\na=3\nb=inf\n\n"),
        };
        let s = node.perf_samples();
        assert_eq!(s["a"], [1.0, 3.0]);
        assert_eq!(s["b"], [2.0]);
        assert!(!s.contains_key("c"));
    }

    use crate::status_log::Entry;

    #[test]
    fn finished_tests_are_read_back() {
        let mut log = String::new();
        let mut at = |e: Entry, indent: usize, ts: i64| {
            let mut e = e;
            e.timestamp = ts;
            log.push_str(&e.render(indent));
            log.push('\n');
        };
        at(Entry::new("START", None, None, ""), 0, 1);
        at(Entry::new("START", Some("p"), Some("p"), ""), 1, 2);
        at(Entry::new("START", Some("p/c.a"), Some("c.a"), ""), 2, 3);
        at(
            Entry::new("FAIL", Some("p/c.a"), Some("c.a"), "boom\tx\nline 2\n"),
            3,
            4,
        );
        at(Entry::new("END FAIL", Some("p/c.a"), Some("c.a"), ""), 2, 4);
        at(Entry::new("WARN", None, None, "careful"), 2, 5);
        at(
            Entry::new("GOOD", Some("p"), Some("p"), "completed successfully"),
            2,
            6,
        );
        at(Entry::new("END GOOD", Some("p"), Some("p"), ""), 1, 7);
        at(Entry::new("START", None, Some("grp"), ""), 1, 8);
        at(Entry::new("START", Some("q"), Some("q"), ""), 2, 8);
        at(Entry::new("END ABORT", Some("q"), Some("q"), "why"), 2, 9);
        at(Entry::new("END GOOD", None, Some("grp"), ""), 1, 9);
        at(Entry::new("START", Some("open"), Some("open"), ""), 1, 10);
        let tests = finished_tests(&log);
        let names: Vec<&str> = tests.iter().map(|t| t.subdir.as_str()).collect();
        assert_eq!(names, ["p/c.a", "p", "q"]);
        assert_eq!(tests[0].status, Status::Fail);
        assert_eq!(tests[0].operation, "c.a");
        assert_eq!(tests[0].reason, "boom        x\nline 2\n");
        assert_eq!(
            status_log::logged_message("boom\tx\nline 2\n"),
            tests[0].reason
        );
        assert_eq!((tests[0].started, tests[0].ended), (3, 4));
        assert_eq!(tests[1].reason, "completed successfully");
        assert_eq!((tests[1].started, tests[1].ended), (2, 7));
        assert_eq!(tests[2].status, Status::Abort);
        assert_eq!(tests[2].reason, "why");
    }

    #[test]
    fn finished_tests_of_a_piece_of_log() {
        // What a test process adds to `status` after its own START: its nested tests,
        // two levels in, with no START of the job or of the test around them.
        let piece = "\t\tSTART\tp/c\tc\ttimestamp=3\tlocaltime=x\t\n\
                     \t\t\tERROR\tp/c\tc\ttimestamp=4\tlocaltime=x\tbad\n\
                     \t\tEND ERROR\tp/c\tc\ttimestamp=4\tlocaltime=x\t\n\
                     \t\tINFO\t----\t----\ttimestamp=5\tlocaltime=x\tafter\n";
        let tests = finished_tests(piece);
        assert_eq!(tests.len(), 1);
        assert_eq!(
            (
                tests[0].subdir.as_str(),
                tests[0].status,
                tests[0].reason.as_str()
            ),
            ("p/c", Status::Error, "bad")
        );
        assert_eq!((tests[0].started, tests[0].ended), (3, 4));
    }
}
