//! Each test runs in its own process: a fork of the autorun process that asked for it, in
//! its own process group, like autotest's fork per test. The fork starts warm (no exec, no
//! dynamic loading, the script engine's packages already built), runs the test, writes its
//! report into a pipe and exits; a crash, a hang, a timeout or a stray `exit` in the test
//! cannot take the job down.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map};

use crate::commands::{kill_group, track_group, untrack_group};
use crate::job::JobInfo;
use crate::lifecycle::TestPaths;
use crate::outcome::Outcome;
use crate::status::Status;

/// The signal (SIGINT/SIGTERM) that asked the job to stop, or 0.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);
/// How many such signals arrived: a second one skips the grace for cleanup.
static INTERRUPTS: AtomicI32 = AtomicI32::new(0);
/// Set while a test's cleanup runs after an interrupt: scripts are not stopped then.
static CLEANING: AtomicBool = AtomicBool::new(false);
/// In a test process: the write end of its own report pipe, which its nested tests must
/// not inherit (a nested test that outlived it would hold the job's read open).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Routes SIGINT and SIGTERM to [`interrupted`] instead of killing the job outright.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                let _ = INTERRUPT.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                INTERRUPTS.fetch_add(1, Ordering::SeqCst);
            })
        };
    }
}

/// The signal that interrupted the job, if any.
pub fn interrupted() -> Option<i32> {
    match INTERRUPT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Forgets an interrupt once it has been dealt with, so that the job goes on: the REPL
/// stops the entry that was running at Ctrl-C, not the session.
pub fn clear_interrupt() {
    INTERRUPT.store(0, Ordering::SeqCst);
    INTERRUPTS.store(0, Ordering::SeqCst);
    CLEANING.store(false, Ordering::SeqCst);
}

/// The signal that interrupted the job, unless the test is running its cleanup after it:
/// what stops scripts and sleeps.
pub fn stop_requested() -> Option<i32> {
    if CLEANING.load(Ordering::SeqCst) {
        None
    } else {
        interrupted()
    }
}

/// `interrupted by SIGINT`, when the job was interrupted.
pub fn interruption() -> Option<String> {
    interrupted().map(|sig| format!("interrupted by {}", signal_name(sig)))
}

/// Lets a test's cleanup run after an interrupt.
pub fn allow_cleanup() {
    CLEANING.store(true, Ordering::SeqCst);
}

/// `SIGSEGV` for 11, and so on.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Everything a test process needs (the fork gets it by memory, not serialised).
#[derive(Debug, Clone)]
pub struct TestSpec {
    /// The job, seen from inside the test.
    pub job: JobInfo,
    /// The test script, or the program of an executable test.
    pub script: std::path::PathBuf,
    /// Which of the two `script` is.
    pub kind: crate::discovery::Kind,
    /// The test's folders.
    pub paths: TestPaths,
    /// Test parameters.
    pub params: Map,
    /// Arguments `execute` consumes.
    pub execute: Map,
    /// A non-map argument (an error).
    pub positional: Option<Dynamic>,
    /// Run `cleanup`?
    pub run_cleanup: bool,
    /// `job.default_profile_only` when the test started.
    pub default_profile_only: bool,
    /// `job.drop_caches_between_iterations` when the test started.
    pub drop_caches: bool,
    /// `job.sysinfo_per_iteration` when the test started.
    pub sysinfo_per_iteration: bool,
    /// The job's profilers (the fork's copy).
    pub profilers: crate::profilers::ProfilersHandle,
    /// `test_attributes`.
    pub test_attributes: Map,
}

/// What the test process writes back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TestReport {
    /// `None` when the test passed.
    pub outcome: Option<Outcome>,
}

/// How a test process ended, seen from the job.
#[derive(Debug)]
pub enum ChildEnd {
    /// It reported: `None` passed, else its outcome.
    Finished(Option<Outcome>),
    /// It did not report: timed out, crashed, exited early.
    Failed(Outcome),
    /// The job was interrupted by this signal while the test ran.
    Interrupted(i32),
}

fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r.into(), w.into()))
}

/// Runs one test in a forked process and waits for it, killing its process group on
/// timeout or interrupt. `body` runs in the fork and returns the test's outcome.
pub fn run(
    spec: TestSpec,
    timeout: Option<f64>,
    body: fn(TestSpec) -> Option<Outcome>,
) -> ChildEnd {
    let spec_grace = spec.job.cleanup_grace;
    let (mut rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot create the test's report pipe: {e}")),
    };
    let _ = std::io::stdout().flush();
    let table = crate::commands::shared_table();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the job process runs scripts on one thread; the only other threads are
    // waiters that hold no locks the fork needs (glibc's malloc is fork-safe).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(rd);
        die_with_parent(parent);
        crate::commands::adopt_table(table);
        in_fork(spec, wr, body);
    }
    if pid < 0 {
        crate::commands::reap_table(table);
        return failed(format!(
            "cannot start the test process: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Both sides set the group, so neither can act on the group before it exists.
    // SAFETY: setpgid on our own child.
    unsafe { libc::setpgid(pid, pid) };
    drop(wr);
    let pid = pid as u32;
    let slot = track_group(pid as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut report = Vec::new();
        let _ = rd.read_to_end(&mut report);
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        let res = if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok((report, ExitStatus::from_raw(status)))
        };
        let _ = tx.send(res);
    });
    let grace = spec_grace;
    let started = Instant::now();
    let mut timed_out = false;
    let wait = loop {
        let step = match timeout {
            Some(t) => {
                let left = t - started.elapsed().as_secs_f64();
                if left <= 0.0 {
                    timed_out = true;
                    break stop_group(pid, &rx);
                }
                Duration::from_secs_f64(left.min(0.1))
            }
            None => Duration::from_millis(100),
        };
        match rx.recv_timeout(step) {
            Ok(r) => break r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(sig) = interrupted() {
                    let _ = interrupt_group(pid, &rx, grace);
                    kill_group(pid, libc::SIGKILL);
                    crate::commands::reap_table(table);
                    untrack_group(slot);
                    return ChildEnd::Interrupted(sig);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(std::io::Error::other("lost the test process"))
            }
        }
    };
    // Whatever the test left running, in its group or in the groups of its commands and
    // profilers, does not outlive it.
    kill_group(pid, libc::SIGKILL);
    crate::commands::reap_table(table);
    untrack_group(slot);
    let (report, status) = match wait {
        Ok(r) => r,
        Err(e) => return failed(format!("cannot wait for the test process: {e}")),
    };
    if timed_out {
        let rc = status.signal().unwrap_or_else(|| status.into_raw());
        return failed(format!("Test timeout expired, rc={rc}"));
    }
    if let Ok(r) = serde_json::from_slice::<TestReport>(&report) {
        return ChildEnd::Finished(r.outcome);
    }
    match (status.signal(), status.code()) {
        (Some(sig), _) => failed(format!(
            "Test process killed by {} (signal {sig})",
            signal_name(sig)
        )),
        (None, Some(code)) => failed(format!("Test subprocess failed rc={code}")),
        _ => failed("Test subprocess failed".to_string()),
    }
}

/// In a fork: dies when the process that forked it dies (a job killed with SIGKILL takes
/// its running test along, as a power loss would, so `--continue` finds it interrupted).
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl/getppid/_exit act on this process only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(70);
        }
    }
}

/// The forked side: a process group of its own, the test, the report, `_exit`.
fn in_fork(spec: TestSpec, mut wr: std::fs::File, body: fn(TestSpec) -> Option<Outcome>) -> ! {
    // SAFETY: setpgid/close on our own process and descriptors.
    unsafe {
        libc::setpgid(0, 0);
        let inherited = REPORT_FD.swap(wr.as_raw_fd(), Ordering::SeqCst);
        if inherited >= 0 {
            libc::close(inherited);
        }
    }
    // A panic must not unwind out of the fork into the job's frames: report it instead.
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(spec))) {
        Ok(o) => o,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Some(Outcome::new(
                Status::Error,
                format!("autorun failed inside the test process: {what}"),
            ))
        }
    };
    let code = match serde_json::to_vec(&TestReport { outcome }) {
        Ok(bytes) if wr.write_all(&bytes).is_ok() => 0,
        _ => 70,
    };
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the fork without running the job's destructors or atexit hooks,
    // which belong to the job process.
    unsafe { libc::_exit(code) }
}

fn failed(msg: String) -> ChildEnd {
    ChildEnd::Failed(Outcome::new(Status::Error, msg))
}

/// After an interrupt: SIGINT to the test, which stops its phase and runs its cleanup, then
/// SIGKILL when the grace is over or at a second interrupt.
fn interrupt_group(pid: u32, rx: &mpsc::Receiver<WaitResult>, grace: f64) -> Option<WaitResult> {
    let seen = INTERRUPTS.load(Ordering::SeqCst);
    kill_group(pid, libc::SIGINT);
    let end = Instant::now() + Duration::from_secs_f64(grace.max(0.0));
    loop {
        let now = Instant::now();
        if now >= end || INTERRUPTS.load(Ordering::SeqCst) > seen {
            kill_group(pid, libc::SIGKILL);
            return rx.recv().ok();
        }
        if let Ok(r) = rx.recv_timeout((end - now).min(Duration::from_millis(50))) {
            return Some(r);
        }
    }
}

/// SIGTERM to the group, then SIGKILL after a short grace; returns the wait result.
fn stop_group(pid: u32, rx: &mpsc::Receiver<WaitResult>) -> WaitResult {
    kill_group(pid, libc::SIGTERM);
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(r) => r,
        Err(_) => {
            kill_group(pid, libc::SIGKILL);
            rx.recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("lost the test process")))
        }
    }
}

type WaitResult = std::io::Result<(Vec<u8>, ExitStatus)>;
