//! Ctrl-C (SIGINT) and SIGTERM in the middle of a job: the running test and the job are
//! recorded as ABORT with the reason, the status log stays whole, and nothing the test
//! started is left running.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn interrupt_during_a_test(sig: i32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests/slow")).unwrap();
    std::fs::write(
        dir.path().join("tests/slow/slow.rhai"),
        "fn run_once() { run(\"echo $$ > child.pid; exec sleep 60\"); }\n\
         fn cleanup() { sleep(0.2); write_file(\"cleanup.ran\", \"yes\"); }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("control.rhai"),
        "job.run_test(\"slow\", #{tag: \"first\"});\njob.run_test(\"slow\", #{tag: \"never\"});",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autorun"))
        .current_dir(dir.path())
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = dir.path().join("results/job/slow.first/child.pid");
    let start = Instant::now();
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the test never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sends a signal to the job process we started.
    unsafe { libc::kill(child.id() as i32, sig) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("interrupted by {name}")));
    let log = std::fs::read_to_string(dir.path().join("results/job/status")).unwrap();
    for line in log.lines() {
        assert!(
            autorun::status_log::parse_line(line).is_some(),
            "unparsable line {line:?} in\n{log}"
        );
    }
    let msg = format!("interrupted by {name}");
    assert!(log.contains("\t\tABORT\tslow.first\tslow.first\t"), "{log}");
    assert!(
        log.contains("\tEND ABORT\tslow.first\tslow.first\t"),
        "{log}"
    );
    let last = log.lines().last().unwrap();
    assert!(
        last.starts_with("END ABORT\t----\t----\t") && last.ends_with(&msg),
        "{log}"
    );
    assert!(!log.contains("never"));
    // the test's cleanup ran, inside the grace period
    assert!(dir
        .path()
        .join("results/job/slow.first/cleanup.ran")
        .exists());
    // the command the test ran is gone with it
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let alive = stat
        .split(") ")
        .nth(1)
        .is_some_and(|rest| !rest.starts_with('Z'));
    assert!(!alive, "the test's command outlived the interrupt");
}

#[test]
fn sigint_during_a_test() {
    interrupt_during_a_test(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_during_a_test() {
    interrupt_during_a_test(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_during_the_control_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("control.rhai"),
        "print(\"sleeping\");\nsleep(60);\nprint(\"woke\");",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autorun"))
        .current_dir(dir.path())
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = dir.path().join("results/job/status");
    let start = Instant::now();
    while !status.exists() {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sends a signal to the job process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("woke"));
    let log = std::fs::read_to_string(status).unwrap();
    assert!(
        log.lines()
            .last()
            .unwrap()
            .ends_with("\tinterrupted by SIGINT"),
        "{log}"
    );
}

#[test]
fn a_cleanup_that_hangs_is_cut_off_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests/stuck")).unwrap();
    std::fs::write(
        dir.path().join("tests/stuck/stuck.rhai"),
        "fn run_once() { write_file(\"started\", \"\"); sleep(60); }\nfn cleanup() { write_file(\"cleanup.started\", \"\"); loop { } }",
    )
    .unwrap();
    std::fs::write(dir.path().join("autorun.toml"), "cleanup_grace = 1\n").unwrap();
    std::fs::write(dir.path().join("control.rhai"), "job.run_test(\"stuck\");").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autorun"))
        .current_dir(dir.path())
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = dir.path().join("results/job/stuck/started");
    let t = Instant::now();
    while !started.exists() {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    // SAFETY: sends a signal to the job process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(dir
        .path()
        .join("results/job/stuck/cleanup.started")
        .exists());
    let log = std::fs::read_to_string(dir.path().join("results/job/status")).unwrap();
    assert!(log.contains("\t\tABORT\tstuck\tstuck\t"), "{log}");
    assert!(log
        .lines()
        .last()
        .unwrap()
        .ends_with("interrupted by SIGINT"));
}

#[test]
fn sigint_during_a_parallel_section() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests/slow")).unwrap();
    std::fs::write(
        dir.path().join("tests/slow/slow.rhai"),
        "fn run_once() { write_file(\"started\", \"\"); sleep(60); }\nfn cleanup() { write_file(\"cleanup.ran\", \"\"); }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("control.rhai"),
        "fn t(x) { job.run_test(\"slow\", #{tag: x}); }\njob.parallel([[Fn(\"t\"), \"a\"], [Fn(\"t\"), \"b\"]]);\nprint(\"NEVER\");",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autorun"))
        .current_dir(dir.path())
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    for x in ["a", "b"] {
        let started = dir.path().join(format!("results/job/slow.{x}/started"));
        while !started.exists() {
            assert!(t.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // SAFETY: sends a signal to the job process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("NEVER"));
    let log = std::fs::read_to_string(dir.path().join("results/job/status")).unwrap();
    for line in log.lines() {
        assert!(autorun::status_log::parse_line(line).is_some(), "{line:?}");
    }
    for x in ["a", "b"] {
        assert!(
            log.contains(&format!("\t\tABORT\tslow.{x}\tslow.{x}\t")),
            "{log}"
        );
        assert!(dir
            .path()
            .join(format!("results/job/slow.{x}/cleanup.ran"))
            .exists());
    }
    assert!(
        log.lines()
            .last()
            .unwrap()
            .ends_with("\tinterrupted by SIGINT"),
        "{log}"
    );
}
