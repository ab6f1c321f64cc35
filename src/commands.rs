//! `run`, `system`, `system_output`: external commands in their own process group, output
//! streamed line by line into the debug log and kept (up to a cap) for the caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::logging;

/// How much of a command's stdout or stderr is kept in memory; the debug log has it all.
pub const CAPTURE_LIMIT: usize = 16 << 20;

/// What to run.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// An argv, run without a shell.
    Argv(Vec<String>),
}

impl Cmd {
    /// The command as written in messages.
    pub fn display(&self) -> String {
        match self {
            Cmd::Shell(s) => s.clone(),
            Cmd::Argv(a) => a.join(" "),
        }
    }
}

/// Options of `run`.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Seconds before the command's process group is killed.
    pub timeout: Option<f64>,
    /// Do not throw on a non-zero exit.
    pub ignore_status: bool,
    /// Text fed to the command's standard input.
    pub stdin: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Inherited environment variables the command must not see.
    pub env_remove: Vec<String>,
    /// Working folder.
    pub cwd: Option<String>,
}

/// The result of a command that ran.
#[derive(Debug, Clone)]
pub struct CmdResult {
    /// The command as written.
    pub command: String,
    /// Exit code, or `-signal` when killed by a signal (as Python's subprocess reports it).
    pub exit_status: i64,
    /// Standard output (capped at [`CAPTURE_LIMIT`]).
    pub stdout: String,
    /// Standard error (capped at [`CAPTURE_LIMIT`]).
    pub stderr: String,
    /// Seconds it took.
    pub duration: f64,
    /// True when the timeout killed it.
    pub timed_out: bool,
}

/// Why a command could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("Command <{0}> could not be started: {1}")]
    Spawn(String, String),
}

/// Process groups this process started and must take down with it when it is told to
/// stop: commands (stored as the positive pgid) and nested tests or parallel tasks (stored
/// negated).
static ACTIVE: [AtomicI32; TRACKED] = [const { AtomicI32::new(0) }; TRACKED];
static SIGINTS: AtomicI32 = AtomicI32::new(0);

/// Length of the tracked-groups table, and of its shared mirror.
pub const TRACKED: usize = 64;

/// In a test process: a page shared with the process that forked it, mirroring
/// [`ACTIVE`]'s entries, so that the forking process can kill what a test that died
/// abruptly (exit, crash, SIGKILL) left running.
static SHARED: std::sync::atomic::AtomicPtr<AtomicI32> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Allocates a shared table for the next fork (see [`SHARED`]); `None` if mmap fails.
pub fn shared_table() -> Option<*mut AtomicI32> {
    // SAFETY: an anonymous shared mapping of TRACKED i32s, zero-filled by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            TRACKED * std::mem::size_of::<AtomicI32>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as *mut AtomicI32)
}

/// In a fresh fork: forgets the groups the forking process tracked (they are not this
/// process's) and mirrors this process's groups into `table`.
pub fn adopt_table(table: Option<*mut AtomicI32>) {
    for slot in &ACTIVE {
        slot.store(0, Ordering::SeqCst);
    }
    SHARED.store(table.unwrap_or(std::ptr::null_mut()), Ordering::SeqCst);
}

/// In the forking process, once the fork has ended: kills every group it left in
/// `table`, and unmaps it.
pub fn reap_table(table: Option<*mut AtomicI32>) {
    let Some(p) = table else { return };
    for i in 0..TRACKED {
        // SAFETY: `p` maps TRACKED AtomicI32s (shared_table).
        let id = unsafe { (*p.add(i)).load(Ordering::SeqCst) };
        if id != 0 {
            kill_group(id.unsigned_abs(), libc::SIGKILL);
        }
    }
    // SAFETY: unmaps the mapping made by shared_table.
    unsafe {
        libc::munmap(
            p as *mut libc::c_void,
            TRACKED * std::mem::size_of::<AtomicI32>(),
        )
    };
}

fn mirror(i: usize, id: i32) {
    let p = SHARED.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: `p` maps TRACKED AtomicI32s and i < TRACKED.
        unsafe { (*p.add(i)).store(id, Ordering::SeqCst) };
    }
}

/// Remembers a nested test's or task's process group, to kill if this process is told
/// to stop.
pub fn track_group(pgid: i32) -> Option<usize> {
    track(-pgid)
}

/// Remembers the process group of a program the test runs (a profiler's), killed like
/// a command's.
pub fn track_command_group(pgid: i32) -> Option<usize> {
    track(pgid)
}

/// Forgets a group remembered by [`track_group`] or by `run`.
pub fn untrack_group(slot: Option<usize>) {
    if let Some(i) = slot {
        ACTIVE[i].store(0, Ordering::SeqCst);
        mirror(i, 0);
    }
}

fn track(id: i32) -> Option<usize> {
    let i = ACTIVE.iter().position(|slot| {
        slot.compare_exchange(0, id, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })?;
    mirror(i, id);
    Some(i)
}

/// Kills the running commands' process groups (and, with `tests`, nested tests' and
/// tasks' groups) with SIGKILL. Async-signal-safe.
pub fn kill_tracked(tests: bool) {
    for slot in &ACTIVE {
        let id = slot.load(Ordering::SeqCst);
        if id > 0 || (tests && id < 0) {
            // SAFETY: killpg is async-signal-safe and only sends a signal.
            unsafe {
                libc::killpg(id.abs(), libc::SIGKILL);
            }
        }
    }
}

/// In a test process. SIGTERM (a timeout) kills everything the test started and the
/// process dies of it. The first SIGINT (the job was interrupted) kills the running
/// commands so the current phase ends, and lets the test run its cleanup; a second one
/// ends everything at once.
pub fn stop_on_signals() {
    // SAFETY: the handlers only use atomics, killpg and signal-hook's default emulation,
    // all async-signal-safe.
    unsafe {
        let _ = signal_hook::low_level::register(libc::SIGTERM, || {
            kill_tracked(true);
            let _ = signal_hook::low_level::emulate_default_handler(libc::SIGTERM);
        });
        let _ = signal_hook::low_level::register(libc::SIGINT, || {
            if SIGINTS.fetch_add(1, Ordering::SeqCst) == 0 {
                kill_tracked(false);
            } else {
                kill_tracked(true);
                let _ = signal_hook::low_level::emulate_default_handler(libc::SIGINT);
            }
        });
    }
}

/// Sends `sig` to the whole process group `pgid`.
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: killpg only sends a signal; a stale pgid makes it fail with ESRCH.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Runs `cmd` to completion (or until its timeout), streaming its output to the debug log.
pub fn run(cmd: &Cmd, opts: &Opts) -> Result<CmdResult, CmdError> {
    let mut command = match cmd {
        Cmd::Shell(s) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
        Cmd::Argv(argv) => {
            let mut c = Command::new(argv.first().map(String::as_str).unwrap_or(""));
            c.args(argv.iter().skip(1));
            c
        }
    };
    // SAFETY: the pre-exec hook only calls prctl, which is async-signal-safe.
    unsafe {
        // A command dies with the test that runs it.
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if opts.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for k in &opts.env_remove {
        command.env_remove(k);
    }
    for (k, v) in &opts.env {
        command.env(k, v);
    }
    if let Some(cwd) = &opts.cwd {
        command.current_dir(cwd);
    }
    let shown = cmd.display();
    logging::debug("utils", &format!("Running '{shown}'"));
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| CmdError::Spawn(shown.clone(), e.to_string()))?;
    let pid = child.id();
    let slot = track(pid as i32);
    if let (Some(text), Some(mut input)) = (opts.stdin.clone(), child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = input.write_all(text.as_bytes());
        });
    }
    let out = child.stdout.take().map(|s| capture(s, "[stdout]"));
    let err = child.stderr.take().map(|s| capture(s, "[stderr]"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut timed_out = false;
    let deadline = opts
        .timeout
        .filter(|t| *t > 0.0)
        .map(|t| start + Duration::from_secs_f64(t.min(1e9)));
    let lost = || Err(std::io::Error::other("lost the command"));
    let status = loop {
        let step = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
            None => Duration::from_millis(100),
        };
        match rx.recv_timeout(step) {
            Ok(s) => break s,
            Err(mpsc::RecvTimeoutError::Disconnected) => break lost(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    timed_out = true;
                    kill_group(pid, libc::SIGTERM);
                    break match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(s) => s,
                        Err(_) => {
                            kill_group(pid, libc::SIGKILL);
                            rx.recv().unwrap_or_else(|_| lost())
                        }
                    };
                }
                // Ctrl-C: the job process stops its commands too (test processes do it in
                // their signal handler).
                if crate::child::stop_requested().is_some() {
                    kill_group(pid, libc::SIGKILL);
                    break rx.recv().unwrap_or_else(|_| lost());
                }
            }
        }
    }
    .map_err(|e| CmdError::Spawn(shown.clone(), e.to_string()));
    untrack_group(slot);
    let status = status?;
    if timed_out {
        // Whatever the shell left behind in the group goes too.
        kill_group(pid, libc::SIGKILL);
    }
    let exit_status = match (status.code(), status.signal()) {
        (Some(c), _) => c as i64,
        (None, Some(s)) => -(s as i64),
        _ => -1,
    };
    let stdout = out
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    Ok(CmdResult {
        command: shown,
        exit_status,
        stdout,
        stderr,
        duration: start.elapsed().as_secs_f64(),
        timed_out,
    })
}

/// The longest piece of a line that goes to the debug log as one log line: longer lines
/// (or output without newlines) are logged in pieces, so memory stays bounded.
pub const LOG_LINE_LIMIT: usize = 64 << 10;

/// Reads a stream to its end on a thread: every line to the debug log (in pieces of at
/// most [`LOG_LINE_LIMIT`] bytes), the first [`CAPTURE_LIMIT`] bytes kept.
fn capture<R: Read + Send + 'static>(
    stream: R,
    label: &'static str,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(LOG_LINE_LIMIT, stream);
        let mut kept: Vec<u8> = Vec::new();
        let mut line: Vec<u8> = Vec::with_capacity(LOG_LINE_LIMIT);
        let mut dropped: u64 = 0;
        loop {
            let buf = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(b) => b,
            };
            let room = LOG_LINE_LIMIT - line.len();
            let (take, ends_line) = match buf.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), false),
            };
            line.extend_from_slice(&buf[..take]);
            reader.consume(take);
            if ends_line || line.len() >= LOG_LINE_LIMIT {
                keep_and_log(&mut kept, &mut dropped, &line, label);
                line.clear();
            }
        }
        if !line.is_empty() {
            keep_and_log(&mut kept, &mut dropped, &line, label);
        }
        let mut s = String::from_utf8_lossy(&kept).into_owned();
        if dropped > 0 {
            s.push_str(&format!(
                "\n[output truncated: {dropped} more bytes are in the debug log only]\n"
            ));
        }
        s
    })
}

/// Logs one line (or piece of one) and keeps it while everything so far fits in
/// [`CAPTURE_LIMIT`]; counts in `dropped` what is not kept.
fn keep_and_log(kept: &mut Vec<u8>, dropped: &mut u64, line: &[u8], label: &str) {
    let text = String::from_utf8_lossy(line);
    logging::debug("utils", &format!("{label} {}", text.trim_end_matches('\n')));
    if *dropped == 0 && kept.len() + line.len() <= CAPTURE_LIMIT {
        kept.extend_from_slice(line);
    } else {
        *dropped += line.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let r = run(
            &Cmd::Shell("echo hi; echo err >&2; exit 3".into()),
            &Opts::default(),
        )
        .unwrap();
        assert_eq!(r.stdout, "hi\n");
        assert_eq!(r.stderr, "err\n");
        assert_eq!(r.exit_status, 3);
    }

    #[test]
    fn timeout_kills_the_group() {
        let opts = Opts {
            timeout: Some(0.2),
            ..Opts::default()
        };
        let t = Instant::now();
        let r = run(&Cmd::Shell("sleep 5 & sleep 5; wait".into()), &opts).unwrap();
        assert!(r.timed_out);
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_long_line_is_kept_whole_and_more_than_the_cap_is_noted() {
        let r = run(
            &Cmd::Shell("head -c 200000 /dev/zero | tr '\\0' a; echo; echo b".into()),
            &Opts::default(),
        )
        .unwrap();
        assert_eq!(r.stdout.len(), 200003);
        assert!(r.stdout.starts_with("aaaa") && r.stdout.ends_with("a\nb\n"));
        let r = run(
            &Cmd::Shell(format!("head -c {} /dev/zero", CAPTURE_LIMIT + 10)),
            &Opts::default(),
        )
        .unwrap();
        assert!(r.stdout.len() <= CAPTURE_LIMIT + 100);
        assert!(r
            .stdout
            .ends_with("\n[output truncated: 10 more bytes are in the debug log only]\n"));
    }

    #[test]
    fn argv_and_stdin() {
        let opts = Opts {
            stdin: Some("abc".into()),
            ..Opts::default()
        };
        let r = run(&Cmd::Argv(vec!["cat".into()]), &opts).unwrap();
        assert_eq!(r.stdout, "abc");
    }
}
