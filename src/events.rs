//! The job's event stream: what happened (a status record was made, the job started, a test
//! started, an iteration ended, a test finished, the job ended), sent to the subscribers:
//! the status log writer, the console, and the report writers (`results.json`,
//! `junit.xml`, `report.html`, TAP).
//!
//! Every process emits what it does. Tests run in forked processes, and so do
//! `job.parallel` tasks: there, only the subscribers that belong in every process (the
//! status log, which each process appends to itself; the live progress of the console) hear
//! the events ([`Subscriber::in_forks`]). The job-wide writers hear only the job process,
//! and read what forks ran back from the status log once they end: the tests a top-level
//! test ran inside its process (nested tests) from the lines it added to `status`, a
//! parallel section's tests from each task's `status.<i>` as it is merged, and on
//! `--continue` the tests of the earlier run from the whole log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::keyval::{self, Iteration, Value};
use crate::logging;
use crate::results::LoggedTest;
use crate::status::Status;
use crate::status_log::Entry;

/// Something that happened in the job.
#[derive(Debug, Clone)]
pub enum Event {
    /// A status record (`START`, `GOOD`, `END FAIL`, `INFO`, ...) to add to the status log.
    Record(Entry),
    /// One iteration of the test this process runs starts (`iteration` of `of`; `of` is 0
    /// for a timed run).
    IterationStarted {
        /// Which iteration starts.
        iteration: i64,
        /// How many there are, or 0 for a timed run (`test_length`).
        of: i64,
    },
    /// One iteration of the test this process runs ended (`iteration` of `of`; `of` is 0
    /// for a timed run, whose iterations are counted from 1).
    IterationDone {
        /// Which iteration ended.
        iteration: i64,
        /// How many there are, or 0 for a timed run (`test_length`).
        of: i64,
        /// The attr keyvals the iteration wrote (unsuffixed keys), merged.
        attr: BTreeMap<String, String>,
        /// The perf keyvals the iteration wrote (unsuffixed keys), merged.
        perf: BTreeMap<String, String>,
    },
    /// The job started (or was continued).
    JobStarted {
        /// The job folder's name.
        tag: String,
        /// The control file.
        control: PathBuf,
        /// When the job first started.
        start: SystemTime,
        /// `--args`, split.
        args: Vec<String>,
        /// The machine's host name.
        host: String,
        /// Who runs the job.
        user: String,
    },
    /// A test's START is in the status log.
    TestStarted {
        /// The operation: the test name with its tags.
        name: String,
        /// The test's folder, relative to the job folder.
        subdir: String,
        /// When it started.
        start: SystemTime,
    },
    /// A test's END is in the status log.
    TestFinished(FinishedTest),
    /// `job.quit()`: the job stops here, to be continued with `--continue`.
    JobPaused {
        /// The exit code of `autorun`.
        exit_code: i32,
        /// When it paused.
        at: SystemTime,
    },
    /// The job's END is in the status log.
    JobFinished {
        /// The job's END status: GOOD or ABORT.
        status: Status,
        /// Why it aborted (empty when it did not).
        reason: String,
        /// The exit code of `autorun`.
        exit_code: i32,
        /// When it ended.
        end: SystemTime,
    },
}

/// A finished test: its status-log record and what it left in its folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedTest {
    /// The operation: the test name with its tags.
    pub name: String,
    /// The test's folder, relative to the job folder.
    pub subdir: String,
    /// Its END status.
    pub status: Status,
    /// The message of its result line, as the status log keeps it.
    pub reason: String,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// The test keyval (`<subdir>/keyval`), typed as `read_keyval` does.
    pub keyval: BTreeMap<String, Value>,
    /// The iteration records of `<subdir>/results/keyval`.
    pub iterations: Vec<Iteration>,
}

impl FinishedTest {
    /// The record of a test that ended, with the keyvals read from its folder.
    pub fn read(
        resultdir: &Path,
        subdir: &str,
        name: &str,
        status: Status,
        reason: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> FinishedTest {
        let dir = resultdir.join(subdir);
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                logging::warning("job", &format!("cannot read {}: {e}", path.display()));
                String::new()
            }
        };
        let keyval_path = dir.join("keyval");
        let keyval = keyval::parse_values(&read(&keyval_path)).unwrap_or_else(|e| {
            logging::warning("job", &format!("{}: {e}", keyval_path.display()));
            BTreeMap::new()
        });
        FinishedTest {
            name: name.to_string(),
            subdir: subdir.to_string(),
            status,
            reason: reason.to_string(),
            start,
            end,
            keyval,
            iterations: keyval::iterations(&read(&dir.join("results").join("keyval"))),
        }
    }

    /// The record of a test read back from the status log.
    pub fn from_log(resultdir: &Path, t: &LoggedTest) -> FinishedTest {
        FinishedTest::read(
            resultdir,
            &t.subdir,
            &t.operation,
            t.status,
            &t.reason,
            epoch(t.started),
            epoch(t.ended),
        )
    }
}

/// `secs` seconds after the Unix epoch.
pub fn epoch(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Seconds since the Unix epoch, with the fraction.
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Something that reacts to the job's events, such as a report writer.
pub trait Subscriber {
    /// A short name for error messages (`results.json`).
    fn name(&self) -> &str;
    /// Handles one event. An error is logged and the job goes on, unless the subscriber is
    /// [`essential`](Subscriber::essential).
    fn handle(&mut self, event: &Event) -> Result<(), String>;
    /// True for a subscriber that hears the events of forks too (a parallel task's copy of
    /// the list): the status log, which every process appends to. Job-wide writers say no.
    fn in_forks(&self) -> bool {
        false
    }
    /// True when the job cannot go on after this subscriber failed (the status log): the
    /// error goes back to the emitter instead of the log.
    fn essential(&self) -> bool {
        false
    }
}

/// The job's subscribers. Events reach all of them in the process that created this list;
/// forks (parallel tasks) hold a copy in which only the [`Subscriber::in_forks`] ones hear.
pub struct Events {
    owner: u32,
    subscribers: Vec<Box<dyn Subscriber>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            owner: std::process::id(),
            subscribers: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("owner", &self.owner)
            .field(
                "subscribers",
                &self
                    .subscribers
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Events {
    /// Adds a subscriber; it sees the events emitted from now on.
    pub fn subscribe(&mut self, s: Box<dyn Subscriber>) {
        self.subscribers.push(s);
    }

    /// True when the job-wide writers hear: this is the owning process and it has
    /// subscribers that are not only per-process ones. Lets callers skip work done only to
    /// build events for them (reading a test's keyvals back, replaying a log).
    pub fn live(&self) -> bool {
        std::process::id() == self.owner && self.subscribers.iter().any(|s| !s.in_forks())
    }

    /// Sends `event` to every subscriber that hears in this process, in the order they
    /// subscribed. The first error of an essential subscriber is returned (the others still
    /// hear the event); other errors are logged.
    pub fn emit(&mut self, event: &Event) -> Result<(), String> {
        let owner = std::process::id() == self.owner;
        let mut first = Ok(());
        for s in &mut self.subscribers {
            if !owner && !s.in_forks() {
                continue;
            }
            if let Err(e) = s.handle(event) {
                if s.essential() {
                    if first.is_ok() {
                        first = Err(e);
                    }
                } else {
                    logging::error("job", &format!("{}: {e}", s.name()));
                }
            }
        }
        first
    }

    /// Emits a start and a finish for each test that `log` holds whole (see
    /// [`crate::results::finished_tests`]), reading their keyvals from `resultdir`.
    pub fn replay(&mut self, resultdir: &Path, log: &str) {
        if !self.live() {
            return;
        }
        for t in crate::results::finished_tests(log) {
            let _ = self.emit(&Event::TestStarted {
                name: t.operation.clone(),
                subdir: t.subdir.clone(),
                start: epoch(t.started),
            });
            let _ = self.emit(&Event::TestFinished(FinishedTest::from_log(resultdir, &t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Seen(Rc<RefCell<Vec<String>>>);

    impl Subscriber for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        fn handle(&mut self, event: &Event) -> Result<(), String> {
            let s = match event {
                Event::TestStarted { subdir, .. } => format!("start {subdir}"),
                Event::TestFinished(t) => format!(
                    "end {} {} {:?} {}",
                    t.subdir,
                    t.status,
                    t.keyval.get("k"),
                    t.iterations.len()
                ),
                _ => "other".into(),
            };
            self.0.borrow_mut().push(s);
            Ok(())
        }
    }

    #[test]
    fn replay_reads_keyvals_of_tests_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t/results")).unwrap();
        std::fs::write(dir.path().join("t/keyval"), "k=1\n").unwrap();
        std::fs::write(
            dir.path().join("t/results/keyval"),
            "a{perf}=1\n\nb{perf}=2\n\n",
        )
        .unwrap();
        let log = "\tSTART\tt\tt\ttimestamp=5\tlocaltime=x\t\n\
                   \t\tGOOD\tt\tt\ttimestamp=6\tlocaltime=x\tcompleted successfully\n\
                   \tEND GOOD\tt\tt\ttimestamp=6\tlocaltime=x\t\n";
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut events = Events::default();
        assert!(!events.live());
        events.subscribe(Box::new(Seen(seen.clone())));
        assert!(events.live());
        events.replay(dir.path(), log);
        assert_eq!(
            *seen.borrow(),
            ["start t", "end t GOOD Some(Int(1)) 2"],
            "{log}"
        );
    }

    struct Failing {
        essential: bool,
        in_forks: bool,
        calls: Rc<RefCell<usize>>,
    }

    impl Subscriber for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn handle(&mut self, _: &Event) -> Result<(), String> {
            *self.calls.borrow_mut() += 1;
            Err(format!("essential={}", self.essential))
        }
        fn essential(&self) -> bool {
            self.essential
        }
        fn in_forks(&self) -> bool {
            self.in_forks
        }
    }

    #[test]
    fn an_essential_failure_reaches_the_emitter_and_the_others_still_hear() {
        let calls = Rc::new(RefCell::new(0));
        let mut events = Events::default();
        for essential in [true, false, true] {
            events.subscribe(Box::new(Failing {
                essential,
                in_forks: false,
                calls: calls.clone(),
            }));
        }
        let e = Event::Record(Entry::new("INFO", None, None, "x"));
        assert_eq!(events.emit(&e), Err("essential=true".to_string()));
        assert_eq!(*calls.borrow(), 3);
    }

    #[test]
    fn forks_hear_only_per_process_subscribers() {
        let job_wide = Rc::new(RefCell::new(0));
        let per_process = Rc::new(RefCell::new(0));
        let mut events = Events::default();
        events.subscribe(Box::new(Failing {
            essential: false,
            in_forks: false,
            calls: job_wide.clone(),
        }));
        events.subscribe(Box::new(Failing {
            essential: false,
            in_forks: true,
            calls: per_process.clone(),
        }));
        // As a fork sees the list it inherited: another process owns it.
        events.owner = events.owner.wrapping_add(1);
        assert!(!events.live());
        let _ = events.emit(&Event::IterationStarted {
            iteration: 1,
            of: 2,
        });
        assert_eq!((*job_wide.borrow(), *per_process.borrow()), (0, 1));
    }
}
