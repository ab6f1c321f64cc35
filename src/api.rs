//! The Rhai engine autorun gives every script: its limits, the utilities, the outcome
//! functions, `job`, and the test object `this`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, Map, NativeCallContext,
    RhaiNativeFunc, Variant, AST, INT,
};

use crate::args::cherry_pick;
use crate::child;
use crate::commands::{self, Cmd, Opts};
use crate::job::{class_name, JobHandle};
use crate::keyval;
use crate::logging;
use crate::outcome::{escape_of, native_error, Escape, Outcome};
use crate::script_test::{TestObj, READ_ONLY};
use crate::status::Status;
use crate::sysinfo::Loggable;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Rhai call depth: the same in debug and release builds (scripts run on a large stack).
pub const MAX_CALL_LEVELS: usize = 128;
/// Expression nesting depth (global, inside functions).
pub const MAX_EXPR_DEPTH: (usize, usize) = (256, 128);
/// Operations a script may run: 0, no limit, on purpose. A test may compute for hours;
/// an endless loop is ended by the test's `timeout` or by Ctrl-C, which the engine's
/// progress callback checks at every operation.
pub const MAX_OPERATIONS: u64 = 0;
/// Longest string a script may build.
pub const MAX_STRING: usize = 64 << 20;
/// Largest array or map a script may build.
pub const MAX_ARRAY: usize = 16 << 20;
/// The stack scripts run on.
pub const SCRIPT_STACK: usize = 256 << 20;

thread_local! {
    /// Rhai's standard library, built once per job (most of an engine's set-up cost) and
    /// shared by every engine, including those of forked test processes.
    static STANDARD: rhai::Shared<rhai::Module> = StandardPackage::new().as_shared_module();
    /// Parameter names of every script function compiled in this process, by name, so that
    /// `run_group` can pass arguments by name to a function pointer.
    static FN_PARAMS: RefCell<HashMap<String, Vec<String>>> = RefCell::new(HashMap::new());
    /// Whether [`doc_fn`] and kin record parameter names and doc comments (see
    /// [`described_engine`]).
    static DESCRIBE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The script the current call came from, for error positions.
    static CURRENT_FILE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the parameter names of `ast`'s functions (see `FN_PARAMS`), and `ast`'s source
/// as the running script.
pub fn remember_functions(ast: &AST) {
    remember_module_functions(ast);
    if let Some(src) = ast.source() {
        CURRENT_FILE.with(|f| *f.borrow_mut() = src.to_string());
    }
}

/// Records the parameter names of an imported module's functions; the running script
/// stays what it was.
pub fn remember_module_functions(ast: &AST) {
    FN_PARAMS.with(|m| {
        let mut m = m.borrow_mut();
        for f in ast.iter_functions() {
            m.insert(
                f.name.to_string(),
                f.params.iter().map(|p| p.to_string()).collect(),
            );
        }
    });
}

/// The running script (the control file, or the test's script in a test process).
pub fn current_script() -> String {
    CURRENT_FILE.with(|f| f.borrow().clone())
}

/// Registers `f` as the script function `name`, with the names of its parameters (a
/// method's receiver first) and a doc comment (Markdown, one paragraph per line): both go
/// into the definition files and docs/api-reference.md that `autorun definitions` writes.
pub fn doc_fn<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool, FN>(
    e: &mut Engine,
    name: &str,
    params: [&str; N],
    doc: &str,
    f: FN,
) where
    FN: RhaiNativeFunc<A, N, X, R, F> + 'static,
{
    let reg = FuncRegistration::new(name);
    if !DESCRIBE.get() {
        reg.register_into_engine(e, f);
        return;
    }
    let info = params_info::<A, N, X, R, F, FN>(e, params);
    reg.with_params_info(info)
        .with_comments([doc_comment(doc)])
        .register_into_engine(e, f);
}

/// Registers the property getter `name` of a type, documented as [`doc_fn`] does.
pub fn doc_get<A: 'static, R: Variant + Clone, const F: bool, FN>(
    e: &mut Engine,
    name: &str,
    receiver: &str,
    doc: &str,
    f: FN,
) where
    FN: RhaiNativeFunc<A, 1, false, R, F> + 'static,
{
    let reg = FuncRegistration::new_getter(name);
    if !DESCRIBE.get() {
        reg.register_into_engine(e, f);
        return;
    }
    let info = params_info::<A, 1, false, R, F, FN>(e, [receiver]);
    reg.with_params_info(info)
        .with_comments([doc_comment(doc)])
        .register_into_engine(e, f);
}

/// `name: Type` for each parameter, then the return type, as rhai's metadata wants them.
fn params_info<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool, FN>(
    e: &Engine,
    names: [&str; N],
) -> Vec<String>
where
    FN: RhaiNativeFunc<A, N, X, R, F>,
{
    let mut info: Vec<String> = names
        .iter()
        .zip(FN::param_names())
        .map(|(n, ty)| format!("{n}: {}", type_name(e, ty)))
        .collect();
    info.push(type_name(e, std::any::type_name::<R>()));
    info
}

/// A Rust type's name as scripts know it (`Job`, `Map`, `i64`...), `&mut` dropped.
fn type_name(e: &Engine, rust: &str) -> String {
    e.map_type_name(rust.strip_prefix("&mut ").unwrap_or(rust))
        .to_string()
}

/// `doc` as a block of `///` lines.
fn doc_comment(doc: &str) -> String {
    doc.lines()
        .map(|l| format!("/// {l}").trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Makes `file` the running script again (after compiling another one).
pub fn set_current_script(file: String) {
    CURRENT_FILE.with(|f| *f.borrow_mut() = file);
}

/// Builds the engine for control files and tests, with `job` resolving to `job`.
pub fn engine(job: JobHandle) -> Engine {
    let mut e = engine_without_job();
    set_import_root(&mut e, &job);
    #[allow(deprecated)] // on_var is stable in use, only marked volatile
    e.on_var(move |name, _, _| Ok((name == "job").then(|| Dynamic::from(job.clone()))));
    e
}

/// `import` finds modules next to the control file or the running script, nowhere else.
fn set_import_root(e: &mut Engine, job: &JobHandle) {
    let control_dir = job
        .0
        .borrow()
        .info
        .control
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    e.set_module_resolver(crate::imports::Resolver::new(&control_dir));
}

thread_local! {
    static TEST_ENGINE: std::cell::Cell<Option<&'static Engine>> =
        const { std::cell::Cell::new(None) };
}

/// The engine test processes run scripts with: built once, in the job process before its
/// first test is forked, and inherited by every fork (building it in each test process was
/// a fifth of a trivial test's cost). `job` in it is the job of the process that runs it
/// ([`current_job`]), and `exit` ends the test process ([`register_test_exit`]).
pub fn test_engine() -> &'static Engine {
    TEST_ENGINE.with(|cell| {
        if let Some(e) = cell.get() {
            return e;
        }
        let mut e = engine_without_job();
        if let Some(job) = current_job() {
            set_import_root(&mut e, &job);
        }
        #[allow(deprecated)] // on_var is stable in use, only marked volatile
        e.on_var(|name, _, _| {
            Ok((name == "job")
                .then(current_job)
                .flatten()
                .map(Dynamic::from))
        });
        register_test_exit(&mut e);
        let e: &'static Engine = Box::leak(Box::new(e));
        cell.set(Some(e));
        e
    })
}

/// The engine of [`engine`] with every function registered but no `job` variable, its
/// functions carrying their parameter names and doc comments: what `autorun definitions`
/// describes. (Engines that run scripts leave the doc comments out: they cost time in
/// every test process and nothing reads them there.)
pub fn described_engine() -> Engine {
    DESCRIBE.set(true);
    let e = engine_without_job();
    DESCRIBE.set(false);
    e
}

/// The engine of [`engine`] with every function registered but no `job` variable.
pub fn engine_without_job() -> Engine {
    let mut e = Engine::new_raw();
    e.register_global_module(STANDARD.with(|m| m.clone()));
    e.set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1)
        .set_max_operations(MAX_OPERATIONS)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_ARRAY)
        .set_max_modules(256);
    e.on_print(|s| logging::info("script", s));
    // Rhai hands `debug` the Debug form of its argument: a string arrives quoted and escaped.
    e.on_debug(|s, _, _| {
        let text = serde_json::from_str::<String>(s).unwrap_or_else(|_| s.to_string());
        logging::debug("script", &text)
    });
    e.on_progress(|_| {
        child::stop_requested()
            .map(|sig| Dynamic::from(format!("interrupted by {}", child::signal_name(sig))))
    });
    register_utilities(&mut e);
    register_outcomes(&mut e);
    register_job_exit(&mut e);
    register_job(&mut e);
    register_profilers(&mut e);
    crate::steps::register(&mut e);
    register_test(&mut e);
    e
}

fn io_err(what: &str, path: &str, e: std::io::Error) -> Box<EvalAltResult> {
    native_error("IOError", format!("{what} {path}: {e}"))
}

fn register_outcomes(e: &mut Engine) {
    for (name, status, doc) in [
        ("test_fail", Status::Fail, "Ends the current phase with FAIL (autotest's TestFail): throws `#{status: \"FAIL\", message}`."),
        ("test_error", Status::Error, "Ends the current phase with ERROR (autotest's TestError): throws `#{status: \"ERROR\", message}`."),
        ("test_na", Status::TestNa, "Ends the current phase with TEST_NA, the test does not apply here (autotest's TestNAError): throws `#{status: \"TEST_NA\", message}`."),
        ("test_warn", Status::Warn, "Ends the current phase with WARN (autotest's TestWarn): throws `#{status: \"WARN\", message}`."),
        ("test_bug", Status::Bug, "Ends the current phase with BUG (autotest's TestBug): throws `#{status: \"BUG\", message}`."),
        ("job_error", Status::Abort, "Aborts the job unless a script catches it (autotest's JobError): throws `#{status: \"ABORT\", message}`."),
    ] {
        doc_fn(e, name, ["message"], doc, move |msg: Dynamic| -> RhaiResult<()> {
            let text = if msg.is_string() {
                msg.into_string().unwrap_or_default()
            } else {
                msg.to_string()
            };
            Err(Outcome::new(status, text).into_rhai())
        });
    }
}

/// Reads `run` options from a map.
fn opts_of(map: &Map) -> RhaiResult<Opts> {
    let mut o = Opts::default();
    for (k, v) in map {
        match k.as_str() {
            "timeout" => o.timeout = crate::args::seconds(v),
            "ignore_status" => o.ignore_status = crate::args::truthy(v),
            "stdin" => o.stdin = Some(v.to_string()),
            "cwd" => o.cwd = Some(v.to_string()),
            "env" => {
                let m = v
                    .read_lock::<Map>()
                    .ok_or_else(|| native_error("ValueError", "run: env must be a map"))?;
                o.env = m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            }
            other => {
                return Err(native_error(
                    "ValueError",
                    format!("run: unknown option '{other}' (known: timeout, ignore_status, stdin, env, cwd)"),
                ))
            }
        }
    }
    Ok(o)
}

fn cmd_of(v: &Dynamic) -> RhaiResult<Cmd> {
    if v.is_string() {
        Ok(Cmd::Shell(v.to_string()))
    } else if let Some(a) = v.read_lock::<Array>() {
        if a.is_empty() {
            return Err(native_error("ValueError", "run: the argv array is empty"));
        }
        Ok(Cmd::Argv(a.iter().map(|x| x.to_string()).collect()))
    } else {
        Err(native_error(
            "ValueError",
            "run: the command must be a string or an array of strings",
        ))
    }
}

/// `run(cmd, opts)`: the result map, or the ERROR outcome autotest's CmdError stands for.
fn run_cmd(cmd: &Dynamic, opts: &Map) -> RhaiResult<Map> {
    let c = cmd_of(cmd)?;
    let o = opts_of(opts)?;
    let r = commands::run(&c, &o).map_err(|e| native_error("OSError", e.to_string()))?;
    let mut m = Map::new();
    m.insert("command".into(), r.command.clone().into());
    m.insert("exit_status".into(), Dynamic::from_int(r.exit_status));
    m.insert("stdout".into(), r.stdout.into());
    m.insert("stderr".into(), r.stderr.into());
    m.insert("duration".into(), Dynamic::from_float(r.duration));
    let message = if r.timed_out {
        Some(format!(
            "Command <{}> failed, rc={}: timed out after {} s",
            r.command,
            r.exit_status,
            keyval::py_float(o.timeout.unwrap_or(0.0))
        ))
    } else if r.exit_status != 0 && !o.ignore_status {
        Some(format!(
            "Command <{}> failed, rc={}",
            r.command, r.exit_status
        ))
    } else {
        None
    };
    match message {
        None => Ok(m),
        Some(msg) => {
            let mut err = Outcome::new(Status::Error, msg).to_map();
            err.insert("result".into(), m.into());
            Err(EvalAltResult::ErrorRuntime(err.into(), rhai::Position::NONE).into())
        }
    }
}

/// Sleeps, waking early when the job is interrupted.
pub fn sleep(secs: f64) {
    if secs.is_nan() || secs <= 0.0 {
        return;
    }
    let end = Instant::now() + Duration::from_secs_f64(secs.min(1e9));
    loop {
        let now = Instant::now();
        if now >= end || child::stop_requested().is_some() {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn register_utilities(e: &mut Engine) {
    const RUN: &str = "Runs `cmd`: a string (run by `/bin/sh -c`) or an array (argv, no shell).\n\
        Returns `#{command, exit_status, stdout, stderr, duration}`. A non-zero exit throws ERROR `Command <CMD> failed, rc=N` (with `result`), a timeout kills the command's process group and throws ERROR.";
    const OPTS: &str =
        "`opts`: `timeout` (seconds), `ignore_status`, `stdin` (text), `env` (map), `cwd`.";
    doc_fn(e, "run", ["cmd"], RUN, |cmd: Dynamic| {
        run_cmd(&cmd, &Map::new())
    });
    doc_fn(
        e,
        "run",
        ["cmd", "opts"],
        &format!("{RUN}\n{OPTS}"),
        |cmd: Dynamic, opts: Map| run_cmd(&cmd, &opts),
    );
    const SYSTEM: &str =
        "Runs `cmd` as `run` does and returns its exit status; throws as `run` does.";
    doc_fn(e, "system", ["cmd"], SYSTEM, |cmd: Dynamic| {
        run_cmd(&cmd, &Map::new()).map(|m| m["exit_status"].clone())
    });
    doc_fn(
        e,
        "system",
        ["cmd", "opts"],
        &format!("{SYSTEM}\n{OPTS}"),
        |cmd: Dynamic, opts: Map| run_cmd(&cmd, &opts).map(|m| m["exit_status"].clone()),
    );
    const OUTPUT: &str = "Runs `cmd` as `run` does and returns its stdout without the final newline; throws as `run` does.";
    doc_fn(e, "system_output", ["cmd"], OUTPUT, |cmd: Dynamic| {
        system_output(&cmd, &Map::new())
    });
    doc_fn(
        e,
        "system_output",
        ["cmd", "opts"],
        &format!("{OUTPUT}\n{OPTS}"),
        |cmd: Dynamic, opts: Map| system_output(&cmd, &opts),
    );
    const SLEEP: &str =
        "Sleeps `seconds`; wakes early when a timeout or Ctrl-C interrupts the job.";
    doc_fn(e, "sleep", ["seconds"], SLEEP, |s: INT| sleep(s as f64));
    doc_fn(e, "sleep", ["seconds"], SLEEP, sleep);
    doc_fn(
        e,
        "read_file",
        ["path"],
        "The contents of the file `path`, as text.",
        |p: &str| std::fs::read_to_string(p).map_err(|e| io_err("cannot read", p, e)),
    );
    doc_fn(
        e,
        "write_file",
        ["path", "text"],
        "Writes `text` to the file `path`, replacing what it held.",
        |p: &str, text: &str| std::fs::write(p, text).map_err(|e| io_err("cannot write", p, e)),
    );
    doc_fn(
        e,
        "append_file",
        ["path", "text"],
        "Appends `text` to the file `path`, creating it if needed.",
        |p: &str, text: &str| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| io_err("cannot append to", p, e))
        },
    );
    doc_fn(
        e,
        "exists",
        ["path"],
        "True if `path` exists (a file, a folder or anything else).",
        |p: &str| Path::new(p).exists(),
    );
    doc_fn(
        e,
        "mkdir",
        ["path"],
        "Creates the folder `path` and its parents; an existing folder is fine.",
        |p: &str| std::fs::create_dir_all(p).map_err(|e| io_err("cannot create", p, e)),
    );
    doc_fn(e, "read_keyval", ["path"], "Reads a keyval file into a map (a folder means its `keyval` file); numbers are parsed as autotest does.", |p: &str| {
        keyval::read(Path::new(p)).map_err(|e| native_error("ValueError", e.to_string()))
    });
    doc_fn(e, "results", ["dir"], "A job folder as data: `.status` (the job's END status, or `\"RUNNING\"`) and `.tests` (one map per test: `name`, `subdir`, `status`, `reason`, `keyval`, `iterations`).", |p: &str| {
        crate::results::JobResults::load(Path::new(p))
            .map(|r| r.to_rhai())
            .map_err(|e| native_error("IOError", e.to_string()))
    });
    doc_fn(
        e,
        "cpu_count",
        [],
        "The number of CPUs this process may use.",
        || {
            std::thread::available_parallelism()
                .map(|n| n.get() as INT)
                .unwrap_or(1)
        },
    );
    doc_fn(e, "hostname", [], "The machine's host name.", hostname);
    doc_fn(e, "drop_caches", [], "Flushes dirty pages (sync) and drops the page cache; where that is not allowed it is logged at DEBUG and the script goes on.", crate::lifecycle::drop_caches);
}

fn system_output(cmd: &Dynamic, opts: &Map) -> RhaiResult<String> {
    let m = run_cmd(cmd, opts)?;
    let out = m["stdout"].to_string();
    Ok(out.strip_suffix('\n').unwrap_or(&out).to_string())
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn opt_text(v: &Dynamic) -> Option<String> {
    (!v.is_unit()).then(|| v.to_string())
}

/// The error a script sees for a job-level failure: `#{status: "ABORT", message}`.
fn abort_err(msg: String) -> Box<EvalAltResult> {
    Outcome::new(Status::Abort, msg).into_rhai()
}

fn record(
    job: &JobHandle,
    code: &str,
    subdir: &Dynamic,
    op: &Dynamic,
    msg: &str,
    fields: &Map,
) -> RhaiResult<()> {
    job.record_from_script(code, opt_text(subdir), opt_text(op), msg, fields)
        .map_err(|m| native_error("ValueError", m))
}

/// Calls a group function with the arguments it declares, recording START/END around it.
fn run_group(
    ctx: &NativeCallContext,
    job: &JobHandle,
    f: &FnPtr,
    args: &Map,
) -> RhaiResult<Dynamic> {
    let fn_name = f.fn_name().to_string();
    let name = match args.get("tag").filter(|t| !t.is_unit()) {
        Some(t) => t.to_string(),
        None if fn_name.starts_with("anon$") => "group".to_string(),
        None => fn_name.clone(),
    };
    let mut rest = args.clone();
    rest.remove("tag");
    let params = FN_PARAMS.with(|m| m.borrow().get(&fn_name).cloned().unwrap_or_default());
    let declared = params.get(f.curry().len()..).unwrap_or(&[]).to_vec();
    let call_args = cherry_pick(&declared, &rest);
    let start = crate::status_log::Entry::new("START", None, Some(&name), "");
    job.record(&start).map_err(abort_err)?;
    // Like a Python function given a keyword it does not take: an error inside the group.
    let unknown = rest
        .keys()
        .find(|k| !declared.iter().any(|d| d == k.as_str()));
    let result = match unknown {
        Some(k) => Err(native_error(
            "TypeError",
            format!("{fn_name}() got an unexpected keyword argument '{k}'"),
        )),
        None => f.call_within_context::<Dynamic>(ctx, call_args),
    };
    let end = |code: &str, msg: &str| {
        job.record(&crate::status_log::Entry::new(code, None, Some(&name), msg))
            .map_err(abort_err)
    };
    // job.quit() passes through: the job pauses with the group open, and --continue closes it.
    if let Err(err) = &result {
        if crate::steps::is_quit(err) {
            return result;
        }
    }
    // An interrupt ends the group as aborted, wherever in the group it landed.
    if let Some(why) = child::interruption() {
        end("END ABORT", "")?;
        return Err(Outcome::new(Status::Abort, why).into_rhai());
    }
    match result {
        Ok(v) => {
            end("END GOOD", "")?;
            Ok(v)
        }
        Err(err) => match escape_of(err, &current_script()) {
            Escape::Outcome(o) => {
                end(&format!("END {}", o.status), "")?;
                Err(o.into_rhai())
            }
            Escape::Unhandled(msg) => {
                end("END ERROR", &msg)?;
                Err(Outcome::new(Status::Error, msg).into_rhai())
            }
        },
    }
}

fn run_test(job: &JobHandle, name: &str, args: Option<&Dynamic>) -> RhaiResult<Status> {
    job.run_test(name, args).map_err(|o| o.into_rhai())
}

fn register_job(e: &mut Engine) {
    e.register_type_with_name::<JobHandle>("Job");
    const ARGS: &str = "`args` is a map of named arguments: the job's (`tag`, `subdir_tag`, `timeout`, `run_cleanup`, `test_attributes`), the harness's (`iterations`, `test_length`, `profile_only`, `postprocess_profiled_run`, `constraints`) and the test's parameters.";
    const RUN_TEST: &str = "Runs the test `name` (`group:name` for a test in a group folder) in a process of its own; true if it ended GOOD. Inside a test it runs a nested test.";
    doc_fn(
        e,
        "run_test",
        ["job", "name"],
        RUN_TEST,
        |j: &mut JobHandle, n: &str| run_test(j, n, None).map(|s| s == Status::Good),
    );
    doc_fn(
        e,
        "run_test",
        ["job", "name", "args"],
        &format!("{RUN_TEST}\n{ARGS}"),
        |j: &mut JobHandle, n: &str, a: Dynamic| {
            run_test(j, n, Some(&a)).map(|s| s == Status::Good)
        },
    );
    const DETAIL: &str = "Runs the test `name` as `run_test` does and returns its status: `\"GOOD\"`, `\"FAIL\"`, `\"ERROR\"`, `\"TEST_NA\"`, `\"WARN\"` or `\"BUG\"`.";
    doc_fn(
        e,
        "run_test_detail",
        ["job", "name"],
        DETAIL,
        |j: &mut JobHandle, n: &str| run_test(j, n, None).map(|s| s.as_str().to_string()),
    );
    doc_fn(
        e,
        "run_test_detail",
        ["job", "name", "args"],
        &format!("{DETAIL}\n{ARGS}"),
        |j: &mut JobHandle, n: &str, a: Dynamic| {
            run_test(j, n, Some(&a)).map(|s| s.as_str().to_string())
        },
    );
    const GROUP: &str = "Calls `f` (a function pointer or closure) as a group of tests, between START and END records; returns what `f` returns.";
    doc_fn(
        e,
        "run_group",
        ["job", "f"],
        GROUP,
        |ctx: NativeCallContext, j: &mut JobHandle, f: FnPtr| run_group(&ctx, j, &f, &Map::new()),
    );
    doc_fn(e, "run_group", ["job", "f", "args"], &format!("{GROUP}\n`args.tag` names the group (default: the function's name); the other arguments go to `f` by parameter name."), |ctx: NativeCallContext, j: &mut JobHandle, f: FnPtr, a: Map| run_group(&ctx, j, &f, &a));
    const RECORD: &str = "Writes a line to the status log: `status` (`GOOD`, `FAIL`, `START`, `END GOOD`, ...), `subdir` and `operation` (`()` is written `----`).";
    doc_fn(
        e,
        "record",
        ["job", "status", "subdir", "operation"],
        RECORD,
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic| {
            record(j, s, &sd, &op, "", &Map::new())
        },
    );
    doc_fn(
        e,
        "record",
        ["job", "status", "subdir", "operation", "message"],
        &format!("{RECORD}\n`message` ends the line."),
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic, m: &str| {
            record(j, s, &sd, &op, m, &Map::new())
        },
    );
    doc_fn(
        e,
        "record",
        ["job", "status", "subdir", "operation", "message", "fields"],
        &format!("{RECORD}\n`message` ends the line; `fields` (a map) adds `key=value` fields."),
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic, m: &str, f: Map| {
            record(j, s, &sd, &op, m, &f)
        },
    );
    doc_fn(e, "parallel", ["job", "tasks"], "Runs `tasks` side by side, each in a process of its own: each task a function pointer or closure, or an array `[f, arg1, ...]`. A failed task aborts the job unless caught.", |ctx: NativeCallContext, j: &mut JobHandle, tasks: Array| {
        crate::parallel::run(&ctx, j, &tasks)
    });
    doc_fn(
        e,
        "get_state",
        ["job", "key", "default_value"],
        "The value saved under `key` by `set_state` (in this run or before a pause), or `default_value`.",
        |j: &mut JobHandle, key: &str, default: Dynamic| get_state(j, key, default),
    );
    doc_fn(e, "set_state", ["job", "key", "value"], "Saves `value` (data that maps to JSON) under `key` in the job's state file: it survives `job.quit()` and `--continue`.", |j: &mut JobHandle, key: &str, value: Dynamic| set_state(j, key, value));
    doc_fn(
        e,
        "noop",
        ["job", "text"],
        "Logs `text` at INFO.",
        |_: &mut JobHandle, text: Dynamic| logging::info("job", &text.to_string()),
    );
    const SYSINFO_CMD: &str =
        "Adds a command whose output the job keeps in `sysinfo/` at the end of the job.";
    doc_fn(
        e,
        "add_sysinfo_command",
        ["job", "cmd"],
        SYSINFO_CMD,
        |j: &mut JobHandle, cmd: &str| {
            add_sysinfo(
                j,
                "add_sysinfo_command",
                Loggable::command(cmd, None),
                false,
            )
        },
    );
    doc_fn(e, "add_sysinfo_command", ["job", "cmd", "opts"], &format!("{SYSINFO_CMD}\n`opts`: `logfile` (the file name), `on_every_test` (also after each test, in the test's `sysinfo/`)."), |j: &mut JobHandle, cmd: &str, opts: Map| {
        let (logfile, every) = sysinfo_opts("add_sysinfo_command", &opts, true)?;
        add_sysinfo(
            j,
            "add_sysinfo_command",
            Loggable::command(cmd, logfile.as_deref()),
            every,
        )
    });
    const SYSINFO_FILE: &str = "Adds a file the job copies into `sysinfo/` at the end of the job.";
    doc_fn(
        e,
        "add_sysinfo_logfile",
        ["job", "path"],
        SYSINFO_FILE,
        |j: &mut JobHandle, path: &str| {
            add_sysinfo(j, "add_sysinfo_logfile", Loggable::file(path), false)
        },
    );
    doc_fn(e, "add_sysinfo_logfile", ["job", "path", "opts"], &format!("{SYSINFO_FILE}\n`opts`: `on_every_test` (also after each test, in the test's `sysinfo/`)."), |j: &mut JobHandle, path: &str, opts: Map| {
        let (_, every) = sysinfo_opts("add_sysinfo_logfile", &opts, false)?;
        add_sysinfo(j, "add_sysinfo_logfile", Loggable::file(path), every)
    });
    doc_get(
        e,
        "resultdir",
        "job",
        "The job folder (read-only).",
        |j: &mut JobHandle| path_str(&j.0.borrow().info.resultdir),
    );
    doc_get(
        e,
        "tmpdir",
        "job",
        "The job's temp folder (read-only).",
        |j: &mut JobHandle| path_str(&j.0.borrow().info.tmpdir),
    );
    doc_get(
        e,
        "tag",
        "job",
        "The job folder's name: the `--tag` value or the generated `job-...` name (read-only).",
        |j: &mut JobHandle| j.0.borrow().info.tag.clone(),
    );
    doc_get(
        e,
        "user",
        "job",
        "Who runs the job (read-only).",
        |j: &mut JobHandle| j.0.borrow().info.user.clone(),
    );
    doc_get(
        e,
        "hostname",
        "job",
        "The machine's host name (read-only).",
        |j: &mut JobHandle| j.0.borrow().info.hostname.clone(),
    );
    doc_get(
        e,
        "control",
        "job",
        "The path of the control file (read-only).",
        |j: &mut JobHandle| path_str(&j.0.borrow().info.control),
    );
    doc_get(
        e,
        "args",
        "job",
        "`--args`, split as autotest splits them (read-only).",
        |j: &mut JobHandle| {
            j.0.borrow()
                .info
                .args
                .iter()
                .map(|a| Dynamic::from(a.clone()))
                .collect::<Array>()
        },
    );
    macro_rules! flag {
        ($name:literal, $field:ident, $doc:literal) => {
            doc_get(
                e,
                $name,
                "job",
                concat!($doc, " Persistent across `--continue`."),
                |j: &mut JobHandle| -> RhaiResult<bool> {
                    Ok(j.props().map_err(state_err)?.$field)
                },
            );
            setter(e, $name, $doc, |j: &mut JobHandle, v: Dynamic| {
                let v = as_bool($name, &v)?;
                j.update_props(|p| p.$field = v).map_err(state_err)
            });
        };
    }
    flag!("default_profile_only", default_profile_only, "The default of `profile_only`: every iteration is a profiled run, with no extra one (default false).");
    flag!(
        "run_test_cleanup",
        run_test_cleanup,
        "The default of `run_cleanup`: tests run `cleanup` (default true)."
    );
    flag!(
        "drop_caches_between_iterations",
        drop_caches_between_iterations,
        "Drop the page cache between iterations (default false)."
    );
    flag!("sysinfo_per_iteration", sysinfo_per_iteration, "Copy `/proc/{schedstat,meminfo,slabinfo,interrupts,buddyinfo}` into `<test>/sysinfo/iteration.<n>/` before and after each iteration (default false, or the config file's `sysinfo_per_iteration`).");
    const SEQ: &str = "Add a sequence number `_NN_` to every test's name and folder (default false); setting it true restarts the count at 1. Persistent across `--continue`.";
    doc_get(
        e,
        "use_sequence_number",
        "job",
        SEQ,
        |j: &mut JobHandle| -> RhaiResult<bool> {
            Ok(j.props().map_err(state_err)?.use_sequence_number)
        },
    );
    setter(
        e,
        "use_sequence_number",
        SEQ,
        |j: &mut JobHandle, v: Dynamic| {
            let v = as_bool("use_sequence_number", &v)?;
            j.update_props(|p| {
                p.use_sequence_number = v;
                // Turning numbering on starts it again at 1, as autotest does.
                if v {
                    p.seq = 1;
                }
            })
            .map_err(state_err)
        },
    );
    const AUTO_TAG: &str = "A tag added to every test's name and folder, after its own `tag` (a string, or `()` for none, the default). Persistent across `--continue`.";
    doc_get(
        e,
        "automatic_test_tag",
        "job",
        AUTO_TAG,
        |j: &mut JobHandle| -> RhaiResult<Dynamic> {
            Ok(j.props()
                .map_err(state_err)?
                .automatic_test_tag
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT))
        },
    );
    setter(
        e,
        "automatic_test_tag",
        AUTO_TAG,
        |j: &mut JobHandle, v: Dynamic| {
            j.update_props(|p| p.automatic_test_tag = opt_text(&v))
                .map_err(state_err)
        },
    );
}

/// `job.get_state(key, default)`: the value saved under `key`, or `default`.
fn get_state(j: &JobHandle, key: &str, default: Dynamic) -> RhaiResult<Dynamic> {
    let state = j.state().load().map_err(|e| state_err(e.to_string()))?;
    match state.public.get(key) {
        Some(v) => rhai::serde::to_dynamic(v),
        None => Ok(default),
    }
}

/// `job.set_state(key, value)`: saves `value` (any data that maps to JSON) under `key`.
fn set_state(j: &JobHandle, key: &str, value: Dynamic) -> RhaiResult<()> {
    if !json_compatible(&value) {
        return Err(native_error(
            "TypeError",
            format!("job.set_state: the value for '{key}' ({}) cannot be saved: only (), booleans, numbers, strings, arrays and maps can", value.type_name()),
        ));
    }
    let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
    j.state()
        .update(|s| {
            s.public.insert(key.to_string(), json);
        })
        .map_err(|e| state_err(e.to_string()))
}

/// True for values that map to JSON: what the state file can keep.
pub fn json_compatible(v: &Dynamic) -> bool {
    if v.is_unit() || v.is_bool() || v.is_int() || v.is_float() || v.is_string() || v.is_char() {
        true
    } else if let Some(a) = v.read_lock::<Array>() {
        a.iter().all(json_compatible)
    } else if let Some(m) = v.read_lock::<Map>() {
        m.values().all(json_compatible)
    } else {
        false
    }
}

fn register_profilers(e: &mut Engine) {
    use crate::profilers::ProfilersHandle;
    e.register_type_with_name::<ProfilersHandle>("Profilers");
    doc_get(
        e,
        "profilers",
        "job",
        "The job's profilers: `add`, `delete`, `present`, `active`, `current_profilers`.",
        |j: &mut JobHandle| j.0.borrow().profilers.clone(),
    );
    const ADD: &str = "Adds the profiler `name`: a script `profilers/NAME/NAME.rhai`, else the built-in `vmstat`, `cmd` or `perf`; its `initialize` and `setup` run now. A profiler that cannot be added aborts the job unless caught.";
    doc_fn(
        e,
        "add",
        ["profilers", "name"],
        ADD,
        |ctx: NativeCallContext, p: &mut ProfilersHandle, name: &str| {
            let job = job_of(&ctx)?;
            p.add(&ctx, &job, name, &Map::new())
        },
    );
    doc_fn(
        e,
        "add",
        ["profilers", "name", "args"],
        &format!("{ADD}\n`args` go to its `initialize` by parameter name."),
        |ctx: NativeCallContext, p: &mut ProfilersHandle, name: &str, args: Map| {
            let job = job_of(&ctx)?;
            p.add(&ctx, &job, name, &args)
        },
    );
    doc_fn(
        e,
        "delete",
        ["profilers", "name"],
        "Removes every profiler named `name`.",
        |p: &mut ProfilersHandle, name: &str| p.delete(name),
    );
    doc_fn(
        e,
        "present",
        ["profilers"],
        "True when at least one profiler was added.",
        |p: &mut ProfilersHandle| p.present(),
    );
    doc_fn(
        e,
        "active",
        ["profilers"],
        "True while the profilers are started: from the start of a profiled run to its stop.",
        |p: &mut ProfilersHandle| p.active(),
    );
    doc_fn(
        e,
        "current_profilers",
        ["profilers"],
        "The names of the profilers added, once each.",
        |p: &mut ProfilersHandle| p.names().into_iter().map(Dynamic::from).collect::<Array>(),
    );
}

fn state_err(msg: String) -> Box<EvalAltResult> {
    native_error("IOError", msg)
}

/// Reads the options of `add_sysinfo_command` (`logfile`, `on_every_test`) or
/// `add_sysinfo_logfile` (`on_every_test` only); any other key is an error.
fn sysinfo_opts(
    what: &str,
    opts: &Map,
    logfile_allowed: bool,
) -> RhaiResult<(Option<String>, bool)> {
    let mut logfile = None;
    let mut every = false;
    for (k, v) in opts {
        match k.as_str() {
            "logfile" if logfile_allowed => {
                if !v.is_unit() && !v.is_string() {
                    return Err(native_error(
                        "TypeError",
                        format!("job.{what}: logfile must be a string, not {v}"),
                    ));
                }
                logfile = opt_text(v);
            }
            "on_every_test" => {
                every = (!v.is_unit())
                    .then(|| v.as_bool())
                    .transpose()
                    .map_err(|_| {
                        native_error(
                            "TypeError",
                            format!("job.{what}: on_every_test must be true or false, not {v}"),
                        )
                    })?
                    .unwrap_or(false);
            }
            other => {
                let known = if logfile_allowed {
                    "logfile, on_every_test"
                } else {
                    "on_every_test"
                };
                return Err(native_error(
                    "ValueError",
                    format!("job.{what}: unknown option '{other}' (known: {known})"),
                ));
            }
        }
    }
    Ok((logfile, every))
}

/// Adds a command or file to the job's sysinfo collection: at the end of the job, or after
/// every test when `every`.
fn add_sysinfo(
    j: &JobHandle,
    what: &str,
    item: Result<Loggable, String>,
    every: bool,
) -> RhaiResult<()> {
    let item = item.map_err(|m| native_error("ValueError", format!("job.{what}: {m}")))?;
    j.0.borrow_mut().info.sysinfo.add(item, every);
    Ok(())
}

/// Registers a property setter of `job`. `job` resolves as a constant (it cannot be
/// reassigned), so its setters are marked pure: they change the shared job, not the value.
fn setter(
    e: &mut Engine,
    name: &str,
    doc: &str,
    f: impl Fn(&mut JobHandle, Dynamic) -> RhaiResult<()> + 'static,
) {
    let reg = FuncRegistration::new_setter(name).with_purity(true);
    if DESCRIBE.get() {
        reg.with_params_info(["job: Job", "value: ?", "()"])
            .with_comments([doc_comment(doc)])
            .register_into_engine(e, f);
    } else {
        reg.register_into_engine(e, f);
    }
}

fn as_bool(name: &str, v: &Dynamic) -> RhaiResult<bool> {
    v.as_bool().map_err(|_| {
        native_error(
            "TypeError",
            format!("job.{name} must be true or false, not {v}"),
        )
    })
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn write_iteration(t: &TestObj, attr: &Map, perf: &Map, tap: bool) -> RhaiResult<()> {
    t.0.borrow_mut()
        .write_iteration_keyval(attr, perf, tap)
        .map_err(|e| native_error("ValueError", e.to_string()))
}

fn register_test(e: &mut Engine) {
    e.register_type_with_name::<TestObj>("Test");
    fn get_path(t: &TestObj, f: fn(&crate::lifecycle::TestPaths) -> &PathBuf) -> String {
        f(&t.0.borrow().paths).display().to_string()
    }
    doc_get(
        e,
        "name",
        "test",
        "The test's name, as given to `run_test` (read-only).",
        |t: &mut TestObj| t.0.borrow().paths.name.clone(),
    );
    doc_get(
        e,
        "tagged_testname",
        "test",
        "The test folder's name: the test's name with its tags and `subdir_tag` (read-only).",
        |t: &mut TestObj| t.0.borrow().paths.tagged_testname.clone(),
    );
    doc_get(
        e,
        "outputdir",
        "test",
        "The test's folder in the job folder (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.outputdir),
    );
    doc_get(
        e,
        "resultsdir",
        "test",
        "The test's `results/` folder (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.resultsdir),
    );
    doc_get(
        e,
        "profdir",
        "test",
        "The test's `profiling/` folder (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.profdir),
    );
    doc_get(
        e,
        "debugdir",
        "test",
        "The test's `debug/` folder (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.debugdir),
    );
    doc_get(
        e,
        "bindir",
        "test",
        "The folder the test script is in (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.bindir),
    );
    doc_get(
        e,
        "srcdir",
        "test",
        "Where the test folder's `src/` is copied before `setup` (read-only).",
        |t: &mut TestObj| get_path(t, |p| &p.srcdir),
    );
    doc_get(
        e,
        "tmpdir",
        "test",
        "A temp folder of the test's own, created on first use (read-only).",
        |t: &mut TestObj| -> RhaiResult<String> {
            let dir = t.0.borrow_mut().tmpdir().map_err(|e| {
                native_error(
                    "IOError",
                    format!("cannot create the test's temp folder: {e}"),
                )
            })?;
            Ok(path_str(&dir))
        },
    );
    doc_get(
        e,
        "iteration",
        "test",
        "The current iteration, from 1 (read-only).",
        |t: &mut TestObj| t.0.borrow().iteration,
    );
    doc_get(e, "params", "test", "The test parameters: the arguments that neither the job nor the harness consumes (read-only).", |t: &mut TestObj| t.0.borrow().params.clone());
    // `this.count`: any other property is the test's own state.
    doc_fn(
        e,
        "index$get$",
        ["test", "property"],
        "The test's own property `property` (`this.count`), or `()` if it was never set.",
        |t: &mut TestObj, k: &str| t.0.borrow().props.get(k).cloned().unwrap_or(Dynamic::UNIT),
    );
    doc_fn(e, "index$set$", ["test", "property", "value"], "Sets the test's own property `property` (`this.count = 0`); the read-only properties cannot be set.", |t: &mut TestObj, k: &str, v: Dynamic| -> RhaiResult<()> {
        if READ_ONLY.contains(&k) {
            return Err(native_error(
                "AttributeError",
                format!("the test property '{k}' is read-only"),
            ));
        }
        t.0.borrow_mut().props.insert(k.into(), v);
        Ok(())
    });
    doc_fn(
        e,
        "write_test_keyval",
        ["test", "keyval"],
        "Adds `keyval` (a map) to the test's `keyval` file.",
        |t: &mut TestObj, m: Map| {
            t.0.borrow()
                .write_test_keyval(&m)
                .map_err(|e| native_error("ValueError", e.to_string()))
        },
    );
    doc_fn(
        e,
        "write_perf_keyval",
        ["test", "perf"],
        "Writes a record of perf keyvals (`key{perf}=value`) to `results/keyval` (and, with `--tap`, an entry to `results/keyval.tap`).",
        |t: &mut TestObj, m: Map| write_iteration(t, &Map::new(), &m, true),
    );
    doc_fn(
        e,
        "write_attr_keyval",
        ["test", "attr"],
        "Writes a record of attribute keyvals (`key{attr}=value`) to `results/keyval` (and, with `--tap`, an entry to `results/keyval.tap`).",
        |t: &mut TestObj, m: Map| write_iteration(t, &m, &Map::new(), true),
    );
    doc_fn(
        e,
        "write_iteration_keyval",
        ["test", "attr", "perf"],
        "Writes one record of attribute and perf keyvals to `results/keyval` (never to `keyval.tap`, as in autotest).",
        |t: &mut TestObj, a: Map, p: Map| write_iteration(t, &a, &p, false),
    );
    doc_fn(
        e,
        "register_before_iteration_hook",
        ["test", "f"],
        "Calls `f` (given the test) before each iteration.",
        |t: &mut TestObj, f: FnPtr| t.0.borrow_mut().before_hooks.push(f),
    );
    doc_fn(
        e,
        "register_after_iteration_hook",
        ["test", "f"],
        "Calls `f` (given the test) after each iteration.",
        |t: &mut TestObj, f: FnPtr| t.0.borrow_mut().after_hooks.push(f),
    );
    const SUBTEST: &str =
        "Runs the test `name` nested in this test's folder; true if it ended GOOD.";
    doc_fn(
        e,
        "runsubtest",
        ["test", "name"],
        SUBTEST,
        |ctx: NativeCallContext, _t: &mut TestObj, n: &str| -> RhaiResult<bool> {
            let job = job_of(&ctx)?;
            subtest(&job, n, Map::new())
        },
    );
    doc_fn(
        e,
        "runsubtest",
        ["test", "name", "args"],
        &format!("{SUBTEST}\n`args` as for `job.run_test`; `profile_only` is false unless given."),
        |ctx: NativeCallContext, _t: &mut TestObj, n: &str, a: Map| -> RhaiResult<bool> {
            let job = job_of(&ctx)?;
            subtest(&job, n, a)
        },
    );
}

/// `runsubtest` runs a nested test with `profile_only` false unless given, as autotest did.
fn subtest(job: &JobHandle, name: &str, mut args: Map) -> RhaiResult<bool> {
    args.entry("profile_only".into()).or_insert(Dynamic::FALSE);
    run_test(job, name, Some(&Dynamic::from_map(args))).map(|s| s == Status::Good)
}

fn job_of(ctx: &NativeCallContext) -> RhaiResult<JobHandle> {
    JOB.with(|j| j.borrow().clone())
        .ok_or_else(|| native_error("RuntimeError", format!("no job in {}", ctx.fn_name())))
}

thread_local! {
    static JOB: RefCell<Option<JobHandle>> = const { RefCell::new(None) };
}

/// Makes `job` the job that `runsubtest` uses in this process.
pub fn set_current_job(job: &JobHandle) {
    JOB.with(|j| *j.borrow_mut() = Some(job.clone()));
}

/// The job set by [`set_current_job`] in this process.
pub fn current_job() -> Option<JobHandle> {
    JOB.with(|j| j.borrow().clone())
}

/// The message an outcome escaping the control file's top level aborts the job with.
pub fn unhandled_job_message(o: &Outcome) -> String {
    format!("Unhandled {}: {}", class_name(o.status), o.message)
}

/// `exit` outside a test process (the control file, a group, a profiler's `initialize`):
/// Rhai's own would end the control file quietly and the job would pass with tests
/// skipped, so it aborts the job with a reason instead. Test processes replace it with
/// [`register_test_exit`].
fn register_job_exit(e: &mut Engine) {
    let stop = |code: String| -> RhaiResult<()> {
        Err(
            crate::job::abort(format!("exit({code}) called outside a test; the job stops"))
                .into_rhai(),
        )
    };
    doc_fn(e, "exit", [], "`exit(0)`.", move || stop(String::new()));
    doc_fn(
        e,
        "exit",
        ["code"],
        "In a test, ends the test's process with the exit code `code` (default 0): the test ends ERROR `Test subprocess failed rc=N` and the job goes on. In a control file, aborts the job (`exit(N) called outside a test; the job stops`).",
        move |code: Dynamic| stop(code.to_string()),
    );
}

/// In a test process, `exit` ends the process as a stray `exit` would end autotest's
/// forked child: the job records ERROR `Test subprocess failed rc=N` and goes on.
pub fn register_test_exit(e: &mut Engine) {
    e.register_fn("exit", || -> () { std::process::exit(0) })
        .register_fn("exit", |code: Dynamic| -> () {
            std::process::exit(code.as_int().map(|c| c as i32).unwrap_or(1))
        });
}
