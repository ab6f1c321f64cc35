//! Perf constraints: expressions evaluated over the perf keyvals of the last write, and the
//! FAIL message autotest builds from the failures.

use rhai::{Dynamic, Engine, Map, Scope};

thread_local! {
    /// A raw engine: arithmetic and comparisons only, no functions, so names like `len` or
    /// `True` cannot be evaluated, as with autotest's empty builtins.
    static ENGINE: Engine = {
        let mut e = Engine::new_raw();
        e.set_max_expr_depths(64, 32);
        e.set_max_operations(100_000);
        e.set_max_string_size(1 << 16);
        e
    };
}

/// Evaluates each constraint over `perf`; returns the failure strings (empty if all hold).
pub fn analyze(constraints: &[String], perf: &Map) -> Vec<String> {
    let mut scope = Scope::new();
    for (k, v) in perf {
        scope.push_constant_dynamic(k.as_str(), v.clone());
    }
    constraints
        .iter()
        .filter_map(|c| {
            let mut s = scope.clone();
            match ENGINE.with(|e| e.eval_expression_with_scope::<Dynamic>(&mut s, c)) {
                Ok(v) if crate::args::truthy(&v) => None,
                Ok(_) => Some(format!("{c}: constraint was not met")),
                Err(_) => Some(format!("could not evaluate constraint: {c}")),
            }
        })
        .collect()
}

/// autotest's message: `iteration <i>:<f1>,<f2>  ` for each analysed iteration `i`
/// (0-based) that failed, each followed by two spaces. Empty when nothing failed.
pub fn failure_message(failed: &[Vec<String>]) -> String {
    failed
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.is_empty())
        .map(|(i, f)| format!("iteration {i}:{}  ", f.join(",")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(t: i64) -> Map {
        let mut m = Map::new();
        m.insert("throughput".into(), Dynamic::from_int(t));
        m
    }

    #[test]
    fn autotest_examples() {
        let cs = vec!["throughput < 15".to_string(), "throughput > 0".to_string()];
        let failed = vec![analyze(&cs, &perf(10)), analyze(&cs, &perf(20))];
        assert_eq!(
            failure_message(&failed),
            "iteration 1:throughput < 15: constraint was not met  "
        );
        let cs = vec!["throughput < 25".to_string(), "len([]) == 0".to_string()];
        let f = analyze(&cs, &perf(30));
        assert_eq!(
            f,
            vec![
                "throughput < 25: constraint was not met",
                "could not evaluate constraint: len([]) == 0"
            ]
        );
        assert_eq!(analyze(&["True".into()], &perf(1)).len(), 1);
        assert!(analyze(&["throughput * 2 == 20".into()], &perf(10)).is_empty());
    }
}
