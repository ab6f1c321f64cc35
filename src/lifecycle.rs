//! The test lifecycle of autotest's `base_test._exec` and `execute`: phases in order,
//! iterations or timed runs, hooks, constraints, cleanup rules and the mapping of escapes
//! to statuses. It knows nothing of Rhai's engine: a [`TestBody`] supplies the phases.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use rhai::{Dynamic, FnPtr, Map};

use crate::args::{seconds, truthy};
use crate::constraints;
use crate::keyval::{self, KeyvalError, Tag};
use crate::logging;
use crate::outcome::{Escape, Outcome};
use crate::status::Status;
use crate::sysinfo;

/// A phase a test script may define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Once, first.
    Initialize,
    /// Once per installed version.
    Setup,
    /// Before the iterations.
    Warmup,
    /// Replaces the iteration loop.
    Execute,
    /// Before each `run_once`.
    BeforeRunOnce,
    /// One iteration.
    RunOnce,
    /// After each `run_once`.
    AfterRunOnce,
    /// After each iteration.
    PostprocessIteration,
    /// After all iterations.
    Postprocess,
    /// Last, unless `run_cleanup` is false.
    Cleanup,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 10] = [
        Phase::Initialize,
        Phase::Setup,
        Phase::Warmup,
        Phase::Execute,
        Phase::BeforeRunOnce,
        Phase::RunOnce,
        Phase::AfterRunOnce,
        Phase::PostprocessIteration,
        Phase::Postprocess,
        Phase::Cleanup,
    ];

    /// The function name in a test script.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Initialize => "initialize",
            Phase::Setup => "setup",
            Phase::Warmup => "warmup",
            Phase::Execute => "execute",
            Phase::BeforeRunOnce => "before_run_once",
            Phase::RunOnce => "run_once",
            Phase::AfterRunOnce => "after_run_once",
            Phase::PostprocessIteration => "postprocess_iteration",
            Phase::Postprocess => "postprocess",
            Phase::Cleanup => "cleanup",
        }
    }
}

/// The folders and names of one running test.
#[derive(Debug, Clone, Default)]
pub struct TestPaths {
    /// The name given to `run_test`.
    pub name: String,
    /// The test folder's name (tags included).
    pub tagged_testname: String,
    /// The folder relative to the job folder.
    pub subdir: String,
    /// `<job>/<subdir>`.
    pub outputdir: PathBuf,
    /// `outputdir/results`.
    pub resultsdir: PathBuf,
    /// `outputdir/profiling`.
    pub profdir: PathBuf,
    /// `outputdir/debug`.
    pub debugdir: PathBuf,
    /// The test's own folder.
    pub bindir: PathBuf,
    /// Where `src/` is copied and `setup` builds.
    pub srcdir: PathBuf,
    /// A private temp folder, removed after the test.
    pub tmpdir: PathBuf,
}

/// Everything about a running test that both the lifecycle and the script can see.
#[derive(Debug, Default)]
pub struct TestState {
    /// Names and folders.
    pub paths: TestPaths,
    /// The current iteration (0 before the first, N+1 after N).
    pub iteration: i64,
    /// The test parameters.
    pub params: Map,
    /// The script's own properties on `this`.
    pub props: Map,
    /// The perf map of the last keyval write, and whether it is new since the last analysis.
    last_perf: Option<Map>,
    /// The attr and perf keyvals written since the current iteration started.
    written: (
        std::collections::BTreeMap<String, String>,
        std::collections::BTreeMap<String, String>,
    ),
    new_keyval: bool,
    /// Constraint failures per analysed iteration.
    failed_constraints: Vec<Vec<String>>,
    /// Hooks run before each iteration.
    pub before_hooks: Vec<FnPtr>,
    /// Hooks run after each iteration.
    pub after_hooks: Vec<FnPtr>,
    /// The test's temp folder, once made.
    tmp: Option<tempfile::TempDir>,
}

/// A test's state shared between the lifecycle and the script bindings.
pub type SharedState = Rc<RefCell<TestState>>;

impl TestState {
    /// The test's private temp folder (`this.tmpdir`), made on first use inside the job's
    /// temp folder (`paths.tmpdir` until then).
    pub fn tmpdir(&mut self) -> std::io::Result<PathBuf> {
        if self.tmp.is_none() {
            let dir = tempfile::Builder::new()
                .permissions(crate::files::private())
                .suffix(&format!("_{}", self.paths.tagged_testname))
                .tempdir_in(&self.paths.tmpdir)?;
            self.paths.tmpdir = dir.path().to_path_buf();
            self.tmp = Some(dir);
        }
        Ok(self.paths.tmpdir.clone())
    }

    /// Removes the test's temp folder, if it was made.
    pub fn remove_tmpdir(&mut self) {
        self.tmp.take();
    }

    /// `write_test_keyval(map)`.
    pub fn write_test_keyval(&self, map: &Map) -> Result<(), KeyvalError> {
        let path = self.paths.outputdir.join("keyval");
        keyval::write_map(&path, map, Tag::None)?;
        crate::tap::record_keyval(&path, &keyval::map_pairs(map), Tag::None);
        Ok(())
    }

    /// `write_iteration_keyval(attr, perf)`: one record (attr block, perf block, blank line)
    /// in `results/keyval`, written with one call after every key is checked. `tap` is
    /// true for `write_perf_keyval` and `write_attr_keyval`, which (as in autotest) also
    /// add to `keyval.tap` under `--tap`; a direct `write_iteration_keyval` does not.
    pub fn write_iteration_keyval(
        &mut self,
        attr: &Map,
        perf: &Map,
        tap: bool,
    ) -> Result<(), KeyvalError> {
        self.write_iteration_record(keyval::map_pairs(attr), keyval::map_pairs(perf), tap)?;
        self.last_perf = Some(perf.clone());
        Ok(())
    }

    /// One record from values a program wrote as text (sorted pairs): written as they
    /// are; constraints see them typed as `read_keyval` types them. Under `--tap` it is in
    /// `keyval.tap` as the perf and attr wrappers' writes are.
    pub fn write_iteration_text(
        &mut self,
        attr: &[(String, String)],
        perf: &[(String, String)],
    ) -> Result<(), KeyvalError> {
        self.write_iteration_record(attr.to_vec(), perf.to_vec(), true)?;
        let typed: Map = perf
            .iter()
            .map(|(k, v)| (k.as_str().into(), keyval::parse_value(v)))
            .collect();
        self.last_perf = Some(typed);
        Ok(())
    }

    fn write_iteration_record(
        &mut self,
        mut attr: Vec<(String, String)>,
        mut perf: Vec<(String, String)>,
        tap: bool,
    ) -> Result<(), KeyvalError> {
        keyval::sort_tagged(&mut attr, Tag::Attr);
        keyval::sort_tagged(&mut perf, Tag::Perf);
        let mut text = keyval::render(&attr, Tag::Attr)?;
        text.push_str(&keyval::render(&perf, Tag::Perf)?);
        // Written as autotest writes it, but said: tko and `autorun compare` skip it.
        for (k, v) in perf
            .iter()
            .filter(|(_, v)| v.trim().parse::<f64>().is_err())
        {
            logging::warning(
                "test",
                &format!("perf value {k}={v:?} is not a number; result readers will skip it"),
            );
        }
        text.push('\n');
        let path = self.paths.resultsdir.join("keyval");
        keyval::append(&path, &text)?;
        if tap {
            for (pairs, tag) in [(&attr, Tag::Attr), (&perf, Tag::Perf)] {
                if !pairs.is_empty() {
                    crate::tap::record_keyval(&path, pairs, tag);
                }
            }
        }
        self.written.0.extend(attr);
        self.written.1.extend(perf);
        self.new_keyval = true;
        Ok(())
    }
}

/// What the lifecycle needs from a test's script.
pub trait TestBody {
    /// True if the script defines `phase`.
    fn has(&self, phase: Phase) -> bool;
    /// True if some phase declares a parameter called `name`.
    fn declares(&self, name: &str) -> bool;
    /// Calls `phase` with the arguments it declares picked from `available`.
    fn call(&mut self, phase: Phase, available: &Map) -> Result<(), Escape>;
    /// Runs the registered before- (`true`) or after-iteration hooks.
    fn hooks(&mut self, before: bool) -> Result<(), Escape>;
    /// The job's profilers as this test runs them; `None` runs none.
    fn profilers(&self) -> Option<&dyn Profilers> {
        None
    }
}

/// The job's profilers around a test's profiled run (autotest's `job.profilers`).
pub trait Profilers {
    /// True when the job has profilers (`job.profilers.present()`).
    fn present(&self) -> bool;
    /// True while the profilers run (`job.profilers.active()`).
    fn active(&self) -> bool;
    /// Starts every profiler.
    fn start(&self) -> Result<(), Escape>;
    /// Stops every profiler.
    fn stop(&self) -> Result<(), Escape>;
    /// Lets every profiler report, then files what they left in the profiling folder
    /// under `iteration.<n>`.
    fn report(&self) -> Result<(), Escape>;
}

/// True when `body` runs with profilers (`job.profilers.present()`).
fn profilers_present(body: &dyn TestBody) -> bool {
    body.profilers().is_some_and(|p| p.present())
}

/// Runs `f` on `body`'s profilers, if it has any.
fn with_profilers(
    body: &dyn TestBody,
    f: impl FnOnce(&dyn Profilers) -> Result<(), Escape>,
) -> Result<(), Escape> {
    body.profilers().map_or(Ok(()), f)
}

/// Top-level settings of a test script.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `version` (default 0).
    pub version: Dynamic,
    /// `preserve_srcdir` (default false).
    pub preserve_srcdir: bool,
    /// `postprocess_profiled_run` (default false).
    pub postprocess_profiled_run: bool,
    /// `strict_params` (default true).
    pub strict_params: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version: Dynamic::from_int(0),
            preserve_srcdir: false,
            postprocess_profiled_run: false,
            strict_params: true,
        }
    }
}

/// How the job asked for this test to run.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `run_cleanup` after the job default is applied.
    pub run_cleanup: bool,
    /// `test_attributes`.
    pub test_attributes: Map,
    /// Arguments `execute` consumes (`iterations`, ...).
    pub execute: Map,
    /// A non-map argument given to `run_test` (an error, recorded as `param-0`).
    pub positional: Option<Dynamic>,
    /// `job.default_profile_only`.
    pub default_profile_only: bool,
    /// `job.drop_caches_between_iterations`.
    pub drop_caches: bool,
    /// Tells whether the test was interrupted (Ctrl-C), with the reason.
    pub interrupted: Option<fn() -> Option<String>>,
    /// Called before `cleanup` runs after an interrupt, so that it may run.
    pub allow_cleanup: Option<fn()>,
    /// `job.sysinfo_per_iteration`: copy `/proc` files before and after each iteration.
    pub sysinfo_per_iteration: bool,
    /// Told when an iteration starts and when it ends (see [`IterationMark`]).
    pub on_iteration: Option<fn(IterationMark)>,
}

/// An iteration starting or ending, for progress and the job's events.
#[derive(Debug)]
pub struct IterationMark {
    /// True when it starts, false when it ended.
    pub started: bool,
    /// The iteration: 1 to `of`, or the count of timed runs so far.
    pub iteration: i64,
    /// How many iterations there are; 0 for a timed run (`test_length`).
    pub of: i64,
    /// At the end: the attr keyvals the iteration wrote (unsuffixed keys, values as written).
    pub attr: std::collections::BTreeMap<String, String>,
    /// At the end: the perf keyvals the iteration wrote.
    pub perf: std::collections::BTreeMap<String, String>,
}

/// Runs a whole test; `None` means it passed. `warn` records a WARN status line.
pub fn run(
    body: &mut dyn TestBody,
    state: &SharedState,
    settings: &Settings,
    req: &Request,
    warn: &mut dyn FnMut(&str),
) -> Option<Outcome> {
    if let Err(o) = write_param_keyval(state, settings, req) {
        return Some(o);
    }
    if req.positional.is_some() {
        return Some(Outcome::new(
            Status::Error,
            "Unnamed arguments not accepted. Please call job.run_test with named args only",
        ));
    }
    if settings.strict_params {
        let params = state.borrow().params.clone();
        if let Some((name, _)) = params.iter().find(|(n, _)| !body.declares(n)) {
            return Some(Outcome::new(
                Status::Error,
                format!("Unknown parameter: {name}"),
            ));
        }
    }
    let params = state.borrow().params.clone();
    let result = (|| {
        body.call(Phase::Initialize, &params)
            .map_err(|e| e.into_outcome(Status::Error))?;
        setup_once(body, state, settings, &params)?;
        body.call(Phase::Warmup, &params)
            .map_err(|e| e.into_outcome(Status::Fail))?;
        execute(body, state, settings, req, &params, warn).map_err(|e| e.into_outcome(Status::Fail))
    })();
    let interrupted = || req.interrupted.and_then(|f| f());
    let result = match (result, interrupted()) {
        (_, Some(why)) => Err(Outcome::new(Status::Abort, why)),
        (r, _) => r,
    };
    let outcome = match result {
        Err(outcome) => {
            logging::error(
                "test",
                &format!("Exception escaping from test: {}", outcome.message),
            );
            if req.run_cleanup {
                if outcome.status == Status::Abort {
                    if let Some(allow) = req.allow_cleanup {
                        allow();
                    }
                }
                if let Err(e) = body.call(Phase::Cleanup, &params) {
                    let o = e.into_outcome(Status::Error);
                    logging::error(
                        "test",
                        &format!("Ignoring exception during cleanup() phase: {}", o.message),
                    );
                }
            }
            Some(outcome)
        }
        Ok(()) if req.run_cleanup => body
            .call(Phase::Cleanup, &params)
            .err()
            .map(|e| e.into_outcome(Status::Error)),
        Ok(()) => None,
    };
    // An interrupt that came while cleanup ran still ends the test as interrupted.
    match interrupted() {
        Some(why) => Some(Outcome::new(Status::Abort, why)),
        None => outcome,
    }
}

/// The test keyval block autotest writes first: attributes, `version`, `param-*`.
fn write_param_keyval(
    state: &SharedState,
    settings: &Settings,
    req: &Request,
) -> Result<(), Outcome> {
    let st = state.borrow();
    let mut pairs: Vec<(String, String)> = keyval::map_pairs(&req.test_attributes);
    pairs.push(("version".into(), keyval::py_str(&settings.version)));
    if let Some(p) = &req.positional {
        pairs.push(("param-0".into(), keyval::py_repr(p)));
    }
    for (k, v) in st.params.iter().chain(req.execute.iter()) {
        pairs.push((format!("param-{k}"), keyval::py_repr(v)));
    }
    pairs.sort();
    let text = keyval::render(&pairs, Tag::None)
        .map_err(|e| Outcome::new(Status::Error, e.to_string()))?;
    let path = st.paths.outputdir.join("keyval");
    keyval::append(&path, &text).map_err(|e| Outcome::new(Status::Error, e.to_string()))?;
    crate::tap::record_keyval(&path, &pairs, Tag::None);
    Ok(())
}

/// Runs `setup` when `srcdir/.version` differs from the script's version, under an
/// exclusive lock so that parallel jobs do not set up the same test twice.
fn setup_once(
    body: &mut dyn TestBody,
    state: &SharedState,
    settings: &Settings,
    params: &Map,
) -> Result<(), Outcome> {
    let (srcdir, bindir) = {
        let st = state.borrow();
        (st.paths.srcdir.clone(), st.paths.bindir.clone())
    };
    let io = |what: &str, e: std::io::Error| Outcome::new(Status::Error, format!("{what}: {e}"));
    let version = keyval::py_repr(&settings.version);
    let marker = srcdir.join(".version");
    let installed = |m: &Path| std::fs::read_to_string(m).ok().as_deref() == Some(version.as_str());
    // The common case, already set up, needs no lock; otherwise check again under it.
    if installed(&marker) {
        return Ok(());
    }
    let base = srcdir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(base).map_err(|e| io("cannot create the cache folder", e))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join(".setup.lock"))
        .map_err(|e| io("cannot open the setup lock", e))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _guard = lock
        .write()
        .map_err(|e| io("cannot take the setup lock", e))?;
    let version = keyval::py_repr(&settings.version);
    let marker = srcdir.join(".version");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(version.as_str()) {
        return Ok(());
    }
    if !settings.preserve_srcdir && srcdir.exists() {
        std::fs::remove_dir_all(&srcdir).map_err(|e| io("cannot clear the srcdir", e))?;
    }
    let src = bindir.join("src");
    if src.is_dir() {
        copy_tree(&src, &srcdir).map_err(|e| io("cannot copy src/ into the srcdir", e))?;
    }
    std::fs::create_dir_all(&srcdir).map_err(|e| io("cannot create the srcdir", e))?;
    if body.has(Phase::Setup) {
        body.call(Phase::Setup, params)
            .map_err(|e| e.into_outcome(Status::Error))?;
    }
    std::fs::write(&marker, version).map_err(|e| io("cannot write the .version record", e))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .map_err(std::io::Error::other)?;
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// `execute`: the script's own, or autotest's loop.
fn execute(
    body: &mut dyn TestBody,
    state: &SharedState,
    settings: &Settings,
    req: &Request,
    params: &Map,
    warn: &mut dyn FnMut(&str),
) -> Result<(), Escape> {
    if body.has(Phase::Execute) {
        let mut available = params.clone();
        available.extend(req.execute.clone());
        return body.call(Phase::Execute, &available);
    }
    let get = |k: &str| req.execute.get(k).filter(|v| !v.is_unit());
    let profile_only = get("profile_only")
        .map(truthy)
        .unwrap_or(req.default_profile_only);
    let constraints: Vec<String> = match get("constraints") {
        None => Vec::new(),
        Some(v) => v
            .clone()
            .into_typed_array::<rhai::ImmutableString>()
            .map(|a| a.into_iter().map(|s| s.to_string()).collect())
            .map_err(|_| {
                Escape::Outcome(Outcome::new(
                    Status::Error,
                    "constraints must be an array of expression strings",
                ))
            })?,
    };
    if body.profilers().is_some_and(|p| p.active()) {
        with_profilers(body, |p| p.stop())?;
    }
    // `postprocess_profiled_run` of the call wins over the test's setting.
    let postprocess_profiled = get("postprocess_profiled_run")
        .map(truthy)
        .unwrap_or(settings.postprocess_profiled_run);
    let profiled = Profiled {
        postprocess: postprocess_profiled,
        drop_caches: req.drop_caches,
    };
    let mut once = |body: &mut dyn TestBody| {
        call_run_once(
            body,
            state,
            req,
            params,
            &constraints,
            profile_only,
            &profiled,
            warn,
        )
    };
    match get("test_length").filter(|v| truthy(v)) {
        Some(len) => {
            let len = seconds(len).ok_or_else(|| {
                Escape::Outcome(Outcome::new(
                    Status::Error,
                    "test_length must be a number of seconds",
                ))
            })?;
            logging::debug("test", "Iterations parameter ignored (timed execution)");
            let start = Instant::now();
            let mut runs = 0;
            while start.elapsed().as_secs_f64() < len {
                runs += 1;
                mark(state, req, true, runs, 0);
                once(body)?;
                mark(state, req, false, runs, 0);
            }
        }
        None => {
            let n = match get("iterations") {
                None => 1,
                Some(v) => v.as_int().map_err(|_| {
                    Escape::Outcome(Outcome::new(Status::Error, "iterations must be an integer"))
                })?,
            };
            if n > 1 {
                logging::debug("test", &format!("Test started. Specified {n} iterations"));
            }
            for i in 1..=n {
                state.borrow_mut().iteration = i;
                if n > 1 {
                    logging::debug("test", &format!("Executing iteration {i} of {n}"));
                }
                mark(state, req, true, i, n);
                once(body)?;
                mark(state, req, false, i, n);
            }
        }
    }
    if !profile_only {
        // The profiled run: autotest bumps the iteration even with no profiler, so
        // postprocess and cleanup see N+1.
        state.borrow_mut().iteration += 1;
        profiled_run(body, params, &profiled)?;
    }
    body.call(Phase::Postprocess, params)?;
    let msg = constraints::failure_message(&state.borrow().failed_constraints);
    if msg.is_empty() {
        Ok(())
    } else {
        Err(Escape::Outcome(Outcome::new(Status::Fail, msg)))
    }
}

/// Tells `req.on_iteration` that iteration `iteration` of `of` starts or ended, with the
/// keyvals it wrote.
fn mark(state: &SharedState, req: &Request, started: bool, iteration: i64, of: i64) {
    let written = std::mem::take(&mut state.borrow_mut().written);
    if let Some(f) = req.on_iteration {
        f(IterationMark {
            started,
            iteration,
            of,
            attr: written.0,
            perf: written.1,
        });
    }
}

/// How the profiled run goes.
struct Profiled {
    /// Call `postprocess_iteration` after it.
    postprocess: bool,
    /// Drop caches before it.
    drop_caches: bool,
}

/// autotest's `run_once_profiling`: one `run_once` with the profilers around it, no hooks,
/// no constraints; nothing at all without profilers.
fn profiled_run(body: &mut dyn TestBody, params: &Map, how: &Profiled) -> Result<(), Escape> {
    if !profilers_present(body) {
        return Ok(());
    }
    if how.drop_caches {
        drop_caches();
    }
    body.call(Phase::BeforeRunOnce, params)?;
    with_profilers(body, |p| p.start())?;
    let ran = body.call(Phase::RunOnce, params).and_then(|()| {
        if how.postprocess {
            body.call(Phase::PostprocessIteration, params)
        } else {
            Ok(())
        }
    });
    let stopped = with_profilers(body, |p| p.stop());
    let reported = with_profilers(body, |p| p.report());
    ran.and(stopped).and(reported)?;
    body.call(Phase::AfterRunOnce, params)
}

#[allow(clippy::too_many_arguments)]
fn call_run_once(
    body: &mut dyn TestBody,
    state: &SharedState,
    req: &Request,
    params: &Map,
    constraints: &[String],
    profile_only: bool,
    profiled: &Profiled,
    warn: &mut dyn FnMut(&str),
) -> Result<(), Escape> {
    if req.drop_caches {
        drop_caches();
    }
    // autotest registers its sysinfo iteration hooks before the test can register any, so
    // they run first, before and after.
    let sysinfo_at = req.sysinfo_per_iteration.then(|| {
        let st = state.borrow();
        (st.paths.outputdir.clone(), st.iteration)
    });
    if let Some((dir, it)) = &sysinfo_at {
        sysinfo::log_iteration(dir, *it, sysinfo::Stage::Before);
    }
    body.hooks(true)?;
    let result = (|| {
        if profile_only {
            if !profilers_present(body) {
                warn("No profilers have been added but profile_only is set - nothing will be run");
            }
            profiled_run(body, params, profiled)?;
        } else {
            body.call(Phase::BeforeRunOnce, params)?;
            body.call(Phase::RunOnce, params)?;
            body.call(Phase::AfterRunOnce, params)?;
        }
        body.call(Phase::PostprocessIteration, params)?;
        let mut st = state.borrow_mut();
        if st.new_keyval {
            st.new_keyval = false;
            let perf = st.last_perf.clone().unwrap_or_default();
            let failed = constraints::analyze(constraints, &perf);
            st.failed_constraints.push(failed);
        }
        Ok(())
    })();
    if let Some((dir, it)) = &sysinfo_at {
        sysinfo::log_iteration(dir, *it, sysinfo::Stage::After);
    }
    let after = body.hooks(false);
    result.and(after)
}

/// Flushes and drops the page cache; a machine that does not allow it is logged, not fatal.
pub fn drop_caches() {
    // SAFETY: sync() has no preconditions.
    unsafe { libc::sync() };
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        logging::debug("test", &format!("cannot drop caches: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that records each call and can be told to fail in one phase.
    struct Fake {
        trace: Rc<RefCell<Vec<String>>>,
        state: SharedState,
        defined: Vec<Phase>,
        fail_in: Option<(Phase, Escape)>,
        declared: Vec<&'static str>,
    }

    impl TestBody for Fake {
        fn has(&self, p: Phase) -> bool {
            self.defined.contains(&p)
        }
        fn declares(&self, n: &str) -> bool {
            self.declared.contains(&n)
        }
        fn call(&mut self, p: Phase, _: &Map) -> Result<(), Escape> {
            if !self.has(p) {
                return Ok(());
            }
            let it = self.state.borrow().iteration;
            self.trace.borrow_mut().push(format!("{}:{it}", p.name()));
            match &self.fail_in {
                Some((fp, e)) if *fp == p => Err(e.clone()),
                _ => Ok(()),
            }
        }
        fn hooks(&mut self, before: bool) -> Result<(), Escape> {
            let st = self.state.borrow();
            let it = st.iteration;
            // Which sysinfo copies exist when the test's own hooks run.
            let stage = if before { "before" } else { "after" };
            let copied = st
                .paths
                .outputdir
                .join(format!("sysinfo/iteration.{it}/meminfo.{stage}"))
                .exists();
            self.trace.borrow_mut().push(format!(
                "{}:{it}{}",
                if before { "before_hook" } else { "after_hook" },
                if copied { "+sysinfo" } else { "" }
            ));
            Ok(())
        }
    }

    fn fake(fail_in: Option<(Phase, Escape)>) -> (Fake, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut st = TestState::default();
        st.paths.outputdir = dir.path().to_path_buf();
        st.paths.resultsdir = dir.path().join("results");
        st.paths.srcdir = dir.path().join("cache/src");
        st.paths.bindir = dir.path().join("bin");
        let all: Vec<Phase> = Phase::ALL
            .iter()
            .copied()
            .filter(|p| *p != Phase::Execute)
            .collect();
        (
            Fake {
                trace: Rc::default(),
                state: Rc::new(RefCell::new(st)),
                defined: all,
                fail_in,
                declared: vec!["seconds"],
            },
            dir,
        )
    }

    fn run_fake(f: &mut Fake, execute: Map, cleanup: bool) -> Option<Outcome> {
        let req = Request {
            run_cleanup: cleanup,
            execute,
            ..Request::default()
        };
        let state = f.state.clone();
        run(f, &state, &Settings::default(), &req, &mut |_| {})
    }

    #[test]
    fn phase_order_with_iterations() {
        let (mut f, _d) = fake(None);
        let mut ex = Map::new();
        ex.insert("iterations".into(), Dynamic::from_int(2));
        assert_eq!(run_fake(&mut f, ex, true), None);
        let t = f.trace.borrow().join(" ");
        assert_eq!(
            t,
            "initialize:0 setup:0 warmup:0 \
             before_hook:1 before_run_once:1 run_once:1 after_run_once:1 postprocess_iteration:1 after_hook:1 \
             before_hook:2 before_run_once:2 run_once:2 after_run_once:2 postprocess_iteration:2 after_hook:2 \
             postprocess:3 cleanup:3"
        );
    }

    #[test]
    fn sysinfo_iteration_copies_come_before_the_tests_hooks() {
        let (mut f, dir) = fake(None);
        let mut execute = Map::new();
        execute.insert("iterations".into(), Dynamic::from_int(2));
        let req = Request {
            run_cleanup: true,
            execute,
            sysinfo_per_iteration: true,
            ..Request::default()
        };
        let state = f.state.clone();
        assert_eq!(
            run(&mut f, &state, &Settings::default(), &req, &mut |_| {}),
            None
        );
        let t = f.trace.borrow().join(" ");
        assert!(
            t.contains("before_hook:1+sysinfo before_run_once:1")
                && t.contains("after_hook:2+sysinfo postprocess:3"),
            "{t}"
        );
        let sys = dir.path().join("sysinfo");
        let mut dirs: Vec<String> = std::fs::read_dir(&sys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        dirs.sort();
        // No copies for the profiled-run slot (iteration 3).
        assert_eq!(dirs, ["iteration.1", "iteration.2"]);

        // Timed runs keep iteration 0; off by default.
        let (mut f, dir) = fake(None);
        let mut execute = Map::new();
        execute.insert("test_length".into(), Dynamic::from_float(0.01));
        let req = Request {
            execute,
            sysinfo_per_iteration: true,
            ..Request::default()
        };
        let state = f.state.clone();
        run(&mut f, &state, &Settings::default(), &req, &mut |_| {});
        assert!(dir
            .path()
            .join("sysinfo/iteration.0/meminfo.after")
            .exists());
        let (mut f, dir) = fake(None);
        run_fake(&mut f, Map::new(), true);
        assert!(!dir.path().join("sysinfo").exists());
    }

    #[test]
    fn failure_in_run_once_still_cleans_up_and_runs_after_hook() {
        let esc = Escape::Unhandled("Unhandled RuntimeError: boom".into());
        let (mut f, _d) = fake(Some((Phase::RunOnce, esc)));
        let o = run_fake(&mut f, Map::new(), true).unwrap();
        assert_eq!(o.status, Status::Fail);
        let t = f.trace.borrow().join(" ");
        assert!(t.ends_with("run_once:1 after_hook:1 cleanup:1"), "{t}");
    }

    #[test]
    fn unhandled_in_initialize_is_error_and_no_cleanup_when_disabled() {
        let esc = Escape::Unhandled("Unhandled RuntimeError: bad".into());
        let (mut f, _d) = fake(Some((Phase::Initialize, esc)));
        let o = run_fake(&mut f, Map::new(), false).unwrap();
        assert_eq!(o.status, Status::Error);
        assert_eq!(f.trace.borrow().join(" "), "initialize:0");
    }

    #[test]
    fn strict_params_reject_unknown_before_any_phase() {
        let (mut f, _d) = fake(None);
        f.state
            .borrow_mut()
            .params
            .insert("bogus".into(), Dynamic::from_int(1));
        let o = run_fake(&mut f, Map::new(), true).unwrap();
        assert_eq!(o, Outcome::new(Status::Error, "Unknown parameter: bogus"));
        assert!(f.trace.borrow().is_empty());
    }

    thread_local! {
        static MARKS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    fn remember(m: IterationMark) {
        let kv = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let text = format!(
            "{} {}/{} [{}] [{}]",
            if m.started { "start" } else { "done" },
            m.iteration,
            m.of,
            kv(&m.attr),
            kv(&m.perf)
        );
        MARKS.with(|v| v.borrow_mut().push(text));
    }

    #[test]
    fn iterations_are_announced_with_the_keyvals_they_wrote() {
        let (mut f, _dir) = fake(None);
        let mut execute = Map::new();
        execute.insert("iterations".into(), Dynamic::from_int(2));
        let req = Request {
            execute,
            on_iteration: Some(remember),
            ..Request::default()
        };
        let state = f.state.clone();
        std::fs::create_dir_all(&state.borrow().paths.resultsdir).unwrap();
        // Written before the first iteration: not part of any iteration.
        state
            .borrow_mut()
            .write_iteration_keyval(&Map::new(), &Map::new(), false)
            .unwrap();
        assert_eq!(
            run(&mut f, &state, &Settings::default(), &req, &mut |_| {}),
            None
        );
        let mut perf = Map::new();
        perf.insert("rate".into(), Dynamic::from_int(7));
        let mut attr = Map::new();
        attr.insert("mode".into(), "fast".into());
        state
            .borrow_mut()
            .write_iteration_keyval(&attr, &perf, false)
            .unwrap();
        mark(&state, &req, false, 3, 3);
        let marks = MARKS.with(|v| v.borrow().clone());
        assert_eq!(
            marks,
            [
                "start 1/2 [] []",
                "done 1/2 [] []",
                "start 2/2 [] []",
                "done 2/2 [] []",
                "done 3/3 [mode=fast] [rate=7]"
            ]
        );
    }
}
