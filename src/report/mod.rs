//! The job's reports, one file per format, each a [`Subscriber`] to the job's events:
//! `results.json` ([`json`]) and `junit.xml` ([`junit`]).

pub mod json;
pub mod junit;

use std::io::Write;
use std::path::Path;

use crate::events::Subscriber;

/// The report writers every job has, writing into the job folder `resultdir`.
pub fn writers(resultdir: &Path) -> Vec<Box<dyn Subscriber>> {
    vec![
        Box::new(json::JsonWriter::new(resultdir)),
        Box::new(junit::JunitWriter::new(resultdir)),
    ]
}

/// Replaces `path` with `bytes` through a temp file and a rename, so that a reader (or a
/// job killed half-way) sees the old file or the new one, never a part.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Seconds rounded to the millisecond, as the reports write times.
pub fn millis(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}
