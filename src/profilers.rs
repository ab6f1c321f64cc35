//! Profilers: `job.profilers` (autotest's profiler manager), script profilers
//! (`profilers/NAME/NAME.rhai`) and the built-in `vmstat`, `cmd` and `perf`. Profilers are
//! added in the job process; test processes are forks and so start with a copy of them,
//! and start, stop and report them around the profiled runs (lifecycle.rs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Scope, AST};

use crate::args::cherry_pick;
use crate::commands::{kill_group, track_command_group, untrack_group};
use crate::job::{abort, JobHandle};
use crate::keyval;
use crate::logging;
use crate::outcome::{escape_of, Escape, Outcome};
use crate::status::Status;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// What a profiler is.
enum Kind {
    /// `profilers/NAME/NAME.rhai`.
    Script {
        ast: Rc<AST>,
        file: String,
        /// Parameter names of the functions it defines.
        fns: HashMap<String, Vec<String>>,
    },
    /// Samples /proc every `interval` seconds into `vmstat.csv`.
    Vmstat { interval: f64 },
    /// Runs `command` in its own process group, output in `cmd.out`.
    Cmd { command: String },
    /// `perf stat` over the profiled run, into `perf.stat`.
    Perf { events: Vec<String> },
}

/// What a started profiler holds until it is stopped.
enum Running {
    Sampler {
        stop: mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    },
    Process {
        child: Child,
        slot: Option<usize>,
        out: PathBuf,
    },
}

/// One added profiler.
pub struct Profiler {
    /// The name it was added under.
    pub name: String,
    kind: Kind,
    /// A script profiler's own state (`this`), data only.
    this: Dynamic,
    running: Option<Running>,
}

/// The profiler manager of one job (and, copied by the fork, of one test process).
#[derive(Default)]
pub struct Manager {
    list: Vec<Profiler>,
    active: bool,
    /// The `iteration.<n>` folders already made in the current test's profiling folder.
    created_dirs: Vec<String>,
}

/// `job.profilers` as scripts hold it.
#[derive(Clone, Default)]
pub struct ProfilersHandle(pub Rc<RefCell<Manager>>);

impl std::fmt::Debug for ProfilersHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .0
            .borrow()
            .list
            .iter()
            .map(|p| p.name.clone())
            .collect();
        f.debug_tuple("Profilers").field(&names).finish()
    }
}

/// The built-in profilers.
pub const BUILT_IN: [&str; 3] = ["vmstat", "cmd", "perf"];

fn not_present(name: &str) -> Box<EvalAltResult> {
    abort(format!("{name} not present")).into_rhai()
}

fn bad_arg(name: &str, msg: String) -> Box<EvalAltResult> {
    abort(format!("profiler {name}: {msg}")).into_rhai()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

impl ProfilersHandle {
    /// `job.profilers.add(name, args)`.
    pub fn add(
        &self,
        ctx: &NativeCallContext,
        job: &JobHandle,
        name: &str,
        args: &Map,
    ) -> RhaiResult<()> {
        let info = job.info();
        let script = info
            .profiler_dirs
            .iter()
            .map(|d| d.join(name).join(format!("{name}.rhai")))
            .find(|p| p.is_file());
        let profiler = match script {
            Some(path) => load_script(ctx.engine(), &path, name, args, &info.cache_dir)?,
            None => built_in(name, args)?,
        };
        logging::debug("profilers", &format!("added profiler {name}"));
        self.0.borrow_mut().list.push(profiler);
        Ok(())
    }

    /// `job.profilers.delete(name)`: removes every profiler of that name.
    pub fn delete(&self, name: &str) {
        self.0.borrow_mut().list.retain(|p| p.name != name);
    }

    /// `job.profilers.present()`.
    pub fn present(&self) -> bool {
        !self.0.borrow().list.is_empty()
    }

    /// `job.profilers.active()`.
    pub fn active(&self) -> bool {
        let m = self.0.borrow();
        !m.list.is_empty() && m.active
    }

    /// `job.profilers.current_profilers()`: the names, once each.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in &self.0.borrow().list {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
        names
    }

    /// Runs `f` on the profiler list without holding the manager borrowed, so that
    /// profiler scripts may use `job.profilers` themselves.
    fn with_list<T>(&self, f: impl FnOnce(&mut Vec<Profiler>) -> T) -> T {
        let mut list = std::mem::take(&mut self.0.borrow_mut().list);
        let out = f(&mut list);
        let mut m = self.0.borrow_mut();
        let added = std::mem::replace(&mut m.list, list);
        m.list.extend(added);
        out
    }

    /// Starts every profiler for the run of `test` (the test object).
    /// If one cannot start, those already started are stopped again and none is active.
    pub fn start(&self, engine: &Engine, test: &Dynamic, profdir: &Path) -> Result<(), Escape> {
        let result = self.with_list(|list| {
            for i in 0..list.len() {
                if let Err(e) = list[i].start(engine, test, profdir) {
                    for p in &mut list[..i] {
                        let _ = p.stop(engine, test);
                    }
                    return Err(e);
                }
            }
            Ok(())
        });
        self.0.borrow_mut().active = result.is_ok();
        result
    }

    /// In a fresh test process: the profilers are not running there (a nested test's
    /// process must not stop its parent's), whatever the copy it inherited says.
    pub fn reset_for_fork(&self) {
        let mut m = self.0.borrow_mut();
        m.active = false;
        for p in &mut m.list {
            // The handles belong to the forking process: forget them, do not drop them.
            if let Some(r) = p.running.take() {
                std::mem::forget(r);
            }
        }
    }

    /// Stops every profiler.
    pub fn stop(&self, engine: &Engine, test: &Dynamic) -> Result<(), Escape> {
        let result = self.with_list(|list| {
            // Every profiler is stopped, even when one of them fails; the first error counts.
            let mut first = Ok(());
            for p in list.iter_mut() {
                let r = p.stop(engine, test);
                if first.is_ok() {
                    first = r;
                }
            }
            first
        });
        self.0.borrow_mut().active = false;
        result
    }

    /// Lets every profiler report, then moves what they left in `profdir` into
    /// `profdir/iteration.<iteration>` (nothing moves for iteration 0).
    pub fn report(
        &self,
        engine: &Engine,
        test: &Dynamic,
        profdir: &Path,
        iteration: i64,
    ) -> Result<(), Escape> {
        self.with_list(|list| list.iter_mut().try_for_each(|p| p.report(engine, test)))?;
        if iteration == 0 {
            return Ok(());
        }
        let folder = format!("iteration.{iteration}");
        let target = profdir.join(&folder);
        let io = |e: std::io::Error| {
            Escape::Outcome(Outcome::new(
                Status::Error,
                format!(
                    "cannot file the profiling results in {}: {e}",
                    target.display()
                ),
            ))
        };
        std::fs::create_dir_all(&target).map_err(io)?;
        let mut m = self.0.borrow_mut();
        if !m.created_dirs.contains(&folder) {
            m.created_dirs.push(folder);
        }
        for entry in std::fs::read_dir(profdir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !m.created_dirs.contains(&name) {
                std::fs::rename(entry.path(), target.join(&name)).map_err(io)?;
            }
        }
        Ok(())
    }
}

/// The job's profilers as one test runs them, its test object `this` at hand: the
/// [`crate::lifecycle::Profilers`] of script and executable tests alike.
pub struct TestProfilers<'e> {
    engine: &'e Engine,
    handle: ProfilersHandle,
    this: Dynamic,
}

impl<'e> TestProfilers<'e> {
    /// The job's profilers `handle`, run with `engine` for the test whose object is `this`.
    pub fn new(engine: &'e Engine, handle: ProfilersHandle, this: Dynamic) -> TestProfilers<'e> {
        TestProfilers {
            engine,
            handle,
            this,
        }
    }

    /// The test's profiling folder and its current iteration.
    fn place(&self) -> (PathBuf, i64) {
        let obj = self
            .this
            .read_lock::<crate::script_test::TestObj>()
            .expect("this is a test object");
        let st = obj.0.borrow();
        (st.paths.profdir.clone(), st.iteration)
    }
}

impl crate::lifecycle::Profilers for TestProfilers<'_> {
    fn present(&self) -> bool {
        self.handle.present()
    }

    fn active(&self) -> bool {
        self.handle.active()
    }

    fn start(&self) -> Result<(), Escape> {
        self.handle.start(self.engine, &self.this, &self.place().0)
    }

    fn stop(&self) -> Result<(), Escape> {
        self.handle.stop(self.engine, &self.this)
    }

    fn report(&self) -> Result<(), Escape> {
        let (profdir, iteration) = self.place();
        self.handle
            .report(self.engine, &self.this, &profdir, iteration)
    }
}

fn built_in(name: &str, args: &Map) -> RhaiResult<Profiler> {
    let known: &[&str] = match name {
        "vmstat" => &["interval"],
        "cmd" => &["command"],
        "perf" => &["events"],
        _ => return Err(not_present(name)),
    };
    if let Some(k) = args.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad_arg(
            name,
            format!("unknown argument '{k}' (known: {})", known.join(", ")),
        ));
    }
    let kind = match name {
        "vmstat" => {
            let interval = match args.get("interval") {
                None => 1.0,
                Some(v) => crate::args::seconds(v)
                    .filter(|s| *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        bad_arg(
                            name,
                            format!("interval must be a number of seconds above 0 and at most 86400, not {v}"),
                        )
                    })?,
            };
            Kind::Vmstat { interval }
        }
        "cmd" => match args.get("command").filter(|c| c.is_string()) {
            Some(c) => Kind::Cmd {
                command: c.to_string(),
            },
            None => {
                return Err(bad_arg(
                    name,
                    "needs a command: add(\"cmd\", #{command: \"...\"})".into(),
                ))
            }
        },
        _ => {
            if !on_path("perf") {
                return Err(not_present(name));
            }
            let events = match args.get("events") {
                None => vec!["cycles".to_string(), "instructions".to_string()],
                Some(v) => v
                    .clone()
                    .into_typed_array::<rhai::ImmutableString>()
                    .map(|a| a.into_iter().map(|s| s.to_string()).collect())
                    .map_err(|_| bad_arg(name, "events must be an array of event names".into()))?,
            };
            Kind::Perf { events }
        }
    };
    Ok(Profiler {
        name: name.to_string(),
        kind,
        this: Dynamic::from_map(Map::new()),
        running: None,
    })
}

/// Compiles a script profiler, runs its `initialize` with the arguments it declares, and
/// its `setup` once per `version` (recorded in the cache folder).
fn load_script(
    engine: &Engine,
    path: &Path,
    name: &str,
    args: &Map,
    cache: &Path,
) -> RhaiResult<Profiler> {
    let file = path.display().to_string();
    // The control file stays the running script (error positions, import roots).
    let running = crate::api::current_script();
    let ast = crate::script_test::compile(engine, path);
    crate::api::set_current_script(running);
    let ast = ast.map_err(|m| bad_arg(name, m))?;
    let fns: HashMap<String, Vec<String>> = ast
        .iter_functions()
        .map(|f| {
            (
                f.name.to_string(),
                f.params.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect();
    let declared = fns.get("initialize").cloned().unwrap_or_default();
    if let Some(k) = args
        .keys()
        .find(|k| !declared.iter().any(|d| d == k.as_str()))
    {
        return Err(bad_arg(
            name,
            format!("initialize does not take a parameter named '{k}'"),
        ));
    }
    let mut scope = Scope::new();
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| fail(name, escape_of(e, &file)))?;
    let version = scope
        .get_value::<Dynamic>("version")
        .unwrap_or(Dynamic::from_int(0));
    let mut p = Profiler {
        name: name.to_string(),
        kind: Kind::Script {
            ast: Rc::new(ast),
            file,
            fns,
        },
        this: Dynamic::from_map(Map::new()),
        running: None,
    };
    p.call(engine, "initialize", cherry_pick(&declared, args))
        .map_err(|e| fail(name, e))?;
    let marker_dir = cache.join("profilers").join(name);
    let marker = marker_dir.join(".version");
    let version = keyval::py_repr(&version);
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(version.as_str()) {
        p.call(engine, "setup", Vec::new())
            .map_err(|e| fail(name, e))?;
        let _ =
            std::fs::create_dir_all(&marker_dir).and_then(|()| std::fs::write(&marker, &version));
    }
    Ok(p)
}

/// A profiler that fails while being added aborts the job, as autotest's does.
fn fail(name: &str, e: Escape) -> Box<EvalAltResult> {
    let msg = match e {
        Escape::Outcome(o) => o.message,
        Escape::Unhandled(m) => m,
    };
    abort(format!("profiler {name}: {msg}")).into_rhai()
}

impl Profiler {
    /// Calls a script profiler's function if it defines it; `this` is the profiler's state.
    fn call(&mut self, engine: &Engine, func: &str, args: Vec<Dynamic>) -> Result<(), Escape> {
        let Kind::Script { ast, file, fns } = &self.kind else {
            return Ok(());
        };
        if !fns.contains_key(func) {
            return Ok(());
        }
        let opts = CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true)
            .bind_this_ptr(&mut self.this);
        engine
            .call_fn_with_options::<Dynamic>(opts, &mut Scope::new(), ast, func, args)
            .map(|_| ())
            .map_err(|e| escape_of(e, file))
    }

    fn start(&mut self, engine: &Engine, test: &Dynamic, profdir: &Path) -> Result<(), Escape> {
        let io = |what: &str, e: std::io::Error| {
            Escape::Outcome(Outcome::new(
                Status::Error,
                format!("profiler {}: {what}: {e}", self.name),
            ))
        };
        match &self.kind {
            Kind::Script { .. } => return self.call(engine, "start", vec![test.clone()]),
            Kind::Vmstat { interval } => {
                let csv = std::fs::File::create(profdir.join("vmstat.csv"))
                    .map_err(|e| io("cannot create vmstat.csv", e))?;
                let (tx, rx) = mpsc::channel();
                let interval = Duration::from_secs_f64(*interval);
                let thread = std::thread::spawn(move || sample(csv, interval, rx));
                self.running = Some(Running::Sampler { stop: tx, thread });
            }
            Kind::Cmd { command } => {
                let out = profdir.join("cmd.out");
                let child = spawn(&["/bin/sh", "-c", command], &out)
                    .map_err(|e| io("cannot start its command", e))?;
                let slot = track_command_group(child.id() as i32);
                self.running = Some(Running::Process { child, slot, out });
            }
            Kind::Perf { events } => {
                let out = profdir.join("perf.stat");
                let mut argv = vec!["perf".to_string(), "stat".into(), "-a".into(), "-o".into()];
                argv.push(out.display().to_string());
                for e in events {
                    argv.push("-e".into());
                    argv.push(e.clone());
                }
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let log = profdir.join("perf.log");
                let child = spawn(&argv, &log).map_err(|e| io("cannot start perf", e))?;
                let slot = track_command_group(child.id() as i32);
                self.running = Some(Running::Process {
                    child,
                    slot,
                    out: log,
                });
            }
        }
        Ok(())
    }

    fn stop(&mut self, engine: &Engine, test: &Dynamic) -> Result<(), Escape> {
        if let Kind::Script { .. } = self.kind {
            return self.call(engine, "stop", vec![test.clone()]);
        }
        match self.running.take() {
            None => {}
            Some(Running::Sampler { stop, thread }) => {
                let _ = stop.send(());
                let _ = thread.join();
            }
            Some(Running::Process {
                mut child,
                slot,
                out,
            }) => {
                let pid = child.id();
                match child.try_wait() {
                    Ok(Some(_)) if crate::child::interrupted().is_some() => {}
                    Ok(Some(status)) => {
                        // A profiler that ended before the run did is reported, not ignored.
                        let msg = format!(
                            "profiler {}: its command ended before the profiled run did ({status})",
                            self.name
                        );
                        logging::warning("profilers", &msg);
                        let _ = std::fs::OpenOptions::new()
                            .append(true)
                            .open(&out)
                            .and_then(|mut f| writeln!(f, "[autorun] {msg}"));
                    }
                    _ => {
                        kill_group(pid, libc::SIGINT);
                        let end = Instant::now() + Duration::from_secs(2);
                        while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < end {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        kill_group(pid, libc::SIGKILL);
                        let _ = child.wait();
                    }
                }
                kill_group(pid, libc::SIGKILL);
                untrack_group(slot);
            }
        }
        Ok(())
    }

    fn report(&mut self, engine: &Engine, test: &Dynamic) -> Result<(), Escape> {
        self.call(engine, "report", vec![test.clone()])
    }
}

/// Starts a profiler's program in its own process group, dying with the test process,
/// output into `out`.
fn spawn(argv: &[&str], out: &Path) -> std::io::Result<Child> {
    let file = std::fs::File::create(out)?;
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    // SAFETY: the pre-exec hook only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// The vmstat sampler: one CSV row now and one every `interval` until told to stop.
fn sample(mut csv: std::fs::File, interval: Duration, stop: mpsc::Receiver<()>) {
    let _ = writeln!(
        csv,
        "time,cpu_user,cpu_nice,cpu_system,cpu_idle,cpu_iowait,mem_total_kb,mem_free_kb,mem_available_kb,buffers_kb,cached_kb,pgpgin,pgpgout,pswpin,pswpout"
    );
    let start = Instant::now();
    loop {
        let _ = writeln!(csv, "{:.3},{}", start.elapsed().as_secs_f64(), vmstat_row());
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
}

fn vmstat_row() -> String {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<&str> = stat
        .lines()
        .next()
        .map(|l| l.split_whitespace().skip(1).take(5).collect())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let vm = |key: &str| {
        vmstat
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or("")
            .to_string()
    };
    let mut fields: Vec<String> = (0..5)
        .map(|i| cpu.get(i).unwrap_or(&"").to_string())
        .collect();
    fields.extend(["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached"].map(mem));
    fields.extend(["pgpgin", "pgpgout", "pswpin", "pswpout"].map(vm));
    fields.join(",")
}
