//! `autorun repl`: a live job explored one entry at a time. The job is set up and ended as
//! a control file's is (the same [`crate::runner`] code); in between, each entry runs at
//! the top level of that job with `job` bound. On a terminal the line editor
//! ([`editor`]) offers history and completion; piped, the entries are read line by line
//! with no prompt, so sessions can be scripted.

pub mod editor;
pub mod session;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::child;
use crate::cli::RunOpts;
use crate::config;
use crate::discovery::absolute;
use crate::error::Error;
use crate::runner::{self, JobPlan};

use self::session::{is_incomplete, Answer, Session};

/// The first line of the job folder's `control`, which then collects the entries.
const TRANSCRIPT_HEADER: &str = "// autorun repl: the entries of the session, in order\n";

/// How a session ended.
enum Ending {
    /// Ctrl-D, end of input or `:quit`: the job ends GOOD.
    Done,
    /// A signal (SIGTERM; SIGINT when not on a terminal): the job aborts.
    Signal(i32),
}

/// Runs `autorun repl`: a job in `results` (made if missing; it must be empty) or in a new
/// job folder of the output folder, then the session; returns the job's exit code.
pub fn run(results: Option<&Path>, test_dirs: &[PathBuf]) -> Result<i32, Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Io(format!("cannot read the current folder: {e}")))?;
    let cfg = config::load(&cwd)?;
    let (resultdir, out) = match results {
        Some(dir) => (claim_folder(dir)?, None),
        None => {
            let out = cfg
                .output_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("results"));
            let dir = absolute(&runner::make_job_folder(&out, None, false)?);
            (dir, Some(out))
        }
    };
    let opts = RunOpts {
        test_dir: test_dirs.to_vec(),
        ..RunOpts::default()
    };
    let plan = JobPlan {
        opts: &opts,
        control: resultdir.join("control"),
        control_dir: cwd,
        cfg,
        out,
        resultdir,
        state_name: "control.state".to_string(),
        source: TRANSCRIPT_HEADER.to_string(),
    };
    let (job, _tmp) = runner::open_job(plan)?;
    let mut session = Session::new(job.clone());
    let ending = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        interactive(&mut session, &job.info())
    } else {
        piped(&mut session)
    };
    let aborted = match ending {
        Ending::Done => None,
        Ending::Signal(sig) => Some(format!("interrupted by {}", child::signal_name(sig))),
    };
    runner::finish_job(&job, aborted)
}

/// The folder `--results` names, made if missing; an existing one must be empty.
fn claim_folder(dir: &Path) -> Result<PathBuf, Error> {
    let dir = absolute(dir);
    if dir.symlink_metadata().is_ok() {
        if runner::folder_busy(&dir) {
            return Err(Error::JobFolderBusy(dir));
        }
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            return Err(Error::Usage(format!(
                "job folder {} already exists and is not empty; give --results a new or empty folder",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Prints an answer; `Some` when the session must end.
fn show(answer: Answer, on_terminal: bool) -> Option<Ending> {
    match answer {
        Answer::Quiet => {}
        Answer::Value(v) => crate::outln!("=> {v}"),
        Answer::Text(t) => crate::outln!("{t}"),
        Answer::Error(e) => eprintln!("{e}"),
        Answer::Quit => return Some(Ending::Done),
        // Ctrl-C on a terminal stops the entry, not the job; anything else stops the job,
        // as it would stop a control file.
        Answer::Interrupted(sig) if on_terminal && sig == libc::SIGINT => {
            child::clear_interrupt();
            eprintln!("interrupted: the entry stopped (the job goes on)");
        }
        Answer::Interrupted(sig) => return Some(Ending::Signal(sig)),
    }
    None
}

/// A session on a terminal: line editing, history, completion.
fn interactive(session: &mut Session, info: &crate::job::JobInfo) -> Ending {
    let history = editor::history_path();
    let helper = editor::ReplHelper::new(session.engine(), info.test_dirs.clone());
    let mut rl = match editor::editor(helper, &history) {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("autorun: cannot use the terminal ({e}); reading entries line by line");
            return piped(session);
        }
    };
    crate::outln!(
        "autorun repl: job {} in {}. :help lists the commands; Ctrl-D ends the job.",
        info.tag,
        info.resultdir.display()
    );
    let mut history_failed = false;
    loop {
        let line = rl.readline(editor::PROMPT);
        if let Some(sig) = child::interrupted().filter(|s| *s != libc::SIGINT) {
            return Ending::Signal(sig);
        }
        match line {
            Ok(entry) => {
                let answer = session.handle(&entry);
                if let Err(e) = rl.append_history(&history) {
                    if !history_failed {
                        eprintln!(
                            "autorun: warning: cannot save the history to {}: {e}",
                            history.display()
                        );
                        history_failed = true;
                    }
                }
                if let Some(end) = show(answer, true) {
                    return end;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => {}
            Err(rustyline::error::ReadlineError::Eof) => return Ending::Done,
            Err(e) => {
                eprintln!("autorun: cannot read the terminal: {e}");
                return Ending::Done;
            }
        }
    }
}

/// A session on piped input: no prompt, no escape codes; an entry ends where Rhai's parser
/// says it is complete.
fn piped(session: &mut Session) -> Ending {
    // Lines arrive from a thread, so that a signal is seen while input is awaited.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                break;
            }
        }
    });
    let parser = rhai::Engine::new_raw();
    let mut entry = String::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                eprintln!("autorun: cannot read the input: {e}");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => match child::interrupted() {
                Some(sig) => return Ending::Signal(sig),
                None => continue,
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if entry.is_empty() && line.trim().is_empty() {
            continue;
        }
        entry.push_str(&line);
        if is_incomplete(&parser, &entry) {
            entry.push('\n');
            continue;
        }
        if let Some(end) = show(session.handle(&std::mem::take(&mut entry)), false) {
            return end;
        }
    }
    // An entry left open at the end of the input runs, to show its error.
    if !entry.trim().is_empty() {
        if let Some(end) = show(session.handle(entry.trim_end()), false) {
            return end;
        }
    }
    match child::interrupted() {
        Some(sig) => Ending::Signal(sig),
        None => Ending::Done,
    }
}
