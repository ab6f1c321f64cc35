//! `autorun new NAME [--dir DIR]`: a new test, `DIR/NAME/NAME.rhai`, that runs as it is
//! and shows the phases, parameters and a perf keyval, plus a control file
//! `NAME.control.rhai` next to `DIR` that runs it.
//!
//! The control file goes next to `DIR` because a job looks for tests in `tests/` next to
//! its control file: with the default `DIR` (`tests`) it runs as it is; with another
//! folder it needs `--test-dir DIR`, which `new` prints.

use std::path::{Path, PathBuf};

use crate::error::{exit, Error};

/// What `new` writes: the test script and the control file.
#[derive(Debug)]
pub struct Scaffold {
    /// `DIR/NAME/NAME.rhai`.
    pub script: PathBuf,
    /// `NAME.control.rhai`, next to `DIR`.
    pub control: PathBuf,
}

/// `autorun new NAME --dir DIR`.
pub fn run(name: &str, dir: &Path) -> Result<i32, Error> {
    let made = create(name, dir)?;
    crate::outln!("Created {}", made.script.display());
    crate::outln!("Created {}", made.control.display());
    let control = made.control.display();
    if dir.file_name().is_some_and(|n| n == "tests") {
        crate::outln!("Run it with: autorun {control}");
    } else {
        crate::outln!(
            "Run it with: autorun --test-dir {} {control}",
            dir.display()
        );
    }
    Ok(exit::OK)
}

/// Checks a name for `new`: a folder and file name that reads well in the status log.
pub fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 100;
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid test name {name:?}: use up to 100 letters, digits, '_' and '-', starting with a letter or '_'"
        )))
    }
}

/// Writes the test and its control file; refuses (and writes nothing) when either exists.
pub fn create(name: &str, dir: &Path) -> Result<Scaffold, Error> {
    check_name(name)?;
    let folder = dir.join(name);
    let script = folder.join(format!("{name}.rhai"));
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let control_name = format!("{name}.control.rhai");
    let control = if parent == Path::new(".") {
        PathBuf::from(control_name)
    } else {
        parent.join(control_name)
    };
    if folder.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; choose another name or remove it",
            folder.display()
        )));
    }
    if control.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; choose another name or remove it",
            control.display()
        )));
    }
    let io =
        |what: &Path, e: std::io::Error| Error::Io(format!("cannot write {}: {e}", what.display()));
    std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
    std::fs::write(&script, test_script(name)).map_err(|e| io(&script, e))?;
    std::fs::write(&control, control_file(name, dir)).map_err(|e| io(&control, e))?;
    Ok(Scaffold { script, control })
}

/// The new test's script.
fn test_script(name: &str) -> String {
    TEST_TEMPLATE.replace("NAME", name)
}

/// The control file that runs the new test.
fn control_file(name: &str, dir: &Path) -> String {
    let find = if dir.file_name().is_some_and(|n| n == "tests") {
        "Tests are found in tests/ next to this file.".to_string()
    } else {
        format!(
            "Run it with `--test-dir {}` so that the test is found.",
            dir.display()
        )
    };
    CONTROL_TEMPLATE
        .replace("FIND", &find)
        .replace("NAME", name)
}

const TEST_TEMPLATE: &str = r#"// NAME: made by `autorun new NAME`. Every phase, function and property scripts can use
// is in docs/script-api.md (and docs/api-reference.md).

// Top-level settings, read once when the script loads. `setup` runs once per `version`
// on a machine (across jobs): raise it when setup must run again.
let version = 1;

// Phases are called with `this` bound to the test object. Each receives, by name, the
// test parameters it declares (a parameter that is not given is `()`); with
// `strict_params` (the default) an argument that no phase declares is an error.

// Once, first: the test's own state lives on `this`.
fn initialize() {
    this.iterations_run = 0;
}

// Once per `version`: build or install what the test needs (`this.srcdir` holds a copy
// of this folder's `src/`, if there is one).
fn setup() {
    debug(`setting up in ${this.srcdir}`);
}

/// NAME: adds up `count` numbers and records how long it took.
fn run_once(count, label) {
    let n = count ?? 1000;
    let started = timestamp();
    let total = 0;
    for i in 0..n {
        total += i;
    }
    this.iterations_run += 1;
    if total != n * (n - 1) / 2 {
        test_fail(`the sum of 0..${n} came out as ${total}`);
    }
    // Perf keyvals go to results/keyval, one record per iteration: `autorun show` and
    // `autorun compare` read them.
    this.write_perf_keyval(#{ numbers: n, elapsed_s: started.elapsed });
    // Attribute keyvals describe the run rather than measure it.
    this.write_attr_keyval(#{ label: label ?? "default" });
}

// Once, last (unless `run_cleanup` is false), even when a phase failed.
fn cleanup() {
    print(`${this.tagged_testname}: ${this.iterations_run} iterations`);
}
"#;

const CONTROL_TEMPLATE: &str = r#"// Runs the test NAME (made by `autorun new NAME`). FIND
// Arguments: the harness's (`iterations`, ...), the job's (`tag`, `timeout`, ...) and the
// test's parameters (`count`, `label`); see docs/script-api.md.

job.run_test("NAME", #{ count: 10000, iterations: 3 });
job.run_test("NAME", #{ count: 10, label: "small", tag: "small" });
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["t", "my_test", "Disk-IO2", "_x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "a/b", "..", "a b", "x:y", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_existing() {
        let d = tempfile::tempdir().unwrap();
        let tests = d.path().join("tests");
        create("t", &tests).unwrap();
        let err = create("t", &tests).unwrap_err();
        assert_eq!(err.code(), exit::USAGE);
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
