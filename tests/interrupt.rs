//! Ctrl-C (SIGINT) and SIGTERM in the middle of a job: the running test's cleanup runs
//! within the grace, the test and the job are recorded as ABORT with the reason, the status
//! log stays whole, and nothing the test started is left running.

mod common;
use common::{alive, assert_ends_interrupted, assert_parses, signal, wait_for, Job};

use std::time::{Duration, Instant};

fn interrupt_during_a_test(sig: i32, name: &str) {
    let job = Job::new(
        "job.run_test(\"slow\", #{tag: \"first\"});\njob.run_test(\"slow\", #{tag: \"never\"});",
    )
    .test(
        "slow",
        "fn run_once() { run(\"echo $$ > child.pid; exec sleep 60\"); }\n\
         fn cleanup() { sleep(0.2); write_file(\"cleanup.ran\", \"yes\"); }",
    );
    let child = job.spawn();
    wait_for(&job, "slow.first/child.pid");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by {name}")),
        "{stderr}"
    );
    let results = job.path().join("results/job");
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert_parses(&log);
    assert!(log.contains("\t\tABORT\tslow.first\tslow.first\t"), "{log}");
    assert!(
        log.contains("\tEND ABORT\tslow.first\tslow.first\t"),
        "{log}"
    );
    let last = log.lines().last().unwrap();
    assert!(last.starts_with("END ABORT\t----\t----\t"), "{log}");
    assert!(last.ends_with(&format!("interrupted by {name}")), "{log}");
    assert!(!log.contains("never"));
    // the test's cleanup ran, inside the grace period
    assert!(results.join("slow.first/cleanup.ran").exists());
    // the command the test ran is gone with it
    let pid = std::fs::read_to_string(results.join("slow.first/child.pid")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(&pid), "the test's command outlived the interrupt");
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
    let job = Job::new("print(\"sleeping\");\nsleep(60);\nprint(\"woke\");");
    let child = job.spawn();
    wait_for(&job, "status");
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("woke"));
    let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert_ends_interrupted(&log);
}

#[test]
fn a_cleanup_that_hangs_is_cut_off_after_the_grace() {
    let job = Job::new("job.run_test(\"stuck\");")
        .test(
            "stuck",
            "fn run_once() { write_file(\"started\", \"\"); sleep(60); }\n\
             fn cleanup() { write_file(\"cleanup.started\", \"\"); loop { } }",
        )
        .file("autorun.toml", "cleanup_grace = 1\n");
    let child = job.spawn();
    wait_for(&job, "stuck/started");
    let start = Instant::now();
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let results = job.path().join("results/job");
    assert!(results.join("stuck/cleanup.started").exists());
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert!(log.contains("\t\tABORT\tstuck\tstuck\t"), "{log}");
    assert!(log
        .lines()
        .last()
        .unwrap()
        .ends_with("interrupted by SIGINT"));
}

#[test]
fn sigint_during_a_parallel_section() {
    let (_job, log) = common::interrupt_parallel_section("", |j| j, libc::SIGINT);
    assert_ends_interrupted(&log);
}

#[test]
fn sigint_stops_a_command_of_the_control_file_and_aborts_its_group() {
    let job = Job::new(
        "fn grp() { write_file(job.resultdir + \"/started\", \"\"); run(\"sleep 30\"); }\n\
         job.run_group(Fn(\"grp\"));",
    );
    let child = job.spawn();
    wait_for(&job, "started");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(2));
    let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert_parses(&log);
    assert!(log.contains("\tEND ABORT\t----\tgrp\t"), "{log}");
    assert_ends_interrupted(&log);
}
