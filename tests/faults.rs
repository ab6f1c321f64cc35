//! Fault injection: a job whose tests crash, hang, recurse without end, print a gigabyte,
//! print bytes that are not UTF-8, or run out of disk. After each, the status log still
//! parses, says what happened, and the results written before the fault are intact.
//! Signals to the job, `--continue` after a SIGKILL and two autoruns on one folder are in
//! tests/interrupt.rs and tests/job_control.rs (docs/reliability.md lists them all).

mod common;
use common::{assert_parses, Job};

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A test that writes a keyval and passes: run first, its results must survive the fault.
const EARLIER: &str = "fn run_once() { this.write_perf_keyval(#{ throughput: 42 }); }";

/// The earlier test's record and keyval are whole.
fn assert_earlier_intact(run: &common::Run) {
    assert_eq!(run.result_of("earlier").0, "GOOD", "{}", run.status());
    assert_eq!(
        run.read("earlier/results/keyval"),
        "throughput{perf}=42\n\n",
        "the earlier test's keyval changed"
    );
    assert!(run.read("earlier/status").contains("\tEND GOOD\tearlier\t"));
}

#[test]
fn a_test_killed_by_sigkill_or_sigsegv_or_exiting_is_error_and_the_job_goes_on() {
    let run = Job::new(
        "job.run_test(\"earlier\");\n\
         job.run_test(\"killed\");\njob.run_test(\"segv\");\njob.run_test(\"stray_exit\");\n\
         job.run_test(\"after\");",
    )
    .test("earlier", EARLIER)
    // `$PPID` of the shell is the test process itself.
    .test(
        "killed",
        "fn run_once() { run(\"kill -KILL $PPID; sleep 5\"); }",
    )
    .test(
        "segv",
        "fn run_once() { run(\"kill -SEGV $PPID; sleep 5\"); }",
    )
    .test("stray_exit", "fn run_once() { exit(0); }")
    .test("after", "fn run_once() {}")
    .finish();
    let log = run.status();
    assert_parses(&log);
    let (s, m) = run.result_of("killed");
    assert_eq!(s, "ERROR");
    assert!(m.contains("SIGKILL"), "{m}");
    let (s, m) = run.result_of("segv");
    assert_eq!(s, "ERROR");
    assert!(m.contains("SIGSEGV"), "{m}");
    // exit(0) in the middle of a test is not a pass: the test never finished.
    assert_eq!(
        run.result_of("stray_exit"),
        ("ERROR".into(), "Test subprocess failed rc=0".into())
    );
    assert_eq!(run.result_of("after").0, "GOOD");
    assert_earlier_intact(&run);
    assert!(log.lines().last().unwrap().starts_with("END GOOD"), "{log}");
    assert_eq!(run.code(), 1);
}

#[test]
fn a_stray_exit_in_the_control_file_or_a_group_aborts_the_job_with_a_reason() {
    for (exit, shown) in [
        ("exit(3);", "exit(3)"),
        ("job.run_group(|| exit());", "exit()"),
    ] {
        let run = Job::new(&format!(
            "job.run_test(\"earlier\");\n{exit}\njob.run_test(\"never\");"
        ))
        .test("earlier", EARLIER)
        .test("never", "fn run_once() {}")
        .finish();
        // Not a quiet end with the remaining tests skipped and the job GOOD.
        assert_eq!(run.code(), 2, "{exit}: {}", run.status());
        let log = run.status();
        assert_parses(&log);
        let reason = format!("{shown} called outside a test; the job stops");
        assert!(
            log.lines().last().unwrap().starts_with("END ABORT\t")
                && log.trim_end().ends_with(&reason),
            "{log}"
        );
        assert!(run.stderr().contains(&reason));
        assert!(!log.contains("never"), "{log}");
        assert_earlier_intact(&run);
    }
}

#[test]
fn an_endless_rhai_loop_and_a_hung_command_are_stopped_by_timeout() {
    let job = Job::new(
        "job.run_test(\"earlier\");\n\
         job.run_test(\"spin\", #{timeout: 1});\njob.run_test(\"hang\", #{timeout: 1});",
    )
    .test("earlier", EARLIER)
    .test("spin", "fn run_once() { let n = 0; loop { n += 1; } }")
    .test("hang", "fn run_once() { run(\"sleep 60\"); }");
    let start = Instant::now();
    let run = job.run();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_parses(&run.status());
    for t in ["spin", "hang"] {
        assert_eq!(
            run.result_of(t),
            ("ERROR".into(), "Test timeout expired, rc=15".into())
        );
    }
    assert_earlier_intact(&run);
    assert_eq!(run.code(), 1);
}

#[test]
fn unbounded_recursion_is_a_clear_error_not_a_crash() {
    let run = Job::new("job.run_test(\"earlier\");\njob.run_test(\"deep\");\njob.run_test(\"deep_setup\");\nfn again(n) { again(n + 1) }\nagain(0);")
        .test("earlier", EARLIER)
        .test("deep", "fn f(n) { f(n + 1) }\nfn run_once() { f(0); }")
        .test(
            "deep_setup",
            "fn g(n) { [n].map(|x| g(x + 1)) }\nfn initialize() { g(0); }\nfn run_once() {}",
        )
        .finish();
    let log = run.status();
    assert_parses(&log);
    // An unhandled error in run_once is FAIL, in initialize ERROR (docs/script-api.md §5).
    let (s, m) = run.result_of("deep");
    assert_eq!(s, "FAIL");
    assert!(
        m.starts_with(
            "Unhandled StackOverflowError: functions called each other more than 128 levels deep"
        ),
        "{m}"
    );
    assert!(m.contains("deep.rhai"), "{m}");
    let (s, m) = run.result_of("deep_setup");
    assert_eq!(s, "ERROR");
    assert!(m.contains("StackOverflowError"), "{m}");
    assert_earlier_intact(&run);
    // In the control file it aborts the job, with the file and line.
    let last = log.lines().last().unwrap();
    assert!(last.starts_with("END ABORT\t"), "{log}");
    assert!(last.contains("StackOverflowError"), "{last}");
    assert!(last.contains("control.rhai:5:"), "{last}");
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("unbounded recursion?"),
        "{}",
        run.stderr()
    );
}

#[test]
fn sigterm_during_a_parallel_section() {
    let (job, log) = common::interrupt_parallel_section(
        "job.run_test(\"earlier\");\n",
        |j| j.test("earlier", EARLIER),
        libc::SIGTERM,
    );
    assert!(log
        .lines()
        .last()
        .unwrap()
        .ends_with("\tinterrupted by SIGTERM"));
    assert_eq!(
        std::fs::read_to_string(job.path().join("results/job/earlier/results/keyval")).unwrap(),
        "throughput{perf}=42\n\n"
    );
}

/// Peak memory of the test process, as the test itself reads it from /proc.
const PRINT_PEAK: &str = "let st = read_file(\"/proc/self/status\");\n\
    for l in st.split(\"\\n\") { if l.starts_with(\"VmHWM:\") { print(`PEAK ${l}`); } }";

fn peak_kib(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("PEAK VmHWM:"))
        .unwrap_or_else(|| panic!("no PEAK line in {stdout}"));
    line.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_gigabyte_of_output_keeps_memory_bounded_and_goes_to_the_debug_log() {
    let run = Job::new("job.run_test(\"earlier\");\njob.run_test(\"flood\");")
        .test("earlier", EARLIER)
        .test(
            "flood",
            &format!(
                "fn run_once() {{\n\
                 let r = run(\"head -c 1073741824 /dev/zero; echo; echo done >&2\");\n\
                 print(`KEPT ${{r.stdout.len()}} ERR ${{r.stderr}}`);\n\
                 if r.stdout.contains(\"[output truncated: \") {{ print(\"NOTED\"); }}\n\
                 {PRINT_PEAK}\n}}"
            ),
        )
        .finish();
    let out = run.stdout();
    assert_eq!(run.result_of("flood").0, "GOOD", "{}", run.status());
    // 16 MiB kept for the script, and a note saying where the rest is.
    assert!(out.contains("NOTED"), "{}", &out[..out.len().min(2000)]);
    assert!(out.contains("ERR done"));
    let kept: usize = out
        .split("KEPT ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(kept < 17 << 20, "{kept}");
    let peak = peak_kib(&out);
    assert!(peak < 400 << 10, "the test process peaked at {peak} KiB");
    // All of it is on disk, in the test's debug log.
    let debug = std::fs::metadata(run.resultdir.join("flood/debug/flood.DEBUG"))
        .unwrap()
        .len();
    assert!(debug > 1 << 30, "{debug}");
    assert_parses(&run.status());
    assert_earlier_intact(&run);
}

#[test]
fn output_that_is_not_utf8_is_kept_with_replacement_characters() {
    let run = Job::new("job.run_test(\"earlier\");\njob.run_test(\"bytes\");")
        .test("earlier", EARLIER)
        .test(
            "bytes",
            "fn run_once() {\n\
             let r = run(\"printf 'a\\\\377\\\\376b\\\\n'; printf '\\\\300err\\\\n' >&2\");\n\
             let out = r.stdout; out.trim(); let err = r.stderr; err.trim();\n\
             this.write_test_keyval(#{ out: out, err: err });\n\
             test_warn(out);\n}",
        )
        .finish();
    assert_parses(&run.status());
    let (s, m) = run.result_of("bytes");
    assert_eq!(s, "WARN");
    assert_eq!(m, "a\u{FFFD}\u{FFFD}b");
    let kv = run.read("bytes/keyval");
    assert!(kv.contains("out=a\u{FFFD}\u{FFFD}b\n"), "{kv}");
    assert!(kv.contains("err=\u{FFFD}err\n"), "{kv}");
    let debug = std::fs::read(run.resultdir.join("bytes/debug/bytes.DEBUG")).unwrap();
    assert!(
        String::from_utf8(debug).is_ok(),
        "the debug log is not UTF-8"
    );
    assert_earlier_intact(&run);
}

/// A job whose files may grow only to `limit` bytes each (RLIMIT_FSIZE, SIGXFSZ ignored):
/// a write past it fails with EFBIG, as a write to a full disk fails with ENOSPC.
fn run_with_file_size_limit(job: &Job, limit: u64) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_autorun"));
    cmd.current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_CONFIG_HOME", job.path().join("config"))
        .args(["control.rhai", "-o", "results", "-t", "job"]);
    // SAFETY: setrlimit and signal are async-signal-safe; they run in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The subdirs of the tests the log closed with an END line.
fn finished_tests(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(autorun::status_log::parse_line)
        .filter(|l| l.code.starts_with("END ") && l.indent == 1)
        .filter_map(|l| l.subdir)
        .collect()
}

/// Checks a job that stopped because a result file could not be written.
fn assert_stopped_on_a_write_error(results: &Path, out: &std::process::Output, errno_text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write the status log") && stderr.contains(errno_text),
        "{stderr}"
    );
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    // Whole lines only, each one parsing, the earlier test's among them.
    assert!(log.ends_with('\n'), "{log:?}");
    assert_parses(&log);
    assert!(log.contains("\t\tGOOD\tearlier\tearlier\t"), "{log}");
    assert_eq!(
        std::fs::read_to_string(results.join("earlier/results/keyval")).unwrap(),
        "throughput{perf}=42\n\n"
    );
    for t in finished_tests(&log) {
        let own = std::fs::read_to_string(results.join(&t).join("status")).unwrap();
        assert!(own.ends_with('\n'), "{t}: {own:?}");
        assert_parses(&own);
    }
}

#[test]
fn a_file_size_limit_stops_the_job_with_a_clear_message_and_keeps_what_was_written() {
    // Each test adds about 300 bytes to the status log; 24 KiB is reached within 200 tests.
    let job = Job::new(
        "job.run_test(\"earlier\");\nfor i in 0..200 { job.run_test(\"ok\", #{tag: `n${i}`}); }",
    )
    .test("earlier", EARLIER)
    .test("ok", "fn run_once() {}");
    let out = run_with_file_size_limit(&job, 24 << 10);
    let results = job.path().join("results/job");
    assert_stopped_on_a_write_error(&results, &out, "File too large");
    // The log stopped short of the limit, and no later test ran after the failed write.
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert!(log.len() <= 24 << 10);
    assert!(!log.contains("ok.n199"), "the job did not stop");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_stops_the_job_with_a_clear_message_and_keeps_what_was_written() {
    let job = Job::new(
        "job.run_test(\"earlier\");\njob.run_test(\"filler\");\n\
         for i in 0..500 { job.run_test(\"ok\", #{tag: `n${i}`}); }",
    )
    .test("earlier", EARLIER)
    // Takes all the space there is but a few KiB, then lets the job go on.
    .test(
        "filler",
        "fn run_once() { let s = \"x\"; while s.len() < 65536 { s += s; }\n\
         let i = 0; loop { try { append_file(\"fill\", s); } catch { break; } i += 1; } }",
    )
    .test("ok", "fn run_once() {}");
    // Needs root (or CAP_SYS_ADMIN); where mounting is not allowed, the file size limit
    // test above covers the same code paths with EFBIG.
    let Some(fs) = Tmpfs::mount(&job.path().join("results"), "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let mut cmd = assert_cmd::Command::cargo_bin("autorun").unwrap();
    let out = cmd
        .current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_CONFIG_HOME", job.path().join("config"))
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let results = fs.0.join("job");
    assert_stopped_on_a_write_error(&results, &out, "No space left on device");
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert!(!log.contains("ok.n499"), "the job did not stop");
    // `autorun show` reads what is there.
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_autorun"))
        .arg("show")
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("earlier"),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
}
