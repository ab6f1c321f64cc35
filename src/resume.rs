//! `--continue`: finding the job to resume, and repairing its status log after a pause or
//! a kill (merging what parallel tasks left behind, closing what was left open).

use std::path::{Path, PathBuf};

use crate::discovery::absolute;
use crate::error::Error;
use crate::keyval;
use crate::logging;
use crate::status_log::{self, Entry};

/// Finds the job folder `--continue` resumes: `--tag`'s, or the one `latest` points at.
pub fn continue_folder(out: &Path, tag: Option<&str>, state_name: &str) -> Result<PathBuf, Error> {
    let dir = match tag {
        Some(t) => out.join(t),
        None => std::fs::canonicalize(out.join("latest")).map_err(|_| {
            Error::NothingToContinue(format!("{} holds no job (no 'latest' link)", out.display()))
        })?,
    };
    let state = crate::state::StateFile::new(&dir.join(state_name));
    if !state.path().exists() {
        return Err(Error::NothingToContinue(format!(
            "{} holds no saved state of this control file",
            dir.display()
        )));
    }
    match state.load() {
        Ok(s) if s.complete => Err(Error::NothingToContinue(format!(
            "the job in {} has already ended",
            dir.display()
        ))),
        Ok(_) => Ok(absolute(&dir)),
        Err(e) => Err(Error::Io(e.to_string())),
    }
}

/// The STARTs of a status log that have no END yet, outermost first.
fn open_entries(log: &str) -> Vec<status_log::ParsedLine> {
    let mut open = Vec::new();
    for line in log.lines().filter_map(status_log::parse_line) {
        if line.code == "START" {
            open.push(line);
        } else if line.code.starts_with("END ") {
            open.pop();
        }
    }
    open
}

/// Closes `open` entries (innermost first) at their own indentation in `file` and in each
/// test's own status: an interrupted test gets `FAIL ... unexpected reboot` and `END FAIL`
/// as in autotest, an interrupted group `END ABORT`.
fn close_entries(
    resultdir: &Path,
    file: &Path,
    open: &[status_log::ParsedLine],
) -> Result<(), Error> {
    let io = |p: &Path, e: String| Error::Io(format!("cannot write {}: {e}", p.display()));
    for entry in open.iter().rev() {
        let (sub, op) = (entry.subdir.as_deref(), entry.operation.as_deref());
        let lines = match sub {
            Some(_) => vec![
                Entry::new("FAIL", sub, op, "unexpected reboot").render(entry.indent + 1),
                Entry::new("END FAIL", sub, op, "").render(entry.indent),
            ],
            None => vec![Entry::new("END ABORT", sub, op, "").render(entry.indent)],
        };
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        logging::info("job", text.trim_end());
        keyval::append(file, &text).map_err(|e| io(file, e.to_string()))?;
        if let Some(sub) = sub {
            let own = resultdir.join(sub).join("status");
            if own.exists() {
                keyval::append(&own, &text).map_err(|e| io(&own, e.to_string()))?;
            }
        }
    }
    Ok(())
}

/// Before a continued job goes on: merges what parallel tasks left in `status.<i>` files
/// (deepest first, each into its parent) and closes what a kill left open. Returns the
/// indentation to go on at: 1, inside the job's START.
pub fn recover_status(resultdir: &Path) -> Result<usize, Error> {
    let status = resultdir.join("status");
    let io = |p: &Path, e: std::io::Error| Error::Io(format!("cannot read {}: {e}", p.display()));
    let mut leftovers: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(resultdir)
        .map_err(|e| io(resultdir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let path: Vec<u32> = name
                .strip_prefix("status.")?
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            Some((path, e.path()))
        })
        .collect();
    leftovers.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    for (path, file) in leftovers {
        let parent_name = std::iter::once("status".to_string())
            .chain(path[..path.len() - 1].iter().map(|n| n.to_string()))
            .collect::<Vec<_>>()
            .join(".");
        let parent = resultdir.join(parent_name);
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        keyval::append(&parent, &text).map_err(|e| Error::Io(e.to_string()))?;
        close_entries(resultdir, &parent, &open_entries(&text))?;
        let _ = std::fs::remove_file(file);
    }
    let log = std::fs::read_to_string(&status).map_err(|e| io(&status, e))?;
    let open = open_entries(&log);
    // The job's own START stays open: the continued job goes on inside it.
    let job_start = open
        .first()
        .is_some_and(|e| e.indent == 0 && e.subdir.is_none() && e.operation.is_none());
    let keep = usize::from(job_start);
    close_entries(resultdir, &status, &open[keep..])?;
    Ok(keep)
}
