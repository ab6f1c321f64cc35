//! `autorun list`: the tests that can be found, each with its folder, its `version`, the
//! parameters its phases declare and a one-line description, for people (a table) or for
//! tools (`--json`).
//!
//! Scripts are compiled, never run: `version` is read when the script sets it to a
//! constant (`let version = 2;`), and parameters and doc comments come from the AST.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{Engine, Stmt, AST};
use serde::Serialize;

use crate::config;
use crate::discovery::absolute;
use crate::error::{exit, Error};
use crate::lifecycle::Phase;
use crate::table::{self, Align, Table};

/// A test `autorun list` found.
#[derive(Debug, Serialize)]
pub struct TestInfo {
    /// The name `job.run_test` takes (`group:name` for a test in a group folder).
    pub name: String,
    /// The test's folder.
    pub folder: PathBuf,
    /// The test script, or the program of an executable test.
    pub script: PathBuf,
    /// `script` (a Rhai test) or `executable` (a program, which gets every parameter).
    pub kind: &'static str,
    /// The script's `version` setting (0 when not set); `None` when it is not a constant.
    pub version: Option<serde_json::Value>,
    /// Every parameter the phases declare, in phase order, each once.
    pub parameters: Vec<String>,
    /// The parameters of each phase the script defines.
    pub phases: BTreeMap<String, Vec<String>>,
    /// The doc comment (`///`) above `run_once` or `execute`, else the file's first comment,
    /// as one line.
    pub description: String,
    /// Why the test cannot run as it is (a syntax error, no `run_once`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The folders `list` searches, in order: each `--test-dir`, `./tests`, then the
/// `test_dirs` of the config files (`./autorun.toml`, then the user's).
pub fn search_dirs(test_dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::Io(e.to_string()))?;
    let cfg = config::load(&cwd)?;
    let mut dirs: Vec<PathBuf> = test_dirs.iter().map(|d| absolute(d)).collect();
    dirs.push(cwd.join("tests"));
    dirs.extend(cfg.test_dirs.iter().map(|d| absolute(d)));
    Ok(dirs)
}

/// `autorun list [--test-dir DIR]... [--json]`.
pub fn run(test_dirs: &[PathBuf], json: bool) -> Result<i32, Error> {
    for d in test_dirs {
        if !d.is_dir() {
            return Err(Error::Usage(format!(
                "--test-dir {}: no such folder",
                d.display()
            )));
        }
    }
    let tests = find_all(&search_dirs(test_dirs)?);
    if json {
        let text = serde_json::to_string_pretty(&tests).map_err(|e| Error::Io(e.to_string()))?;
        table::print(&format!("{text}\n"));
    } else {
        table::print(&render(&tests));
    }
    Ok(exit::OK)
}

/// Every test in `dirs`; a name found in an earlier folder hides the same name later, as
/// when a job looks it up.
pub fn find_all(dirs: &[PathBuf]) -> Vec<TestInfo> {
    let engine = Engine::new_raw();
    let mut found: BTreeMap<String, TestInfo> = BTreeMap::new();
    for dir in dirs {
        let mut names = Vec::new();
        scan(dir, &mut Vec::new(), &mut names);
        for (name, folder, script) in names {
            if let std::collections::btree_map::Entry::Vacant(slot) = found.entry(name) {
                let info = inspect(&engine, slot.key(), &folder, &script);
                slot.insert(info);
            }
        }
    }
    found.into_values().collect()
}

/// Collects `(name, folder, script)` of the tests under `dir`: a folder `X` holding `X.rhai`
/// or an executable `X` is a test; any other folder may be a group of tests.
fn scan(dir: &Path, group: &mut Vec<String>, out: &mut Vec<(String, PathBuf, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        let Some(base) = sub.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if base.starts_with('.') || group.len() >= 4 {
            continue;
        }
        let script = sub.join(format!("{base}.rhai"));
        let program = sub.join(&base);
        group.push(base);
        if script.is_file() {
            out.push((group.join(":"), absolute(&sub), absolute(&script)));
        } else if crate::discovery::is_executable(&program) {
            out.push((group.join(":"), absolute(&sub), absolute(&program)));
        } else {
            scan(&sub, group, out);
        }
        group.pop();
    }
}

/// Compiles a test script and reads what `list` shows.
fn inspect(engine: &Engine, name: &str, folder: &Path, script: &Path) -> TestInfo {
    let executable = script.extension().map_or(true, |e| e != "rhai");
    let mut info = TestInfo {
        name: name.to_string(),
        folder: folder.to_path_buf(),
        script: script.to_path_buf(),
        kind: if executable { "executable" } else { "script" },
        version: Some(0.into()),
        parameters: Vec::new(),
        phases: BTreeMap::new(),
        description: String::new(),
        error: None,
    };
    let file = script.display().to_string();
    let source = match std::fs::read_to_string(script) {
        Ok(s) => s,
        Err(e) => {
            info.error = Some(format!("cannot read {file}: {e}"));
            return info;
        }
    };
    if executable {
        // A program declares no parameters (it gets them all); its description is its
        // first `#` comment after the `#!` line.
        let comments: Vec<&str> = source
            .lines()
            .skip_while(|l| l.starts_with("#!"))
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .map_while(|l| l.strip_prefix('#').map(str::trim))
            .collect();
        info.description = paragraph(&comments);
        return info;
    }
    info.description = first_comment(&source);
    let ast = match engine.compile(&source) {
        Ok(ast) => ast,
        Err(e) => {
            info.error = Some(format!(
                "{} ({})",
                e.err_type(),
                crate::outcome::locate(&file, e.position())
            ));
            return info;
        }
    };
    let mut doc = None;
    for phase in Phase::ALL {
        let defs: Vec<_> = ast
            .iter_functions()
            .filter(|f| f.name == phase.name())
            .collect();
        let Some(f) = defs.first() else { continue };
        if defs.len() > 1 && info.error.is_none() {
            info.error = Some(format!(
                "phase {} is defined more than once; phases cannot be overloaded",
                phase.name()
            ));
        }
        let params: Vec<String> = f.params.iter().map(|p| p.to_string()).collect();
        for p in &params {
            if !info.parameters.contains(p) {
                info.parameters.push(p.clone());
            }
        }
        info.phases.insert(phase.name().to_string(), params);
        if matches!(phase, Phase::RunOnce | Phase::Execute) && doc.is_none() {
            let text = doc_line(&f.comments.join("\n"));
            doc = (!text.is_empty()).then_some(text);
        }
    }
    if let Some(d) = doc {
        info.description = d;
    }
    if info.error.is_none()
        && !info.phases.contains_key("run_once")
        && !info.phases.contains_key("execute")
    {
        info.error = Some(format!("{name} defines neither run_once nor execute"));
    }
    info.version = version(&ast);
    info
}

/// The `version` setting when the script sets it to a constant at the top level (the last
/// such `let`/`const` wins, as when the script runs); 0 when it does not set it.
fn version(ast: &AST) -> Option<serde_json::Value> {
    let mut value = Some(serde_json::Value::from(0));
    for stmt in ast.statements() {
        if let Stmt::Var(x, ..) = stmt {
            let (ident, expr, _) = x.as_ref();
            if ident.name == "version" {
                value = expr
                    .get_literal_value(None)
                    .and_then(|v| rhai::serde::from_dynamic::<serde_json::Value>(&v).ok());
            }
        }
    }
    value
}

/// A `///` or `/** */` doc comment as one line.
fn doc_line(comment: &str) -> String {
    let text: Vec<&str> = comment
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("/**")
                .trim_end_matches("*/")
                .trim_start_matches('/')
                .trim_start_matches('*')
                .trim()
        })
        .collect();
    paragraph(&text)
}

/// The first paragraph of the file's first comment (`//` lines before any code), as one
/// line.
fn first_comment(source: &str) -> String {
    let mut lines = Vec::new();
    for line in source.lines() {
        let l = line.trim();
        if let Some(text) = l.strip_prefix("//") {
            lines.push(text.trim_start_matches(['/', '!']).trim());
        } else if l.is_empty() && lines.is_empty() {
            continue;
        } else {
            break;
        }
    }
    paragraph(&lines)
}

/// The lines up to the first blank one, joined.
fn paragraph(lines: &[&str]) -> String {
    lines
        .iter()
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table people read: name, version, parameters, description, then where the tests
/// are.
fn render(tests: &[TestInfo]) -> String {
    if tests.is_empty() {
        return "No tests found.\n".to_string();
    }
    let mut t = Table::new(&[Align::Left, Align::Right, Align::Left, Align::Left]);
    t.row(["TEST", "VERSION", "PARAMETERS", "DESCRIPTION"]);
    for test in tests {
        let version = match &test.version {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "?".to_string(),
        };
        let params = if test.kind == "executable" {
            "(all, as AUTORUN_PARAM_*)".to_string()
        } else if test.parameters.is_empty() {
            "-".to_string()
        } else {
            test.parameters.join(", ")
        };
        let description = match &test.error {
            Some(e) => format!("error: {e}"),
            None => table::truncate(&test.description, 70),
        };
        t.row([test.name.clone(), version, params, description]);
    }
    let mut out = t.render();
    // Where each test lives, grouped by test folder.
    let mut by_dir: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for test in tests {
        let depth = test.name.split(':').count();
        let root = test
            .folder
            .ancestors()
            .nth(depth)
            .unwrap_or(&test.folder)
            .display()
            .to_string();
        by_dir.entry(root).or_default().push(&test.name);
    }
    out.push('\n');
    for (dir, names) in by_dir {
        out.push_str(&format!("{} in {dir}\n", count(names.len())));
    }
    out
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 test".to_string()
    } else {
        format!("{n} tests")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(source: &str) -> TestInfo {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("t.rhai");
        std::fs::write(&script, source).unwrap();
        inspect(&Engine::new_raw(), "t", dir.path(), &script)
    }

    #[test]
    fn parameters_version_and_doc() {
        let t = info(
            "// A file comment.\nlet version = 3;\nfn initialize(a) {}\n\
             /// Runs once per iteration.\n/// Second line.\nfn run_once(b, a) {}\n",
        );
        assert_eq!(t.parameters, ["a", "b"]);
        assert_eq!(t.phases["run_once"], ["b", "a"]);
        assert_eq!(t.version, Some(3.into()));
        assert_eq!(t.description, "Runs once per iteration. Second line.");
        assert!(t.error.is_none());
    }

    #[test]
    fn file_comment_and_errors() {
        let t = info("\n// First paragraph\n// goes on.\n//\n// Not this.\nfn setup() {}\n");
        assert_eq!(t.description, "First paragraph goes on.");
        assert_eq!(t.version, Some(0.into()));
        assert_eq!(
            t.error.as_deref(),
            Some("t defines neither run_once nor execute")
        );
        let bad = info("fn run_once( {");
        assert!(bad.error.unwrap().contains("t.rhai:1:"));
        let dynamic = info("let version = read_file(\"VERSION\");\nfn run_once() {}");
        assert_eq!(dynamic.version, None);
    }
}
