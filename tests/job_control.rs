//! Job control: the step engine, quit and --continue, persistent state, the job folder
//! lock, a job killed mid-test and continued, and job.parallel.

mod common;
use common::{assert_parses, wait_for, Job};

use std::time::{Duration, Instant};

const STEPS: &str = r#"
print("top level runs");
fn t(x) { append_file(job.resultdir + "/steps", x + "\n"); }
fn step_init() {
    t("step_init");
    job.next_step(Fn("step_one"));
    job.next_step("step_two", 5, #{k: "v"});
    job.next_step_append(Fn("step_last"));
    job.next_step_prepend(Fn("step_zero"));
}
fn step_zero() { t("step_zero"); }
fn step_one() { t("step_one"); job.next_step(Fn("step_one_child")); }
fn step_one_child() { t("step_one_child"); }
fn step_two(n, kw) {
    t(`step_two(${n}, ${kw.k})`);
    job.set_state("visits", job.get_state("visits", 0) + 1);
    if job.get_state("paused", false) == false {
        job.set_state("paused", true);
        job.next_step_prepend(Fn("step_two"), n, kw);
        job.quit();
    }
}
fn step_last() { t(`step_last visits=${job.get_state("visits", 0)}`); }
"#;

/// Starts the job, kills it with SIGKILL once every file in `wait` exists, then continues
/// it (retrying while its test processes, which die with it, still hold the folder).
fn kill_and_continue(job: &Job, wait: &[&str]) -> common::Run {
    let mut first = job.spawn();
    for rel in wait {
        wait_for(job, rel);
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let t = Instant::now();
    loop {
        let run = job.clone_args().arg("--continue").run();
        if run.code() != 64 || t.elapsed() > Duration::from_secs(10) {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn step_order_quit_and_continue() {
    let job = Job::new(STEPS);
    let first = job.run();
    assert_eq!(first.code(), 5, "{}", first.stderr());
    assert!(first.stderr().contains("autorun --continue"));
    let log = first.status();
    assert_eq!(
        log.lines().count(),
        1,
        "a paused job has no END yet:\n{log}"
    );
    let second = job.clone_args().arg("--continue").run();
    assert_eq!(second.code(), 0, "{}", second.stderr());
    let steps = second.read("steps");
    assert_eq!(
        steps,
        "step_init\nstep_zero\nstep_one\nstep_one_child\nstep_two(5, v)\nstep_two(5, v)\nstep_last visits=2\n"
    );
    // the top level ran again, and no second job START was written
    assert_eq!(second.stdout().matches("top level runs").count(), 1);
    let log = second.status();
    assert_eq!(log.matches("START\t----\t----").count(), 1, "{log}");
    assert!(log
        .lines()
        .last()
        .unwrap()
        .starts_with("END GOOD\t----\t----"));
    let third = job.clone_args().arg("--continue").run();
    assert_eq!(third.code(), 64);
    assert!(
        third.stderr().contains("nothing to continue"),
        "{}",
        third.stderr()
    );
}

#[test]
fn continue_without_a_job_is_a_usage_error() {
    let run = Job::new("").arg("--continue").finish();
    assert_eq!(run.code(), 64);
    assert!(
        run.stderr().contains("nothing to continue"),
        "{}",
        run.stderr()
    );
}

#[test]
fn test_na_in_a_step_goes_on_and_a_failure_aborts() {
    let run = Job::new(
        r#"
fn step_init() { job.next_step(Fn("na")); job.next_step(Fn("bad")); job.next_step(Fn("never")); }
fn na() { test_na("not here"); }
fn bad() { test_fail("a step failed"); }
fn never() { print("NEVER"); }
"#,
    )
    .finish();
    assert_eq!(run.code(), 2);
    let log = run.status();
    assert!(log.contains("\tTEST_NA\t----\tna\t"), "{log}");
    assert!(
        log.lines()
            .last()
            .unwrap()
            .ends_with("\tUnhandled TestFail: a step failed"),
        "{log}"
    );
    assert!(!run.stdout().contains("NEVER"));
}

#[test]
fn state_is_shared_with_tests_and_survives_in_the_job_folder() {
    let run = Job::new(
        r#"
job.set_state("config", #{ size: 3, names: ["a", "b"] });
job.run_test("t");
print(`STATE ${job.get_state("from_test", "missing")} ${job.get_state("nothing", 42)}`);
job.run_test_cleanup = false;
try { job.set_state("f", || 1); } catch (e) { print(`CAUGHT ${e.kind}`); }
"#,
    )
    .test(
        "t",
        r#"fn run_once() {
    let c = job.get_state("config", ());
    job.set_state("from_test", c.size * 2 + c.names.len());
}"#,
    )
    .finish();
    assert!(run.stdout().contains("STATE 8 42"), "{}", run.stdout());
    assert!(
        run.stdout().contains("CAUGHT TypeError"),
        "{}",
        run.stdout()
    );
    let state = run.read("control.rhai.state");
    let json: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(json["public"]["from_test"], 8);
    assert_eq!(json["props"]["run_test_cleanup"], false);
    assert_eq!(json["complete"], true);
}

#[test]
fn a_second_autorun_on_the_same_folder_is_refused() {
    let job = Job::new(r#"job.run_test("slow");"#).test(
        "slow",
        "fn run_once() { write_file(\"started\", \"\"); sleep(3); }",
    );
    let first = job.spawn();
    wait_for(&job, "slow/started");
    let second = job.clone_args().arg("--overwrite").run();
    assert_eq!(second.code(), 64);
    assert!(
        second.stderr().contains("is in use by another autorun"),
        "{}",
        second.stderr()
    );
    let cont = job.clone_args().arg("--continue").run();
    assert_eq!(cont.code(), 64);
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // the first job's results are whole
    let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert!(log.lines().last().unwrap().starts_with("END GOOD"), "{log}");
}

#[test]
fn a_job_killed_during_a_test_continues_with_unexpected_reboot() {
    let job = Job::new(
        r#"
fn step_init() { job.next_step(Fn("step_a")); job.next_step(Fn("step_b")); }
fn step_a() { job.run_group(|| job.run_test("slow")); }
fn step_b() { job.run_test("quick"); }
"#,
    )
    .test(
        "slow",
        "fn run_once() { write_file(\"started\", \"\"); sleep(30); }",
    )
    .test("quick", "fn run_once() {}");
    let run = kill_and_continue(&job, &["slow/started"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let log = run.status();
    assert_parses(&log);
    assert!(log.contains("\t\t\tFAIL\tslow\tslow\t"), "{log}");
    assert!(log.contains("unexpected reboot"), "{log}");
    assert!(log.contains("\t\tEND FAIL\tslow\tslow\t"), "{log}");
    assert!(log.contains("\tEND ABORT\t----\tgroup\t"), "{log}");
    assert!(log.contains("\tSTART\tquick\tquick\t"), "{log}");
    assert!(
        log.lines()
            .last()
            .unwrap()
            .starts_with("END GOOD\t----\t----"),
        "{log}"
    );
}

#[test]
fn parallel_tasks_run_together_and_their_logs_are_grouped() {
    let run = Job::new(
        r#"
fn a() { job.run_test("s", #{tag: "a1"}); job.run_test("f", #{tag: "a2"}); }
fn b(x) { job.run_test("s", #{tag: x}); }
let t = timestamp();
job.parallel([Fn("a"), [Fn("b"), "b1"], || job.run_test("s", #{tag: "c1"})]);
print(`TOOK ${t.elapsed}`);
fn bad() { throw "task broke"; }
try { job.parallel([Fn("bad"), [Fn("b"), "b2"]]); } catch (e) { print(`CAUGHT ${e.status}: ${e.message}`); }
job.parallel([Fn("bad")]);
print("NEVER");
"#,
    )
    .test("s", "fn run_once() { sleep(0.6); }")
    .test("f", "fn run_once() { test_fail(\"nope\"); }")
    .finish();
    let out = run.stdout();
    let took: f64 = out
        .lines()
        .find_map(|l| l.split("TOOK ").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(took < 1.7, "tasks did not overlap: {took} s");
    assert!(
        out.contains("CAUGHT ABORT: 1 task(s) failed in job.parallel"),
        "{out}"
    );
    assert!(!out.contains("NEVER"));
    assert_eq!(run.code(), 2);
    let log = run.status();
    // task by task, in order: a's two tests, then b1, then c1
    assert_eq!(
        run.top_level_starts(),
        vec!["s.a1", "f.a2", "s.b1", "s.c1", "s.b2"],
        "{log}"
    );
    assert!(log
        .lines()
        .last()
        .unwrap()
        .ends_with("\t1 task(s) failed in job.parallel"));
    assert!(!run.resultdir.join("status.0").exists());
}

#[test]
fn step_init_goes_after_steps_the_top_level_queued() {
    let run = Job::new(
        r#"
fn t(x) { append_file(job.resultdir + "/steps", x + "\n"); }
job.next_step(Fn("early"));
fn early() { t("early"); }
fn step_init() { t("step_init"); }
"#,
    )
    .finish();
    assert_eq!(run.read("steps"), "early\nstep_init\n");
}

#[test]
fn quit_inside_a_group_pauses_the_job() {
    let job = Job::new(
        r#"
fn step_init() { job.next_step(Fn("a")); job.next_step(Fn("b")); }
fn a() { job.run_group(Fn("grp")); }
fn grp() { if !job.get_state("quit", false) { job.set_state("quit", true); job.quit(); } }
fn b() { print("B RAN"); }
"#,
    );
    let first = job.run();
    assert_eq!(first.code(), 5, "{}", first.status());
    let second = job.clone_args().arg("--continue").run();
    assert_eq!(second.code(), 0, "{}", second.status());
    assert!(second.stdout().contains("B RAN"));
    let log = second.status();
    assert_parses(&log);
    assert!(log.contains("\tEND ABORT\t----\tgrp\t"), "{log}");
}

#[test]
fn nested_parallel_sections_keep_every_line() {
    let run = Job::new(
        r#"
fn t(x) { job.run_test("s", #{tag: x}); }
fn outer0() { t("o0-before"); job.parallel([[Fn("t"), "i0"], [Fn("t"), "i1"]]); t("o0-after"); }
fn outer1() { t("o1"); }
job.parallel([Fn("outer0"), Fn("outer1")]);
"#,
    )
    .test("s", "fn run_once() {}")
    .finish();
    assert_eq!(run.code(), 0);
    let log = run.status();
    assert_eq!(
        run.top_level_starts(),
        vec!["s.o0-before", "s.i0", "s.i1", "s.o0-after", "s.o1"],
        "{log}"
    );
}

#[test]
fn a_job_killed_during_parallel_continues_with_each_task_closed_at_its_level() {
    let job = Job::new(
        r#"
fn t(x) { job.run_test("slow", #{tag: x}); }
fn step_init() { job.next_step(Fn("par")); }
fn par() { job.parallel([[Fn("t"), "a"], [Fn("t"), "b"]]); }
"#,
    )
    .test(
        "slow",
        "fn run_once() { write_file(\"started\", \"\"); sleep(30); }",
    );
    let run = kill_and_continue(&job, &["slow.a/started", "slow.b/started"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let log = run.status();
    assert_parses(&log);
    for x in ["a", "b"] {
        assert!(
            log.contains(&format!("\n\t\tFAIL\tslow.{x}\tslow.{x}\t")),
            "{log}"
        );
        assert!(
            log.contains(&format!("\n\tEND FAIL\tslow.{x}\tslow.{x}\t")),
            "{log}"
        );
        let own = run.read(&format!("slow.{x}/status"));
        assert!(own.contains("unexpected reboot"), "{own}");
    }
    assert!(log.lines().last().unwrap().starts_with("END GOOD"));
    assert!(!run.resultdir.join("status.0").exists());
}
