//! Executable tests: a program `NAME/NAME` in a test folder that has no `NAME.rhai`. Each
//! iteration runs it once, with the test parameters and folders in its environment; exit 0
//! passes, anything else fails; `name=value` lines it leaves in `$AUTORUN_RESULTSDIR/perf`
//! (and `attr`) become that iteration's keyvals. The user's side is in
//! docs/executable-tests.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{Dynamic, Engine, Map};

use crate::commands::{self, Cmd, CmdResult, Opts};
use crate::keyval;
use crate::lifecycle::{Phase, Settings, SharedState, TestBody};
use crate::logging;
use crate::outcome::{Escape, Outcome};
use crate::profilers::{ProfilersHandle, TestProfilers};
use crate::script_test::TestObj;
use crate::status::Status;

/// The prefix of the variables that carry the test parameters.
pub const PARAM_PREFIX: &str = "AUTORUN_PARAM_";

/// The file in the results folder whose lines become perf keyvals.
pub const PERF_FILE: &str = "perf";

/// The file in the results folder whose lines become attr keyvals.
pub const ATTR_FILE: &str = "attr";

/// A test that is a program.
pub struct ExecTest<'e> {
    engine: &'e Engine,
    program: PathBuf,
    /// The test object, handed to script profilers as `test`.
    this: Dynamic,
    profilers: TestProfilers<'e>,
}

impl<'e> ExecTest<'e> {
    /// The test whose program is `program`. `engine` only runs the job's script profilers.
    pub fn new(engine: &'e Engine, program: &Path, state: SharedState) -> ExecTest<'e> {
        ExecTest {
            engine,
            program: program.to_path_buf(),
            this: Dynamic::from(TestObj(state.clone())),
            profilers: TestProfilers::new(
                engine,
                ProfilersHandle::default(),
                Dynamic::from(TestObj(state)),
            ),
        }
    }

    /// An executable test's settings: version 0, and every parameter accepted (each one
    /// becomes an environment variable; the program decides what it knows).
    pub fn settings() -> Settings {
        Settings {
            strict_params: false,
            ..Settings::default()
        }
    }

    /// Runs the job's profilers around this test's profiled runs.
    pub fn with_profilers(mut self, profilers: ProfilersHandle) -> Self {
        self.profilers = TestProfilers::new(self.engine, profilers, self.this.clone());
        self
    }

    fn state(&self) -> SharedState {
        self.this
            .read_lock::<TestObj>()
            .expect("this is a test object")
            .0
            .clone()
    }

    /// One iteration: the program, then its keyval files.
    fn run_program(&mut self, params: &Map) -> Result<(), Escape> {
        let error = |m: String| Escape::Outcome(Outcome::new(Status::Error, m));
        let state = self.state();
        let (env, outputdir, resultsdir) = {
            let mut st = state.borrow_mut();
            let tmpdir = st
                .tmpdir()
                .map_err(|e| error(format!("cannot create the test's temp folder: {e}")))?;
            let mut env = param_env(params).map_err(error)?;
            let p = &st.paths;
            let dirs = [
                ("AUTORUN_OUTPUTDIR", &p.outputdir),
                ("AUTORUN_RESULTSDIR", &p.resultsdir),
                ("AUTORUN_PROFDIR", &p.profdir),
                ("AUTORUN_DEBUGDIR", &p.debugdir),
                ("AUTORUN_BINDIR", &p.bindir),
                ("AUTORUN_SRCDIR", &p.srcdir),
                ("AUTORUN_TMPDIR", &tmpdir),
            ];
            for (k, dir) in dirs {
                env.push((k.to_string(), dir.display().to_string()));
            }
            env.push(("AUTORUN_TEST".into(), p.name.clone()));
            env.push(("AUTORUN_TAGGED_TESTNAME".into(), p.tagged_testname.clone()));
            env.push(("AUTORUN_ITERATION".into(), st.iteration.to_string()));
            (env, p.outputdir.clone(), p.resultsdir.clone())
        };
        // Parameters of an enclosing run (an autorun inside a test) must not leak in.
        let env_remove = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with(PARAM_PREFIX))
            .collect();
        let opts = Opts {
            env,
            env_remove,
            cwd: Some(outputdir.display().to_string()),
            ..Opts::default()
        };
        let cmd = Cmd::Argv(vec![self.program.display().to_string()]);
        let result = commands::run(&cmd, &opts).map_err(|e| {
            error(format!(
                "cannot run {}: {}",
                self.program.display(),
                cause(&e)
            ))
        })?;
        logging::debug(
            "test",
            &format!(
                "{} ended with {} after {:.3} s",
                self.program.display(),
                ending(&result),
                result.duration
            ),
        );
        let keyvals = consume_keyvals(&resultsdir);
        if let Some(reason) = failure_reason(&result) {
            match keyvals {
                // A failed iteration's numbers are kept, as a script that wrote keyvals
                // before it failed keeps them.
                Ok(Some((attr, perf))) => write(&state, &attr, &perf).unwrap_or_else(|e| {
                    logging::error("test", &e);
                }),
                Ok(None) => {}
                Err(e) => logging::error("test", &e),
            }
            return Err(Escape::Outcome(Outcome::new(Status::Fail, reason)));
        }
        match keyvals.map_err(error)? {
            Some((attr, perf)) => write(&state, &attr, &perf).map_err(error),
            None => Ok(()),
        }
    }
}

/// The message of a spawn error without the `Command <…>` frame `run` gives it.
fn cause(e: &commands::CmdError) -> String {
    let commands::CmdError::Spawn(_, why) = e;
    why.clone()
}

/// Writes one iteration record.
fn write(
    state: &SharedState,
    attr: &[(String, String)],
    perf: &[(String, String)],
) -> Result<(), String> {
    state
        .borrow_mut()
        .write_iteration_text(attr, perf)
        .map_err(|e| e.to_string())
}

/// `exit status 0`, `exit status 3`, `SIGSEGV (signal 11)`.
fn ending(r: &CmdResult) -> String {
    if r.exit_status >= 0 {
        format!("exit status {}", r.exit_status)
    } else {
        let sig = (-r.exit_status) as i32;
        format!("{} (signal {sig})", crate::child::signal_name(sig))
    }
}

/// The FAIL message of a run that did not exit 0: how it ended, then the last line it
/// wrote to stderr. `None` when it passed.
pub fn failure_reason(r: &CmdResult) -> Option<String> {
    if r.exit_status == 0 {
        return None;
    }
    let how = if r.exit_status > 0 {
        ending(r)
    } else {
        format!("killed by {}", ending(r))
    };
    let last = r
        .stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty());
    Some(match last {
        Some(line) => format!("{how}: {line}"),
        None => how,
    })
}

/// The test parameters as `AUTORUN_PARAM_<NAME>` variables: the name upper-cased, with
/// any character other than a letter, digit or `_` made `_`; see [`env_value`] for the
/// values. Two parameters that give the same variable, or a value holding NUL, are an
/// error.
pub fn param_env(params: &Map) -> Result<Vec<(String, String)>, String> {
    let mut vars: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (name, value) in params {
        let var: String = std::iter::once(PARAM_PREFIX.to_string())
            .chain(name.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_uppercase().to_string()
                } else {
                    "_".to_string()
                }
            }))
            .collect();
        let Some(text) = env_value(value) else {
            continue;
        };
        if text.contains('\0') {
            return Err(format!(
                "parameter {name} cannot be passed to an executable test: its value holds a NUL character"
            ));
        }
        if let Some((other, _)) = vars.get(&var) {
            return Err(format!(
                "parameters {other} and {name} would both be passed as {var}; rename one"
            ));
        }
        vars.insert(var, (name.to_string(), text));
    }
    Ok(vars.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// A parameter's value as an environment variable: strings as they are, integers in
/// decimal, floats in shortest round-trip form (`1.5`, `2.0`), booleans `true`/`false`,
/// arrays and maps as JSON; `()` sets no variable.
pub fn env_value(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        None
    } else if let Ok(b) = v.as_bool() {
        Some(b.to_string())
    } else if let Ok(f) = v.as_float() {
        Some(keyval::py_float(f))
    } else if v.is_string() {
        v.clone().into_string().ok()
    } else if v.is_array() || v.is_map() {
        Some(serde_json::to_string(v).unwrap_or_else(|_| v.to_string()))
    } else {
        Some(v.to_string())
    }
}

/// Sorted `(key, value)` pairs.
type Pairs = Vec<(String, String)>;

/// Reads and removes the `attr` and `perf` files of `resultsdir`: `None` when neither has
/// a line, else the pairs of each. Both files are gone afterwards, good or bad, so the
/// next iteration starts afresh.
fn consume_keyvals(resultsdir: &Path) -> Result<Option<(Pairs, Pairs)>, String> {
    let attr = consume(&resultsdir.join(ATTR_FILE));
    let perf = consume(&resultsdir.join(PERF_FILE));
    let (attr, perf) = (attr?, perf?);
    if attr.is_empty() && perf.is_empty() {
        Ok(None)
    } else {
        Ok(Some((attr, perf)))
    }
}

/// One keyval file a program wrote, removed once read.
fn consume(path: &Path) -> Result<Pairs, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    let text =
        String::from_utf8(text).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    parse_lines(&text).map_err(|(n, why)| format!("{} line {n}: {why}", path.display()))
}

/// `name=value` lines: blank lines and lines starting with `#` skipped, spaces around the
/// name and the value trimmed, the last of a repeated name kept. The error is the first
/// bad line's number and what is wrong with it.
pub fn parse_lines(text: &str) -> Result<Pairs, (usize, String)> {
    let mut pairs = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, format!("{line:?} is not name=value")));
        };
        let name = name.trim();
        if !keyval::valid_key(name) {
            return Err((
                i + 1,
                format!("invalid name {name:?}: use letters, digits, '_', '-' and '.' only"),
            ));
        }
        pairs.insert(name.to_string(), value.trim().to_string());
    }
    Ok(pairs.into_iter().collect())
}

impl TestBody for ExecTest<'_> {
    fn has(&self, phase: Phase) -> bool {
        phase == Phase::RunOnce
    }

    fn declares(&self, _name: &str) -> bool {
        true
    }

    fn call(&mut self, phase: Phase, available: &Map) -> Result<(), Escape> {
        match phase {
            Phase::RunOnce => self.run_program(available),
            _ => Ok(()),
        }
    }

    fn hooks(&mut self, _before: bool) -> Result<(), Escape> {
        Ok(())
    }

    fn profilers(&self) -> Option<&dyn crate::lifecycle::Profilers> {
        Some(&self.profilers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    #[test]
    fn parameters_as_variables() {
        let arr: rhai::Array = vec![Dynamic::from_int(1), Dynamic::from("a".to_string())];
        let params = map(&[
            ("size", Dynamic::from_int(4096)),
            ("ratio", Dynamic::from_float(2.0)),
            ("verbose", Dynamic::from_bool(true)),
            ("label", Dynamic::from("x y".to_string())),
            ("block-size", Dynamic::from_float(0.25)),
            ("list", Dynamic::from_array(arr)),
            ("unset", Dynamic::UNIT),
        ]);
        let env = param_env(&params).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("AUTORUN_PARAM_SIZE"), Some("4096"));
        assert_eq!(get("AUTORUN_PARAM_RATIO"), Some("2.0"));
        assert_eq!(get("AUTORUN_PARAM_VERBOSE"), Some("true"));
        assert_eq!(get("AUTORUN_PARAM_LABEL"), Some("x y"));
        assert_eq!(get("AUTORUN_PARAM_BLOCK_SIZE"), Some("0.25"));
        assert_eq!(get("AUTORUN_PARAM_LIST"), Some(r#"[1,"a"]"#));
        assert_eq!(get("AUTORUN_PARAM_UNSET"), None);
    }

    #[test]
    fn colliding_or_nul_parameters_are_refused() {
        let two = map(&[
            ("size", Dynamic::from_int(1)),
            ("SIZE", Dynamic::from_int(2)),
        ]);
        let e = param_env(&two).unwrap_err();
        assert!(e.contains("AUTORUN_PARAM_SIZE"), "{e}");
        let nul = map(&[("s", Dynamic::from("a\0b".to_string()))]);
        assert!(param_env(&nul).unwrap_err().contains("NUL"));
    }

    #[test]
    fn perf_lines() {
        let text = "# comment\n\nthroughput = 12.50\nlatency_ms=3\nlatency_ms=4\nmode=a=b\n";
        assert_eq!(
            parse_lines(text).unwrap(),
            vec![
                ("latency_ms".to_string(), "4".to_string()),
                ("mode".to_string(), "a=b".to_string()),
                ("throughput".to_string(), "12.50".to_string()),
            ]
        );
        let (n, why) = parse_lines("a=1\nthroughput 12\n").unwrap_err();
        assert_eq!(n, 2);
        assert!(why.contains("not name=value"), "{why}");
        let (n, why) = parse_lines("a b=1\n").unwrap_err();
        assert_eq!(n, 1);
        assert!(why.contains("invalid name \"a b\""), "{why}");
    }

    #[test]
    fn consumed_files_are_gone_even_when_bad() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(consume_keyvals(d.path()), Ok(None));
        std::fs::write(d.path().join(PERF_FILE), "x=1\n").unwrap();
        std::fs::write(d.path().join(ATTR_FILE), "bad line\n").unwrap();
        let e = consume_keyvals(d.path()).unwrap_err();
        assert!(e.contains("attr line 1"), "{e}");
        assert!(!d.path().join(PERF_FILE).exists() && !d.path().join(ATTR_FILE).exists());
        std::fs::write(d.path().join(PERF_FILE), "x=1\n").unwrap();
        assert_eq!(
            consume_keyvals(d.path()),
            Ok(Some((vec![], vec![("x".into(), "1".into())])))
        );
    }

    fn result(exit_status: i64, stderr: &str) -> CmdResult {
        CmdResult {
            command: "t".into(),
            exit_status,
            stdout: String::new(),
            stderr: stderr.into(),
            duration: 0.0,
            timed_out: false,
        }
    }

    #[test]
    fn failure_reasons() {
        assert_eq!(failure_reason(&result(0, "noise\n")), None);
        assert_eq!(
            failure_reason(&result(3, "checking\ndisk too slow\n\n")).as_deref(),
            Some("exit status 3: disk too slow")
        );
        assert_eq!(
            failure_reason(&result(1, "")).as_deref(),
            Some("exit status 1")
        );
        assert_eq!(
            failure_reason(&result(-11, "")).as_deref(),
            Some("killed by SIGSEGV (signal 11)")
        );
    }
}
