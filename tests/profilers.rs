//! Profilers: the call sequence a script profiler sees, the profiling folder layout, the
//! profile_only cases, the built-in vmstat and cmd profilers, and unknown profilers.

mod common;
use common::{alive, Job};

const TRACER: &str = r#"
let version = 1;
fn t(x) { append_file(job.resultdir + "/trace", x + "\n"); }
fn initialize(label) { this.label = label ?? "none"; this.calls = 0; t(`initialize ${this.label}`); }
fn setup() { t("setup"); }
fn start(test) {
    this.calls += 1;
    t(`start ${test.iteration} ${this.calls}`);
    write_file(test.profdir + "/tracer.txt", `it ${test.iteration}`);
}
fn stop(test) { t(`stop ${test.iteration}`); }
fn report(test) { t(`report ${test.iteration}`); }
"#;

const WORK: &str = r#"
fn run_once() { append_file(job.resultdir + "/trace", `run_once ${this.iteration}` + "\n"); }
fn postprocess_iteration() { append_file(job.resultdir + "/trace", `ppi ${this.iteration}` + "\n"); }
"#;

fn trace(run: &common::Run) -> Vec<String> {
    run.read("trace").lines().map(str::to_string).collect()
}

#[test]
fn a_script_profiler_sees_initialize_setup_once_and_one_profiled_run() {
    let job = Job::new(
        r#"
job.profilers.add("tracer", #{label: "x"});
job.run_test("work", #{iterations: 2});
job.profilers.delete("tracer");
job.run_test("work", #{tag: "after"});
"#,
    )
    .file("profilers/tracer/tracer.rhai", TRACER)
    .test("work", WORK);
    let run = job.run_tagged("one");
    assert_eq!(
        trace(&run),
        vec![
            "initialize x",
            "setup",
            "run_once 1",
            "ppi 1",
            "run_once 2",
            "ppi 2",
            "start 3 1",
            "run_once 3",
            "stop 3",
            "report 3",
            "run_once 1",
            "ppi 1",
        ]
    );
    // the profiler's files moved into iteration.3; nothing else was profiled
    assert_eq!(run.read("work/profiling/iteration.3/tracer.txt"), "it 3");
    let entries: Vec<_> = std::fs::read_dir(run.resultdir.join("work/profiling"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, vec!["iteration.3"]);
    assert_eq!(
        std::fs::read_dir(run.resultdir.join("work.after/profiling"))
            .unwrap()
            .count(),
        0
    );
    // setup runs once per version, across jobs
    let again = job.run_tagged("two");
    assert!(!trace(&again).contains(&"setup".to_string()));
}

#[test]
fn profile_only_profiles_every_iteration() {
    let run = Job::new(
        r#"
job.profilers.add("tracer");
job.run_test("work", #{iterations: 2, profile_only: true, postprocess_profiled_run: true});
"#,
    )
    .file("profilers/tracer/tracer.rhai", TRACER)
    .test("work", WORK)
    .finish();
    assert_eq!(
        trace(&run)[2..],
        [
            "start 1 1",
            "run_once 1",
            "ppi 1",
            "stop 1",
            "report 1",
            "ppi 1",
            "start 2 2",
            "run_once 2",
            "ppi 2",
            "stop 2",
            "report 2",
            "ppi 2",
        ]
    );
    assert_eq!(run.read("work/profiling/iteration.1/tracer.txt"), "it 1");
    assert_eq!(run.read("work/profiling/iteration.2/tracer.txt"), "it 2");
    assert!(!run.resultdir.join("work/profiling/iteration.3").exists());
}

#[test]
fn profile_only_without_profilers_warns_and_runs_nothing() {
    let run = Job::new(r#"job.run_test("work", #{iterations: 2, profile_only: true});"#)
        .test("work", WORK)
        .finish();
    assert_eq!(trace(&run), vec!["ppi 1", "ppi 2"]);
    let log = run.status();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("\t\tWARN\t----\t----\t"))
        .collect();
    assert_eq!(warns.len(), 2, "{}", run.status());
    assert!(warns[0]
        .ends_with("\tNo profilers have been added but profile_only is set - nothing will be run"));
    assert_eq!(run.result_of("work").0, "GOOD");
}

#[test]
fn vmstat_samples_for_the_length_of_the_run() {
    let run = Job::new(
        r#"
job.profilers.add("vmstat", #{interval: 0.1});
job.run_test("slow", #{iterations: 0});
"#,
    )
    .test("slow", "fn run_once() { sleep(0.55); }")
    .finish();
    let csv = run.read("slow/profiling/iteration.1/vmstat.csv");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("time,cpu_user,"));
    let rows: Vec<&str> = lines.collect();
    // one row at the start and one every 0.1 s of a 0.55 s run: 6, give or take a tick
    assert!((3..=9).contains(&rows.len()), "{csv}");
    let last: f64 = rows
        .last()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.4..0.9).contains(&last), "{csv}");
    assert!(rows.iter().all(|r| r.split(',').count() == 15));
}

#[test]
fn the_cmd_profiler_is_stopped_and_reports_an_early_exit() {
    let run = Job::new(
        r#"
job.profilers.add("cmd", #{command: "echo started; trap 'echo got SIGINT; exit 0' INT; sleep 100 & wait"});
job.run_test("t");
job.profilers.delete("cmd");
job.profilers.add("cmd", #{command: "echo quick"});
job.run_test("t", #{tag: "early"});
"#,
    )
    .test("t", "fn run_once() { sleep(0.3); }")
    .finish();
    let out = run.read("t/profiling/iteration.2/cmd.out");
    assert!(out.starts_with("started\n"), "{out}");
    assert!(out.contains("got SIGINT"), "{out}");
    let early = run.read("t.early/profiling/iteration.2/cmd.out");
    assert!(
        early.contains("quick\n[autorun] profiler cmd: its command ended before"),
        "{early}"
    );
}

#[test]
fn a_cmd_profiler_does_not_outlive_a_test_that_timed_out() {
    let run = Job::new(
        r#"
job.profilers.add("cmd", #{command: "echo $$ > " + job.resultdir + "/cmd.pid; exec sleep 100"});
job.run_test("hang", #{profile_only: true, timeout: 1});
"#,
    )
    .test("hang", "fn run_once() { sleep(30); }")
    .finish();
    assert_eq!(
        run.result_of("hang"),
        ("ERROR".into(), "Test timeout expired, rc=15".into())
    );
    let pid = run.read("cmd.pid");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!alive(&pid), "the cmd profiler outlived its test");
}

#[test]
fn unknown_profilers_abort_the_job() {
    let run = Job::new("job.profilers.add(\"nosuch\");\nprint(\"NEVER\");").finish();
    assert_eq!(run.code(), 2);
    assert!(run
        .status()
        .lines()
        .last()
        .unwrap()
        .ends_with("\tnosuch not present"));
    assert!(!run.stdout().contains("NEVER"));
    let run = Job::new(
        "try { job.profilers.add(\"cmd\"); } catch (e) { print(`CAUGHT ${e.status} ${e.message}`); }\n\
         print(`${job.profilers.present()} ${job.profilers.active()} ${job.profilers.current_profilers()}`);",
    )
    .finish();
    assert!(
        run.stdout()
            .contains("CAUGHT ABORT profiler cmd: needs a command"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("false false []"), "{}", run.stdout());
}

#[test]
fn perf_profiles_the_run_or_is_not_present() {
    let has_perf = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("perf").is_file()))
        .unwrap_or(false);
    let run = Job::new(
        "try { job.profilers.add(\"perf\"); } catch (e) { print(`CAUGHT ${e.message}`); }\n\
         job.run_test(\"t\");",
    )
    .test("t", "fn run_once() { sleep(0.1); }")
    .finish();
    if has_perf {
        let stat = run.read("t/profiling/iteration.2/perf.stat");
        assert!(stat.contains("Performance counter stats"), "{stat}");
    } else {
        assert!(
            run.stdout().contains("CAUGHT perf not present"),
            "{}",
            run.stdout()
        );
    }
}

#[test]
fn profiler_programs_die_with_a_test_that_exits_or_crashes() {
    for (tag, body) in [
        ("quits", "fn run_once() { sleep(0.3); exit(3); }"),
        (
            "crashes",
            "fn run_once() { sleep(0.3); run(\"kill -SEGV $PPID\"); sleep(5); }",
        ),
    ] {
        let run = Job::new(&format!(
            "job.profilers.add(\"cmd\", #{{command: \"sleep 78 & echo $! > \" + job.resultdir + \"/sleep.pid; wait\"}});\n\
             job.run_test(\"t\", #{{profile_only: true, tag: \"{tag}\"}});"
        ))
        .test("t", body)
        .finish();
        assert_eq!(run.result_of(&format!("t.{tag}")).0, "ERROR");
        let pid = run.read("sleep.pid");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !alive(&pid),
            "{tag}: the cmd profiler's child outlived the test"
        );
    }
}

#[test]
fn a_profiler_that_cannot_start_stops_the_others() {
    let run = Job::new(
        r#"
job.profilers.add("cmd", #{command: "sleep 77 & echo $! > " + job.resultdir + "/sleep.pid; wait"});
job.profilers.add("broken");
job.run_test("t", #{profile_only: true});
"#,
    )
    .file(
        "profilers/broken/broken.rhai",
        "fn start(test) { throw \"boom\"; }",
    )
    .test(
        "t",
        "fn run_once() {}\nfn cleanup() { write_file(\"active\", `${job.profilers.active()}`); }",
    )
    .finish();
    let (status, reason) = run.result_of("t");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("boom"), "{reason}");
    assert_eq!(run.read("t/active"), "false");
    // The cmd profiler may be stopped before its shell got to start the sleep.
    std::thread::sleep(std::time::Duration::from_millis(200));
    if let Ok(pid) = std::fs::read_to_string(run.resultdir.join("sleep.pid")) {
        assert!(!alive(&pid));
    }
}

#[test]
fn bad_profiler_arguments_are_job_errors() {
    let run = Job::new(
        r#"
for args in [#{interval: 1e20}, #{interval: 0}, #{bogus: 1}] {
    try { job.profilers.add("vmstat", args); } catch (e) { print(`CAUGHT ${e.message}`); }
}
try { job.profilers.add("bad"); } catch (e) { print(`CAUGHT ${e.message}`); }
"#,
    )
    .file("profilers/bad/bad.rhai", "fn start(test) { let x = ; }")
    .finish();
    let out = run.stdout();
    assert_eq!(
        out.matches("CAUGHT profiler vmstat: interval must be")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("CAUGHT profiler vmstat: unknown argument 'bogus'"),
        "{out}"
    );
    assert!(
        out.contains("CAUGHT profiler bad: Unhandled SyntaxError"),
        "{out}"
    );
}
