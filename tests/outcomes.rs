//! Every row of autotest's exception → status table (behaviour §1.6), run through the real
//! binary, plus the contract's deliberate divergences (§9).

mod common;
use common::Job;

/// Runs `body` as the whole test script of `t` and returns (status, message) of its line.
fn outcome_of(body: &str) -> (String, String, common::Run) {
    let job = Job::new(r#"job.run_test("t");"#).test("t", body);
    let run = job.finish();
    let (s, m) = run.result_of("t");
    (s, m, run)
}

#[test]
fn outcome_functions_in_run_once() {
    for (f, status) in [
        ("test_fail", "FAIL"),
        ("test_error", "ERROR"),
        ("test_na", "TEST_NA"),
        ("test_warn", "WARN"),
        ("test_bug", "BUG"),
    ] {
        let (s, m, run) = outcome_of(&format!("fn run_once() {{ {f}(\"said {f}\"); }}"));
        assert_eq!(
            (s.as_str(), m.as_str()),
            (status, format!("said {f}").as_str())
        );
        assert!(run.status().contains(&format!("\tEND {status}\tt\tt\t")));
        let expected = if status == "FAIL" || status == "ERROR" {
            1
        } else {
            0
        };
        assert_eq!(run.code(), expected, "{f}");
    }
}

#[test]
fn a_thrown_string_is_an_unhandled_fail_with_position() {
    let (s, m, _) = outcome_of("fn run_once() {\n    throw \"boom from run_once\";\n}\n");
    assert_eq!(s, "FAIL");
    assert!(
        m.starts_with("Unhandled RuntimeError: boom from run_once ("),
        "{m}"
    );
    assert!(m.ends_with("t.rhai:2:5)"), "{m}");
}

#[test]
fn a_runtime_error_in_warmup_is_fail_and_in_initialize_is_error() {
    let (s, m, _) = outcome_of("fn warmup() { let x = 1 / 0; }\nfn run_once() {}");
    assert_eq!(s, "FAIL");
    assert!(m.starts_with("Unhandled ArithmeticError: "), "{m}");
    let (s, m, _) = outcome_of("fn initialize() { throw \"bad initialize\"; }\nfn run_once() {}");
    assert_eq!(s, "ERROR");
    assert!(
        m.starts_with("Unhandled RuntimeError: bad initialize"),
        "{m}"
    );
    let (s, m, _) = outcome_of("fn initialize() { test_fail(\"no\"); }\nfn run_once() {}");
    assert_eq!((s.as_str(), m.as_str()), ("FAIL", "no"));
    let (s, _, _) = outcome_of("fn initialize() { test_na(\"n/a\"); }\nfn run_once() {}");
    assert_eq!(s, "TEST_NA");
}

#[test]
fn a_bad_keyval_key_is_fail_and_writes_nothing() {
    let (s, m, run) =
        outcome_of("fn run_once() { this.write_perf_keyval(#{ \"a\": 1, \"bad key\": 2 }); }");
    assert_eq!(s, "FAIL");
    assert!(
        m.starts_with("Unhandled ValueError: Invalid key: bad key{perf}"),
        "{m}"
    );
    assert!(!run.resultdir.join("t/results/keyval").exists());
}

#[test]
fn a_newline_in_a_keyval_value_is_rejected() {
    let (s, m, _) = outcome_of("fn run_once() { this.write_perf_keyval(#{ a: \"x\\ny\" }); }");
    assert_eq!(s, "FAIL");
    assert!(m.contains("may not contain a newline"), "{m}");
}

#[test]
fn a_failed_command_is_error_with_its_real_message() {
    let (s, m, _) = outcome_of("fn run_once() { run(\"exit 3\"); }");
    assert_eq!(
        (s.as_str(), m.as_str()),
        ("ERROR", "Command <exit 3> failed, rc=3")
    );
    // and it can be caught and inspected
    let (s, m, _) = outcome_of(
        "fn run_once() { try { run([\"false\"]); } catch (e) { test_warn(`${e.status} ${e.result.exit_status}`); } }",
    );
    assert_eq!((s.as_str(), m.as_str()), ("WARN", "ERROR 1"));
}

#[test]
fn job_error_in_a_test_aborts_the_job() {
    let job = Job::new("job.run_test(\"t\");\njob.run_test(\"t\", #{tag: \"never\"});")
        .test("t", "fn run_once() { job_error(\"stop everything\"); }");
    let run = job.run();
    assert_eq!(run.code(), 2);
    let log = run.status();
    assert!(log.contains("\tEND ABORT\tt\tt\t"), "{log}");
    let last = log.lines().last().unwrap();
    assert!(last.starts_with("END ABORT\t----\t----\t"), "{last}");
    assert!(last.ends_with("\tstop everything"), "{last}");
    assert!(!log.contains("never"));
    assert!(!log.lines().any(|l| l.trim_start().starts_with("ABORT\tt")));
}

#[test]
fn cleanup_errors() {
    // test otherwise OK: ERROR from cleanup
    let (s, m, _) = outcome_of("fn run_once() {}\nfn cleanup() { throw \"bug in cleanup\"; }");
    assert_eq!(s, "ERROR");
    assert!(
        m.starts_with("Unhandled RuntimeError: bug in cleanup"),
        "{m}"
    );
    // test already failed: the original status stays
    let (s, m, _) = outcome_of(
        "fn run_once() { test_fail(\"first\"); }\nfn cleanup() { throw \"bug in cleanup\"; }",
    );
    assert_eq!((s.as_str(), m.as_str()), ("FAIL", "first"));
}

#[test]
fn argument_validation() {
    let job = Job::new("job.run_test(\"t\", 5);\njob.run_test(\"t\", #{tag: \"u\", bogus: 1});")
        .test("t", "fn run_once(seconds) {}");
    let run = job.run();
    assert_eq!(
        run.result_of("t"),
        (
            "ERROR".into(),
            "Unnamed arguments not accepted. Please call job.run_test with named args only".into()
        )
    );
    assert_eq!(
        run.result_of("t.u"),
        ("ERROR".into(), "Unknown parameter: bogus".into())
    );
    // rejected arguments still appear in the test keyval, as in autotest
    assert!(run.read("t/keyval").contains("param-0=5\n"));
    assert!(run.read("t.u/keyval").contains("param-bogus=1\n"));
    // no phase ran: no results folder was used, cleanup did not run
    assert_eq!(run.code(), 1);
}

#[test]
fn strict_params_can_be_turned_off() {
    let (s, _, run) = outcome_of("let strict_params = false;\nfn run_once() {}");
    assert_eq!(s, "GOOD");
    let _ = run;
    let job = Job::new("job.run_test(\"t\", #{bogus: 1});")
        .test("t", "let strict_params = false;\nfn run_once() {}");
    assert_eq!(
        job.run().result_of("t"),
        ("GOOD".into(), "completed successfully".into())
    );
}

#[test]
fn missing_test_and_missing_phases() {
    let job = Job::new("job.run_test(\"nosuchtest\");\njob.run_test(\"empty\");")
        .test("empty", "fn setup() {}");
    let run = job.run();
    assert_eq!(
        run.result_of("nosuchtest"),
        ("ERROR".into(), "nosuchtest: test does not exist".into())
    );
    // the folder of a missing test holds only its status
    let entries: Vec<_> = std::fs::read_dir(run.resultdir.join("nosuchtest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, vec!["status"]);
    assert_eq!(
        run.result_of("empty"),
        (
            "ERROR".into(),
            "empty defines neither run_once nor execute".into()
        )
    );
}

#[test]
fn syntax_errors_and_overloads_in_a_test() {
    let job = Job::new("job.run_test(\"bad\");\njob.run_test(\"over\");")
        .test("bad", "fn run_once() {\n    let x = ;\n}\n")
        .test("over", "fn run_once() {}\nfn run_once(a) {}\n");
    let run = job.run();
    let (s, m) = run.result_of("bad");
    assert_eq!(s, "ERROR");
    assert!(m.starts_with("Unhandled SyntaxError: "), "{m}");
    assert!(m.ends_with("bad.rhai:2:13)"), "{m}");
    let (s, m) = run.result_of("over");
    assert_eq!(s, "ERROR");
    assert!(m.contains("defined more than once"), "{m}");
}

#[test]
fn timeout_kills_the_test_and_its_children() {
    let job = Job::new("job.run_test(\"hang\", #{timeout: 1});").test(
        "hang",
        "fn run_once() { run(\"sleep 30 & echo $! > pid; sleep 30\"); }",
    );
    let start = std::time::Instant::now();
    let run = job.run();
    assert!(start.elapsed().as_secs() < 15);
    assert_eq!(
        run.result_of("hang"),
        ("ERROR".into(), "Test timeout expired, rc=15".into())
    );
    assert!(run.status().contains("\ttimeout=1\t"));
    let pid = std::fs::read_to_string(run.resultdir.join("hang/pid")).unwrap();
    assert!(
        !common::alive(&pid),
        "the background sleep outlived the test"
    );
}

#[test]
fn a_test_killed_by_a_signal_or_exiting_does_not_take_the_job_down() {
    let job =
        Job::new("job.run_test(\"segv\");\njob.run_test(\"quitter\");\njob.run_test(\"fine\");")
            .test(
                "segv",
                "fn run_once() { run(\"kill -SEGV $PPID; sleep 5\"); }",
            )
            .test("quitter", "fn run_once() { exit(3); }")
            .test("fine", "fn run_once() {}");
    let run = job.run();
    let (s, m) = run.result_of("segv");
    assert_eq!(s, "ERROR");
    assert!(m.contains("SIGSEGV"), "{m}");
    assert_eq!(
        run.result_of("quitter"),
        ("ERROR".into(), "Test subprocess failed rc=3".into())
    );
    assert_eq!(run.result_of("fine").0, "GOOD");
    assert!(run.status().ends_with("\n"));
    assert!(run.status().lines().last().unwrap().starts_with("END GOOD"));
    assert_eq!(run.code(), 1);
}

#[test]
fn unhandled_errors_in_setup_and_cleanup_are_errors() {
    let (s, m, _) = outcome_of("fn setup() { throw \"no compiler\"; }\nfn run_once() {}");
    assert_eq!(s, "ERROR");
    assert!(m.starts_with("Unhandled RuntimeError: no compiler"), "{m}");
}
