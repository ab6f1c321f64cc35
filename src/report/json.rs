//! `results.json`: the whole job as data, kept a valid JSON document while the job runs.
//! The types here are the schema (docs/results-json.md describes it for readers).
//!
//! The file is laid out so that adding a test touches only its end:
//!
//! ```text
//! {"version":1,"tests":[
//! {...first test...},
//! {...second test...}
//! ],"job":{...}}
//! ```
//!
//! A new test is written, with a fresh `],"job":{...}}` trailer after it, over the old
//! trailer in one positioned write: each test costs the size of its own record, whatever
//! the number of tests before it. When the new trailer is shorter than the old one, spaces
//! (valid JSON whitespace) fill the rest, so the file never needs truncating. The first
//! version of the file is written to a temp file and renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{unix_seconds, Event, FinishedTest, Subscriber};
use crate::keyval::{Iteration, Value};
use crate::report::{millis, replace_file};
use crate::status::Status;

/// The file's name in the job folder.
pub const FILE: &str = "results.json";

/// The version of the layout below; raised when a field changes meaning or goes away.
pub const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`VERSION`].
    pub version: u32,
    /// The tests in the order they ended (a nested test before the test that ran it).
    pub tests: Vec<TestRecord>,
    /// The job.
    pub job: JobRecord,
}

/// The job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job folder's name.
    pub tag: String,
    /// The control file's path.
    pub control: String,
    /// When the job started, in seconds since the Unix epoch.
    pub start: f64,
    /// When it ended; `null` while it runs, or when it paused or was killed.
    pub end: Option<f64>,
    /// `RUNNING` until the job ends, then its END status: `GOOD` or `ABORT`.
    pub status: Status,
    /// Why the job aborted (empty otherwise).
    pub reason: String,
    /// The exit code of `autorun` once known: 0, 1 (a test failed), 2 (aborted), or 5
    /// (paused by `job.quit()`, status still `RUNNING`).
    pub exit_code: Option<i32>,
    /// `--args`, split.
    pub args: Vec<String>,
    /// The machine's host name.
    pub host: String,
    /// Who ran the job.
    pub user: String,
}

/// One test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The operation: the test name with its tags (`kvtest.three`).
    pub name: String,
    /// The test's folder relative to the job folder (`parent/child.a` when nested).
    pub subdir: String,
    /// The END status: GOOD, FAIL, ERROR, TEST_NA, ABORT, WARN...
    pub status: Status,
    /// The message of the result line (`completed successfully` for GOOD).
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub start: f64,
    /// Seconds since the Unix epoch.
    pub end: f64,
    /// `end - start`, in seconds.
    pub duration: f64,
    /// The test keyval, typed as `read_keyval` does (integers, floats, strings), without
    /// the `sysinfo-*` keys, which are in `sysinfo`.
    pub keyval: BTreeMap<String, Value>,
    /// The records of `results/keyval`, as autotest's tko reads them.
    pub iterations: Vec<Iteration>,
    /// The `sysinfo-*` test keyvals, without their prefix (`uname`, `cmdline`,
    /// `memtotal-in-kb`, `phys-mbytes`).
    pub sysinfo: BTreeMap<String, Value>,
}

impl From<&FinishedTest> for TestRecord {
    fn from(t: &FinishedTest) -> TestRecord {
        let (start, end) = (unix_seconds(t.start), unix_seconds(t.end));
        let (sysinfo, keyval): (BTreeMap<_, _>, BTreeMap<_, _>) = t
            .keyval
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| k.starts_with(SYSINFO));
        TestRecord {
            name: t.name.clone(),
            subdir: t.subdir.clone(),
            status: t.status,
            reason: t.reason.clone(),
            start: millis(start),
            end: millis(end),
            duration: millis((end - start).max(0.0)),
            keyval,
            iterations: t.iterations.clone(),
            sysinfo: sysinfo
                .into_iter()
                .map(|(k, v)| (k[SYSINFO.len()..].to_string(), v))
                .collect(),
        }
    }
}

/// Writes `results.json` as the events come.
#[derive(Debug)]
pub struct JsonWriter {
    path: PathBuf,
    /// Open once the job started.
    file: Option<File>,
    job: Option<JobRecord>,
    /// Tests written so far.
    tests: usize,
    /// Where the trailer (`\n],"job":...`) starts.
    tail_at: u64,
    /// The file's length.
    len: u64,
    /// The trailer for the job as it is now.
    trailer: String,
    /// Room to build each write in, kept from one test to the next.
    scratch: Vec<u8>,
}

/// The room each write is built in. A buffer this large is mapped apart from the heap of
/// small objects that every forked test process inherits; building each record in fresh
/// small buffers there measurably raised the page faults of the test processes.
const SCRATCH: usize = 256 << 10;

/// The prefix of the test keyvals that go to `sysinfo`.
const SYSINFO: &str = "sysinfo-";

const HEAD: &str = "{\"version\":1,\"tests\":[";

impl JsonWriter {
    /// A writer for `<resultdir>/results.json`; the file appears when the job starts.
    pub fn new(resultdir: &Path) -> JsonWriter {
        JsonWriter {
            path: resultdir.join(FILE),
            file: None,
            job: None,
            tests: 0,
            tail_at: 0,
            len: 0,
            trailer: String::new(),
            scratch: Vec::new(),
        }
    }

    /// Sets the job and renders the trailer that goes with it.
    fn set_job(&mut self, job: Option<JobRecord>) -> Result<(), String> {
        let text = serde_json::to_string(&job).map_err(|e| e.to_string())?;
        self.trailer = format!("\n],\"job\":{text}}}");
        self.job = job;
        Ok(())
    }

    fn start(&mut self, job: JobRecord) -> Result<(), String> {
        self.set_job(Some(job))?;
        self.tests = 0;
        self.scratch = Vec::with_capacity(SCRATCH);
        let mut text = String::from(HEAD);
        text.push_str(&self.trailer);
        text.push('\n');
        replace_file(&self.path, text.as_bytes()).map_err(|e| self.io(e))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.file = Some(file);
        self.tail_at = HEAD.len() as u64;
        self.len = text.len() as u64;
        Ok(())
    }

    /// Writes `record` (when given) and the trailer over the old trailer, in one write.
    fn write_end(&mut self, record: Option<&TestRecord>) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text = &mut self.scratch;
        text.clear();
        if let Some(r) = record {
            if self.tests > 0 {
                text.push(b',');
            }
            text.push(b'\n');
            serde_json::to_writer(&mut *text, r).map_err(|e| e.to_string())?;
        }
        let tail_at = self.tail_at + text.len() as u64;
        text.extend_from_slice(self.trailer.as_bytes());
        let end = self.tail_at + text.len() as u64 + 1;
        text.resize(text.len() + self.len.saturating_sub(end) as usize, b' ');
        text.push(b'\n');
        file.write_all_at(text, self.tail_at)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.len = self.len.max(self.tail_at + text.len() as u64);
        self.tail_at = tail_at;
        if record.is_some() {
            self.tests += 1;
        }
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> String {
        format!("cannot write {}: {e}", self.path.display())
    }
}

impl Subscriber for JsonWriter {
    fn name(&self) -> &str {
        FILE
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::JobStarted {
                tag,
                control,
                start,
                args,
                host,
                user,
            } => self.start(JobRecord {
                tag: tag.clone(),
                control: control.display().to_string(),
                start: millis(unix_seconds(*start)),
                end: None,
                status: Status::Running,
                reason: String::new(),
                exit_code: None,
                args: args.clone(),
                host: host.clone(),
                user: user.clone(),
            }),
            Event::TestStarted { .. }
            | Event::Record(_)
            | Event::IterationStarted { .. }
            | Event::IterationDone { .. } => Ok(()),
            Event::TestFinished(t) => self.write_end(Some(&TestRecord::from(t))),
            Event::JobPaused { exit_code, .. } => {
                let mut job = self.job.clone();
                if let Some(job) = &mut job {
                    job.exit_code = Some(*exit_code);
                }
                self.set_job(job)?;
                self.write_end(None)
            }
            Event::JobFinished {
                status,
                reason,
                exit_code,
                end,
            } => {
                let mut job = self.job.clone();
                if let Some(job) = &mut job {
                    job.status = *status;
                    job.reason = reason.clone();
                    job.exit_code = Some(*exit_code);
                    job.end = Some(millis(unix_seconds(*end)));
                }
                self.set_job(job)?;
                self.write_end(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn finished(name: &str, status: Status) -> FinishedTest {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        FinishedTest {
            name: name.into(),
            subdir: name.into(),
            status,
            reason: "why \"quoted\"\nsecond line".into(),
            start,
            end: start + Duration::from_millis(1500),
            keyval: [
                ("version".to_string(), Value::Int(1)),
                ("sysinfo-uname".to_string(), Value::Text("Linux x".into())),
            ]
            .into_iter()
            .collect(),
            iterations: vec![Iteration {
                attr: BTreeMap::new(),
                perf: [("t".to_string(), 1.5)].into_iter().collect(),
            }],
        }
    }

    fn started() -> Event {
        Event::JobStarted {
            tag: "job".into(),
            control: "/c/control.rhai".into(),
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            args: vec!["a b".into()],
            host: "h".into(),
            user: "u".into(),
        }
    }

    fn read(dir: &Path) -> Results {
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn the_file_is_valid_after_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonWriter::new(dir.path());
        w.handle(&started()).unwrap();
        let r = read(dir.path());
        assert_eq!(r.version, VERSION);
        assert!(r.tests.is_empty());
        assert_eq!(r.job.status, Status::Running);
        assert_eq!(r.job.end, None);
        for (i, st) in [Status::Good, Status::Fail, Status::TestNa]
            .iter()
            .enumerate()
        {
            w.handle(&Event::TestFinished(finished(&format!("t{i}"), *st)))
                .unwrap();
            let r = read(dir.path());
            assert_eq!(r.tests.len(), i + 1);
            assert_eq!(r.tests[i].status, *st);
        }
        let r = read(dir.path());
        let t = &r.tests[0];
        assert_eq!(
            (t.start, t.end, t.duration),
            (1_700_000_000.25, 1_700_000_001.75, 1.5)
        );
        assert_eq!(t.reason, "why \"quoted\"\nsecond line");
        assert_eq!(t.sysinfo["uname"], Value::Text("Linux x".into()));
        assert_eq!(t.keyval.keys().collect::<Vec<_>>(), ["version"]);
        assert_eq!(t.iterations[0].perf["t"], 1.5);
        w.handle(&Event::JobFinished {
            status: Status::Abort,
            reason: "interrupted by SIGINT".into(),
            exit_code: 2,
            end: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_010),
        })
        .unwrap();
        let r = read(dir.path());
        assert_eq!(r.tests.len(), 3);
        assert_eq!(r.job.status, Status::Abort);
        assert_eq!(r.job.exit_code, Some(2));
        assert_eq!(r.job.end, Some(1_700_000_010.0));
        assert_eq!(r.job.args, ["a b"]);
        // one line per test between the head and the trailer
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn a_shorter_trailer_is_padded_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonWriter::new(dir.path());
        w.handle(&started()).unwrap();
        w.handle(&Event::JobFinished {
            status: Status::Abort,
            reason: "a long reason that makes the trailer long".into(),
            exit_code: 2,
            end: SystemTime::now(),
        })
        .unwrap();
        let long = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        w.handle(&Event::JobFinished {
            status: Status::Good,
            reason: String::new(),
            exit_code: 0,
            end: SystemTime::now(),
        })
        .unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE)).unwrap().len(),
            long
        );
        assert_eq!(read(dir.path()).job.status, Status::Good);
    }
}
