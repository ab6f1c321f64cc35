//! The job: its folder, status log, properties, and the job API of control files
//! (`run_test`, `run_group`, `record`), shared by the job process and test processes.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use rhai::{Dynamic, Map};

use crate::args::RunArgs;
use crate::child::{self, ChildEnd, TestSpec};
use crate::discovery;
use crate::events::{Event, Events, FinishedTest, Subscriber};
use crate::lifecycle::TestPaths;
use crate::logging;
use crate::outcome::Outcome;
use crate::state::{Props, StateFile};
use crate::status::Status;
use crate::status_log::{self, Entry, StatusLog};

/// What a job is, in a form that crosses into test processes.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// The job folder.
    pub resultdir: PathBuf,
    /// The job's temp folder.
    pub tmpdir: PathBuf,
    /// The job folder's name.
    pub tag: String,
    /// `--args`, split.
    pub args: Vec<String>,
    /// Who runs the job.
    pub user: String,
    /// The machine's host name.
    pub hostname: String,
    /// The control file.
    pub control: PathBuf,
    /// Folders searched for tests, in order.
    pub test_dirs: Vec<PathBuf>,
    /// Folders searched for script profilers (`NAME/NAME.rhai`), in order.
    pub profiler_dirs: Vec<PathBuf>,
    /// Where setup records live.
    pub cache_dir: PathBuf,
    /// `--verbose`.
    pub verbose: bool,
    /// The persistent state file (`get_state`, properties, steps).
    pub state: PathBuf,
    /// Seconds a test's `cleanup` gets after Ctrl-C before the test is killed.
    pub cleanup_grace: f64,
    /// The status log file this process appends to: `status`, or `status.<i>` in a
    /// parallel task.
    pub status_file: String,
    /// In a test process: the running test's folder, under which nested tests go.
    pub master_testpath: Option<String>,
    /// Debug log names (folder, name) a test process also writes to.
    pub sinks: Vec<(PathBuf, String)>,
    /// The status log's indentation.
    pub indent: usize,
    /// What sysinfo collects, and the test keyval block read once at job start.
    pub sysinfo: crate::sysinfo::JobSysinfo,
}

/// A live job.
#[derive(Debug)]
pub struct Job {
    /// The job's description.
    pub info: JobInfo,
    /// The status log writer (shared with its subscriber in `events`).
    pub log: Rc<RefCell<StatusLog>>,
    /// `job.profilers`.
    pub profilers: crate::profilers::ProfilersHandle,
    /// The subscribers to the job's events: the status log first, then the progress board,
    /// then (in the job process) the console and the report writers.
    pub events: Events,
}

/// The job as scripts hold it (`job`).
#[derive(Debug, Clone)]
pub struct JobHandle(pub Rc<RefCell<Job>>);

/// A job-level error that aborts the job unless a script catches it.
pub fn abort(message: impl Into<String>) -> Outcome {
    Outcome::new(Status::Abort, message)
}

impl JobHandle {
    /// A handle for `info`, its status log at `info.indent`.
    pub fn new(info: JobInfo) -> JobHandle {
        let log = Rc::new(RefCell::new(StatusLog::with_file(
            &info.resultdir,
            &info.status_file,
            info.indent,
        )));
        let mut events = Events::default();
        events.subscribe(Box::new(status_log::StatusLogWriter(log.clone())));
        if crate::progress::is_open() {
            events.subscribe(Box::<crate::progress::ProgressWriter>::default());
        }
        JobHandle(Rc::new(RefCell::new(Job {
            info,
            log,
            profilers: Default::default(),
            events,
        })))
    }

    /// Adds a subscriber to the job's events.
    pub fn subscribe(&self, s: Box<dyn Subscriber>) {
        self.0.borrow_mut().events.subscribe(s);
    }

    /// Sends `event` to the job's subscribers (outside the job process, only to those
    /// that hear in forks). Fails when an essential subscriber (the status log) failed.
    pub fn emit(&self, event: &Event) -> Result<(), String> {
        self.0.borrow_mut().events.emit(event)
    }

    /// Emits the tests that `log`, status lines written by forked processes (parallel
    /// tasks, a test's own process), holds from START to END.
    pub fn replay(&self, log: &str) {
        let mut j = self.0.borrow_mut();
        let resultdir = j.info.resultdir.clone();
        j.events.replay(&resultdir, log);
    }

    /// Where the status log ends now, for [`JobHandle::replay_since`]; `None` when no one
    /// listens to the events.
    fn status_mark(&self) -> Option<(PathBuf, u64)> {
        let j = self.0.borrow();
        if !j.events.live() {
            return None;
        }
        let path = j.info.resultdir.join(&j.info.status_file);
        let len = std::fs::metadata(&path).map(|m| m.len()).ok()?;
        Some((path, len))
    }

    /// Replays what other processes added to the status log since `mark`.
    fn replay_since(&self, mark: Option<(PathBuf, u64)>) {
        let Some((path, from)) = mark else { return };
        // Mostly nothing was added: one stat then.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() <= from) {
            return;
        }
        let mut text = Vec::new();
        let read = std::fs::File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut text)
        });
        match read {
            Ok(0) => {}
            Ok(_) => self.replay(&String::from_utf8_lossy(&text)),
            Err(e) => logging::warning("job", &format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Emits the end of a test this process ran, its END already recorded.
    fn test_finished(
        &self,
        subdir: &str,
        op: &str,
        status: Status,
        reason: &str,
        start: SystemTime,
    ) {
        let resultdir = self.0.borrow().info.resultdir.clone();
        if !self.0.borrow().events.live() {
            // Only the per-process subscribers hear: they need no keyvals.
            let test = FinishedTest {
                name: op.to_string(),
                subdir: subdir.to_string(),
                status,
                reason: String::new(),
                start,
                end: SystemTime::now(),
                keyval: Default::default(),
                iterations: Vec::new(),
            };
            let _ = self.emit(&Event::TestFinished(test));
            return;
        }
        let test = FinishedTest::read(
            &resultdir,
            subdir,
            op,
            status,
            &status_log::logged_message(reason),
            start,
            SystemTime::now(),
        );
        let _ = self.emit(&Event::TestFinished(test));
    }

    /// A copy of the job's description.
    pub fn info(&self) -> JobInfo {
        let j = self.0.borrow();
        let mut info = j.info.clone();
        info.indent = j.log.borrow().indent();
        info
    }

    /// The job's state file.
    pub fn state(&self) -> StateFile {
        StateFile::new(&self.0.borrow().info.state)
    }

    /// The persistent job properties as they are now.
    pub fn props(&self) -> Result<Props, String> {
        self.state()
            .load()
            .map(|s| s.props)
            .map_err(|e| e.to_string())
    }

    /// Changes the persistent job properties.
    pub fn update_props<T>(&self, f: impl FnOnce(&mut Props) -> T) -> Result<T, String> {
        self.state()
            .update(|s| f(&mut s.props))
            .map_err(|e| e.to_string())
    }

    /// Starts writing the status log to `file` (a parallel task's `status.<i>`).
    pub fn set_status_file(&self, file: &str) {
        let mut j = self.0.borrow_mut();
        let indent = j.log.borrow().indent();
        j.info.status_file = file.to_string();
        let log = StatusLog::with_file(&j.info.resultdir, file, indent);
        *j.log.borrow_mut() = log;
    }

    /// Makes one status record: the status log subscriber checks it, writes it to the
    /// status files and logs it at INFO, as autotest's record hook does.
    pub fn record(&self, entry: &Entry) -> Result<(), String> {
        self.emit(&Event::Record(entry.clone()))
    }

    /// `job.record(status, subdir, operation, message, fields)` from a script.
    pub fn record_from_script(
        &self,
        code: &str,
        subdir: Option<String>,
        operation: Option<String>,
        message: &str,
        fields: &Map,
    ) -> Result<(), String> {
        if let Some(sub) = &subdir {
            let dir = self.0.borrow().info.resultdir.join(sub);
            if sub.contains("..") || !dir.is_dir() {
                return Err(format!(
                    "cannot record into subdir '{sub}': {} is not a folder of this job",
                    dir.display()
                ));
            }
        }
        let mut e = Entry::new(code, subdir.as_deref(), operation.as_deref(), message);
        for (k, v) in fields {
            e.fields.push((k.to_string(), crate::keyval::py_str(v)));
        }
        self.record(&e)
    }

    /// The subdir and operation name of a test run, as autotest's `_build_tagged_test_name`.
    fn tagged_names(
        &self,
        name: &str,
        a: &RunArgs,
        props: &Props,
    ) -> Result<(String, String), Outcome> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(t) = &a.tag {
            parts.push(t.clone());
        }
        if props.use_sequence_number {
            let seq = self
                .update_props(|p| {
                    p.seq += 1;
                    p.seq - 1
                })
                .map_err(abort)?;
            parts.push(format!("_{seq:02}_"));
        }
        if let Some(t) = props.automatic_test_tag.clone().filter(|t| !t.is_empty()) {
            parts.push(t);
        }
        for p in &parts {
            discovery::check_name("tag", p).map_err(abort)?;
        }
        let base = discovery::basename(name).to_string();
        let full: String = std::iter::once(base.clone())
            .chain(parts.iter().cloned())
            .collect::<Vec<_>>()
            .join(".");
        if let Some(st) = &a.subdir_tag {
            discovery::check_name("subdir_tag", st).map_err(abort)?;
            parts.push(st.clone());
        }
        let folder: String = std::iter::once(base)
            .chain(parts)
            .collect::<Vec<_>>()
            .join(".");
        let subdir = match &self.0.borrow().info.master_testpath {
            Some(m) => format!("{m}/{folder}"),
            None => folder,
        };
        Ok((subdir, full))
    }

    /// `job.run_test(name, args)`: the test's status, or an ABORT outcome for the caller to
    /// raise (a job error, a duplicate folder, an interrupt).
    pub fn run_test(&self, name: &str, args: Option<&Dynamic>) -> Result<Status, Outcome> {
        if let Some(sig) = child::interrupted() {
            return Err(abort(format!("interrupted by {}", child::signal_name(sig))));
        }
        discovery::check_name("test name", name).map_err(abort)?;
        let (map, positional) = match args {
            None => (Map::new(), None),
            Some(v) => match v.read_lock::<Map>() {
                Some(m) => (m.clone(), None),
                None => (Map::new(), Some(v.clone())),
            },
        };
        let run_args = RunArgs::from_map(&map).map_err(abort)?;
        let props = self.props().map_err(abort)?;
        let (subdir, op) = self.tagged_names(name, &run_args, &props)?;
        let info = self.info();
        let outputdir = info.resultdir.join(&subdir);
        if outputdir.exists() {
            return Err(abort(format!(
                "{subdir} already exists; multiple tests cannot run with the same subdirectory"
            )));
        }
        std::fs::create_dir_all(&outputdir).map_err(|e| {
            abort(format!(
                "cannot create test folder {}: {e}",
                outputdir.display()
            ))
        })?;
        let mut start = Entry::new("START", Some(&subdir), Some(&op), "");
        if let Some(t) = run_args.timeout {
            start
                .fields
                .push(("timeout".into(), crate::keyval::py_str(&timeout_value(t))));
        }
        self.record(&start).map_err(abort)?;
        let started = SystemTime::now();
        let mark = self.status_mark();
        let _ = self.emit(&Event::TestStarted {
            name: op.clone(),
            subdir: subdir.clone(),
            start: started,
        });
        let end = match discovery::find(name, &info.test_dirs) {
            None => ChildEnd::Finished(Some(Outcome::new(
                Status::Error,
                discovery::not_found_message(name, &info.test_dirs),
            ))),
            Some(found) => {
                // The test process inherits the df plan and the test engine: bring the
                // one up to date and build the other first.
                self.0.borrow_mut().info.sysinfo.df.refresh();
                let _ = crate::api::test_engine();
                let spec = self.spec(
                    name,
                    &subdir,
                    &outputdir,
                    found,
                    run_args.clone(),
                    positional,
                    &props,
                );
                child::run(spec, run_args.timeout, crate::runner::test_process)
            }
        };
        // The tests it ran in its own process (nested tests) ended before it did.
        self.replay_since(mark);
        let outcome = match end {
            ChildEnd::Finished(o) => o,
            ChildEnd::Failed(o) => Some(o),
            ChildEnd::Interrupted(sig) => {
                let msg = format!("interrupted by {}", child::signal_name(sig));
                self.record(&Entry::new("ABORT", Some(&subdir), Some(&op), &msg))
                    .map_err(abort)?;
                self.record(&Entry::new("END ABORT", Some(&subdir), Some(&op), ""))
                    .map_err(abort)?;
                self.test_finished(&subdir, &op, Status::Abort, &msg, started);
                return Err(abort(msg));
            }
        };
        match outcome {
            None => {
                self.record(&Entry::new(
                    "GOOD",
                    Some(&subdir),
                    Some(&op),
                    "completed successfully",
                ))
                .map_err(abort)?;
                self.record(&Entry::new("END GOOD", Some(&subdir), Some(&op), ""))
                    .map_err(abort)?;
                self.test_finished(
                    &subdir,
                    &op,
                    Status::Good,
                    "completed successfully",
                    started,
                );
                Ok(Status::Good)
            }
            Some(o) if o.status == Status::Abort => {
                self.record(&Entry::new("END ABORT", Some(&subdir), Some(&op), ""))
                    .map_err(abort)?;
                self.test_finished(&subdir, &op, Status::Abort, &o.message, started);
                Err(o)
            }
            Some(o) => {
                let code = o.status.as_str();
                self.record(&Entry::new(code, Some(&subdir), Some(&op), &o.message))
                    .map_err(abort)?;
                self.record(&Entry::new(
                    &format!("END {code}"),
                    Some(&subdir),
                    Some(&op),
                    "",
                ))
                .map_err(abort)?;
                self.test_finished(&subdir, &op, o.status, &o.message, started);
                Ok(o.status)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        name: &str,
        subdir: &str,
        outputdir: &Path,
        found: discovery::Found,
        a: RunArgs,
        positional: Option<Dynamic>,
        props: &Props,
    ) -> TestSpec {
        let mut job = self.info();
        let tagged = outputdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let srcdir = job
            .cache_dir
            .join("tests")
            .join(name.replace(':', "/"))
            .join("src");
        let paths = TestPaths {
            name: name.to_string(),
            tagged_testname: tagged.clone(),
            subdir: subdir.to_string(),
            outputdir: outputdir.to_path_buf(),
            resultsdir: outputdir.join("results"),
            profdir: outputdir.join("profiling"),
            debugdir: outputdir.join("debug"),
            bindir: found.bindir.clone(),
            srcdir,
            tmpdir: PathBuf::new(),
        };
        job.master_testpath = Some(subdir.to_string());
        job.sinks.push((outputdir.join("debug"), tagged));
        TestSpec {
            job,
            script: found.script,
            kind: found.kind,
            paths,
            params: a.params,
            execute: a.execute,
            positional,
            run_cleanup: a.run_cleanup.unwrap_or(props.run_test_cleanup),
            default_profile_only: props.default_profile_only,
            drop_caches: props.drop_caches_between_iterations,
            sysinfo_per_iteration: props.sysinfo_per_iteration,
            profilers: self.0.borrow().profilers.clone(),
            test_attributes: a.test_attributes,
        }
    }
}

/// A timeout as written in the START line: whole seconds as an integer.
fn timeout_value(t: f64) -> Dynamic {
    if t.fract() == 0.0 && t < i64::MAX as f64 {
        Dynamic::from_int(t as i64)
    } else {
        Dynamic::from_float(t)
    }
}

/// autotest's exception class name for a status, for `Unhandled TestFail: ...` messages.
pub fn class_name(status: Status) -> &'static str {
    match status {
        Status::Fail => "TestFail",
        Status::Error => "TestError",
        Status::TestNa => "TestNAError",
        Status::Warn => "TestWarn",
        Status::Bug => "TestBug",
        Status::Abort => "JobError",
        _ => "AutotestError",
    }
}
