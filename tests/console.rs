//! The console: plain lines when piped; on a terminal (a pseudo-terminal here) a live line
//! naming the running test with its iteration and time, log lines that erase it, and a
//! coloured summary unless `NO_COLOR` is set.

mod common;
use common::Job;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

const CONTROL: &str = r#"
job.run_test("slow", #{ iterations: 3 });
job.run_test("bad");
job.run_test("err");
job.run_test("na");
print("between tests");
job.run_test("slow", #{ tag: "again" });
"#;

fn job() -> Job {
    Job::new(CONTROL)
        .test("slow", r#"fn run_once() { sleep(0.35); }"#)
        .test("bad", r#"fn run_once() { test_fail("nope"); }"#)
        .test("err", r#"fn run_once() { test_error("broken"); }"#)
        .test(
            "na",
            r#"fn initialize() { test_na("no such device"); } fn run_once() {}"#,
        )
}

#[test]
fn piped_output_is_plain_lines_with_a_summary() {
    let run = job().finish();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    for (name, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
        let bad: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            bad.is_empty(),
            "{name} has control characters {bad:?}:\n{text}"
        );
    }
    let out = run.stdout();
    // Status records are shown without tabs; the status log keeps autotest's format.
    assert!(out.contains("INFO |     FAIL  bad  bad  nope\n"), "{out}");
    assert!(run.status().contains("\t\tFAIL\tbad\tbad\ttimestamp="));
    let summary = out
        .lines()
        .find(|l| l.starts_with("5 tests: "))
        .unwrap_or_else(|| panic!("no summary in {out}"));
    assert!(
        summary.starts_with("5 tests: 1 TEST_NA, 1 ERROR, 1 FAIL, 2 GOOD in "),
        "{summary}"
    );
    assert!(summary.ends_with(" s."), "{summary}");
    assert!(out.ends_with(&format!("Results are in {}\n", run.resultdir.display())));
}

/// Runs the job with stdout and stderr on a new pseudo-terminal; all it printed.
fn on_a_terminal(job: &Job, env: &[(&str, &str)]) -> String {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors, which we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors from openpty.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorun"));
    cmd.current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("AUTORUN_PROGRESS")
        .args(["control.rhai", "-o", "results", "-t", "job", "--overwrite"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut out = Vec::new();
    let mut master = std::fs::File::from(master);
    // Reading ends with EIO once the last holder of the terminal's other side is gone.
    let _ = master.read_to_end(&mut out);
    child.wait().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_terminal_gets_a_live_line_and_colours() {
    let job = job();
    let out = on_a_terminal(&job, &[]);
    // The live line names the running test, its iteration and the time so far.
    assert!(
        out.contains("\r\x1b[2K▶ slow (iteration 2/3, "),
        "no live line in {out:?}"
    );
    assert!(out.contains("▶ slow.again (iteration 1/1, "), "{out:?}");
    // Log lines erase it first.
    assert!(out.contains("\r\x1b[2K"), "{out:?}");
    assert!(out.contains("\x1b[31m1 FAIL\x1b[0m"), "{out:?}");
    assert!(out.contains("\x1b[31m1 ERROR\x1b[0m"), "{out:?}");
    assert!(out.contains("\x1b[33m1 TEST_NA\x1b[0m"), "{out:?}");
    assert!(out.contains("\x1b[32m2 GOOD\x1b[0m"), "{out:?}");
    // The files are untouched by the terminal.
    let status = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert!(!status.contains('\x1b'), "{status}");
}

#[test]
fn no_color_and_autorun_progress_are_respected() {
    let job = job();
    let out = on_a_terminal(&job, &[("NO_COLOR", "1")]);
    assert!(out.contains("▶ slow (iteration "), "{out:?}");
    assert!(!out.contains("\x1b[3"), "colour despite NO_COLOR: {out:?}");
    assert!(
        out.contains("5 tests: 1 TEST_NA, 1 ERROR, 1 FAIL, 2 GOOD in "),
        "{out:?}"
    );

    let out = on_a_terminal(&job, &[("AUTORUN_PROGRESS", "0")]);
    assert!(!out.contains('▶'), "{out:?}");
    assert!(!out.contains("\x1b[2K"), "{out:?}");
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    // `autorun ... | head -1`: the reader goes away; autorun must finish its work and
    // exit with its own code, not panic on the broken pipe.
    let job = job();
    for args in [
        vec!["control.rhai", "-o", "results", "-t", "piped"],
        vec!["completions", "bash"],
        vec!["definitions", "--markdown"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_autorun"))
            .current_dir(job.path())
            .env("XDG_CACHE_HOME", job.path().join("cache"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let expected = if args[0] == "control.rhai" { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
    }
    let status = std::fs::read_to_string(job.path().join("results/piped/status")).unwrap();
    assert!(
        status.ends_with("\t\n") && status.contains("\nEND GOOD\t----"),
        "{status}"
    );
}
