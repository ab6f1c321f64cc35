//! Reading job folders back: `results(dir)` in scripts, `autorun show` and
//! `autorun compare`.

mod common;
use common::Job;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// Runs four tests (GOOD with perf keyvals over 3 iterations, FAIL, ERROR, TEST_NA) when
/// its tag is `job`; with tag `reader` it reads the folder of `job` instead.
const CONTROL: &str = r#"
if job.tag == "reader" {
    let r = results(job.resultdir + "/../job");
    write_file(job.resultdir + "/view.json", r.to_json());
} else {
    job.run_test("perf", #{iterations: 3});
    job.run_test("failing");
    job.run_test("erroring", #{tag: "e"});
    job.run_test("na");
    // The job reading its own folder: it has not ended yet.
    write_file(job.resultdir + "/self.json", results(job.resultdir).to_json());
    let caught = "";
    try { results(job.resultdir + "/nowhere"); } catch (e) { caught = `${e.kind}: ${e.message}`; }
    write_file(job.resultdir + "/caught.txt", caught);
}
"#;

const PERF: &str = r#"let version = 2;
fn run_once() {
    this.write_iteration_keyval(#{ round: `r${this.iteration}` },
                                #{ throughput: 10 * this.iteration, latency_ms: 1.5 });
}
fn postprocess() { this.write_test_keyval(#{ final: "yes" }); }"#;

fn four_tests() -> Job {
    Job::new(CONTROL)
        .test("perf", PERF)
        .test(
            "failing",
            "fn run_once() { test_fail(\"it broke\\nsecond line\"); }",
        )
        .test("erroring", "fn run_once() { test_error(\"no disk\"); }")
        .test("na", "fn run_once() { test_na(\"not on this machine\"); }")
}

fn json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn autorun(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("autorun")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn results_of_a_job_for_scripts() {
    let job = four_tests();
    let run = job.run();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let reader = job.run_tagged("reader");
    assert_eq!(reader.code(), 0, "{}", reader.stderr());

    let v = json(&reader.resultdir.join("view.json"));
    assert_eq!(v["status"], "GOOD");
    let tests = v["tests"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str)> = tests
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["subdir"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
                t["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("perf", "perf", "GOOD", "completed successfully"),
            ("failing", "failing", "FAIL", "it broke"),
            ("erroring.e", "erroring.e", "ERROR", "no disk"),
            ("na", "na", "TEST_NA", "not on this machine"),
        ]
    );
    let perf = &tests[0];
    assert_eq!(perf["keyval"]["version"], 2);
    assert_eq!(perf["keyval"]["final"], "yes");
    assert_eq!(perf["keyval"]["param-iterations"], 3);
    let its = perf["iterations"].as_array().unwrap();
    assert_eq!(its.len(), 3, "{its:?}");
    for (i, it) in its.iter().enumerate() {
        let n = i as f64 + 1.0;
        assert_eq!(it["attr"]["round"], format!("r{}", i + 1));
        assert_eq!(it["perf"]["throughput"], 10.0 * n);
        assert_eq!(it["perf"]["latency_ms"], 1.5);
    }
    assert!(perf["duration"].is_i64());
    assert_eq!(tests[1]["iterations"].as_array().unwrap().len(), 0);

    // Read by the job itself, before its END line: RUNNING, with the tests so far.
    let own = json(&run.resultdir.join("self.json"));
    assert_eq!(own["status"], "RUNNING");
    assert_eq!(own["tests"].as_array().unwrap().len(), 4);
    assert_eq!(own["finished"], Value::Null);

    let caught = run.read("caught.txt");
    assert!(
        caught.starts_with("IOError: cannot read job folder ")
            && caught.ends_with("/nowhere: no such folder"),
        "{caught}"
    );
}

#[test]
fn show_a_finished_job() {
    let run = four_tests().finish();
    let out = autorun(&["show", run.resultdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["TEST", "STATUS", "TIME", "REASON"], "{text}");
    let row = |name: &str| -> Vec<&str> {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in\n{text}"));
        l.split_whitespace().collect()
    };
    assert_eq!(row("perf")[1], "GOOD");
    assert_eq!(row("perf")[3..], ["completed", "successfully"]);
    assert!(row("perf")[2].ends_with('s'), "{text}");
    assert_eq!(row("failing")[1..2], ["FAIL"]);
    assert_eq!(row("failing")[3..], ["it", "broke"]);
    assert_eq!(row("erroring.e")[1], "ERROR");
    assert_eq!(row("na")[1], "TEST_NA");
    // The perf means under the test: throughput 10, 20, 30.
    let perf_at = lines.iter().position(|l| l.starts_with("perf ")).unwrap();
    let means: Vec<Vec<&str>> = lines[perf_at + 1..perf_at + 3]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        means,
        [
            ["latency_ms", "1.5", "(n=3)"],
            ["throughput", "20", "(n=3)"]
        ]
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("4 tests: 1 GOOD, 1 FAIL, 1 ERROR, 1 TEST_NA. Job GOOD, ")
            && last.ends_with(" in total."),
        "{text}"
    );
}

/// Writes `status` and per-test files into `dir` (paths relative to it).
fn write_job(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn show_an_interrupted_job() {
    let dir = tempfile::tempdir().unwrap();
    // Killed while `slow` ran inside the group `grp`: no END lines for either, nor the job.
    let status = "START\t----\t----\ttimestamp=1000\tlocaltime=Jan 01 00:16:40\t
\tSTART\tquick\tquick\ttimestamp=1000\tlocaltime=Jan 01 00:16:40\t
\t\tGOOD\tquick\tquick\ttimestamp=1002\tlocaltime=Jan 01 00:16:42\tcompleted successfully
\tEND GOOD\tquick\tquick\ttimestamp=1002\tlocaltime=Jan 01 00:16:42\t
\tSTART\t----\tgrp\ttimestamp=1002\tlocaltime=Jan 01 00:16:42\t
\t\tSTART\tslow\tslow\ttimestamp=1003\tlocaltime=Jan 01 00:16:43\t
";
    write_job(
        dir.path(),
        &[
            ("status", status),
            ("quick/status", ""),
            ("quick/results/keyval", "ops{perf}=4\n\nops{perf}=6\n\n"),
            ("slow/results/keyval", "ops{perf}=1\n\n"),
        ],
    );
    let out = autorun(&["show", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .take(6)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["TEST", "STATUS", "TIME", "REASON"],
            vec!["quick", "GOOD", "2s", "completed", "successfully"],
            vec!["ops", "5", "(n=2)"],
            vec!["grp", "(group)", "RUNNING", "-"],
            vec!["slow", "RUNNING", "-"],
            vec!["ops", "1", "(n=1)"],
        ],
        "{text}"
    );
    assert!(
        text.ends_with(
            "2 tests: 1 GOOD, 1 RUNNING. Job RUNNING (no END line: interrupted or still running), 3s so far.\n"
        ),
        "{text}"
    );
}

#[test]
fn show_and_compare_refuse_what_is_not_a_job_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = autorun(&["show", d]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr(&out),
        format!("autorun: {d} is not a job folder: it holds no status log\n")
    );
    let missing = format!("{d}/nowhere");
    let out = autorun(&["compare", d, &missing]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stdout(&out).is_empty());
    let out = autorun(&["show", &missing]);
    assert_eq!(
        stderr(&out),
        format!("autorun: cannot read job folder {missing}: no such folder\n")
    );
}

/// A finished job of one test, `bench`, whose iterations hold `perf` (one map each), plus
/// a test that only this job ran.
fn bench_job(dir: &Path, only: &str, perf: &[&[(&str, f64)]]) {
    let mut status = String::from("START\t----\t----\ttimestamp=500\tlocaltime=x\t\n");
    for t in ["bench", only] {
        status.push_str(&format!(
            "\tSTART\t{t}\t{t}\ttimestamp=500\tlocaltime=x\t\n\t\tGOOD\t{t}\t{t}\ttimestamp=510\tlocaltime=x\tcompleted successfully\n\tEND GOOD\t{t}\t{t}\ttimestamp=510\tlocaltime=x\t\n"
        ));
    }
    status.push_str("END GOOD\t----\t----\ttimestamp=511\tlocaltime=x\t\n");
    let mut keyval = String::new();
    for it in perf {
        for (k, v) in *it {
            keyval.push_str(&format!("{k}{{perf}}={v}\n"));
        }
        keyval.push('\n');
    }
    write_job(
        dir,
        &[
            ("status", &status),
            ("bench/results/keyval", &keyval),
            (&format!("{only}/results/keyval"), "x{perf}=1\n\n"),
        ],
    );
}

/// Job A and job B: throughput fell from 100 ± 1.58 (n=5) to 90 ± 1.58 (n=5), a
/// significant 10% drop; latency_ms rose from 5.0 ± 0.2 to 5.1 ± 0.2 (n=3), not
/// significant; `once` has one value a side.
fn two_jobs() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let a: [f64; 5] = [100.0, 102.0, 98.0, 101.0, 99.0];
    let b: [f64; 5] = [90.0, 91.0, 89.0, 92.0, 88.0];
    let (la, lb) = ([5.0, 5.2, 4.8], [5.1, 4.9, 5.3]);
    let iters = |t: &[f64; 5], l: &[f64; 3], once: f64| -> Vec<Vec<(&'static str, f64)>> {
        (0..5)
            .map(|i| {
                let mut m = vec![("throughput", t[i])];
                if i < 3 {
                    m.push(("latency_ms", l[i]));
                }
                if i == 0 {
                    m.push(("once", once));
                }
                m
            })
            .collect()
    };
    let (ia, ib) = (iters(&a, &la, 7.0), iters(&b, &lb, 7.5));
    let sa: Vec<&[(&str, f64)]> = ia.iter().map(|v| v.as_slice()).collect();
    let sb: Vec<&[(&str, f64)]> = ib.iter().map(|v| v.as_slice()).collect();
    bench_job(&root.path().join("a"), "old", &sa);
    bench_job(&root.path().join("b"), "new", &sb);
    root
}

#[test]
fn compare_prints_statistics() {
    let root = two_jobs();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let out = autorun(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let find = |first: &[&str]| -> Vec<&str> {
        rows.iter()
            .find(|r| r.starts_with(first))
            .unwrap_or_else(|| panic!("no row {first:?} in\n{text}"))
            .clone()
    };
    assert_eq!(
        find(&["KEY"]),
        ["KEY", "BETTER", "N", "MEAN", "SD", "MIN", "MAX", "CHANGE", "T", "DF", "P"]
    );
    // Reference values: scipy.stats.ttest_ind(b, a, equal_var=False) gives
    // t = -10.0, p = 8.488e-06 (df = 8) for throughput, t = 0.6124, p = 0.5734 (df = 4)
    // for latency_ms; numpy.std(ddof=1) gives 1.58114 and 0.2.
    assert_eq!(
        find(&["throughput"]),
        [
            "throughput",
            "higher",
            "A",
            "5",
            "100",
            "1.58114",
            "98",
            "102"
        ]
    );
    assert_eq!(
        find(&["B", "5"]),
        [
            "B",
            "5",
            "90",
            "1.58114",
            "88",
            "92",
            "-10.00%",
            "-10.000",
            "8.00",
            "8.49e-6",
            "worse,",
            "significant"
        ]
    );
    assert_eq!(
        find(&["latency_ms"]),
        ["latency_ms", "lower", "A", "3", "5", "0.2", "4.8", "5.2"]
    );
    assert_eq!(
        find(&["B", "3"]),
        ["B", "3", "5.1", "0.2", "4.9", "5.3", "+2.00%", "0.612", "4.00", "0.5734", "worse"]
    );
    // One value a side: no standard deviation, no t-test.
    assert_eq!(
        find(&["once"]),
        ["once", "higher", "A", "1", "7", "-", "7", "7"]
    );
    assert_eq!(
        find(&["B", "1"]),
        ["B", "1", "7.5", "-", "7.5", "7.5", "+7.14%", "-", "-", "-", "better"]
    );
    assert!(text.contains("3 keys compared: 1 better, 2 worse, 0 unchanged; 1 significant."));
    assert!(
        text.contains("Only in A: old (whole test).\nOnly in B: new (whole test).\n"),
        "{text}"
    );
}

#[test]
fn compare_as_json() {
    let root = two_jobs();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let out = autorun(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        "--fail-on-regression",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["a"], a.to_str().unwrap());
    assert_eq!(
        (v["a_status"].as_str(), v["b_status"].as_str()),
        (Some("GOOD"), Some("GOOD"))
    );
    assert_eq!(v["fail_on_regression"], 5.0);
    assert_eq!(v["regressions"], 1);
    let keys = v["keys"].as_array().unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(names, ["latency_ms", "once", "throughput"]);
    let t = &keys[2];
    assert_eq!(t["subdir"], "bench");
    assert_eq!(t["test"], "bench");
    assert_eq!(t["direction"], "higher_is_better");
    assert_eq!(t["a"]["n"], 5);
    assert_eq!(t["a"]["mean"], 100.0);
    assert_eq!(
        (t["a"]["min"].as_f64(), t["a"]["max"].as_f64()),
        (Some(98.0), Some(102.0))
    );
    assert!((t["a"]["sd"].as_f64().unwrap() - 1.5811388300841898).abs() < 1e-12);
    assert_eq!(t["b"]["mean"], 90.0);
    assert!((t["change_pct"].as_f64().unwrap() + 10.0).abs() < 1e-9);
    assert!((t["t"].as_f64().unwrap() + 10.0).abs() < 1e-9);
    assert!((t["df"].as_f64().unwrap() - 8.0).abs() < 1e-9);
    assert!((t["p"].as_f64().unwrap() - 8.488181527628489e-6).abs() < 1e-12);
    assert_eq!(t["significant"], true);
    assert_eq!(t["verdict"], "worse");
    assert_eq!(t["regression"], true);
    let l = &keys[0];
    assert_eq!(l["direction"], "lower_is_better");
    assert!((l["p"].as_f64().unwrap() - 0.573392253825354).abs() < 1e-9);
    assert_eq!(
        (l["significant"].as_bool(), l["regression"].as_bool()),
        (Some(false), Some(false))
    );
    let once = &keys[1];
    assert_eq!(once["a"]["sd"], Value::Null);
    assert_eq!(
        (once["t"].clone(), once["df"].clone(), once["p"].clone()),
        (Value::Null, Value::Null, Value::Null)
    );
    assert_eq!(once["significant"], false);
    assert_eq!(
        v["only_in_a"],
        serde_json::json!([{"subdir": "old", "key": null}])
    );
    assert_eq!(
        v["only_in_b"],
        serde_json::json!([{"subdir": "new", "key": null}])
    );
}

#[test]
fn fail_on_regression_exit_codes() {
    let root = two_jobs();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let code = |args: &[&str]| {
        let mut all = vec!["compare", a, b];
        all.extend_from_slice(args);
        autorun(&all).status.code()
    };
    // throughput fell 10%: a regression over 5%, not over 10.5%.
    assert_eq!(code(&["--fail-on-regression", "5"]), Some(1));
    assert_eq!(code(&["--fail-on-regression", "10.5"]), Some(0));
    assert_eq!(code(&[]), Some(0));
    // B against A: throughput rose, latency_ms fell 2% (better), once fell 6.7%.
    let back = |pct: &str| {
        autorun(&["compare", b, a, "--fail-on-regression", pct])
            .status
            .code()
    };
    assert_eq!(back("5"), Some(1));
    assert_eq!(back("7"), Some(0));
    let out = autorun(&["compare", a, b, "--fail-on-regression", "5"]);
    assert!(
        stdout(&out).contains("1 key got worse by more than 5%: bench throughput (-10.00%).\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(code(&["--fail-on-regression", "abc"]), Some(64));
    assert_eq!(code(&["--fail-on-regression", "nan"]), Some(64));
}

#[test]
fn show_an_aborted_job() {
    let run = Job::new("let x = ;\n").finish();
    assert_eq!(run.code(), 2);
    let out = autorun(&["show", run.resultdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("No tests ran.\n0 tests. Job ABORT ("),
        "{text}"
    );
    assert!(text.contains("Unhandled SyntaxError"), "{text}");
    assert!(text.contains("control.rhai:1:"), "{text}");
}
