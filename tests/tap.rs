//! `--tap`: autotest's TAP files (behaviour §11) — `status.tap` per folder with one line
//! per END, `keyval.tap` per keyval written through the perf/attr/test wrappers, `meta.yml`
//! and `tap.tar.gz` holding them all.

mod common;
use common::Job;

use std::collections::BTreeMap;
use std::io::Read;

const CONTROL: &str = r#"
job.run_test("kv", #{ n: 2, iterations: 2 });
job.run_test("bad");
job.run_test("err");
job.run_test("na");
job.run_group(|| { job.run_test("kv", #{ tag: "g" }); }, #{ tag: "grp" });
"#;

const KV: &str = r#"
let version = 3;
fn run_once(n) {
    this.write_perf_keyval(#{ lat: this.iteration, lat_p99: 7 });
    this.write_attr_keyval(#{ mode: "fast" });
    // Not in keyval.tap: only the perf and attr wrappers are.
    this.write_iteration_keyval(#{ direct: 1 }, #{ direct: 2 });
}
fn postprocess() { this.write_test_keyval(#{ done: "yes" }); }
"#;

fn job() -> Job {
    Job::new(CONTROL)
        .test("kv", KV)
        .test("bad", r#"fn run_once() { test_fail("nope"); }"#)
        .test("err", r#"fn run_once() { test_error("broken"); }"#)
        .test(
            "na",
            r#"fn initialize() { test_na("no such device"); } fn run_once() {}"#,
        )
}

#[test]
fn status_tap_has_an_entry_per_end_in_each_folder() {
    let run = job().arg("--tap").finish();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(
        run.read("status.tap"),
        "1..7\nok 1 - kv\nnot ok 2 - bad\nnot ok 3 - err\nnot ok 4 - na\nok 5 - kv.g\n\
         ok 6 - grp\nok 7 - job\n"
    );
    assert_eq!(run.read("kv/status.tap"), "1..1\nok 1 - kv\n");
    assert_eq!(run.read("bad/status.tap"), "1..1\nnot ok 1 - bad\n");
    assert!(run.status().contains("\tEND ERROR\terr\terr\t"));
    assert!(run.status().contains("\tEND TEST_NA\tna\tna\t"));
    assert_eq!(run.read("kv.g/status.tap"), "1..1\nok 1 - kv.g\n");
}

#[test]
fn keyval_tap_has_an_entry_per_wrapped_write() {
    let run = job().arg("--tap").finish();
    // Per iteration: the perf write, then the attr write; suffixed keys sorted as autotest
    // sorts them (`lat_p99{perf}` before `lat{perf}`).
    let entry = |n: usize, body: &str| format!("ok {n} - results\n  ---\n{body}  ...\n");
    let expected = format!(
        "1..4\n{}{}{}{}",
        entry(1, "  lat_p99_perf: 7\n  lat_perf: 1\n"),
        entry(2, "  mode_attr: fast\n"),
        entry(3, "  lat_p99_perf: 7\n  lat_perf: 2\n"),
        entry(4, "  mode_attr: fast\n"),
    );
    assert_eq!(run.read("kv/results/keyval.tap"), expected);
    // The test keyval: the parameters block from the harness, then the test's own write;
    // sysinfo's keyvals are not in it.
    assert_eq!(
        run.read("kv/keyval.tap"),
        format!(
            "1..2\n{}{}",
            entry(1, "  param-iterations: 2\n  param-n: 2\n  version: 3\n"),
            entry(2, "  done: yes\n")
        )
    );
    // The keyval files themselves are unchanged by --tap.
    assert!(run
        .read("kv/results/keyval")
        .starts_with("lat_p99{perf}=7\nlat{perf}=1\n\nmode{attr}=fast\n\n"));
}

#[test]
fn meta_yml_and_the_archive_hold_every_tap_file() {
    let run = job().arg("--tap").finish();
    let meta = run.read("meta.yml");
    let listed: Vec<&str> = meta
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("  - ").unwrap())
        .collect();
    assert!(meta.starts_with("file_order:\n"), "{meta}");
    for f in [
        "status.tap",
        "kv/status.tap",
        "kv/keyval.tap",
        "kv/results/keyval.tap",
    ] {
        assert!(listed.contains(&f), "{f} not in {meta}");
    }
    let gz = std::fs::File::open(run.resultdir.join("tap.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    assert_eq!(files.len(), listed.len() + 1, "{:?}", files.keys());
    assert_eq!(files["meta.yml"], meta);
    for f in listed {
        assert_eq!(files[f], run.read(f), "{f}");
    }
}

#[test]
fn without_tap_there_are_no_tap_files_and_report_makes_them_again() {
    let run = job().finish();
    let taps: Vec<_> = walkdir::WalkDir::new(&run.resultdir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tap"))
        .collect();
    assert!(taps.is_empty(), "{taps:?}");
    assert!(!run.resultdir.join("meta.yml").exists());

    let tapped = job().arg("--tap").finish();
    let before = tapped.read("status.tap");
    std::fs::remove_file(tapped.resultdir.join("kv/status.tap")).unwrap();
    let out = assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .arg("report")
        .arg(&tapped.resultdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(tapped.read("status.tap"), before);
    assert_eq!(tapped.read("kv/status.tap"), "1..1\nok 1 - kv\n");
}
