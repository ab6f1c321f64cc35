//! Errors that end a command before or outside a job, each a sentence with an exit code.

use std::path::PathBuf;

/// Exit codes of `autorun`, in one place.
pub mod exit {
    /// The job ended GOOD and nothing failed.
    pub const OK: i32 = 0;
    /// The job ended GOOD but a test, nested test or group ended FAIL or ERROR.
    pub const TEST_FAILED: i32 = 1;
    /// The job aborted (END ABORT).
    pub const ABORTED: i32 = 2;
    /// The job paused with `job.quit()`.
    pub const PAUSED: i32 = 5;
    /// Bad command line, missing control file, existing job folder.
    pub const USAGE: i32 = 64;
}

/// An error that stops `autorun` before or around a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line mistake.
    #[error("{0}")]
    Usage(String),
    /// The control file does not exist or cannot be read.
    #[error("cannot read control file {path}: {reason}")]
    ControlFile {
        /// The path given.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// The job folder exists and neither `--overwrite` nor `--continue` was given.
    #[error(
        "job folder {0} already exists; pass --overwrite to replace it or choose another --tag"
    )]
    JobFolderExists(PathBuf),
    /// Another autorun is running a job in this folder.
    #[error(
        "job folder {0} is in use by another autorun; wait for it to end or choose another --tag"
    )]
    JobFolderBusy(PathBuf),
    /// `--continue` found nothing to continue.
    #[error("nothing to continue: {0}")]
    NothingToContinue(String),
    /// A config file is malformed.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// Reading or writing files failed.
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The exit code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::Io(_) => exit::ABORTED,
            _ => exit::USAGE,
        }
    }
}
