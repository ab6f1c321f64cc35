//! Finding tests: `NAME/NAME.rhai` (or `group/name/name.rhai` for `group:name`) in the
//! test folders, first match wins.

use std::path::{Path, PathBuf};

/// A test found on disk.
#[derive(Debug, Clone)]
pub struct Found {
    /// The test's folder (its `bindir`).
    pub bindir: PathBuf,
    /// The script.
    pub script: PathBuf,
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

/// Looks `name` up in `dirs`, in order.
pub fn find(name: &str, dirs: &[PathBuf]) -> Option<Found> {
    let rel: PathBuf = name.split(':').collect();
    let file = format!("{}.rhai", basename(name));
    dirs.iter().find_map(|d| {
        let bindir = d.join(&rel);
        let script = bindir.join(&file);
        script.is_file().then(|| Found {
            bindir: absolute(&bindir),
            script: absolute(&script),
        })
    })
}

/// How deep `group:...:name` tests are looked for by [`list`].
const LIST_DEPTH: usize = 4;

/// The names of the tests found in `dirs` (`name`, `group:name`), sorted, each once. A
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
            if path.join(format!("{name}.rhai")).is_file() {
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
        ] {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "fn run_once() {}").unwrap();
        }
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(list(&dirs), ["grp:u", "t"]);
        // Every listed name is found by `find`.
        assert!(list(&dirs).iter().all(|n| find(n, &dirs).is_some()));
    }
}
