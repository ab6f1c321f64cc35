//! Hostile and broken input: each gets one clear sentence, a defined exit code, and no file
//! written outside the job folder.

mod common;
use common::{assert_parses, Job};

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;

/// Every path below `root`, except inside the job folder `results/job` and the cache.
fn files_outside_the_job(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .filter(|p| !p.starts_with("results/job") && !p.starts_with("cache"))
        .collect()
}

/// Runs `autorun ARGS` in the job's folder; checks nothing appeared outside the job folder
/// but `results/` and its `latest` link.
fn run_args(job: &Job, args: &[&str]) -> std::process::Output {
    let before = files_outside_the_job(job.path());
    let out = Command::cargo_bin("autorun")
        .unwrap()
        .current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_CONFIG_HOME", job.path().join("config"))
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let after = files_outside_the_job(job.path());
    let new: Vec<&String> = after
        .difference(&before)
        .filter(|p| *p != "results" && *p != "results/latest")
        .collect();
    assert!(new.is_empty(), "written outside the job folder: {new:?}");
    out
}

/// stderr is one line, starting `autorun: `, containing `needle`.
fn assert_one_sentence(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("autorun: "), "{stderr}");
    assert!(lines[0].contains(needle), "{stderr}");
}

#[test]
fn a_missing_control_file_is_a_usage_error() {
    let job = Job::new("");
    let out = run_args(&job, &["nosuch.rhai", "-t", "job"]);
    assert_eq!(out.status.code(), Some(64));
    assert_one_sentence(&out, "cannot read control file nosuch.rhai: No such file");
    assert!(!job.path().join("results").exists());
}

#[test]
fn an_unknown_option_is_a_usage_error() {
    let job = Job::new("");
    let out = run_args(&job, &["control.rhai", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: unexpected argument '--frobnicate' found"),
        "{stderr}"
    );
    assert!(!job.path().join("results").exists());
}

#[test]
fn a_syntax_error_names_file_line_and_column() {
    let job = Job::new("job.run_test(\"t\");\nlet x = (1 + ;\n").test("t", "fn run_once() {}");
    let out = run_args(&job, &["control.rhai", "-o", "results", "-t", "job"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_sentence(&out, "control.rhai:2:14)");
    let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert_parses(&log);
    assert!(!log.contains("\tSTART\tt\t"), "a test ran: {log}");
}

#[test]
fn bad_tags_on_the_command_line_are_refused_before_anything_is_written() {
    let job = Job::new("");
    let long = "x".repeat(300);
    for tag in ["a/b", "..", ".", "a\nb", "a\tb", long.as_str(), ""] {
        let out = run_args(&job, &["control.rhai", "-o", "results", "-t", tag]);
        assert_eq!(out.status.code(), Some(64), "{tag:?}");
        assert_one_sentence(&out, "invalid tag");
        assert!(!job.path().join("results").exists(), "{tag:?}");
    }
}

#[test]
fn bad_test_names_and_tags_in_a_control_file_abort_the_job_with_a_sentence() {
    let long = "x".repeat(300);
    let calls = [
        ("job.run_test(\"a/b\");", "invalid test name \"a/b\""),
        ("job.run_test(\"..\");", "invalid test name \"..\""),
        ("job.run_test(\"t:..:t\");", "invalid test name \"t:..:t\""),
        ("job.run_test(\"x\\ny\");", "invalid test name \"x\\ny\""),
        ("job.run_test(\"a\\x00b\");", "invalid test name \"a\\0b\""),
        (&format!("job.run_test(\"{long}\");"), "invalid test name"),
        (
            "job.run_test(\"t\", #{tag: \"../../escape\"});",
            "invalid tag \"../../escape\"",
        ),
        (
            "job.run_test(\"t\", #{subdir_tag: \"../up\"});",
            "invalid subdir_tag \"../up\"",
        ),
        (
            "job.run_test(\"t\", #{tag: \"a\\nb\"});",
            "invalid tag \"a\\nb\"",
        ),
    ];
    for (call, needle) in calls {
        let job = Job::new(&format!(
            "job.run_test(\"t\", #{{tag: \"earlier\"}});\n{call}"
        ))
        .test("t", "fn run_once() { write_file(\"ran\", \"\"); }");
        let out = run_args(&job, &["control.rhai", "-o", "results", "-t", "job"]);
        assert_eq!(out.status.code(), Some(2), "{call}");
        assert_one_sentence(&out, needle);
        let results = job.path().join("results/job");
        let log = std::fs::read_to_string(results.join("status")).unwrap();
        assert_parses(&log);
        let last = log.lines().last().unwrap();
        assert!(
            last.starts_with("END ABORT\t") && last.contains(needle),
            "{call}: {log}"
        );
        // The earlier test is there; the bad one never ran.
        assert!(results.join("t.earlier/ran").exists());
        assert_eq!(log.matches("\tSTART\t").count(), 1, "{call}: {log}");
    }
}

#[test]
fn keyval_keys_and_values_with_newlines_or_equals() {
    let run = Job::new("job.run_test(\"kv\");")
        .test(
            "kv",
            r#"fn run_once() {
    for k in ["a=b", "a\nb", "", "a b", "a{perf}"] {
        let m = #{}; m[k] = 1;
        try { this.write_test_keyval(m); } catch (e) { print(`REFUSED ${e.message}`); }
    }
    try { this.write_test_keyval(#{ v: "x\ny" }); } catch (e) { print(`REFUSED ${e.message}`); }
    this.write_test_keyval(#{ eq: "x=y=z" });
    print(`READ ${read_keyval("keyval").eq}`);
}"#,
        )
        .finish();
    let out = run.stdout();
    assert_eq!(out.matches("REFUSED Invalid key: ").count(), 5, "{out}");
    assert!(
        out.contains("REFUSED Invalid value for key v: a keyval value may not contain a newline")
    );
    // A value may hold '=': the key ends at the first one.
    assert!(out.contains("READ x=y=z"), "{out}");
    assert_eq!(run.result_of("kv").0, "GOOD");
    let kv = run.read("kv/keyval");
    assert!(
        kv.contains("\neq=x=y=z\n") || kv.starts_with("eq=x=y=z\n"),
        "{kv}"
    );
    assert!(!kv.contains("a=b="), "{kv}");
}

#[test]
fn a_perf_value_that_is_not_a_number_is_written_and_warned_about() {
    let run = Job::new("job.run_test(\"perf\");")
        .test(
            "perf",
            "fn run_once() { this.write_perf_keyval(#{ speed: \"fast\", n: 3 }); }",
        )
        .finish();
    assert_eq!(run.code(), 0);
    assert_eq!(
        run.read("perf/results/keyval"),
        "n{perf}=3\nspeed{perf}=fast\n\n"
    );
    assert!(
        run.stdout().contains(
            "WARNI| perf value speed=\"fast\" is not a number; result readers will skip it"
        ),
        "{}",
        run.stdout()
    );
    // Readers skip it, as tko does.
    let json = run.read("results.json");
    assert!(
        json.contains("\"n\": 3") || json.contains("\"n\":3"),
        "{json}"
    );
    assert!(!json.contains("fast"), "{json}");
}

#[test]
fn constraints_that_are_not_expressions_fail_the_test_with_their_text() {
    let run = Job::new(
        "job.run_test(\"c\", #{constraints: [\"this is not ( an expression\", \"x =\", \"len([]) == 0\", \"x == 1\"]});",
    )
    .test("c", "fn run_once() { this.write_perf_keyval(#{ x: 1 }); }")
    .finish();
    let (s, m) = run.result_of("c");
    assert_eq!(s, "FAIL");
    assert_eq!(
        m,
        "iteration 0:could not evaluate constraint: this is not ( an expression,\
         could not evaluate constraint: x =,could not evaluate constraint: len([]) == 0  "
    );
    assert_eq!(run.code(), 1);
}

#[test]
fn args_with_unbalanced_quotes_are_split_as_autotest_splits_them() {
    let run = Job::new("print(`ARGS ${job.args}`);")
        .arg("--args")
        .arg("a='x y")
        .finish();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // autotest's regex: a quote with no partner is an ordinary character.
    assert!(
        run.stdout().contains(r#"ARGS ["a='x", "y"]"#),
        "{}",
        run.stdout()
    );
}

const PAUSING: &str = r#"
fn step_init() { job.next_step(Fn("a")); job.next_step(Fn("b")); }
fn a() { job.run_test("t", #{tag: "a"}); if !job.get_state("q", false) { job.set_state("q", true); job.quit(); } }
fn b() { job.run_test("t", #{tag: "b"}); }
"#;

/// A job paused after its first test, its state file then replaced by `state`.
fn paused_with_state(edit: impl FnOnce(&str) -> String) -> Job {
    let job = Job::new(PAUSING).test("t", "fn run_once() {}");
    let first = job.run();
    assert_eq!(first.code(), 5, "{}", first.stderr());
    let path = job.path().join("results/job/control.rhai.state");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(&text)).unwrap();
    job
}

#[test]
fn a_truncated_or_mistyped_state_file_refuses_to_continue_and_keeps_the_results() {
    let edits: [fn(&str) -> String; 3] = [
        |t| t[..t.len() / 2].to_string(),
        |_| String::new(),
        |t| t.replace("\"seq\": 1", "\"seq\": \"one\""),
    ];
    for edit in edits {
        let job = paused_with_state(edit);
        let log_before = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
        let out = run_args(
            &job,
            &["control.rhai", "-o", "results", "-t", "job", "--continue"],
        );
        assert_eq!(out.status.code(), Some(2));
        assert_one_sentence(&out, "it is damaged (");
        assert_one_sentence(&out, "remove it to start afresh");
        let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
        assert_eq!(log, log_before, "the status log changed");
    }
}

#[test]
fn a_state_file_naming_a_missing_step_aborts_the_continued_job() {
    let job = paused_with_state(|t| t.replace("\"name\": \"b\"", "\"name\": \"nosuch\""));
    let out = run_args(
        &job,
        &["control.rhai", "-o", "results", "-t", "job", "--continue"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_one_sentence(&out, "Function not found: nosuch");
    let log = std::fs::read_to_string(job.path().join("results/job/status")).unwrap();
    assert_parses(&log);
    assert!(log.contains("\tEND GOOD\tt.a\tt.a\t"), "{log}");
    assert!(log.lines().last().unwrap().starts_with("END ABORT\t"));
}
