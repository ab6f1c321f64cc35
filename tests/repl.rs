//! `autorun repl`: piped sessions (scripted, no terminal) and a terminal session driven
//! under a pseudo-terminal.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_ends_interrupted, assert_parses, Job};

const HELLO: &str = "fn run_once(n) { this.write_perf_keyval(#{ n: n ?? 1 }); }";
const FAILS: &str = r#"fn run_once() { test_fail("not today"); }"#;

/// `autorun repl ARGS` in the job's folder, with the given stdin; output captured.
fn repl(job: &Job, args: &[&str], input: &str) -> std::process::Output {
    assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_CONFIG_HOME", job.path().join("config"))
        .env("XDG_STATE_HOME", job.path().join("state"))
        .arg("repl")
        .args(args)
        .write_stdin(input)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn piped_session_runs_tests_keeps_definitions_and_survives_errors() {
    let job = Job::new("").test("hello", HELLO).test("grp:other", HELLO);
    let input = r#"
job.run_test("hello", #{n: 3})
:status
fn twice(x) {
    x * 2
}
twice(21)
nosuch + 1
let y = twice(2);
y + 1
:fns
:tests
job.tag
"#;
    let out = repl(&job, &["--results", "results/explore"], input);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // No prompt and no escape codes without a terminal.
    assert!(!stdout.contains("autorun>"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert!(stdout.contains("=> true\n"), "{stdout}");
    // :status: the test that ran, readable.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("hello") && l.contains("GOOD")),
        "{stdout}"
    );
    assert!(stdout.contains("=> 42\n"), "{stdout}");
    // The error is reported with its place, and later entries still run.
    assert!(
        stderr.contains("error at 1:1: VariableNotFoundError: Variable not found: nosuch"),
        "{stderr}"
    );
    assert!(stdout.contains("=> 5\n"), "{stdout}");
    assert!(stdout.contains("fn twice(x)\n"), "{stdout}");
    assert!(stdout.contains("grp:other\nhello\n"), "{stdout}");
    assert!(stdout.contains("=> \"explore\"\n"), "{stdout}");
    // `let` and definitions print nothing.
    assert_eq!(stdout.matches("=> ").count(), 4, "{stdout}");

    // The job folder is complete, as at the end of a control file's job.
    let dir = job.path().join("results/explore");
    let status = read(&dir, "status");
    assert_parses(&status);
    assert!(status.starts_with("START\t----\t----\t"), "{status}");
    assert!(status.contains("\tEND GOOD\thello\thello\t"), "{status}");
    assert!(
        status
            .lines()
            .last()
            .unwrap()
            .starts_with("END GOOD\t----\t----\t"),
        "{status}"
    );
    assert!(read(&dir, "keyval").contains("job_finished="));
    assert!(read(&dir, "hello/results/keyval").contains("n{perf}=3"));
    for f in ["results.json", "junit.xml", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value = serde_json::from_str(&read(&dir, "results.json")).unwrap();
    assert_eq!(json["tests"][0]["status"], "GOOD", "{json}");
    // `control` holds the entries that compiled, so the folder says what ran.
    let control = read(&dir, "control");
    assert!(
        control.contains("fn twice(x) {\n    x * 2\n}\n"),
        "{control}"
    );
    assert!(!control.contains(":status"), "{control}");
    assert!(stdout.contains("1 test: 1 GOOD"), "{stdout}");
}

#[test]
fn piped_session_exit_code_is_the_jobs() {
    let job = Job::new("").test("fails", FAILS);
    let out = repl(
        &job,
        &[],
        "job.run_test_detail(\"fails\")\njob_error(\"nope\")\n1 +\n",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // A test ended FAIL: exit 1, as a job's. The job error is reported, not fatal.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("=> \"FAIL\"\n"), "{stdout}");
    assert!(stderr.contains("error at 1:1: ABORT: nope"), "{stderr}");
    // An entry left open at the end of the input shows its error.
    assert!(
        stderr.contains("syntax error at 1:4: Script is incomplete"),
        "{stderr}"
    );
    // Without --results: a new job folder in ./results, and `latest` points at it.
    let latest = job.path().join("results/latest");
    let status = read(&latest, "status");
    assert_parses(&status);
    assert!(status.contains("\tEND FAIL\tfails\tfails\t"), "{status}");
    assert!(status.lines().last().unwrap().starts_with("END GOOD"));
}

#[test]
fn results_folder_must_be_new_or_empty() {
    let job = Job::new("").file("results/used/keep", "x");
    let out = repl(&job, &["--results", "results/used"], "");
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already exists and is not empty"),
        "{stderr}"
    );
    assert_eq!(read(&job.path().join("results/used"), "keep"), "x");
    // An empty one is used.
    std::fs::create_dir_all(job.path().join("results/empty")).unwrap();
    let out = repl(&job, &["--results", "results/empty"], "1 + 1\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("=> 2\n"));
}

#[test]
fn sigint_ends_a_piped_session_as_it_ends_a_job() {
    let job = Job::new("").test("hello", HELLO);
    let mut child = Command::new(env!("CARGO_BIN_EXE_autorun"))
        .current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_STATE_HOME", job.path().join("state"))
        .args(["repl", "--results", "results/job"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "job.run_test(\"hello\")").unwrap();
    common::wait_for(&job, "hello/status");
    // The input stays open: the session waits for more when the signal comes.
    std::thread::sleep(Duration::from_millis(200));
    common::signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let status = read(&job.path().join("results/job"), "status");
    assert_parses(&status);
    assert!(status.contains("\tEND GOOD\thello\thello\t"), "{status}");
    assert_ends_interrupted(&status);
}

/// A REPL on a pseudo-terminal, its history in `state`.
fn terminal(job: &Job, folder: &str) -> expectrl::session::OsSession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorun"));
    cmd.current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_STATE_HOME", job.path().join("state"))
        .env("TERM", "xterm")
        .args(["repl", "--results", folder]);
    let mut s = expectrl::Session::spawn(cmd).unwrap();
    s.set_expect_timeout(Some(Duration::from_secs(30)));
    s
}

fn ends_cleanly(mut s: expectrl::session::OsSession) {
    use expectrl::Expect;
    // Ctrl-D ends the job.
    s.send(expectrl::ControlCode::EndOfTransmission).unwrap();
    s.expect("Results are in").unwrap();
    s.expect(expectrl::Eof).unwrap();
    let status = s.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[test]
fn terminal_session_completes_and_remembers_history() {
    use expectrl::Expect;
    let job = Job::new("")
        .test("hello", HELLO)
        .test("sleepy", "fn run_once() { sleep(30); }");
    let mut s = terminal(&job, "results/one");
    s.expect("autorun> ").unwrap();
    // Tab completes test names inside run_test(".
    s.send("job.run_test(\"hel\t").unwrap();
    s.expect("hello").unwrap();
    s.send("\")\r").unwrap();
    s.expect("=> true").unwrap();
    // An unfinished entry waits for more lines.
    s.expect("autorun> ").unwrap();
    s.send("fn f() {\r").unwrap();
    s.send("40 + 2 }\r").unwrap();
    s.expect("autorun> ").unwrap();
    s.send("f()\r").unwrap();
    s.expect("=> 42").unwrap();
    s.expect("autorun> ").unwrap();
    // Ctrl-C clears the line; the session goes on.
    s.send("this is not sent").unwrap();
    s.send(expectrl::ControlCode::EndOfText).unwrap();
    s.expect("autorun> ").unwrap();
    // Ctrl-C while an entry runs stops the entry (and the test it runs), not the job.
    s.send("job.run_test(\"sleepy\")\r").unwrap();
    s.expect(expectrl::Regex(r"START\s+sleepy")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.send(expectrl::ControlCode::EndOfText).unwrap();
    s.expect("interrupted: the entry stopped (the job goes on)")
        .unwrap();
    s.expect("autorun> ").unwrap();
    s.send("1 + 1\r").unwrap();
    s.expect("=> 2").unwrap();
    s.expect("autorun> ").unwrap();
    // Tab completes `job.` methods: `job.ta` has one completion, `job.tag`.
    s.send("job.ta\t").unwrap();
    s.expect("job.tag").unwrap();
    s.send("\r").unwrap();
    s.expect("=> \"one\"").unwrap();
    s.expect("autorun> ").unwrap();
    ends_cleanly(s);
    let history = read(&job.path().join("state/autorun"), "history");
    assert!(history.contains("job.tag"), "{history}");
    assert!(!history.contains("this is not sent"), "{history}");
    let status = read(&job.path().join("results/one"), "status");
    assert_parses(&status);
    assert!(status.contains("\tEND ABORT\tsleepy\tsleepy\t"), "{status}");
    assert!(
        status.lines().last().unwrap().starts_with("END GOOD"),
        "{status}"
    );

    // A second session finds the first one's last entry, `job.tag`, with the up arrow,
    // and runs it in its own job.
    let mut s = terminal(&job, "results/two");
    s.expect("autorun> ").unwrap();
    s.send("\x1b[A").unwrap();
    s.send("\r").unwrap();
    s.expect("=> \"two\"").unwrap();
    s.expect("autorun> ").unwrap();
    ends_cleanly(s);
}
