//! Executable tests (docs/executable-tests.md): a program `tests/NAME/NAME` run through
//! the real binary, with its parameters, keyvals, failures and timeouts.

mod common;
use std::os::unix::fs::PermissionsExt;

use common::Job;

/// Adds the executable test `tests/NAME/NAME` (mode 755) with `source` as its text.
fn exe(job: Job, name: &str, source: &str) -> Job {
    let rel = format!("tests/{name}/{name}");
    let job = job.file(&rel, source);
    let path = job.path().join(&rel);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    job
}

#[test]
fn perf_lines_become_keyvals_of_each_iteration() {
    let job = exe(
        Job::new(r#"job.run_test("disk", #{ iterations: 2 });"#),
        "disk",
        "#!/bin/sh\n\
         echo \"measuring in $PWD\"\n\
         echo \"# a comment\" >> \"$AUTORUN_RESULTSDIR/perf\"\n\
         echo \"throughput=$((AUTORUN_ITERATION * 10)).50\" >> \"$AUTORUN_RESULTSDIR/perf\"\n\
         echo \"device=sda\" > \"$AUTORUN_RESULTSDIR/attr\"\n",
    );
    let run = job.finish();
    assert_eq!(run.code(), 0, "{}", run.status());
    assert_eq!(
        run.result_of("disk"),
        ("GOOD".into(), "completed successfully".into())
    );
    // One record per iteration, values as the program wrote them.
    assert_eq!(
        run.read("disk/results/keyval"),
        "device{attr}=sda\nthroughput{perf}=10.50\n\n\
         device{attr}=sda\nthroughput{perf}=20.50\n\n"
    );
    // Consumed: nothing left over for the next iteration or in the results.
    assert!(!run.resultdir.join("disk/results/perf").exists());
    // The program's output is in the test's debug log, and it ran in the output folder.
    let debug = run.read("disk/debug/disk.DEBUG");
    let out = format!(
        "[stdout] measuring in {}",
        run.resultdir.join("disk").display()
    );
    assert!(debug.contains(&out), "{debug}");
    // `autorun show` reads them as any test's perf keyvals.
    let show = assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .args(["show", run.resultdir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("throughput"), "{text}");
}

#[test]
fn a_failing_program_fails_with_its_exit_code_and_last_stderr_line() {
    let job = exe(
        Job::new(r#"print(job.run_test_detail("slow"));"#),
        "slow",
        "#!/bin/sh\n\
         echo checking >&2\n\
         echo 'disk too slow' >&2\n\
         echo \"throughput=3\" > \"$AUTORUN_RESULTSDIR/perf\"\n\
         exit 3\n",
    );
    let run = job.finish();
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.result_of("slow"),
        ("FAIL".into(), "exit status 3: disk too slow".into())
    );
    assert!(run.status().contains("\tEND FAIL\tslow\tslow\t"));
    assert!(run.stdout().contains("FAIL"));
    // The failed iteration's numbers are kept.
    assert_eq!(run.read("slow/results/keyval"), "throughput{perf}=3\n\n");
    // A program killed by a signal names it.
    let job = exe(
        Job::new(r#"job.run_test("crash");"#),
        "crash",
        "#!/bin/sh\nkill -SEGV $$\n",
    );
    let run = job.finish();
    assert_eq!(
        run.result_of("crash"),
        ("FAIL".into(), "killed by SIGSEGV (signal 11)".into())
    );
}

#[test]
fn parameters_reach_the_program_as_environment_variables() {
    let job = exe(
        Job::new(
            r#"job.run_test("envtest", #{
                size: 4096, ratio: 1.5, verbose: true, label: "a b", sizes: [1, 2],
                tag: "x", iterations: 1,
            });"#,
        ),
        "envtest",
        "#!/bin/sh\nenv | grep '^AUTORUN_' | sort > env.txt\n",
    )
    .file("tests/envtest/data.txt", "");
    let run = job.finish();
    assert_eq!(run.code(), 0, "{}", run.status());
    let env = run.read("envtest.x/env.txt");
    let root = run.resultdir.join("envtest.x");
    for line in [
        "AUTORUN_PARAM_SIZE=4096".to_string(),
        "AUTORUN_PARAM_RATIO=1.5".to_string(),
        "AUTORUN_PARAM_VERBOSE=true".to_string(),
        "AUTORUN_PARAM_LABEL=a b".to_string(),
        "AUTORUN_PARAM_SIZES=[1,2]".to_string(),
        "AUTORUN_ITERATION=1".to_string(),
        "AUTORUN_TEST=envtest".to_string(),
        "AUTORUN_TAGGED_TESTNAME=envtest.x".to_string(),
        format!("AUTORUN_OUTPUTDIR={}", root.display()),
        format!("AUTORUN_RESULTSDIR={}", root.join("results").display()),
        format!("AUTORUN_DEBUGDIR={}", root.join("debug").display()),
        format!("AUTORUN_PROFDIR={}", root.join("profiling").display()),
        format!(
            "AUTORUN_BINDIR={}",
            run.resultdir
                .join("../../tests/envtest")
                .canonicalize()
                .unwrap()
                .display()
        ),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in\n{env}");
    }
    // Job and harness arguments are not parameters.
    assert!(
        !env.contains("AUTORUN_PARAM_TAG") && !env.contains("ITERATIONS"),
        "{env}"
    );
    let tmp = env
        .lines()
        .find_map(|l| l.strip_prefix("AUTORUN_TMPDIR="))
        .unwrap();
    assert!(tmp.ends_with("_envtest.x"), "{tmp}");
    // The parameters are recorded as any test's.
    let kv = run.read("envtest.x/keyval");
    assert!(
        kv.contains("param-size=4096\n") && kv.contains("param-label='a b'\n"),
        "{kv}"
    );
}

#[test]
fn a_timeout_kills_a_hung_program() {
    let job = exe(
        Job::new(r#"job.run_test("hang", #{ timeout: 1 }); job.run_test("after");"#),
        "hang",
        "#!/bin/sh\necho $$ > pid\nsleep 60\n",
    );
    let job = exe(job, "after", "#!/bin/sh\nexit 0\n");
    let started = std::time::Instant::now();
    let run = job.finish();
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    let (status, msg) = run.result_of("hang");
    assert_eq!(status, "ERROR");
    assert!(msg.starts_with("Test timeout expired"), "{msg}");
    let pid = run.read("hang/pid");
    assert!(!common::alive(&pid), "the hung program {pid} still runs");
    // The job goes on.
    assert_eq!(run.result_of("after").0, "GOOD");
}

#[test]
fn iterations_constraints_and_timed_runs_apply() {
    let job = exe(
        Job::new(
            r#"job.run_test("kv", #{ iterations: 3, constraints: ["throughput < 25"] });
               job.run_test("kv", #{ test_length: 0.3, tag: "timed" });"#,
        ),
        "kv",
        "#!/bin/sh\necho \"throughput=$((AUTORUN_ITERATION * 10))\" > \"$AUTORUN_RESULTSDIR/perf\"\n",
    );
    let run = job.finish();
    // Constraints see the values as numbers: the third iteration (30) misses.
    assert_eq!(
        run.result_of("kv"),
        (
            "FAIL".into(),
            "iteration 2:throughput < 25: constraint was not met  ".into()
        )
    );
    assert_eq!(
        run.read("kv/results/keyval"),
        "throughput{perf}=10\n\nthroughput{perf}=20\n\nthroughput{perf}=30\n\n"
    );
    // A timed run repeats the program until the time is up (iteration stays 0).
    assert_eq!(run.result_of("kv.timed").0, "GOOD");
    let timed = run.read("kv.timed/results/keyval");
    assert!(
        timed.matches("throughput{perf}=0\n").count() >= 2,
        "{timed}"
    );
}

#[test]
fn bad_perf_lines_and_programs_that_cannot_run_are_errors() {
    let job = exe(
        Job::new(r#"job.run_test("badperf"); job.run_test("nointerp"); job.run_test("notexec");"#),
        "badperf",
        "#!/bin/sh\nprintf 'ok=1\\nthroughput 12\\n' > \"$AUTORUN_RESULTSDIR/perf\"\n",
    );
    let job = exe(job, "nointerp", "#!/no/such/interpreter\n")
        .file("tests/notexec/notexec", "#!/bin/sh\n");
    let run = job.finish();
    assert_eq!(run.code(), 1);
    let (status, msg) = run.result_of("badperf");
    assert_eq!(status, "ERROR");
    assert!(
        msg.ends_with("badperf/results/perf line 2: \"throughput 12\" is not name=value"),
        "{msg}"
    );
    // Nothing of the bad file was written.
    assert!(!run.resultdir.join("badperf/results/keyval").exists());
    let (status, msg) = run.result_of("nointerp");
    assert_eq!(status, "ERROR");
    assert!(
        msg.starts_with("cannot run ") && msg.contains("nointerp: No such file or directory"),
        "{msg}"
    );
    let (status, msg) = run.result_of("notexec");
    assert_eq!(status, "ERROR");
    assert!(
        msg.contains("notexec is not executable; chmod +x it"),
        "{msg}"
    );
}

#[test]
fn a_profiled_run_and_sysinfo_wrap_the_program() {
    let job = exe(
        Job::new(
            r#"job.profilers.add("cmd", #{ command: "echo profiling; sleep 5" });
               job.run_test("prof", #{ iterations: 1 });"#,
        ),
        "prof",
        // In the profiled run, wait (up to 5 s) until the profiler has printed, so that a
        // loaded machine cannot stop it before its first line.
        "#!/bin/sh\necho \"it=$AUTORUN_ITERATION\" >> \"$AUTORUN_OUTPUTDIR/iterations\"\n\
         if [ \"$AUTORUN_ITERATION\" = 2 ]; then\n\
         for i in $(seq 100); do [ -s \"$AUTORUN_PROFDIR/cmd.out\" ] && break; sleep 0.05; done\n\
         fi\n",
    );
    let run = job.finish();
    assert_eq!(run.code(), 0, "{}", run.status());
    // Iteration 1, then the profiled run as iteration 2 with the profiler around it.
    assert_eq!(run.read("prof/iterations"), "it=1\nit=2\n");
    assert!(run
        .read("prof/profiling/iteration.2/cmd.out")
        .contains("profiling"));
    assert!(run.resultdir.join("prof/sysinfo").is_dir());
}

#[test]
fn ctrl_c_stops_the_program_and_aborts_the_job() {
    let job = exe(
        Job::new(r#"job.run_test("hang"); job.run_test("hang", #{ tag: "never" });"#),
        "hang",
        "#!/bin/sh\necho $$ > pid\nsleep 60\n",
    );
    let child = job.spawn();
    common::wait_for(&job, "hang/pid");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let started = std::time::Instant::now();
    common::signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed().as_secs() < 10);
    let results = job.path().join("results/job");
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert!(log.contains("\tEND ABORT\thang\thang\t"), "{log}");
    assert!(!log.contains("never"), "{log}");
    common::assert_ends_interrupted(&log);
    let pid = std::fs::read_to_string(results.join("hang/pid")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!common::alive(&pid), "the program outlived the interrupt");
}
