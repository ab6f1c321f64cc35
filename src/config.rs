//! `autorun.toml`: looked up next to the control file and in the user's config folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// The keys a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    test_dirs: Option<Vec<PathBuf>>,
    output_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    cleanup_grace: Option<f64>,
    sysinfo_per_iteration: Option<bool>,
}

/// The merged configuration: the control file's folder first, then the user's.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Extra folders to find tests in, searched after `--test-dir` and `tests/`.
    pub test_dirs: Vec<PathBuf>,
    /// Where job folders go when `--output-dir` is not given.
    pub output_dir: Option<PathBuf>,
    /// Where "setup once per version" records live.
    pub cache_dir: PathBuf,
    /// Seconds a test's `cleanup` gets after Ctrl-C or SIGTERM (default 10).
    pub cleanup_grace: f64,
    /// The initial value of `job.sysinfo_per_iteration`.
    pub sysinfo_per_iteration: bool,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(fallback)))
        .unwrap_or_else(|| std::env::temp_dir().join(fallback))
}

/// The default for `cleanup_grace`.
pub const DEFAULT_CLEANUP_GRACE: f64 = 10.0;

/// `$XDG_CONFIG_HOME/autorun/autorun.toml` (or `~/.config/...`).
pub fn user_config_path() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
        .join("autorun")
        .join("autorun.toml")
}

/// `$XDG_CACHE_HOME/autorun` (or `~/.cache/autorun`).
pub fn default_cache_dir() -> PathBuf {
    xdg("XDG_CACHE_HOME", ".cache").join("autorun")
}

/// `$XDG_STATE_HOME/autorun` (or `~/.local/state/autorun`): the REPL's history.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("autorun")
}

fn read_file(path: &Path) -> Result<Option<ConfigFile>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    let cfg: ConfigFile = toml::from_str(&text).map_err(|e| {
        let (line, col) = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                (line, col)
            }
            None => (1, 1),
        };
        Error::Config {
            path: path.to_path_buf(),
            message: format!("line {line}, column {col}: {}", e.message().trim()),
        }
    })?;
    // Relative paths in a config file are relative to the file's folder.
    let base = path.parent().unwrap_or(Path::new("."));
    let fix = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    Ok(Some(ConfigFile {
        test_dirs: cfg.test_dirs.map(|v| v.into_iter().map(fix).collect()),
        output_dir: cfg.output_dir.map(fix),
        cache_dir: cfg.cache_dir.map(fix),
        cleanup_grace: cfg.cleanup_grace,
        sysinfo_per_iteration: cfg.sysinfo_per_iteration,
    }))
}

/// Loads the config for a control file in `control_dir`: its `autorun.toml` wins over the
/// user's; `test_dirs` of both are searched, the control file's first.
pub fn load(control_dir: &Path) -> Result<Config, Error> {
    let mut cfg = Config {
        cache_dir: default_cache_dir(),
        cleanup_grace: DEFAULT_CLEANUP_GRACE,
        ..Config::default()
    };
    let mut grace_set = false;
    let files = [control_dir.join("autorun.toml"), user_config_path()];
    let mut cache_set = false;
    let mut per_iteration: Option<bool> = None;
    for path in files {
        if let Some(f) = read_file(&path)? {
            cfg.test_dirs.extend(f.test_dirs.unwrap_or_default());
            if cfg.output_dir.is_none() {
                cfg.output_dir = f.output_dir;
            }
            if let (false, Some(g)) = (grace_set, f.cleanup_grace) {
                if !(0.0..=3600.0).contains(&g) {
                    return Err(Error::Config {
                        path,
                        message: format!("cleanup_grace must be 0 to 3600 seconds, not {g}"),
                    });
                }
                cfg.cleanup_grace = g;
                grace_set = true;
            }
            if let (false, Some(c)) = (cache_set, f.cache_dir) {
                cfg.cache_dir = c;
                cache_set = true;
            }
            per_iteration = per_iteration.or(f.sysinfo_per_iteration);
        }
    }
    cfg.sysinfo_per_iteration = per_iteration.unwrap_or(false);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("autorun.toml");
        std::fs::write(&p, "test_dirs = [\"t\"]\nbogus = 1\n").unwrap();
        let err = read_file(&p).err().unwrap().to_string();
        assert!(err.contains("autorun.toml: line 2, column 1"), "{err}");
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn relative_dirs_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("autorun.toml");
        std::fs::write(&p, "test_dirs = [\"t\"]\noutput_dir = \"/abs\"\n").unwrap();
        let f = read_file(&p).unwrap().unwrap();
        assert_eq!(f.test_dirs.unwrap(), vec![dir.path().join("t")]);
        assert_eq!(f.output_dir.unwrap(), PathBuf::from("/abs"));
    }
}
