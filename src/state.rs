//! The job's persistent state: `get_state`/`set_state` values, the persistent job
//! properties and the step list, in one JSON file in the job folder. Every change is a
//! read-modify-write under a lock, written to a temp file, synced and renamed into place,
//! so a kill at any moment leaves either the old or the new state; test processes and
//! parallel tasks share it through the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The persistent, script-writable job properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Props {
    /// `job.default_profile_only`.
    pub default_profile_only: bool,
    /// `job.run_test_cleanup`.
    pub run_test_cleanup: bool,
    /// `job.use_sequence_number`.
    pub use_sequence_number: bool,
    /// `job.automatic_test_tag`.
    pub automatic_test_tag: Option<String>,
    /// `job.drop_caches_between_iterations`.
    pub drop_caches_between_iterations: bool,
    /// `job.sysinfo_per_iteration`: copy `/proc` files around each iteration.
    pub sysinfo_per_iteration: bool,
    /// The next sequence number for `use_sequence_number`.
    pub seq: u32,
}

impl Default for Props {
    fn default() -> Self {
        Props {
            default_profile_only: false,
            run_test_cleanup: true,
            use_sequence_number: false,
            automatic_test_tag: None,
            drop_caches_between_iterations: false,
            sysinfo_per_iteration: false,
            seq: 1,
        }
    }
}

/// One step of the step engine: a control-file function called by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The function's name.
    pub name: String,
    /// Its arguments, as JSON.
    pub args: Vec<serde_json::Value>,
}

/// Everything that survives a `--continue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// `job.set_state` values.
    pub public: BTreeMap<String, serde_json::Value>,
    /// The persistent job properties.
    pub props: Props,
    /// Steps still to run.
    pub steps: Vec<Step>,
    /// True once the job wrote its final END line: nothing left to continue.
    pub complete: bool,
}

/// A state file and its lock.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("job state file {path}: {reason}")]
pub struct StateError {
    path: String,
    reason: String,
}

impl StateFile {
    /// The state file at `path` (it need not exist yet).
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl ToString) -> StateError {
        StateError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Reads the state; a missing file is the default state.
    pub fn load(&self) -> Result<State, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("it is damaged ({e}); remove it to start afresh"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Replaces the state: temp file, fsync, rename.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| self.err(e))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(e)
        })
    }

    /// Read-modify-write under an exclusive lock shared by every process of the job.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StateError> {
        let lock_path = self.path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(e))?;
        let mut lock = fd_lock::RwLock::new(file);
        let _guard = lock.write().map_err(|e| self.err(e))?;
        let mut state = self.load()?;
        let before = state.clone();
        let out = f(&mut state);
        if state != before {
            self.save(&state)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let sf = StateFile::new(&dir.path().join("control.state"));
        assert_eq!(sf.load().unwrap(), State::default());
        sf.update(|s| {
            s.public.insert("k".into(), serde_json::json!([1, "x"]));
            s.props.seq = 3;
        })
        .unwrap();
        let s = sf.load().unwrap();
        assert_eq!(s.public["k"], serde_json::json!([1, "x"]));
        assert_eq!(s.props.seq, 3);
        // no temp files are left behind
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    }

    #[test]
    fn a_damaged_file_is_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("control.state");
        std::fs::write(&p, "{\"public\": ").unwrap();
        let err = StateFile::new(&p).load().unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }
}
