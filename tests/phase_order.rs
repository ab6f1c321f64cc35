//! The order in which phases and hooks run, recorded by each phase appending to a trace file
//! (behaviour §1.2-1.7).

mod common;
use common::Job;

const TRACED: &str = r#"
fn t(what) { append_file(job.resultdir + "/trace", `${what}:${this.iteration}` + "\n"); }
fn initialize(fail_in) {
    this.t("initialize");
    this.register_before_iteration_hook(|test| append_file(job.resultdir + "/trace", `before_hook:${test.iteration}` + "\n"));
    this.register_after_iteration_hook(|test| {
        append_file(job.resultdir + "/trace", `after_hook:${test.iteration}` + "\n");
        if test.fail_hook == true { throw "hook failed"; }
    });
    if fail_in == "initialize" { throw "initialize failed"; }
}
fn setup() { this.t("setup"); }
fn warmup() { this.t("warmup"); }
fn before_run_once() { this.t("before_run_once"); }
fn run_once(fail_in) {
    this.t("run_once");
    if fail_in == "hook" { this.fail_hook = true; }
    if fail_in == "run_once" && this.iteration == 2 { test_fail("run_once failed"); }
}
fn after_run_once() { this.t("after_run_once"); }
fn postprocess_iteration() { this.t("postprocess_iteration"); }
fn postprocess() { this.t("postprocess"); }
fn cleanup() { this.t("cleanup"); }
"#;

fn trace(control: &str) -> (String, common::Run) {
    let run = Job::new(control).test("traced", TRACED).finish();
    let trace = std::fs::read_to_string(run.resultdir.join("trace")).unwrap_or_default();
    (trace.lines().collect::<Vec<_>>().join(" "), run)
}

#[test]
fn three_iterations() {
    let (t, run) = trace(r#"job.run_test("traced", #{iterations: 3});"#);
    let iter = |i: i32| {
        format!("before_hook:{i} before_run_once:{i} run_once:{i} after_run_once:{i} postprocess_iteration:{i} after_hook:{i}")
    };
    assert_eq!(
        t,
        format!(
            "initialize:0 setup:0 warmup:0 {} {} {} postprocess:4 cleanup:4",
            iter(1),
            iter(2),
            iter(3)
        )
    );
    assert_eq!(run.code(), 0);
}

#[test]
fn setup_runs_once_per_version_across_jobs() {
    let job = Job::new(r#"job.run_test("traced");"#).test("traced", TRACED);
    let first = job.run_tagged("one");
    let second = job.run_tagged("two");
    let t1 = std::fs::read_to_string(first.resultdir.join("trace")).unwrap();
    let t2 = std::fs::read_to_string(second.resultdir.join("trace")).unwrap();
    assert!(t1.contains("setup:0"));
    assert!(!t2.contains("setup"), "{t2}");
}

#[test]
fn zero_iterations_run_no_run_once() {
    let (t, _) = trace(r#"job.run_test("traced", #{iterations: 0});"#);
    assert_eq!(t, "initialize:0 setup:0 warmup:0 postprocess:1 cleanup:1");
}

#[test]
fn test_length_keeps_iteration_zero() {
    let (t, _) = trace(r#"job.run_test("traced", #{test_length: 0.2, iterations: 50});"#);
    let words: Vec<&str> = t.split(' ').collect();
    assert!(words.contains(&"run_once:0"));
    assert!(!t.contains("run_once:1"));
    assert!(t.ends_with("postprocess:1 cleanup:1"), "{t}");
}

#[test]
fn after_hook_runs_when_run_once_fails_and_cleanup_follows() {
    let (t, run) = trace(r#"job.run_test("traced", #{iterations: 3, fail_in: "run_once"});"#);
    assert!(
        t.ends_with("before_hook:2 before_run_once:2 run_once:2 after_hook:2 cleanup:2"),
        "{t}"
    );
    assert_eq!(
        run.result_of("traced"),
        ("FAIL".into(), "run_once failed".into())
    );
}

#[test]
fn a_hook_that_throws_fails_the_test_after_the_iteration() {
    let (t, run) = trace(r#"job.run_test("traced", #{iterations: 3, fail_in: "hook"});"#);
    assert!(
        t.ends_with("postprocess_iteration:1 after_hook:1 cleanup:1"),
        "{t}"
    );
    let (s, m) = run.result_of("traced");
    assert_eq!(s, "FAIL");
    assert!(m.starts_with("Unhandled RuntimeError: hook failed"), "{m}");
}

#[test]
fn cleanup_runs_after_initialize_fails_unless_disabled() {
    let (t, run) = trace(r#"job.run_test("traced", #{fail_in: "initialize"});"#);
    assert_eq!(t, "initialize:0 cleanup:0");
    assert_eq!(run.result_of("traced").0, "ERROR");
    let (t, _) = trace(r#"job.run_test("traced", #{fail_in: "initialize", run_cleanup: false});"#);
    assert_eq!(t, "initialize:0");
    let (t, _) = trace("job.run_test_cleanup = false;\njob.run_test(\"traced\");");
    assert!(!t.contains("cleanup"), "{t}");
    let (t, _) =
        trace("job.run_test_cleanup = false;\njob.run_test(\"traced\", #{run_cleanup: true});");
    assert!(t.ends_with("cleanup:2"), "{t}");
}

#[test]
fn a_test_may_define_execute() {
    let run = Job::new(r#"job.run_test("ex", #{iterations: 4, n: 2});"#)
        .test(
            "ex",
            "fn execute(iterations, n) { this.write_test_keyval(#{ got: iterations * n }); }",
        )
        .finish();
    assert_eq!(run.result_of("ex").0, "GOOD");
    assert!(run.read("ex/keyval").contains("got=8\n"));
}
