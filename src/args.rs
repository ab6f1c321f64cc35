//! Arguments: splitting `--args` like autotest, and sorting the named arguments of
//! `run_test` into what the job consumes, what `execute` consumes, and test parameters.

use std::sync::OnceLock;

use rhai::{Dynamic, Map};

/// Arguments the job consumes; they never reach the test.
pub const JOB_ARGS: [&str; 5] = [
    "tag",
    "subdir_tag",
    "timeout",
    "run_cleanup",
    "test_attributes",
];
/// Arguments the harness's `execute` consumes.
pub const EXECUTE_ARGS: [&str; 5] = [
    "iterations",
    "test_length",
    "profile_only",
    "postprocess_profiled_run",
    "constraints",
];

/// Splits `--args` as autotest does: whitespace-separated, quoted parts kept whole with
/// their quotes (`a='foo bar' b=2` → `["a='foo bar'", "b=2"]`).
pub fn split_job_args(s: &str) -> Vec<String> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE
        .get_or_init(|| regex::Regex::new(r#"[^\s]*?['|"].*?['|"]|[^\s]+"#).expect("valid regex"));
    re.find_iter(s).map(|m| m.as_str().to_string()).collect()
}

/// The arguments of one `run_test` call, sorted.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// `tag`.
    pub tag: Option<String>,
    /// `subdir_tag`.
    pub subdir_tag: Option<String>,
    /// `timeout` in seconds.
    pub timeout: Option<f64>,
    /// `run_cleanup`, when given.
    pub run_cleanup: Option<bool>,
    /// `test_attributes`.
    pub test_attributes: Map,
    /// `iterations`, `test_length`, ... as given.
    pub execute: Map,
    /// Everything else.
    pub params: Map,
}

fn as_text(v: &Dynamic) -> String {
    if v.is_string() {
        v.clone().into_string().unwrap_or_default()
    } else {
        crate::keyval::py_str(v)
    }
}

/// A number of seconds from an int or a float.
pub fn seconds(v: &Dynamic) -> Option<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// Python truthiness of a script value.
pub fn truthy(v: &Dynamic) -> bool {
    if v.is_unit() {
        false
    } else if let Ok(b) = v.as_bool() {
        b
    } else if let Ok(i) = v.as_int() {
        i != 0
    } else if let Ok(f) = v.as_float() {
        f != 0.0
    } else if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        !s.is_empty()
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        !a.is_empty()
    } else if let Some(m) = v.read_lock::<Map>() {
        !m.is_empty()
    } else {
        true
    }
}

impl RunArgs {
    /// Sorts a `run_test` argument map; a bad job argument is a sentence.
    pub fn from_map(map: &Map) -> Result<RunArgs, String> {
        let mut out = RunArgs::default();
        for (k, v) in map {
            match k.as_str() {
                "tag" if !v.is_unit() => out.tag = Some(as_text(v)),
                "subdir_tag" if !v.is_unit() => out.subdir_tag = Some(as_text(v)),
                "timeout" if !v.is_unit() => {
                    out.timeout =
                        Some(seconds(v).filter(|t| *t >= 0.0).ok_or_else(|| {
                            format!("timeout must be a number of seconds, not {v}")
                        })?)
                }
                "run_cleanup" if !v.is_unit() => out.run_cleanup = Some(truthy(v)),
                "test_attributes" if !v.is_unit() => {
                    out.test_attributes = v
                        .read_lock::<Map>()
                        .map(|m| m.clone())
                        .ok_or_else(|| "test_attributes must be an object map".to_string())?
                }
                k if JOB_ARGS.contains(&k) => {}
                k if EXECUTE_ARGS.contains(&k) => {
                    out.execute.insert(k.into(), v.clone());
                }
                _ => {
                    out.params.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(out)
    }

    /// Execute arguments and parameters together: what `param-*` keyvals are made of.
    pub fn keyval_args(&self) -> Map {
        let mut m = self.params.clone();
        m.extend(self.execute.clone());
        m
    }
}

/// Picks, in order, the values of `names` from `available`; a missing one is `()`.
pub fn cherry_pick(names: &[String], available: &Map) -> Vec<Dynamic> {
    names
        .iter()
        .map(|n| available.get(n.as_str()).cloned().unwrap_or(Dynamic::UNIT))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_autotest() {
        assert_eq!(
            split_job_args("a='foo bar' b=2"),
            vec!["a='foo bar'", "b=2"]
        );
        assert_eq!(split_job_args("  x  y "), vec!["x", "y"]);
        assert!(split_job_args("").is_empty());
    }

    #[test]
    fn sorts_arguments() {
        let mut m = Map::new();
        m.insert("tag".into(), "short".into());
        m.insert("iterations".into(), Dynamic::from_int(3));
        m.insert("seconds".into(), Dynamic::from_int(1));
        m.insert("timeout".into(), Dynamic::from_int(5));
        let a = RunArgs::from_map(&m).unwrap();
        assert_eq!(a.tag.as_deref(), Some("short"));
        assert_eq!(a.timeout, Some(5.0));
        assert!(a.execute.contains_key("iterations"));
        assert!(a.params.contains_key("seconds") && a.params.len() == 1);
        assert_eq!(a.keyval_args().len(), 2);
    }

    #[test]
    fn picks_by_name() {
        let mut m = Map::new();
        m.insert("a".into(), Dynamic::from_int(1));
        let got = cherry_pick(&["a".into(), "b".into()], &m);
        assert_eq!(got[0].as_int().unwrap(), 1);
        assert!(got[1].is_unit());
    }
}
