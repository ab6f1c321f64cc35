//! One REPL session's evaluation state: the engine with `job` bound, the variables and the
//! functions of earlier entries, and the `:commands`. Knows nothing of terminals: it takes
//! complete entries and answers with text, so piped and interactive sessions share it.

use std::io::Write;
use std::path::PathBuf;

use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope, AST};

use crate::job::JobHandle;
use crate::outcome::{kind_and_text, native_error, outcome_of};
use crate::{api, child, discovery, steps};

/// The `:commands`, with what they do, as `:help` lists them.
pub const COMMANDS: [(&str, &str); 6] = [
    (":help", "this list"),
    (
        ":tests",
        "the tests that can be run (found in the test folders)",
    ),
    (":status", "the job's results so far"),
    (":fns", "the functions defined so far"),
    (
        ":reset",
        "forget the variables and functions defined so far",
    ),
    (":quit", "end the job (as Ctrl-D does)"),
];

/// What an entry gave.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Nothing to show (the entry's value was `()`).
    Quiet,
    /// The entry's value, for stdout.
    Value(String),
    /// Text a command prints, for stdout.
    Text(String),
    /// What went wrong, for stderr; the session goes on.
    Error(String),
    /// A signal stopped the entry; the caller decides whether the session goes on.
    Interrupted(i32),
    /// `:quit`.
    Quit,
}

/// The state that lives from one entry to the next.
pub struct Session {
    engine: Engine,
    job: JobHandle,
    scope: Scope<'static>,
    /// The functions of every entry so far, without statements.
    fns: AST,
    /// The job folder's `control`: every entry that compiled, in order.
    transcript: PathBuf,
}

impl Session {
    /// A session on `job`, with the engine control files get.
    pub fn new(job: JobHandle) -> Session {
        let transcript = job.info().resultdir.join("control");
        Session {
            engine: api::engine(job.clone()),
            job,
            scope: Scope::new(),
            fns: AST::empty(),
            transcript,
        }
    }

    /// The engine, for completion of `job.` methods.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Handles one complete entry: a `:command` or Rhai code.
    pub fn handle(&mut self, input: &str) -> Answer {
        let text = input.trim();
        if text.is_empty() {
            return Answer::Quiet;
        }
        if text.starts_with(':') {
            return self.command(text);
        }
        self.eval(input)
    }

    fn command(&mut self, cmd: &str) -> Answer {
        match cmd {
            ":help" => Answer::Text(help()),
            ":quit" | ":q" | ":exit" => Answer::Quit,
            ":tests" => {
                let tests = discovery::list(&self.job.info().test_dirs);
                if tests.is_empty() {
                    Answer::Text(format!(
                        "No tests found in {}.",
                        folders(&self.job.info().test_dirs)
                    ))
                } else {
                    Answer::Text(tests.join("\n"))
                }
            }
            ":status" => match crate::results::JobResults::load(&self.job.info().resultdir) {
                Ok(r) => Answer::Text(crate::show::render(&r).trim_end().to_string()),
                Err(e) => Answer::Error(format!("error: {e}")),
            },
            ":fns" => {
                let fns: Vec<String> = self
                    .fns
                    .iter_functions()
                    .map(|f| format!("fn {}({})", f.name, f.params.join(", ")))
                    .collect();
                if fns.is_empty() {
                    Answer::Text("No functions defined.".into())
                } else {
                    Answer::Text(fns.join("\n"))
                }
            }
            ":reset" => {
                self.scope.clear();
                self.fns = AST::empty();
                Answer::Text("Variables and functions forgotten.".into())
            }
            other => Answer::Error(format!(
                "error: unknown command {other}; :help lists the commands"
            )),
        }
    }

    fn eval(&mut self, source: &str) -> Answer {
        let ast = match self.engine.compile_with_scope(&self.scope, source) {
            Ok(ast) => ast,
            Err(e) => {
                return Answer::Error(format!(
                    "syntax error{}: {}",
                    at(e.position()),
                    e.err_type()
                ))
            }
        };
        self.keep(source);
        api::remember_functions(&ast);
        // Earlier functions stay callable; a new definition of the same name and arity
        // replaces the old one.
        let merged = self.fns.merge(&ast);
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &merged);
        self.fns = merged;
        self.fns.clear_statements();
        // Steps queued with job.next_step run after the entry, as after a control file's
        // top level.
        let result = result.and_then(|v| self.run_steps().map(|()| v));
        if let Some(sig) = child::interrupted() {
            return Answer::Interrupted(sig);
        }
        match result {
            Ok(v) if v.is_unit() => Answer::Quiet,
            Ok(v) => Answer::Value(self.show(&v)),
            Err(e) if steps::is_quit(&e) => Answer::Error(
                "error: job.quit() pauses a job to be continued with --continue, which a REPL \
                 session cannot be; end the session with :quit or Ctrl-D"
                    .into(),
            ),
            Err(e) => Answer::Error(describe(e)),
        }
    }

    fn run_steps(&mut self) -> Result<(), Box<EvalAltResult>> {
        while let Some(step) = steps::pop(&self.job).map_err(|m| native_error("IOError", m))? {
            steps::run_one(&self.engine, &self.fns, &self.job, &step)?;
        }
        Ok(())
    }

    /// Appends an entry to the job folder's `control`, so the folder says what ran.
    fn keep(&self, source: &str) {
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.transcript)
            .and_then(|mut f| writeln!(f, "{}", source.trim_end()));
        if let Err(e) = written {
            crate::logging::warning(
                "repl",
                &format!("cannot write {}: {e}", self.transcript.display()),
            );
        }
    }

    /// A value as the REPL prints it: strings quoted, arrays and maps in Rhai's notation,
    /// autorun's own types by their script name (`<Job>`).
    fn show(&self, v: &Dynamic) -> String {
        let name = v.type_name();
        if name.contains("::") {
            format!("<{}>", self.engine.map_type_name(name))
        } else {
            format!("{v:?}")
        }
    }
}

/// ` at LINE:COL`, or nothing when Rhai gave no position.
fn at(pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!(" at {l}:{c}"),
        (Some(l), None) => format!(" at {l}"),
        _ => String::new(),
    }
}

/// `error at L:C[ in f()]: KIND: text`, positions counted in the entry (or, inside a
/// function, in the entry that defined it).
#[allow(clippy::boxed_local)] // Rhai hands errors over boxed
fn describe(err: Box<EvalAltResult>) -> String {
    let mut err = *err;
    let mut in_fn = None;
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
                in_fn = Some(name);
                err = *inner;
            }
            EvalAltResult::ErrorInModule(_, inner, _) => err = *inner,
            other => {
                err = other;
                break;
            }
        }
    }
    let pos = err.take_position();
    let outcome = match &err {
        EvalAltResult::ErrorRuntime(v, _) => outcome_of(v),
        _ => None,
    };
    let what = match outcome {
        Some(o) => format!("{}: {}", o.status, o.message),
        None => {
            let (kind, text) = kind_and_text(&err);
            format!("{kind}: {text}")
        }
    };
    let place = in_fn
        .filter(|f| !f.starts_with("anon$"))
        .map(|f| format!(" in {f}()"))
        .unwrap_or_default();
    format!("error{}{place}: {what}", at(pos))
}

fn folders(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn help() -> String {
    let mut s = String::from(
        "Type Rhai code as in a control file: `job` is the live job. An entry that is not\n\
         finished (an open brace, bracket or string) goes on over the next lines.\n\
         Commands:\n",
    );
    for (c, what) in COMMANDS {
        s.push_str(&format!("  {c:<8} {what}\n"));
    }
    s.push_str("Ctrl-C clears the line or stops the running entry; Ctrl-D ends the job.");
    s
}

/// True when `input` is Rhai that stops short: the parser ran out of input inside a block,
/// a bracket, a backtick string or an expression. Commands and code with an error before
/// its end are complete (the error is shown when it runs).
pub fn is_incomplete(engine: &Engine, input: &str) -> bool {
    if input.trim().is_empty() || input.trim_start().starts_with(':') {
        return false;
    }
    let Err(e) = engine.compile(input) else {
        return false;
    };
    let pos = e.position();
    if let rhai::ParseErrorType::BadInput(rhai::LexError::UnterminatedString) = e.err_type() {
        // Only a backtick string may span lines.
        return char_at(input, pos) == Some('`');
    }
    if matches!(e.err_type(), rhai::ParseErrorType::UnexpectedEOF) {
        return true;
    }
    // The error is where the input ends: the parser wanted more.
    let lines: Vec<&str> = input.split('\n').collect();
    let last = lines.len();
    let end_col = lines.last().map_or(0, |l| l.chars().count()) + 1;
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => l > last || (l == last && c >= end_col),
        (Some(l), None) => l > last,
        _ => false,
    }
}

fn char_at(input: &str, pos: Position) -> Option<char> {
    let line = input.split('\n').nth(pos.line()?.checked_sub(1)?)?;
    line.chars().nth(pos.position()?.checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_entries_wait_for_more() {
        let e = Engine::new_raw();
        for s in [
            "fn f() {",
            "let x = [1, 2,",
            "let s = `abc",
            "1 +",
            "if x {",
            "foo(",
            "#{a: 1,",
            "fn f(a,",
            "let x = 1;\nlet y = (",
            "fn f() {\n  let a = 1;\n",
        ] {
            assert!(is_incomplete(&e, s), "{s:?}");
        }
        for s in [
            "fn f() { 1 }",
            "x)",
            "1 + 2",
            "",
            ":help",
            "let s = \"abc",
            "let x = 1 +* 2",
            "// comment",
        ] {
            assert!(!is_incomplete(&e, s), "{s:?}");
        }
    }

    #[test]
    fn errors_name_place_kind_and_function() {
        let e = Engine::new();
        let err = e.eval::<Dynamic>("let a = 1;\nb + 1").unwrap_err();
        let d = describe(err);
        assert!(
            d.starts_with("error at 2:1: VariableNotFoundError: "),
            "{d}"
        );
        let err = e
            .eval::<Dynamic>("fn f() {\n  throw \"boom\";\n}\nf()")
            .unwrap_err();
        assert_eq!(describe(err), "error at 2:3 in f(): RuntimeError: boom");
    }
}
