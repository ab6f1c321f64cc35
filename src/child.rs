//! Each test runs in its own process: the autorun binary itself (`autorun __run-test`), in
//! its own process group. The parent sends a [`TestSpec`] on the child's stdin and reads a
//! report file back; a crash, a hang, a timeout or a stray `exit` cannot take the job down.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map};

use crate::commands::kill_group;
use crate::job::JobInfo;
use crate::lifecycle::TestPaths;
use crate::outcome::Outcome;
use crate::status::Status;

/// The hidden subcommand a test process runs.
pub const CHILD_COMMAND: &str = "__run-test";

/// The signal (SIGINT/SIGTERM) that asked the job to stop, or 0.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);
static REPORTS: AtomicU32 = AtomicU32::new(0);

/// Routes SIGINT and SIGTERM to [`interrupted`] instead of killing the job outright.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                INTERRUPT.store(sig, Ordering::SeqCst);
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

/// Everything a test process needs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TestSpec {
    /// The job, seen from inside the test.
    pub job: JobInfo,
    /// The test script.
    pub script: PathBuf,
    /// The test's folders.
    pub paths: TestPaths,
    /// Test parameters.
    #[serde(with = "map_serde")]
    pub params: Map,
    /// Arguments `execute` consumes.
    #[serde(with = "map_serde")]
    pub execute: Map,
    /// A non-map argument (an error).
    pub positional: Option<Dynamic>,
    /// Run `cleanup`?
    pub run_cleanup: bool,
    /// `test_attributes`.
    #[serde(with = "map_serde")]
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

/// Where the child writes its report.
fn report_path(info: &JobInfo) -> PathBuf {
    let n = REPORTS.fetch_add(1, Ordering::Relaxed);
    info.tmpdir
        .join(format!("report-{}-{n}.json", std::process::id()))
}

/// Runs one test process and waits for it, killing its process group on timeout or
/// interrupt.
pub fn run(spec: &TestSpec, timeout: Option<f64>) -> ChildEnd {
    let report = report_path(&spec.job);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return failed(format!("cannot find the autorun binary: {e}")),
    };
    let payload = match serde_json::to_vec(spec) {
        Ok(p) => p,
        Err(e) => return failed(format!("test arguments cannot be passed to the test: {e}")),
    };
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_COMMAND)
        .arg(&report)
        .process_group(0)
        .stdin(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start the test process: {e}")),
    };
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A test that dies before reading its spec shows up below as an early exit.
        let _ = stdin.write_all(&payload);
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
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
                    let _ = stop_group(pid, &rx);
                    let _ = std::fs::remove_file(&report);
                    return ChildEnd::Interrupted(sig);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(std::io::Error::other("lost the test process"))
            }
        }
    };
    // Whatever the test left running in its group does not outlive it.
    kill_group(pid, libc::SIGKILL);
    let status = match wait {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot wait for the test process: {e}")),
    };
    if timed_out {
        let _ = std::fs::remove_file(&report);
        let rc = status.signal().unwrap_or_else(|| status.into_raw());
        return failed(format!("Test timeout expired, rc={rc}"));
    }
    let reported = std::fs::read(&report);
    let _ = std::fs::remove_file(&report);
    if let Ok(bytes) = reported {
        if let Ok(r) = serde_json::from_slice::<TestReport>(&bytes) {
            return ChildEnd::Finished(r.outcome);
        }
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

fn failed(msg: String) -> ChildEnd {
    ChildEnd::Failed(Outcome::new(Status::Error, msg))
}

/// SIGTERM to the group, then SIGKILL after a short grace; returns the wait result.
fn stop_group(
    pid: u32,
    rx: &mpsc::Receiver<std::io::Result<std::process::ExitStatus>>,
) -> std::io::Result<std::process::ExitStatus> {
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

/// Reads the spec from stdin (the child side).
pub fn read_spec() -> Result<TestSpec, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the test spec: {e}"))?;
    serde_json::from_slice(&buf).map_err(|e| format!("bad test spec: {e}"))
}

/// Writes the report (the child side): to a temp name, then renamed into place, so the job
/// never reads half a report.
pub fn write_report(path: &std::path::Path, outcome: Option<Outcome>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&TestReport { outcome })?)?;
    std::fs::rename(tmp, path)
}

/// Rhai maps cross the process boundary as JSON objects, through `Dynamic`'s serde support.
mod map_serde {
    use rhai::{Dynamic, Map};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        Dynamic::from_map(m.clone()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let v = Dynamic::deserialize(d)?;
        v.try_cast::<Map>()
            .ok_or_else(|| serde::de::Error::custom("expected an object"))
    }
}
