//! The job's reports, one file per format, each a [`Subscriber`] to the job's events:
//! `results.json` ([`json`]) and `junit.xml` ([`junit`]); `report.html` ([`html`]) is
//! written once at the job's end from the job folder. `autorun report DIR` rebuilds all
//! three from a job folder's status log and keyval files ([`rebuild`]).

pub mod html;
pub mod json;
pub mod junit;

use std::io::Write;
use std::path::Path;

use crate::error::{exit, Error};
use crate::events::{Event, Events, Subscriber};
use crate::status::Status;
use crate::status_log;

/// The report writers every job has, writing into the job folder `resultdir`.
pub fn writers(resultdir: &Path) -> Vec<Box<dyn Subscriber>> {
    vec![
        Box::new(json::JsonWriter::new(resultdir)),
        Box::new(junit::JunitWriter::new(resultdir)),
        Box::new(HtmlWriter(resultdir.to_path_buf())),
    ]
}

/// Writes `report.html` from the job folder when the job ends.
#[derive(Debug)]
pub struct HtmlWriter(pub std::path::PathBuf);

impl Subscriber for HtmlWriter {
    fn name(&self) -> &str {
        "report.html"
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::JobFinished { .. } => html::write(&self.0),
            _ => Ok(()),
        }
    }
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

/// `autorun report DIR`: rewrites `results.json` and `junit.xml` of a finished or
/// interrupted job from its `status` and keyval files, by replaying them as events, then
/// `report.html` from the same files.
pub fn rebuild(dir: &Path) -> Result<i32, Error> {
    let status = dir.join("status");
    let log = std::fs::read_to_string(&status).map_err(|e| {
        Error::Usage(format!(
            "{} is not a job folder: cannot read {}: {e}",
            dir.display(),
            status.display()
        ))
    })?;
    if crate::runner::folder_busy(dir) {
        return Err(Error::JobFolderBusy(dir.to_path_buf()));
    }
    let keyval = crate::keyval::read(&dir.join("keyval")).unwrap_or_default();
    let text = |k: &str| keyval.get(k).map(|v| v.to_string()).unwrap_or_default();
    let first = status_log::parse_line(log.lines().next().unwrap_or(""));
    let started = keyval
        .get("job_started")
        .and_then(|v| v.as_int().ok())
        .or_else(|| first.as_ref().and_then(timestamp))
        .unwrap_or(0);
    let mut events = Events::default();
    for w in writers(dir) {
        events.subscribe(w);
    }
    let _ = events.emit(&Event::JobStarted {
        tag: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        control: dir.join("control"),
        start: crate::events::epoch(started),
        args: Vec::new(),
        host: text("hostname"),
        user: text("user"),
    });
    events.replay(dir, &log);
    let end = log
        .lines()
        .rev()
        .find(|l| l.starts_with("END "))
        .and_then(status_log::parse_line);
    if let Some(end) = end {
        let status: Status = end
            .code
            .trim_start_matches("END ")
            .parse()
            .unwrap_or(Status::Abort);
        let exit_code = if status == Status::Abort {
            exit::ABORTED
        } else if status_log::has_failed_end(&log) {
            exit::TEST_FAILED
        } else {
            exit::OK
        };
        let _ = events.emit(&Event::JobFinished {
            status,
            reason: end.message.clone(),
            exit_code,
            end: crate::events::epoch(timestamp(&end).unwrap_or(started)),
        });
    } else {
        // An interrupted job has no END: its page is made all the same.
        html::write(dir).map_err(Error::Io)?;
    }
    // TAP files are made again when the job made them (`--tap`).
    let tap = dir.join("status.tap").exists();
    if tap {
        crate::tap::write_reports(dir).map_err(Error::Io)?;
    }
    crate::outln!(
        "Rewrote {}, {} and {}{}",
        dir.join("results.json").display(),
        dir.join("junit.xml").display(),
        dir.join("report.html").display(),
        if tap { " and the TAP files" } else { "" }
    );
    Ok(exit::OK)
}

fn timestamp(line: &status_log::ParsedLine) -> Option<i64> {
    line.fields
        .iter()
        .find(|(k, _)| k == "timestamp")
        .and_then(|(_, v)| v.parse().ok())
}
