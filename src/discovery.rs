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
}
