//! How a phase ends: with an outcome a script chose (`test_fail`, ...), or with an error it
//! did not handle. Script errors become one of these with the script position attached.

use rhai::{Dynamic, EvalAltResult, Map, Position};

use crate::status::Status;

/// A status plus message: what `test_fail(msg)` and friends throw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// FAIL, ERROR, TEST_NA, WARN, BUG, or ABORT for `job_error`.
    pub status: Status,
    /// The message, as the status log shows it.
    pub message: String,
}

impl Outcome {
    /// An outcome with `status` and `message`.
    pub fn new(status: Status, message: impl Into<String>) -> Outcome {
        Outcome {
            status,
            message: message.into(),
        }
    }

    /// The object map scripts see: `#{status: "FAIL", message: "..."}`.
    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("status".into(), self.status.as_str().into());
        m.insert("message".into(), self.message.clone().into());
        m
    }

    /// Throws this outcome as a script error.
    pub fn into_rhai(self) -> Box<EvalAltResult> {
        EvalAltResult::ErrorRuntime(self.to_map().into(), Position::NONE).into()
    }
}

/// What escaped a phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Escape {
    /// An outcome thrown on purpose (including ABORT from `job_error`).
    Outcome(Outcome),
    /// Anything else, already rendered as `Unhandled <Kind>: <text> (<file>:<line>:<col>)`.
    Unhandled(String),
}

impl Escape {
    /// The outcome this escape gives when it leaves a phase whose unhandled errors map to
    /// `unhandled_status` (FAIL for run phases, ERROR for initialize/setup/cleanup).
    pub fn into_outcome(self, unhandled_status: Status) -> Outcome {
        match self {
            Escape::Outcome(o) => o,
            Escape::Unhandled(m) => Outcome::new(unhandled_status, m),
        }
    }
}

/// Reads an outcome out of a thrown value, if it is one.
pub fn outcome_of(value: &Dynamic) -> Option<Outcome> {
    let map = value.read_lock::<Map>()?;
    let status = map.get("status")?.clone().into_string().ok()?;
    let status = Status::from_outcome_str(&status)?;
    let message = map
        .get("message")
        .map(|m| {
            if m.is_string() {
                m.clone().into_string().unwrap_or_default()
            } else {
                m.to_string()
            }
        })
        .unwrap_or_default();
    Some(Outcome { status, message })
}

/// Where an error happened, as `file:line:col`, or `file` when Rhai gave no position.
pub fn locate(file: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_string(),
    }
}

/// Turns a Rhai error into an [`Escape`]; `file` names the script it came from.
#[allow(clippy::boxed_local)] // Rhai hands errors over boxed
pub fn escape_of(err: Box<EvalAltResult>, file: &str) -> Escape {
    let inner = innermost(*err, Position::NONE);
    if let EvalAltResult::ErrorRuntime(value, _) = &inner {
        if let Some(o) = outcome_of(value) {
            return Escape::Outcome(o);
        }
    }
    Escape::Unhandled(unhandled_message(inner, file))
}

/// The error inside function-call and module wrappers; when it has no position of its
/// own (a stack overflow), it takes that of the innermost call that has one.
fn innermost(err: EvalAltResult, outer: Position) -> EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos)
        | EvalAltResult::ErrorInModule(_, inner, pos) => {
            innermost(*inner, if pos.is_none() { outer } else { pos })
        }
        mut other => {
            if other.position().is_none() {
                other.set_position(outer);
            }
            other
        }
    }
}

/// `Unhandled <Kind>: <text> (<file>:<line>:<col>)` for an error that is not an outcome.
/// A thrown map `#{kind, message}` (what autorun's own functions throw) keeps its kind;
/// a thrown string or value is a `RuntimeError`; Rhai's own errors are named after their
/// variant (`ErrorVariableNotFound` is a `VariableNotFoundError`).
pub fn unhandled_message(mut err: EvalAltResult, file: &str) -> String {
    let pos = err.take_position();
    let (kind, text) = kind_and_text(&err);
    format!("Unhandled {kind}: {text} ({})", locate(file, pos))
}

/// The kind (`ValueError`, `RuntimeError`, `VariableNotFoundError`, ...) and the text of
/// an error that is not an outcome, as [`unhandled_message`] names them.
pub fn kind_and_text(err: &EvalAltResult) -> (String, String) {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => match value.read_lock::<Map>() {
            Some(m) if m.contains_key("kind") && m.contains_key("message") => (
                m["kind"].to_string(),
                m["message"].clone().into_string().unwrap_or_default(),
            ),
            _ if value.is_string() => (
                "RuntimeError".to_string(),
                value.clone().into_string().unwrap_or_default(),
            ),
            _ => ("RuntimeError".to_string(), value.to_string()),
        },
        EvalAltResult::ErrorStackOverflow(_) => (
            "StackOverflowError".to_string(),
            format!(
                "functions called each other more than {} levels deep (unbounded recursion?)",
                crate::api::MAX_CALL_LEVELS
            ),
        ),
        other => {
            let dbg = format!("{other:?}");
            let variant = dbg
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("Error");
            let name = variant.strip_prefix("Error").unwrap_or(variant);
            (format!("{name}Error"), other.to_string())
        }
    }
}

/// The error autorun's own script functions throw: `#{kind: "ValueError", message}`.
pub fn native_error(kind: &str, message: impl Into<String>) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("message".into(), message.into().into());
    EvalAltResult::ErrorRuntime(m.into(), Position::NONE).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_maps_round_trip() {
        let o = Outcome::new(Status::Fail, "boom");
        let d: Dynamic = o.to_map().into();
        assert_eq!(outcome_of(&d), Some(o));
        let mut m = Map::new();
        m.insert("status".into(), "PASS".into());
        assert_eq!(outcome_of(&m.into()), None);
    }

    #[test]
    fn unhandled_messages_name_kind_and_place() {
        let e = EvalAltResult::ErrorRuntime("boom".into(), Position::new(5, 9));
        assert_eq!(
            unhandled_message(e, "t.rhai"),
            "Unhandled RuntimeError: boom (t.rhai:5:9)"
        );
        let e = EvalAltResult::ErrorVariableNotFound("x".into(), Position::new(2, 1));
        let m = unhandled_message(e, "t.rhai");
        assert!(m.starts_with("Unhandled VariableNotFoundError: "), "{m}");
        assert!(m.ends_with("(t.rhai:2:1)"), "{m}");
    }
}
