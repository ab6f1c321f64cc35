//! The Rhai engine autorun gives every script: its limits, the utilities, the outcome
//! functions, `job`, and the test object `this`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, AST, INT};

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

/// Makes `file` the running script again (after compiling another one).
pub fn set_current_script(file: String) {
    CURRENT_FILE.with(|f| *f.borrow_mut() = file);
}

/// Builds the engine for control files and tests, with `job` resolving to `job`.
pub fn engine(job: JobHandle) -> Engine {
    let mut e = Engine::new_raw();
    e.register_global_module(STANDARD.with(|m| m.clone()));
    e.set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1)
        .set_max_operations(MAX_OPERATIONS)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_ARRAY)
        .set_max_modules(256);
    let control_dir = job
        .0
        .borrow()
        .info
        .control
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    e.set_module_resolver(crate::imports::Resolver::new(&control_dir));
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
    #[allow(deprecated)] // on_var is stable in use, only marked volatile
    e.on_var(move |name, _, _| Ok((name == "job").then(|| Dynamic::from(job.clone()))));
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
    for (name, status) in [
        ("test_fail", Status::Fail),
        ("test_error", Status::Error),
        ("test_na", Status::TestNa),
        ("test_warn", Status::Warn),
        ("test_bug", Status::Bug),
        ("job_error", Status::Abort),
    ] {
        e.register_fn(name, move |msg: Dynamic| -> RhaiResult<()> {
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
    e.register_fn("run", |cmd: Dynamic| run_cmd(&cmd, &Map::new()))
        .register_fn("run", |cmd: Dynamic, opts: Map| run_cmd(&cmd, &opts))
        .register_fn("system", |cmd: Dynamic| {
            run_cmd(&cmd, &Map::new()).map(|m| m["exit_status"].clone())
        })
        .register_fn("system", |cmd: Dynamic, opts: Map| {
            run_cmd(&cmd, &opts).map(|m| m["exit_status"].clone())
        })
        .register_fn("system_output", |cmd: Dynamic| {
            system_output(&cmd, &Map::new())
        })
        .register_fn("system_output", |cmd: Dynamic, opts: Map| {
            system_output(&cmd, &opts)
        })
        .register_fn("sleep", |s: INT| sleep(s as f64))
        .register_fn("sleep", sleep)
        .register_fn("read_file", |p: &str| {
            std::fs::read_to_string(p).map_err(|e| io_err("cannot read", p, e))
        })
        .register_fn("write_file", |p: &str, text: &str| {
            std::fs::write(p, text).map_err(|e| io_err("cannot write", p, e))
        })
        .register_fn("append_file", |p: &str, text: &str| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| io_err("cannot append to", p, e))
        })
        .register_fn("exists", |p: &str| Path::new(p).exists())
        .register_fn("mkdir", |p: &str| {
            std::fs::create_dir_all(p).map_err(|e| io_err("cannot create", p, e))
        })
        .register_fn("read_keyval", |p: &str| {
            keyval::read(Path::new(p)).map_err(|e| native_error("ValueError", e.to_string()))
        })
        .register_fn("results", |p: &str| {
            crate::results::JobResults::load(Path::new(p))
                .map(|r| r.to_rhai())
                .map_err(|e| native_error("IOError", e.to_string()))
        })
        .register_fn("cpu_count", || {
            std::thread::available_parallelism()
                .map(|n| n.get() as INT)
                .unwrap_or(1)
        })
        .register_fn("hostname", hostname)
        .register_fn("drop_caches", crate::lifecycle::drop_caches);
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
    e.register_fn("run_test", |j: &mut JobHandle, n: &str| {
        run_test(j, n, None).map(|s| s == Status::Good)
    })
    .register_fn("run_test", |j: &mut JobHandle, n: &str, a: Dynamic| {
        run_test(j, n, Some(&a)).map(|s| s == Status::Good)
    })
    .register_fn("run_test_detail", |j: &mut JobHandle, n: &str| {
        run_test(j, n, None).map(|s| s.as_str().to_string())
    })
    .register_fn(
        "run_test_detail",
        |j: &mut JobHandle, n: &str, a: Dynamic| {
            run_test(j, n, Some(&a)).map(|s| s.as_str().to_string())
        },
    )
    .register_fn(
        "run_group",
        |ctx: NativeCallContext, j: &mut JobHandle, f: FnPtr| run_group(&ctx, j, &f, &Map::new()),
    )
    .register_fn(
        "run_group",
        |ctx: NativeCallContext, j: &mut JobHandle, f: FnPtr, a: Map| run_group(&ctx, j, &f, &a),
    )
    .register_fn(
        "record",
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic| {
            record(j, s, &sd, &op, "", &Map::new())
        },
    )
    .register_fn(
        "record",
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic, m: &str| {
            record(j, s, &sd, &op, m, &Map::new())
        },
    )
    .register_fn(
        "record",
        |j: &mut JobHandle, s: &str, sd: Dynamic, op: Dynamic, m: &str, f: Map| {
            record(j, s, &sd, &op, m, &f)
        },
    )
    .register_fn(
        "parallel",
        |ctx: NativeCallContext, j: &mut JobHandle, tasks: Array| {
            crate::parallel::run(&ctx, j, &tasks)
        },
    )
    .register_fn(
        "get_state",
        |j: &mut JobHandle, key: &str, default: Dynamic| get_state(j, key, default),
    )
    .register_fn(
        "set_state",
        |j: &mut JobHandle, key: &str, value: Dynamic| set_state(j, key, value),
    )
    .register_fn("noop", |_: &mut JobHandle, text: Dynamic| {
        logging::info("job", &text.to_string())
    })
    .register_fn("add_sysinfo_command", |j: &mut JobHandle, cmd: &str| {
        add_sysinfo(
            j,
            "add_sysinfo_command",
            Loggable::command(cmd, None),
            false,
        )
    })
    .register_fn(
        "add_sysinfo_command",
        |j: &mut JobHandle, cmd: &str, opts: Map| {
            let (logfile, every) = sysinfo_opts("add_sysinfo_command", &opts, true)?;
            add_sysinfo(
                j,
                "add_sysinfo_command",
                Loggable::command(cmd, logfile.as_deref()),
                every,
            )
        },
    )
    .register_fn("add_sysinfo_logfile", |j: &mut JobHandle, path: &str| {
        add_sysinfo(j, "add_sysinfo_logfile", Loggable::file(path), false)
    })
    .register_fn(
        "add_sysinfo_logfile",
        |j: &mut JobHandle, path: &str, opts: Map| {
            let (_, every) = sysinfo_opts("add_sysinfo_logfile", &opts, false)?;
            add_sysinfo(j, "add_sysinfo_logfile", Loggable::file(path), every)
        },
    );
    e.register_get("resultdir", |j: &mut JobHandle| {
        path_str(&j.0.borrow().info.resultdir)
    })
    .register_get("tmpdir", |j: &mut JobHandle| {
        path_str(&j.0.borrow().info.tmpdir)
    })
    .register_get("tag", |j: &mut JobHandle| j.0.borrow().info.tag.clone())
    .register_get("user", |j: &mut JobHandle| j.0.borrow().info.user.clone())
    .register_get("hostname", |j: &mut JobHandle| {
        j.0.borrow().info.hostname.clone()
    })
    .register_get("control", |j: &mut JobHandle| {
        path_str(&j.0.borrow().info.control)
    })
    .register_get("args", |j: &mut JobHandle| {
        j.0.borrow()
            .info
            .args
            .iter()
            .map(|a| Dynamic::from(a.clone()))
            .collect::<Array>()
    });
    macro_rules! flag {
        ($name:literal, $field:ident) => {
            e.register_get($name, |j: &mut JobHandle| -> RhaiResult<bool> {
                Ok(j.props().map_err(state_err)?.$field)
            });
            setter(e, $name, |j: &mut JobHandle, v: Dynamic| {
                let v = as_bool($name, &v)?;
                j.update_props(|p| p.$field = v).map_err(state_err)
            });
        };
    }
    flag!("default_profile_only", default_profile_only);
    flag!("run_test_cleanup", run_test_cleanup);
    flag!(
        "drop_caches_between_iterations",
        drop_caches_between_iterations
    );
    flag!("sysinfo_per_iteration", sysinfo_per_iteration);
    e.register_get(
        "use_sequence_number",
        |j: &mut JobHandle| -> RhaiResult<bool> {
            Ok(j.props().map_err(state_err)?.use_sequence_number)
        },
    );
    setter(e, "use_sequence_number", |j: &mut JobHandle, v: Dynamic| {
        let v = as_bool("use_sequence_number", &v)?;
        j.update_props(|p| {
            p.use_sequence_number = v;
            // Turning numbering on starts it again at 1, as autotest does.
            if v {
                p.seq = 1;
            }
        })
        .map_err(state_err)
    });
    e.register_get(
        "automatic_test_tag",
        |j: &mut JobHandle| -> RhaiResult<Dynamic> {
            Ok(j.props()
                .map_err(state_err)?
                .automatic_test_tag
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT))
        },
    );
    setter(e, "automatic_test_tag", |j: &mut JobHandle, v: Dynamic| {
        j.update_props(|p| p.automatic_test_tag = opt_text(&v))
            .map_err(state_err)
    });
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
    e.register_get("profilers", |j: &mut JobHandle| {
        j.0.borrow().profilers.clone()
    });
    e.register_fn(
        "add",
        |ctx: NativeCallContext, p: &mut ProfilersHandle, name: &str| {
            let job = job_of(&ctx)?;
            p.add(&ctx, &job, name, &Map::new())
        },
    )
    .register_fn(
        "add",
        |ctx: NativeCallContext, p: &mut ProfilersHandle, name: &str, args: Map| {
            let job = job_of(&ctx)?;
            p.add(&ctx, &job, name, &args)
        },
    )
    .register_fn("delete", |p: &mut ProfilersHandle, name: &str| {
        p.delete(name)
    })
    .register_fn("present", |p: &mut ProfilersHandle| p.present())
    .register_fn("active", |p: &mut ProfilersHandle| p.active())
    .register_fn("current_profilers", |p: &mut ProfilersHandle| {
        p.names().into_iter().map(Dynamic::from).collect::<Array>()
    });
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
    f: impl Fn(&mut JobHandle, Dynamic) -> RhaiResult<()> + 'static,
) {
    rhai::FuncRegistration::new_setter(name)
        .with_purity(true)
        .register_into_engine(e, f);
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

fn write_iteration(t: &TestObj, attr: &Map, perf: &Map) -> RhaiResult<()> {
    t.0.borrow_mut()
        .write_iteration_keyval(attr, perf)
        .map_err(|e| native_error("ValueError", e.to_string()))
}

fn register_test(e: &mut Engine) {
    e.register_type_with_name::<TestObj>("Test");
    fn get_path(t: &TestObj, f: fn(&crate::lifecycle::TestPaths) -> &PathBuf) -> String {
        f(&t.0.borrow().paths).display().to_string()
    }
    e.register_get("name", |t: &mut TestObj| t.0.borrow().paths.name.clone())
        .register_get("tagged_testname", |t: &mut TestObj| {
            t.0.borrow().paths.tagged_testname.clone()
        })
        .register_get("outputdir", |t: &mut TestObj| get_path(t, |p| &p.outputdir))
        .register_get("resultsdir", |t: &mut TestObj| {
            get_path(t, |p| &p.resultsdir)
        })
        .register_get("profdir", |t: &mut TestObj| get_path(t, |p| &p.profdir))
        .register_get("debugdir", |t: &mut TestObj| get_path(t, |p| &p.debugdir))
        .register_get("bindir", |t: &mut TestObj| get_path(t, |p| &p.bindir))
        .register_get("srcdir", |t: &mut TestObj| get_path(t, |p| &p.srcdir))
        .register_get("tmpdir", |t: &mut TestObj| -> RhaiResult<String> {
            let dir = t.0.borrow_mut().tmpdir().map_err(|e| {
                native_error(
                    "IOError",
                    format!("cannot create the test's temp folder: {e}"),
                )
            })?;
            Ok(path_str(&dir))
        })
        .register_get("iteration", |t: &mut TestObj| t.0.borrow().iteration)
        .register_get("params", |t: &mut TestObj| t.0.borrow().params.clone())
        .register_indexer_get(|t: &mut TestObj, k: &str| {
            t.0.borrow().props.get(k).cloned().unwrap_or(Dynamic::UNIT)
        })
        .register_indexer_set(|t: &mut TestObj, k: &str, v: Dynamic| -> RhaiResult<()> {
            if READ_ONLY.contains(&k) {
                return Err(native_error(
                    "AttributeError",
                    format!("the test property '{k}' is read-only"),
                ));
            }
            t.0.borrow_mut().props.insert(k.into(), v);
            Ok(())
        })
        .register_fn("write_test_keyval", |t: &mut TestObj, m: Map| {
            t.0.borrow()
                .write_test_keyval(&m)
                .map_err(|e| native_error("ValueError", e.to_string()))
        })
        .register_fn("write_perf_keyval", |t: &mut TestObj, m: Map| {
            write_iteration(t, &Map::new(), &m)
        })
        .register_fn("write_attr_keyval", |t: &mut TestObj, m: Map| {
            write_iteration(t, &m, &Map::new())
        })
        .register_fn(
            "write_iteration_keyval",
            |t: &mut TestObj, a: Map, p: Map| write_iteration(t, &a, &p),
        )
        .register_fn(
            "register_before_iteration_hook",
            |t: &mut TestObj, f: FnPtr| t.0.borrow_mut().before_hooks.push(f),
        )
        .register_fn(
            "register_after_iteration_hook",
            |t: &mut TestObj, f: FnPtr| t.0.borrow_mut().after_hooks.push(f),
        )
        .register_fn(
            "runsubtest",
            |ctx: NativeCallContext, _t: &mut TestObj, n: &str| -> RhaiResult<bool> {
                let job = job_of(&ctx)?;
                subtest(&job, n, Map::new())
            },
        )
        .register_fn(
            "runsubtest",
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
    e.register_fn("exit", move || stop(String::new()))
        .register_fn("exit", move |code: Dynamic| stop(code.to_string()));
}

/// In a test process, `exit` ends the process as a stray `exit` would end autotest's
/// forked child: the job records ERROR `Test subprocess failed rc=N` and goes on.
pub fn register_test_exit(e: &mut Engine) {
    e.register_fn("exit", || -> () { std::process::exit(0) })
        .register_fn("exit", |code: Dynamic| -> () {
            std::process::exit(code.as_int().map(|c| c as i32).unwrap_or(1))
        });
}
