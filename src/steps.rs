//! The step engine: `step_init`, `job.next_step*`, `job.quit()` and what `--continue`
//! resumes. Steps are control-file functions referenced by name, kept with their arguments
//! in the job's state file, so a job that quits (or is killed) resumes where it was.

use std::cell::Cell;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, Position, Scope, AST};

use crate::job::JobHandle;
use crate::outcome::native_error;
use crate::state::Step;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The token `job.quit()` stops the script with (Rhai cannot catch a termination).
const QUIT: &str = "autorun: job.quit()";

thread_local! {
    /// Where the next `next_step` goes: reset to 0 before each step runs.
    static NEXT_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// True when `err` is `job.quit()` unwinding.
pub fn is_quit(err: &EvalAltResult) -> bool {
    match err {
        EvalAltResult::ErrorTerminated(token, _) => token.is_string() && token.to_string() == QUIT,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => is_quit(inner),
        _ => false,
    }
}

enum Place {
    Next,
    Append,
    Prepend,
}

/// A step from a function pointer or a function name, with its arguments.
fn step_of(f: &Dynamic, args: &[Dynamic]) -> RhaiResult<Step> {
    let name = if let Some(fp) = f.read_lock::<FnPtr>() {
        if fp.is_anonymous() || !fp.curry().is_empty() {
            return Err(native_error(
                "ValueError",
                "a step must be a named function of the control file (Fn(\"name\") or \"name\"), not a closure",
            ));
        }
        fp.fn_name().to_string()
    } else if f.is_string() {
        f.to_string()
    } else {
        return Err(native_error(
            "TypeError",
            format!(
                "a step is a function pointer or a function name, not {}",
                f.type_name()
            ),
        ));
    };
    if let Some(bad) = args.iter().find(|a| !crate::api::json_compatible(a)) {
        return Err(native_error(
            "TypeError",
            format!(
                "step {name}: an argument ({}) cannot be saved: only (), booleans, numbers, strings, arrays and maps can",
                bad.type_name()
            ),
        ));
    }
    let args = args
        .iter()
        .map(rhai::serde::from_dynamic::<serde_json::Value>)
        .collect::<RhaiResult<Vec<_>>>()?;
    Ok(Step { name, args })
}

fn add(job: &JobHandle, place: Place, f: &Dynamic, args: &[Dynamic]) -> RhaiResult<()> {
    control_file_only(job, "job.next_step")?;
    // The legacy form next_step([f, arg1, ...]).
    let step = match f.read_lock::<Array>() {
        Some(list) if args.is_empty() => match list.split_first() {
            Some((f, rest)) => step_of(f, rest)?,
            None => {
                return Err(native_error(
                    "ValueError",
                    "next_step: the step list is empty",
                ))
            }
        },
        _ => step_of(f, args)?,
    };
    job.state()
        .update(|s| match place {
            Place::Next => {
                let i = NEXT_INDEX.with(|n| n.get()).min(s.steps.len());
                s.steps.insert(i, step);
                NEXT_INDEX.with(|n| n.set(i + 1));
            }
            Place::Append => s.steps.push(step),
            Place::Prepend => {
                s.steps.insert(0, step);
                NEXT_INDEX.with(|n| n.set(n.get() + 1));
            }
        })
        .map_err(|e| native_error("IOError", e.to_string()))
}

fn control_file_only(job: &JobHandle, what: &str) -> RhaiResult<()> {
    if job.0.borrow().info.master_testpath.is_some() {
        return Err(native_error(
            "RuntimeError",
            format!("{what}() can only be called from the control file, not from a test"),
        ));
    }
    Ok(())
}

/// Registers `job.next_step`, `next_step_append`, `next_step_prepend` (with up to four
/// arguments after the function) and `job.quit()`.
pub fn register(e: &mut Engine) {
    use crate::api::doc_fn;
    macro_rules! place {
        ($name:literal, $place:expr, $doc:literal) => {
            const DOC: &str = concat!(
                $doc,
                "\n`f` a function pointer `Fn(\"name\")` or a function name; up to 4 arguments follow, or use the form `[f, arg1, ...]` for more. Control files only."
            );
            doc_fn(e, $name, ["job", "f"], DOC, |j: &mut JobHandle, f: Dynamic| {
                add(j, $place, &f, &[])
            });
            doc_fn(e, $name, ["job", "f", "a"], DOC, |j: &mut JobHandle, f: Dynamic, a: Dynamic| {
                add(j, $place, &f, &[a])
            });
            doc_fn(
                e,
                $name,
                ["job", "f", "a", "b"],
                DOC,
                |j: &mut JobHandle, f: Dynamic, a: Dynamic, b: Dynamic| add(j, $place, &f, &[a, b]),
            );
            doc_fn(
                e,
                $name,
                ["job", "f", "a", "b", "c"],
                DOC,
                |j: &mut JobHandle, f: Dynamic, a: Dynamic, b: Dynamic, c: Dynamic| {
                    add(j, $place, &f, &[a, b, c])
                },
            );
            doc_fn(
                e,
                $name,
                ["job", "f", "a", "b", "c", "d"],
                DOC,
                |j: &mut JobHandle, f: Dynamic, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
                    add(j, $place, &f, &[a, b, c, d])
                },
            );
        };
    }
    {
        place!(
            "next_step",
            Place::Next,
            "Adds a step after those the running step already added."
        );
    }
    {
        place!(
            "next_step_append",
            Place::Append,
            "Adds a step at the end of the step list."
        );
    }
    {
        place!(
            "next_step_prepend",
            Place::Prepend,
            "Adds a step at the front of the step list."
        );
    }
    doc_fn(e, "quit", ["job"], "Saves the job's state and ends the run with exit code 5; `autorun --continue` resumes it. Control files only.", |j: &mut JobHandle| -> RhaiResult<()> {
        control_file_only(j, "job.quit")?;
        Err(EvalAltResult::ErrorTerminated(QUIT.into(), Position::NONE).into())
    });
}

/// Queues `step_init` for a new job as autotest does, with `next_step`: after the steps
/// the top level queued with `next_step`.
pub fn queue_step_init(job: &JobHandle) -> Result<(), String> {
    add(job, Place::Next, &Dynamic::from("step_init"), &[]).map_err(|e| e.to_string())
}

/// Takes the next step off the list (saved before it runs, as autotest does).
pub fn pop(job: &JobHandle) -> Result<Option<Step>, String> {
    job.state()
        .update(|s| (!s.steps.is_empty()).then(|| s.steps.remove(0)))
        .map_err(|e| e.to_string())
}

/// Runs one step: the named function with its arguments. A step that returns a map with a
/// `step_init` function pointer gets that function prepended as a child step.
pub fn run_one(engine: &Engine, ast: &AST, job: &JobHandle, step: &Step) -> RhaiResult<()> {
    NEXT_INDEX.with(|n| n.set(0));
    let args = step
        .args
        .iter()
        .map(rhai::serde::to_dynamic)
        .collect::<RhaiResult<Vec<Dynamic>>>()?;
    let options = rhai::CallFnOptions::new().eval_ast(false);
    let ret = engine.call_fn_with_options::<Dynamic>(
        options,
        &mut Scope::new(),
        ast,
        &step.name,
        args,
    )?;
    if let Some(map) = ret.read_lock::<Map>() {
        if let Some(child) = map.get("step_init").filter(|v| v.is::<FnPtr>()) {
            add(job, Place::Prepend, child, &[])?;
        }
    }
    Ok(())
}
