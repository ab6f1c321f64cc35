//! Control files, the job API, the results folder and the command line.

mod common;
use common::Job;

use assert_cmd::Command;

const TRIVIAL: &str = "fn run_once() {}";

#[test]
fn status_log_and_keyvals_snapshot() {
    let run = Job::new(
        r#"job.run_test("kvtest", #{iterations: 2, label: "lbl", scale: 2, tag: "three", timeout: 30,
                         test_attributes: #{owner: "me"}});
job.run_test("failing", #{tag: "x"});
fn grp() { job.record("GOOD", (), "grp.step", "inside group"); job.run_test("kvtest", #{tag: "ingroup"}); }
job.run_group(Fn("grp"));
"#,
    )
    .test(
        "kvtest",
        r#"let version = 2;
fn run_once(scale, label) {
    this.write_attr_keyval(#{ label: label ?? "none" });
    this.write_perf_keyval(#{ throughput: 10 * this.iteration * (scale ?? 1), ratio: 0.1 + 0.2, whole: 3.0 });
    this.write_iteration_keyval(#{}, #{});
}
fn postprocess() { this.write_test_keyval(#{ final: "yes", ok: true, none: () }); }"#,
    )
    .test("failing", "fn run_once() { test_fail(\"first line\\nsecond\\tline\"); }")
    .finish();
    assert_eq!(run.code(), 1);
    let root = run
        .resultdir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    insta::assert_snapshot!("status", common::redact(&run.status(), &root));
    insta::assert_snapshot!(
        "test_status",
        common::redact(&run.read("kvtest.three/status"), &root)
    );
    // The sysinfo-* values are the machine's; the snapshot keeps their keys and order.
    insta::with_settings!({filters => vec![(r"(?m)^(sysinfo-[a-z-]+)=.*$", "$1=<MACHINE>")]}, {
        insta::assert_snapshot!("test_keyval", run.read("kvtest.three/keyval"));
    });
    insta::assert_snapshot!("results_keyval", run.read("kvtest.three/results/keyval"));
}

#[test]
fn results_folder_layout() {
    let run = Job::new(r#"job.run_test("t");"#)
        .test("t", TRIVIAL)
        .finish();
    for p in [
        "control",
        "status",
        "keyval",
        "debug/client.DEBUG",
        "debug/client.INFO",
        "debug/client.WARNING",
        "debug/client.ERROR",
        "t/status",
        "t/keyval",
        "t/results",
        "t/profiling",
        "t/debug/t.DEBUG",
        "t/debug/t.INFO",
    ] {
        assert!(run.resultdir.join(p).exists(), "missing {p}");
    }
    let latest = std::fs::read_link(run.resultdir.parent().unwrap().join("latest")).unwrap();
    assert_eq!(latest.to_str(), Some("job"));
    assert!(run.read("keyval").contains("job_started="));
    assert!(run.stdout().contains("Results are in "));
    // the closing summary counts the tests by status
    assert!(
        run.stdout().contains("\n1 test: 1 GOOD in "),
        "{}",
        run.stdout()
    );
}

#[test]
fn untagged_jobs_get_dated_folders_and_latest_follows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.rhai"), "").unwrap();
    for _ in 0..2 {
        Command::cargo_bin("autorun")
            .unwrap()
            .current_dir(dir.path())
            .arg("c.rhai")
            .assert()
            .code(0);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("job-") && names[1].starts_with("job-"));
    let latest = std::fs::read_link(dir.path().join("results/latest")).unwrap();
    assert_eq!(latest.to_str(), Some(names[1].as_str()), "{names:?}");
}

#[test]
fn an_existing_job_folder_is_never_wiped_silently() {
    let job = Job::new(r#"job.run_test("t");"#).test("t", TRIVIAL);
    assert_eq!(job.run().code(), 0);
    let again = job.run();
    assert_eq!(again.code(), 64);
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    assert!(again.resultdir.join("t/status").exists());
    let job = job.arg("--overwrite");
    assert_eq!(job.run().code(), 0);
}

#[test]
fn control_file_syntax_error_aborts_with_position() {
    let run = Job::new("job.run_test(\"t\");\nlet x = ;\n").finish();
    assert_eq!(run.code(), 2);
    let log = run.status();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with("START\t----\t----\t"));
    assert!(lines[1].starts_with("END ABORT\t----\t----\t"));
    assert!(lines[1].contains("control.rhai:2:9)"), "{}", lines[1]);
    assert!(run.stderr().contains("control.rhai:2:9"));
}

#[test]
fn uncaught_errors_and_test_na_at_top_level() {
    let run =
        Job::new("job.run_test(\"t\");\nundefined_thing();\njob.run_test(\"t\", #{tag: \"no\"});")
            .test("t", TRIVIAL)
            .finish();
    assert_eq!(run.code(), 2);
    let last = run.status().lines().last().unwrap().to_string();
    assert!(last.contains("Unhandled FunctionNotFoundError"), "{last}");
    assert!(!run.resultdir.join("t.no").exists());

    let run = Job::new(
        "job.run_test(\"t\");\ntest_na(\"not here\");\njob.run_test(\"t\", #{tag: \"no\"});",
    )
    .test("t", TRIVIAL)
    .finish();
    assert_eq!(run.code(), 0);
    let log = run.status();
    assert!(log.contains("\tTEST_NA\t----\t"), "{log}");
    assert!(log.contains("control.rhai\ttimestamp="), "{log}");
    assert!(log.lines().last().unwrap().starts_with("END GOOD"));
}

#[test]
fn duplicate_subdir_aborts_unless_caught() {
    let run = Job::new("job.run_test(\"t\");\njob.run_test(\"t\");")
        .test("t", TRIVIAL)
        .finish();
    assert_eq!(run.code(), 2);
    assert!(run
        .status()
        .lines()
        .last()
        .unwrap()
        .ends_with("t already exists; multiple tests cannot run with the same subdirectory"));
    let run = Job::new(
        "job.run_test(\"t\");\ntry { job.run_test(\"t\"); } catch (e) { print(e.status); }\njob.run_test(\"t\", #{tag: \"b\"});",
    )
    .test("t", TRIVIAL)
    .finish();
    assert_eq!(run.code(), 0);
    assert!(run.stdout().contains("ABORT"));
}

#[test]
fn run_test_return_values_and_groups() {
    let run = Job::new(
        r#"
let a = job.run_test("t");
let b = job.run_test("f", #{tag: "1"});
let c = job.run_test_detail("f", #{tag: "2"});
fn grp(x) { job.run_test("f", #{tag: "3"}); x * 2 }
let d = job.run_group(Fn("grp"), #{x: 21, tag: "named"});
fn bad() { throw "group broke"; }
let caught = "";
try { job.run_group(Fn("bad")); } catch (e) { caught = `${e.status}|${e.message}`; }
fn failing() { test_fail("from group"); }
try { job.run_group(Fn("failing")); } catch (e) { caught += `|${e.status}|${e.message}`; }
print(`RESULT ${a} ${b} ${c} ${d} ${caught}`);
"#,
    )
    .test("t", TRIVIAL)
    .test("f", "fn run_once() { test_fail(\"no\"); }")
    .finish();
    let out = run.stdout();
    let line = out.lines().find(|l| l.contains("RESULT")).unwrap();
    assert!(
        line.contains("RESULT true false FAIL 42 ERROR|Unhandled RuntimeError: group broke"),
        "{line}"
    );
    assert!(line.ends_with("|FAIL|from group"), "{line}");
    let log = run.status();
    assert!(log.contains("\tSTART\t----\tnamed\t"), "{log}");
    assert!(log.contains("\t\tSTART\tf.3\tf.3\t"), "{log}");
    assert!(log.contains("\tEND GOOD\t----\tnamed\t"), "{log}");
    assert!(log.contains("\tEND ERROR\t----\tbad\t"), "{log}");
    assert!(log.contains("\tEND FAIL\t----\tfailing\t"), "{log}");
    assert_eq!(run.code(), 1);
}

#[test]
fn tags_sequence_numbers_and_subdir_tags() {
    let run = Job::new(
        r#"
job.use_sequence_number = true;
job.automatic_test_tag = "auto";
job.run_test("t");
job.run_test("t", #{tag: "t", subdir_tag: "sd"});
job.use_sequence_number = false;
job.automatic_test_tag = ();
job.run_test("grp:inner", #{tag: "x"});
"#,
    )
    .test("t", TRIVIAL)
    .test("grp:inner", TRIVIAL)
    .finish();
    let log = run.status();
    assert!(log.contains("\tSTART\tt._01_.auto\tt._01_.auto\t"), "{log}");
    assert!(
        log.contains("\tSTART\tt.t._02_.auto.sd\tt.t._02_.auto\t"),
        "{log}"
    );
    assert!(log.contains("\tSTART\tinner.x\tinner.x\t"), "{log}");
    assert_eq!(run.code(), 0);
}

#[test]
fn job_properties_and_args() {
    let run = Job::new(
        r#"
fn show() { `${job.tag}|${job.args}|${job.resultdir.ends_with("/job")}|${job.hostname == hostname()}|${job.control.ends_with("control.rhai")}` }
print("PROPS " + show());
print(`FLAGS ${job.run_test_cleanup} ${job.default_profile_only} ${job.use_sequence_number} ${job.automatic_test_tag} ${job.drop_caches_between_iterations}`);
"#,
    )
    .arg("--args")
    .arg("a='foo bar' b=2")
    .finish();
    let out = run.stdout();
    assert!(
        out.contains(r#"PROPS job|["a='foo bar'", "b=2"]|true|true|true"#),
        "{out}"
    );
    assert!(out.contains("FLAGS true false false  false"), "{out}");
}

#[test]
fn record_validates_and_writes_to_subdir_status() {
    let run = Job::new(
        r#"
job.run_test("t");
job.record("INFO", "t", "note", "hello", #{ mykey: 5 });
try { job.record("BOGUS", (), (), "x"); } catch (e) { print(`CAUGHT ${e.message}`); }
"#,
    )
    .test("t", TRIVIAL)
    .finish();
    assert!(run.read("t/status").contains("\tINFO\tt\tnote\ttimestamp="));
    assert!(run.status().contains("\tmykey=5\tlocaltime="));
    assert!(run
        .stdout()
        .contains("CAUGHT status code 'BOGUS' is not valid"));
}

#[test]
fn nested_tests_and_runsubtest() {
    let run = Job::new(r#"job.run_test("parent");"#)
        .test(
            "parent",
            r#"fn run_once() {
    let ok = this.runsubtest("child", #{tag: "a"});
    let bad = job.run_test("failing", #{tag: "b"});
    this.write_test_keyval(#{ sub: ok, nested: bad });
}"#,
        )
        .test("child", TRIVIAL)
        .test("failing", "fn run_once() { test_fail(\"nested\"); }")
        .finish();
    let log = run.status();
    assert!(
        log.contains("\n\t\tSTART\tparent/child.a\tchild.a\t"),
        "{log}"
    );
    assert!(
        log.contains("\t\tEND FAIL\tparent/failing.b\tfailing.b\t"),
        "{log}"
    );
    assert!(run
        .read("parent/child.a/status")
        .contains("START\tparent/child.a"));
    assert!(run
        .read("parent/keyval")
        .contains("nested=False\nsub=True\n"));
    assert_eq!(run.result_of("parent").0, "GOOD");
    // a nested FAIL still makes the run exit 1
    assert_eq!(run.code(), 1);
}

#[test]
fn test_object_properties() {
    let run = Job::new(r#"job.run_test("t", #{tag: "x", p: 1});"#)
        .test(
            "t",
            r#"fn run_once(p) {
    let ok = this.name == "t" && this.tagged_testname == "t.x" && this.outputdir.ends_with("/t.x")
        && this.resultsdir.ends_with("/t.x/results") && exists(this.tmpdir) && this.params.p == 1
        && this.undefined_prop == ();
    if !ok { test_fail("bad properties"); }
    try { this.name = "other"; } catch (e) { this.caught = e.message; }
    write_file(this.tmpdir + "/f", "x");
    this.write_test_keyval(#{ caught: this.caught, srcdir_exists: exists(this.srcdir), tmp: this.tmpdir });
}"#,
        )
        .finish();
    assert_eq!(run.result_of("t.x").0, "GOOD");
    let kv = run.read("t.x/keyval");
    assert!(
        kv.contains("caught=the test property 'name' is read-only\n"),
        "{kv}"
    );
    assert!(kv.contains("srcdir_exists=True\n"), "{kv}");
    // the test's temp folder is gone once the test is over
    let tmp = kv.lines().find_map(|l| l.strip_prefix("tmp=")).unwrap();
    assert!(tmp.ends_with("_t.x"), "{tmp}");
    assert!(!std::path::Path::new(tmp).exists());
}

#[test]
fn read_keyval_reads_both_files() {
    let run = Job::new(
        r#"job.run_test("t", #{tag: "a", label: "lbl"});
let kv = read_keyval(job.resultdir + "/t.a");
let it = read_keyval(job.resultdir + "/t.a/results/keyval");
print(`KV ${kv["param-label"]} ${kv.version + 1} ${it["x{perf}"] * 2}`);"#,
    )
    .test(
        "t",
        "fn run_once(label) { this.write_perf_keyval(#{ x: 1.5 }); }",
    )
    .finish();
    let _ = run.code();
    // param values keep their quotes, as autotest's read_keyval leaves them
    assert!(run.stdout().contains("KV 'lbl' 1 3.0"), "{}", run.stdout());
}

#[test]
fn usage_errors_exit_64() {
    let mut cmd = Command::cargo_bin("autorun").unwrap();
    let out = cmd.arg("/no/such/control.rhai").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read control file /no/such/control.rhai"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = Command::cargo_bin("autorun")
        .unwrap()
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::cargo_bin("autorun").unwrap().output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::cargo_bin("autorun")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn config_file_errors_name_file_and_line() {
    let job = Job::new("").file("autorun.toml", "output_dir = \"x\"\nnot_a_key = 1\n");
    let run = job.run();
    assert_eq!(run.code(), 64);
    let err = run.stderr();
    assert!(err.contains("autorun.toml: line 2, column 1"), "{err}");
}

#[test]
fn config_test_dirs_are_searched() {
    let run = Job::new(r#"job.run_test("elsewhere");"#)
        .file("autorun.toml", "test_dirs = [\"more\"]\n")
        .file("more/elsewhere/elsewhere.rhai", TRIVIAL)
        .finish();
    assert_eq!(run.result_of("elsewhere").0, "GOOD");
}

#[test]
fn commands_stream_output_to_the_test_debug_log() {
    let run = Job::new(r#"job.run_test("t");"#)
        .test(
            "t",
            r#"fn run_once() {
    let out = system_output("echo hello; echo world");
    let r = run(["sh", "-c", "cat; exit 4"], #{ stdin: "fed", ignore_status: true, env: #{ X: "1" } });
    if out != "hello\nworld" || r.exit_status != 4 || r.stdout != "fed" { test_fail(`got ${out} ${r}`); }
    print("printed from the test");
}"#,
        )
        .finish();
    assert_eq!(run.result_of("t").0, "GOOD");
    let dbg = run.read("t/debug/t.DEBUG");
    assert!(dbg.contains("[stdout] hello"), "{dbg}");
    assert!(run.read("t/debug/t.INFO").contains("printed from the test"));
    // once: the job's log gets each test line one time
    assert_eq!(
        run.read("debug/client.INFO")
            .matches("printed from the test")
            .count(),
        1
    );
}

#[test]
fn group_functions_reject_arguments_they_do_not_take() {
    let run = Job::new(
        "fn grp(a) { a }\ntry { job.run_group(Fn(\"grp\"), #{a: 1, typo: 2}); } catch (e) { print(`CAUGHT ${e.message}`); }",
    )
    .finish();
    assert!(
        run.stdout().contains(
            "CAUGHT Unhandled TypeError: grp() got an unexpected keyword argument 'typo'"
        ),
        "{}",
        run.stdout()
    );
    assert!(run.status().contains("\tEND ERROR\t----\tgrp\t"));
    assert_eq!(run.code(), 1);
}

#[test]
fn debug_lines_reach_the_debug_log_unquoted() {
    let run = Job::new(r#"job.run_test("t");"#)
        .test("t", "fn run_once() { debug(\"a debug line\"); debug(42); }")
        .finish();
    let dbg = run.read("t/debug/t.DEBUG");
    assert!(dbg.contains("| a debug line\n"), "{dbg}");
    assert!(dbg.contains("| 42\n"), "{dbg}");
    assert!(!run.read("t/debug/t.INFO").contains("a debug line"));
}

#[test]
fn src_is_copied_and_setup_reruns_for_a_new_version() {
    let job = Job::new(r#"job.run_test("built");"#)
        .test(
            "built",
            r#"let version = 1;
fn setup() { write_file(this.srcdir + "/built", read_file(this.srcdir + "/input.txt") + " built"); }
fn run_once() { this.write_test_keyval(#{ got: read_file(this.srcdir + "/built") }); }"#,
        )
        .file("tests/built/src/input.txt", "v1");
    let first = job.run_tagged("one");
    assert!(
        first.read("built/keyval").contains("got=v1 built\n"),
        "{}",
        first.status()
    );
    // a new version clears the srcdir, copies src/ again and sets up again
    let job = job.file("tests/built/src/input.txt", "v2").file(
        "tests/built/built.rhai",
        r#"let version = 2;
fn setup() { write_file(this.srcdir + "/built", read_file(this.srcdir + "/input.txt") + " rebuilt"); }
fn run_once() { this.write_test_keyval(#{ got: read_file(this.srcdir + "/built") }); }"#,
    );
    let second = job.run_tagged("two");
    assert!(second.read("built/keyval").contains("got=v2 rebuilt\n"));
    let marker = job.path().join("cache/autorun/tests/built/src/.version");
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "2");
}

#[test]
fn test_dir_options_come_first_and_verbose_shows_debug() {
    let job = Job::new(r#"job.run_test("t");"#)
        .test("t", "fn run_once() { test_fail(\"the tests/ copy ran\"); }")
        .file(
            "other/t/t.rhai",
            "fn run_once() { debug(\"from the other copy\"); }",
        )
        .arg("--test-dir")
        .arg("other")
        .arg("-v");
    let run = job.finish();
    assert_eq!(run.result_of("t").0, "GOOD");
    assert!(
        run.stdout().contains("DEBUG| from the other copy"),
        "{}",
        run.stdout()
    );
}

#[test]
fn later_features_say_they_are_not_supported_yet() {
    let out = Command::cargo_bin("autorun")
        .unwrap()
        .args(["c.rhai", "--tap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not supported yet"));
}
