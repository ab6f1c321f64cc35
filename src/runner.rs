//! Running a job (`autorun CONTROL`) and running one test in a test process.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::api;
use crate::child::{self, TestSpec};
use crate::cli::RunOpts;
use crate::config;
use crate::discovery::{absolute, Kind};
use crate::error::{exit, Error};
use crate::events::{self, Event};
use crate::exec_test::ExecTest;
use crate::job::{JobHandle, JobInfo};
use crate::keyval;
use crate::lifecycle::{self, Request, TestState};
use crate::logging::{self, Level};
use crate::outcome::{escape_of, Escape};
use crate::resume;
use crate::script_test::{compile, ScriptTest};
use crate::status::Status;
use crate::status_log::{self, Entry};
use crate::steps;

/// Creates the job folder: `<out>/<tag>` or a fresh `job-YYYYmmdd-HHMMSS[-N]`.
pub(crate) fn make_job_folder(
    out: &Path,
    tag: Option<&str>,
    overwrite: bool,
) -> Result<PathBuf, Error> {
    let io = |p: &Path, e: std::io::Error| Error::Io(format!("cannot create {}: {e}", p.display()));
    // A bad tag is refused before anything is created.
    if let Some(tag) = tag {
        crate::discovery::check_name("tag", tag).map_err(Error::Usage)?;
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    if let Some(tag) = tag {
        let dir = out.join(tag);
        if dir.symlink_metadata().is_ok() {
            if folder_busy(&dir) {
                return Err(Error::JobFolderBusy(dir));
            }
            if !overwrite {
                return Err(Error::JobFolderExists(dir));
            }
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| io(&dir, e))?;
        return Ok(dir);
    }
    let stamp = chrono::Local::now().format("job-%Y%m%d-%H%M%S").to_string();
    for n in 1.. {
        let name = if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let dir = out.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&dir, e)),
        }
    }
    unreachable!("the loop returns")
}

/// The file whose lock marks a job folder in use.
const LOCK_FILE: &str = ".autorun.lock";

/// Takes the job folder's lock for the whole job (test processes inherit it), or refuses
/// with a sentence when another autorun holds it.
fn lock_job_folder(dir: &Path) -> Result<fd_lock::RwLockWriteGuard<'static, std::fs::File>, Error> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    // The lock lives as long as the job process: leaking its holder is the simple way.
    let lock: &'static mut fd_lock::RwLock<std::fs::File> =
        Box::leak(Box::new(fd_lock::RwLock::new(file)));
    lock.try_write()
        .map_err(|_| Error::JobFolderBusy(dir.to_path_buf()))
}

/// True when another autorun holds `dir`'s lock.
pub fn folder_busy(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(LOCK_FILE))
    else {
        return false;
    };
    let mut lock = fd_lock::RwLock::new(file);
    let busy = lock.try_write().is_err();
    busy
}

/// Points `<out>/latest` at `dir`, replacing the link atomically.
fn update_latest(out: &Path, dir: &Path) {
    let Some(name) = dir.file_name() else { return };
    let tmp = out.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(name, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, out.join("latest"));
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            if uid == 0 {
                "root".to_string()
            } else {
                uid.to_string()
            }
        })
}

fn control_file_name(control: &Path) -> String {
    control
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "control".into())
}

/// Why the control file or the step engine stopped early.
enum Stop {
    /// The job aborts with this message.
    Abort(String),
    /// `job.quit()`: the job pauses, to be continued.
    Paused,
}

/// Runs a job (or continues one with `--continue`); returns the exit code.
pub fn run_job(opts: &RunOpts) -> Result<i32, Error> {
    let Some(control) = opts.control.as_deref() else {
        return Err(Error::Usage(
            "no control file given; usage: autorun [OPTIONS] CONTROL_FILE".into(),
        ));
    };
    if opts.cont && opts.overwrite {
        return Err(Error::Usage(
            "--continue and --overwrite cannot be used together".into(),
        ));
    }
    let source = std::fs::read_to_string(control).map_err(|e| Error::ControlFile {
        path: control.to_path_buf(),
        reason: e.to_string(),
    })?;
    let control = absolute(control);
    let control_dir = control.parent().unwrap_or(Path::new("/")).to_path_buf();
    let cfg = config::load(&control_dir)?;
    let out = opts
        .output_dir
        .clone()
        .or(cfg.output_dir.clone())
        .unwrap_or_else(|| PathBuf::from("results"));
    let state_name = format!("{}.state", control_file_name(&control));
    let resultdir = if opts.cont {
        resume::continue_folder(&out, opts.tag.as_deref(), &state_name)?
    } else {
        absolute(&make_job_folder(&out, opts.tag.as_deref(), opts.overwrite)?)
    };
    let plan = JobPlan {
        opts,
        control: control.clone(),
        control_dir,
        cfg,
        out: Some(out),
        resultdir,
        state_name,
        source,
    };
    let (job, _tmp) = open_job(plan)?;
    let engine = api::engine(job.clone());
    let stop = run_control(&engine, &job, &control, opts.cont);
    if let Err(Stop::Paused) = stop {
        let _ = job.emit(&Event::JobPaused {
            exit_code: exit::PAUSED,
            at: std::time::SystemTime::now(),
        });
        logging::pop_sink();
        eprintln!(
            "autorun: the job paused; resume it with: autorun --continue {}{}",
            control.display(),
            opts.tag
                .as_deref()
                .map(|t| format!(" --tag {t}"))
                .unwrap_or_default()
        );
        return Ok(exit::PAUSED);
    }
    let aborted = match stop {
        Err(Stop::Abort(msg)) => Some(msg),
        _ => child::interrupted().map(|sig| format!("interrupted by {}", child::signal_name(sig))),
    };
    finish_job(&job, aborted)
}

/// Where and how a job runs, worked out from the command line and the config file.
pub(crate) struct JobPlan<'a> {
    /// The options of the run (`test_dir`, `args`, `verbose`, `cont` are read).
    pub opts: &'a RunOpts,
    /// The control file (`job.control`).
    pub control: PathBuf,
    /// The folder whose `tests/` and `profilers/` are searched.
    pub control_dir: PathBuf,
    /// The config file's settings.
    pub cfg: config::Config,
    /// The output folder, whose `latest` link is pointed at the job folder (none for a
    /// job folder named outright).
    pub out: Option<PathBuf>,
    /// The job folder, already made.
    pub resultdir: PathBuf,
    /// The state file's name in the job folder.
    pub state_name: String,
    /// What a new job writes as its `control` file.
    pub source: String,
}

/// Takes the job folder, opens the job's logs and report writers, and records the job's
/// START (or replays the status log of a job being continued). The temp folder lives as
/// long as the returned guard.
pub(crate) fn open_job(plan: JobPlan) -> Result<(JobHandle, tempfile::TempDir), Error> {
    let JobPlan {
        opts,
        control,
        control_dir,
        cfg,
        out,
        resultdir,
        state_name,
        source,
    } = plan;
    // Held until the process exits, past the end of this function.
    std::mem::forget(lock_job_folder(&resultdir)?);
    if let Some(out) = &out {
        update_latest(out, &resultdir);
    }
    let io = |what: &str, e: std::io::Error| Error::Io(format!("{what}: {e}"));
    if !opts.cont {
        std::fs::write(resultdir.join("control"), &source)
            .map_err(|e| io("cannot copy the control file", e))?;
    }
    let debug = resultdir.join("debug");
    std::fs::create_dir_all(&debug).map_err(|e| io("cannot create the debug folder", e))?;
    logging::set_console_level(if opts.verbose {
        Level::Debug
    } else {
        Level::Info
    });
    logging::push_sink(&debug, "client").map_err(|e| io("cannot open the job's debug logs", e))?;
    let tmp = tempfile::Builder::new()
        .permissions(crate::files::private())
        .prefix("autorun-")
        .tempdir()
        .map_err(|e| io("cannot create the job's temp folder", e))?;
    let mut test_dirs: Vec<PathBuf> = opts.test_dir.iter().map(|d| absolute(d)).collect();
    test_dirs.push(control_dir.join("tests"));
    test_dirs.extend(cfg.test_dirs.iter().map(|d| absolute(d)));
    // Script profilers are found like tests: in `profilers/` of each --test-dir, next to
    // the control file, then in each of the config's test_dirs.
    let profiler_dirs: Vec<PathBuf> = opts
        .test_dir
        .iter()
        .map(|d| absolute(d).join("profilers"))
        .chain(std::iter::once(control_dir.join("profilers")))
        .chain(cfg.test_dirs.iter().map(|d| absolute(d).join("profilers")))
        .collect();
    // Once per job, in the job process: test processes are forks and inherit the result.
    let sysinfo = crate::sysinfo::collect_job_start(&resultdir);
    let tag = resultdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let indent = if opts.cont {
        resume::recover_status(&resultdir)?
    } else {
        0
    };
    let info = JobInfo {
        resultdir: resultdir.clone(),
        tmpdir: tmp.path().to_path_buf(),
        tag,
        args: opts
            .args
            .as_deref()
            .map(crate::args::split_job_args)
            .unwrap_or_default(),
        user: user(),
        hostname: api::hostname(),
        control: control.clone(),
        test_dirs,
        profiler_dirs,
        cache_dir: absolute(&cfg.cache_dir),
        verbose: opts.verbose,
        state: resultdir.join(&state_name),
        cleanup_grace: cfg.cleanup_grace,
        status_file: "status".to_string(),
        master_testpath: None,
        sinks: vec![(debug, "client".to_string())],
        indent,
        sysinfo,
    };
    // The progress board must exist before the job's first subscriber list is made, so
    // that every process of the job (forks inherit it) reports to it.
    let live = crate::console::wants_live() && crate::progress::open();
    if opts.tap {
        crate::tap::enable();
    }
    let job = JobHandle::new(info);
    api::set_current_job(&job);
    child::install_signal_handlers();
    for writer in crate::report::writers(&resultdir) {
        job.subscribe(writer);
    }
    if opts.tap {
        job.subscribe(Box::new(crate::tap::TapWriter::new(&resultdir)));
    }
    // Last, so that its summary comes after every report is written.
    job.subscribe(Box::new(crate::console::Console::new(&resultdir, live)));
    let record = |e: Entry| job.record(&e).map_err(Error::Io);
    let job_started = |start| {
        let info = job.info();
        let _ = job.emit(&Event::JobStarted {
            tag: info.tag,
            control: info.control,
            start,
            args: info.args,
            host: info.hostname,
            user: info.user,
        });
    };
    if opts.cont {
        logging::info(
            "job",
            &format!("Continuing the job in {}", resultdir.display()),
        );
        // The reports start afresh from what the status log holds of the earlier runs.
        let first = keyval::read(&resultdir.join("keyval"))
            .ok()
            .and_then(|kv| kv.get("job_started").and_then(|v| v.as_int().ok()));
        job_started(first.map_or_else(std::time::SystemTime::now, events::epoch));
        job.replay(&std::fs::read_to_string(resultdir.join("status")).unwrap_or_default());
    } else {
        logging::info(
            "job",
            &format!("Writing results to {}", resultdir.display()),
        );
        let started = chrono::Local::now().timestamp();
        let _ = keyval::append(
            &resultdir.join("keyval"),
            &format!(
                "hostname={}\njob_started={started}\nstatus_version=1\nuser={}\n",
                job.info().hostname,
                job.info().user
            ),
        );
        let mut state = crate::state::State::default();
        state.props.sysinfo_per_iteration = cfg.sysinfo_per_iteration;
        job.state()
            .save(&state)
            .map_err(|e| Error::Io(e.to_string()))?;
        record(Entry::new("START", None, None, ""))?;
        job_started(std::time::SystemTime::now());
    }
    Ok((job, tmp))
}

/// Ends a job: the closing END line (ABORT with `aborted`), the state marked complete,
/// the reports and the console summary; returns the job's exit code.
pub(crate) fn finish_job(job: &JobHandle, aborted: Option<String>) -> Result<i32, Error> {
    let resultdir = job.info().resultdir;
    let record = |e: Entry| job.record(&e).map_err(Error::Io);
    if child::interrupted().is_none() {
        crate::sysinfo::collect_job_end(&resultdir, &job.info().sysinfo);
    }
    // Close whatever is still open (a group interrupted half-way) so the log stays balanced.
    while job.info().indent > 1 {
        record(Entry::new("END ABORT", None, None, ""))?;
    }
    match &aborted {
        Some(msg) => record(Entry::new("END ABORT", None, None, msg))?,
        None => record(Entry::new("END GOOD", None, None, ""))?,
    }
    if let Err(e) = job.state().update(|s| s.complete = true) {
        logging::error("job", &e.to_string());
    }
    let _ = keyval::append(
        &resultdir.join("keyval"),
        &format!("job_finished={}\n", chrono::Local::now().timestamp()),
    );
    // Read line by line, not whole: the job's memory does not grow with its tests.
    let failed = status_log::file_has_failed_end(&resultdir.join("status")).unwrap_or(false);
    let code = match aborted {
        Some(_) => exit::ABORTED,
        None if failed => exit::TEST_FAILED,
        None => exit::OK,
    };
    let _ = job.emit(&Event::JobFinished {
        status: if aborted.is_some() {
            Status::Abort
        } else {
            Status::Good
        },
        reason: aborted.clone().unwrap_or_default(),
        exit_code: code,
        end: std::time::SystemTime::now(),
    });
    logging::pop_sink();
    if let Some(msg) = aborted {
        eprintln!(
            "autorun: the job aborted: {}",
            msg.lines().next().unwrap_or("")
        );
    }
    Ok(code)
}

/// What an error escaping the control file's top level (`place` = the control file) or a
/// step (`place` = its name) means for the job.
fn stop_of(
    job: &JobHandle,
    err: Box<rhai::EvalAltResult>,
    file: &str,
    place: &str,
) -> Result<(), Stop> {
    if let Some(sig) = child::interrupted() {
        return Err(Stop::Abort(format!(
            "interrupted by {}",
            child::signal_name(sig)
        )));
    }
    if steps::is_quit(&err) {
        return Err(Stop::Paused);
    }
    match escape_of(err, file) {
        Escape::Outcome(o) if o.status == Status::TestNa => job
            .record(&Entry::new("TEST_NA", None, Some(place), &o.message))
            .map_err(Stop::Abort),
        Escape::Outcome(o) if o.status == Status::Abort => Err(Stop::Abort(o.message)),
        Escape::Outcome(o) => Err(Stop::Abort(api::unhandled_job_message(&o))),
        Escape::Unhandled(m) => Err(Stop::Abort(m)),
    }
}

/// The control file's top level, then the step engine.
fn run_control(
    engine: &rhai::Engine,
    job: &JobHandle,
    control: &Path,
    continuing: bool,
) -> Result<(), Stop> {
    let file = control.display().to_string();
    let ast = compile(engine, control).map_err(Stop::Abort)?;
    if let Err(e) = engine.run_ast(&ast) {
        stop_of(job, e, &file, &file)?;
    }
    if !continuing && ast.iter_functions().any(|f| f.name == "step_init") {
        steps::queue_step_init(job).map_err(Stop::Abort)?;
    }
    while let Some(step) = steps::pop(job).map_err(Stop::Abort)? {
        if let Err(e) = steps::run_one(engine, &ast, job, &step) {
            stop_of(job, e, &file, &step.name)?;
        }
    }
    if let Some(sig) = child::interrupted() {
        return Err(Stop::Abort(format!(
            "interrupted by {}",
            child::signal_name(sig)
        )));
    }
    Ok(())
}

/// Emits an iteration's start or end to the test process's subscribers.
fn iteration_event(m: lifecycle::IterationMark) {
    let Some(job) = api::current_job() else {
        return;
    };
    let event = if m.started {
        Event::IterationStarted {
            iteration: m.iteration,
            of: m.of,
        }
    } else {
        Event::IterationDone {
            iteration: m.iteration,
            of: m.of,
            attr: m.attr,
            perf: m.perf,
        }
    };
    let _ = job.emit(&event);
}

/// The test-process side, in the fork: runs the whole test and returns its outcome.
pub fn test_process(spec: TestSpec) -> Option<crate::outcome::Outcome> {
    use crate::outcome::Outcome;
    // Rust's runtime catches SIGSEGV and SIGBUS to report stack overflows; a test process
    // must die of them like any program, so that the job sees and names the signal.
    // SAFETY: restoring the default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
    crate::commands::stop_on_signals();
    // The fork already writes to the job's and the enclosing tests' debug logs, at the
    // job's console level: only the test's own logs are added.
    let own = spec.job.sinks.last()?;
    let mut paths = spec.paths.clone();
    let mut initial = TestState::default();
    initial.params = spec.params.clone();
    let state = Rc::new(RefCell::new(initial));
    // First, so that the kernel log lines and mount changes of the whole test process
    // (the script's top-level code included) are the test's.
    let sysinfo = crate::sysinfo::TestSysinfo::start();
    let job = JobHandle::new(spec.job.clone());
    spec.profilers.reset_for_fork();
    job.0.borrow_mut().profilers = spec.profilers.clone();
    api::set_current_job(&job);
    let engine = api::test_engine();
    let (mut test, settings): (Box<dyn lifecycle::TestBody>, _) = match spec.kind {
        Kind::Script => match ScriptTest::load(engine, &spec.script, &paths.name, state.clone()) {
            Ok((t, settings)) => (Box::new(t.with_profilers(spec.profilers.clone())), settings),
            Err(o) => return Some(o),
        },
        Kind::Executable => (
            Box::new(
                ExecTest::new(engine, &spec.script, state.clone())
                    .with_profilers(spec.profilers.clone()),
            ),
            ExecTest::settings(),
        ),
    };
    for d in [&paths.resultsdir, &paths.profdir, &paths.debugdir] {
        if let Err(e) = std::fs::create_dir_all(d) {
            return Some(Outcome::new(
                Status::Error,
                format!("cannot create {}: {e}", d.display()),
            ));
        }
    }
    let _ = logging::push_sink(&own.0, &own.1);
    // Tests run in their output folder, as in autotest.
    if let Err(e) = std::env::set_current_dir(&paths.outputdir) {
        return Some(Outcome::new(
            Status::Error,
            format!("cannot enter {}: {e}", paths.outputdir.display()),
        ));
    }
    // The test's own temp folder is made inside the job's on first use (`this.tmpdir`).
    paths.tmpdir = spec.job.tmpdir.clone();
    state.borrow_mut().paths = paths;
    let req = Request {
        run_cleanup: spec.run_cleanup,
        test_attributes: spec.test_attributes.clone(),
        execute: spec.execute.clone(),
        positional: spec.positional.clone(),
        default_profile_only: spec.default_profile_only,
        drop_caches: spec.drop_caches,
        interrupted: Some(child::interruption),
        allow_cleanup: Some(child::allow_cleanup),
        sysinfo_per_iteration: spec.sysinfo_per_iteration,
        on_iteration: Some(iteration_event),
    };
    let mut warn = |msg: &str| {
        if let Err(e) = job.record(&Entry::new("WARN", None, None, msg)) {
            logging::error("test", &e);
        }
    };
    let outcome = lifecycle::run(&mut *test, &state, &settings, &req, &mut warn);
    // After the phases whatever the outcome, as autotest's after-test hook.
    {
        let st = state.borrow();
        sysinfo.finish(&st.paths.outputdir, &st.paths.subdir, &job.info().sysinfo);
    }
    state.borrow_mut().remove_tmpdir();
    outcome
}
