//! The terminal side of the REPL: rustyline with a history file, multi-line entries
//! decided by Rhai's parser, and completion of `job.` methods, test names and commands.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use super::session::{is_incomplete, COMMANDS};

/// The prompt of an interactive session.
pub const PROMPT: &str = "autorun> ";

/// The history file: `$XDG_STATE_HOME/autorun/history` (or `~/.local/state/...`).
pub fn history_path() -> PathBuf {
    crate::config::state_dir().join("history")
}

/// What rustyline asks of autorun while a line is edited.
pub struct ReplHelper {
    /// An engine for syntax checks (parsing needs none of the bindings).
    parser: rhai::Engine,
    /// Completions after `job.`.
    job_members: Vec<String>,
    /// Completions after `job.profilers.`.
    profiler_members: Vec<String>,
    /// Where test names are completed from.
    test_dirs: Vec<PathBuf>,
    /// `run_test("` and the like, up to the cursor.
    test_call: regex::Regex,
}

impl ReplHelper {
    /// A helper completing the members `engine` registers on `Job` and `Profilers`, and
    /// the tests found in `test_dirs`.
    pub fn new(engine: &rhai::Engine, test_dirs: Vec<PathBuf>) -> ReplHelper {
        let signatures = engine.gen_fn_signatures(false);
        ReplHelper {
            parser: rhai::Engine::new_raw(),
            job_members: members(&signatures, "Job"),
            profiler_members: members(&signatures, "Profilers"),
            test_dirs,
            test_call: regex::Regex::new(
                r#"\b(?:run_test|run_test_detail|runsubtest)\s*\(\s*"([^"]*)$"#,
            )
            .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}")),
        }
    }

    /// Where the completed word starts in `line[..pos]`, and its candidates.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        if let Some(c) = self.test_call.captures(before) {
            let typed = c.get(1).map_or(pos, |m| m.start());
            let prefix = &before[typed..];
            let names = crate::discovery::list(&self.test_dirs)
                .into_iter()
                .filter(|n| n.starts_with(prefix))
                .collect();
            return (typed, names);
        }
        if before.starts_with(':') && !before.contains(char::is_whitespace) {
            let names = COMMANDS
                .iter()
                .map(|(c, _)| c.to_string())
                .filter(|c| c.starts_with(before))
                .collect();
            return (0, names);
        }
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        let object = &before[..start];
        let pool = if ends_with_object(object, "job.profilers.") {
            &self.profiler_members
        } else if ends_with_object(object, "job.") {
            &self.job_members
        } else {
            return (pos, Vec::new());
        };
        let names = pool
            .iter()
            .filter(|m| m.starts_with(word))
            .cloned()
            .collect();
        (start, names)
    }
}

/// True when `text` ends with `object` and `object` starts a name there (`myjob.` is not
/// `job.`).
fn ends_with_object(text: &str, object: &str) -> bool {
    text.strip_suffix(object).is_some_and(|head| {
        !head
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
    })
}

/// The members of the script type `ty` in `signatures` (`name(` for methods, `name` for
/// properties), sorted, each once.
fn members(signatures: &[String], ty: &str) -> Vec<String> {
    let mut out: Vec<String> = signatures
        .iter()
        .filter_map(|sig| {
            let (name, rest) = sig.split_once('(')?;
            let first = rest.split([',', ')']).next()?;
            let first_ty = first.rsplit(':').next()?.trim().trim_start_matches("&mut ");
            if first_ty != ty {
                return None;
            }
            if let Some(prop) = name.strip_prefix("get$") {
                Some(prop.to_string())
            } else if name.contains('$') {
                None
            } else {
                Some(format!("{name}("))
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, names) = self.candidates(line, pos);
        Ok((
            start,
            names
                .into_iter()
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                })
                .collect(),
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(&self.parser, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

/// A line editor with autorun's helper and the history of earlier sessions.
pub fn editor(
    helper: ReplHelper,
    history: &Path,
) -> rustyline::Result<Editor<ReplHelper, FileHistory>> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(true)
        .max_history_size(10_000)?
        .build();
    let mut rl = Editor::with_config(config)?;
    rl.set_helper(Some(helper));
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match rl.load_history(history) {
        Ok(()) => {}
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!(
            "autorun: warning: cannot read the history {}: {e}",
            history.display()
        ),
    }
    Ok(rl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(dirs: Vec<PathBuf>) -> ReplHelper {
        let job = crate::job::JobHandle::new(test_info());
        ReplHelper::new(&crate::api::engine(job), dirs)
    }

    fn test_info() -> crate::job::JobInfo {
        crate::job::JobInfo {
            resultdir: std::env::temp_dir(),
            tmpdir: std::env::temp_dir(),
            tag: "t".into(),
            args: Vec::new(),
            user: "u".into(),
            hostname: "h".into(),
            control: PathBuf::new(),
            test_dirs: Vec::new(),
            profiler_dirs: Vec::new(),
            cache_dir: std::env::temp_dir(),
            verbose: false,
            state: std::env::temp_dir().join("none.state"),
            cleanup_grace: 1.0,
            status_file: "status".into(),
            master_testpath: None,
            sinks: Vec::new(),
            indent: 0,
            sysinfo: Default::default(),
        }
    }

    #[test]
    fn completes_job_members() {
        let h = helper(Vec::new());
        let (start, names) = h.candidates("job.run_t", 9);
        assert_eq!(start, 4);
        assert_eq!(names, ["run_test(", "run_test_cleanup", "run_test_detail("]);
        let (_, names) = h.candidates("let d = job.result", 18);
        assert_eq!(names, ["resultdir"]);
        let (_, names) = h.candidates("job.profilers.ad", 16);
        assert_eq!(names, ["add("]);
        let (_, all) = h.candidates("job.", 4);
        for m in [
            "parallel(",
            "record(",
            "tag",
            "next_step(",
            "quit(",
            "profilers",
        ] {
            assert!(all.iter().any(|n| n == m), "{m} in {all:?}");
        }
        let (_, names) = h.candidates("myjob.run_t", 11);
        assert!(names.is_empty());
    }

    #[test]
    fn completes_test_names_and_commands() {
        let d = tempfile::tempdir().unwrap();
        for t in ["sleeptest", "smoke"] {
            std::fs::create_dir_all(d.path().join(t)).unwrap();
            std::fs::write(d.path().join(t).join(format!("{t}.rhai")), "").unwrap();
        }
        let h = helper(vec![d.path().to_path_buf()]);
        let line = "job.run_test(\"sl";
        assert_eq!(
            h.candidates(line, line.len()),
            (14, vec!["sleeptest".to_string()])
        );
        let (_, names) = h.candidates(":st", 3);
        assert_eq!(names, [":status"]);
    }
}
