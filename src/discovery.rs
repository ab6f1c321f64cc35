//! Finding tests: `NAME/NAME.rhai` (or `group/name/name.rhai` for `group:name`) in the
//! test folders, first match wins. A folder without the script but with an executable
//! file `NAME/NAME` holds an executable test (docs/executable-tests.md).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What kind of test a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `NAME.rhai`, a Rhai test script.
    Script,
    /// `NAME`, any executable program.
    Executable,
}

/// A test found on disk.
#[derive(Debug, Clone)]
pub struct Found {
    /// The test's folder (its `bindir`).
    pub bindir: PathBuf,
    /// The script, or the program of an executable test.
    pub script: PathBuf,
    /// Which of the two `script` is.
    pub kind: Kind,
}

/// Checks a test name or tag for characters that would escape the job folder or break the
/// status log.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.contains(['/', '\0', '\n', '\r', '\t'])
        || name == "."
        || name
            .split(':')
            .any(|p| p == ".." || p == "." || p.is_empty());
    if bad {
        Err(format!(
            "invalid {what} {name:?}: it must be 1-200 characters without '/', '..', tabs, newlines or NUL"
        ))
    } else {
        Ok(())
    }
}

/// The last component of a test name: `group:name` → `name`.
pub fn basename(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Looks `name` up in `dirs`, in order; in each folder the script wins over an
/// executable of the same name.
pub fn find(name: &str, dirs: &[PathBuf]) -> Option<Found> {
    let rel: PathBuf = name.split(':').collect();
    let base = basename(name);
    let file = format!("{base}.rhai");
    dirs.iter().find_map(|d| {
        let bindir = d.join(&rel);
        let script = bindir.join(&file);
        let program = bindir.join(base);
        let (path, kind) = if script.is_file() {
            (script, Kind::Script)
        } else if is_executable(&program) {
            (program, Kind::Executable)
        } else {
            return None;
        };
        Some(Found {
            bindir: absolute(&bindir),
            script: absolute(&path),
            kind,
        })
    })
}

/// A regular file (links followed) with an execute bit set.
/// True for a file with an execute bit: what an executable test's program must be.
pub fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why `name` was not found, as the test's ERROR message: names a program file that only
/// lacks its execute bit, the usual slip with a new executable test.
pub fn not_found_message(name: &str, dirs: &[PathBuf]) -> String {
    let rel: PathBuf = name.split(':').collect();
    let not_executable = dirs
        .iter()
        .map(|d| d.join(&rel).join(basename(name)))
        .find(|p| p.is_file());
    match not_executable {
        Some(p) => format!(
            "{name}: test does not exist ({} is not executable; chmod +x it to make it an executable test)",
            p.display()
        ),
        None => format!("{name}: test does not exist"),
    }
}

/// How deep `group:...:name` tests are looked for by [`list`].
const LIST_DEPTH: usize = 4;

/// The names of the tests (scripts and executables) found in `dirs` (`name`,
/// `group:name`), sorted, each once. A
/// test's own folder is not searched further; `profilers/` at the top of a folder holds
/// profilers, not tests.
pub fn list(dirs: &[PathBuf]) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') || (depth == 0 && name == "profilers") || !path.is_dir() {
                continue;
            }
            let full = format!("{prefix}{name}");
            if path.join(format!("{name}.rhai")).is_file() || is_executable(&path.join(&name)) {
                if check_name("test name", &full).is_ok() {
                    out.push(full);
                }
            } else if depth + 1 < LIST_DEPTH {
                walk(&path, &format!("{full}:"), depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, "", 0, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// `path` made absolute against the current folder (without resolving links).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("test name", "sleeptest").is_ok());
        assert!(check_name("test name", "grp:t").is_ok());
        for bad in ["a/b", "..", "a\nb", "", "x:..", "a\0"] {
            assert!(check_name("test name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(basename("grp:t"), "t");
    }

    #[test]
    fn first_dir_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("t")).unwrap();
            std::fs::write(d.join("t/t.rhai"), "fn run_once() {}").unwrap();
        }
        let f = find("t", &[b.path().to_path_buf(), a.path().to_path_buf()]).unwrap();
        assert!(f.bindir.starts_with(b.path()));
        assert!(find("nope", &[a.path().to_path_buf()]).is_none());
    }

    #[test]
    fn executables_and_scripts() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let exe = |p: &Path, mode: u32| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        // An executable in the first folder wins over a script in the second.
        exe(&a.path().join("t/t"), 0o755);
        std::fs::write(a.path().join("t/other"), "").unwrap();
        std::fs::create_dir_all(b.path().join("t")).unwrap();
        std::fs::write(b.path().join("t/t.rhai"), "fn run_once() {}").unwrap();
        let f = find("t", &dirs).unwrap();
        assert_eq!(
            (f.kind, f.script.clone()),
            (Kind::Executable, a.path().join("t/t"))
        );
        // In one folder, the script wins.
        std::fs::write(a.path().join("t/t.rhai"), "fn run_once() {}").unwrap();
        assert_eq!(find("t", &dirs).unwrap().kind, Kind::Script);
        // Grouped names, and a file without an execute bit is no test.
        exe(&b.path().join("g/x/x"), 0o755);
        assert_eq!(find("g:x", &dirs).unwrap().kind, Kind::Executable);
        exe(&a.path().join("n/n"), 0o644);
        assert!(find("n", &dirs).is_none());
        assert!(not_found_message("n", &dirs).contains("is not executable"));
        assert_eq!(not_found_message("zz", &dirs), "zz: test does not exist");
        // A folder of the test's name is not a program.
        std::fs::create_dir_all(a.path().join("d/d")).unwrap();
        assert!(find("d", &dirs).is_none());
    }

    #[test]
    fn lists_tests_and_groups_once() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (d, rel) in [
            (a.path(), "t/t.rhai"),
            (b.path(), "t/t.rhai"),
            (a.path(), "grp/u/u.rhai"),
            (a.path(), "t/src/x/x.rhai"),
            (a.path(), "profilers/p/p.rhai"),
            (b.path(), "notatest/readme.rhai"),
            (b.path(), "exe/exe"),
        ] {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "fn run_once() {}").unwrap();
        }
        std::fs::set_permissions(
            b.path().join("exe/exe"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(list(&dirs), ["exe", "grp:u", "t"]);
        // Every listed name is found by `find`.
        assert!(list(&dirs).iter().all(|n| find(n, &dirs).is_some()));
    }
}
