//! The job's reports: `results.json` read back into its documented types, `junit.xml`
//! parsed and checked against the JUnit schema's rules, both valid while the job runs,
//! after an interrupt and a pause, and complete with tests run in forks (parallel tasks,
//! nested tests).

mod common;
use common::{signal, wait_for, Job};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use autorun::keyval::Value;
use autorun::report::json::{Results, TestRecord};
use autorun::status::Status;
use quick_xml::events::{BytesStart, Event as Xml};
use quick_xml::XmlVersion;

fn results(dir: &Path) -> Results {
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("results.json: {e}\n{text}"))
}

fn test<'a>(r: &'a Results, subdir: &str) -> &'a TestRecord {
    r.tests
        .iter()
        .find(|t| t.subdir == subdir)
        .unwrap_or_else(|| panic!("no test {subdir} in {:#?}", r.tests))
}

/// One XML element, its attributes as a parser reports them, its text and children.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, k: &str) -> &str {
        self.attrs
            .get(k)
            .unwrap_or_else(|| panic!("<{}> has no {k}: {:?}", self.name, self.attrs))
    }

    fn num(&self, k: &str) -> f64 {
        self.attr(k).parse().unwrap()
    }

    fn all(&self, name: &str) -> Vec<&Node> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    fn one(&self, name: &str) -> Option<&Node> {
        let found = self.all(name);
        assert!(
            found.len() <= 1,
            "<{}> has {} <{name}>",
            self.name,
            found.len()
        );
        found.first().copied()
    }
}

fn element(e: &BytesStart) -> Node {
    Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.normalized_value(XmlVersion::Explicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    }
}

/// Parses `junit.xml` with quick-xml (which checks that tags nest and close) into its root.
fn junit(dir: &Path) -> Node {
    let text = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut stack = vec![Node::default()];
    loop {
        match reader.read_event() {
            Ok(Xml::Start(e)) => stack.push(element(&e)),
            Ok(Xml::Empty(e)) => stack.last_mut().unwrap().children.push(element(&e)),
            Ok(Xml::End(_)) => {
                let done = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(done);
            }
            Ok(Xml::Text(t)) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.xml10_content().unwrap()),
            Ok(Xml::GeneralRef(r)) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().unwrap().unwrap().to_string()
                } else {
                    let name = r.decode().unwrap();
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .unwrap_or_else(|| panic!("unknown entity {name}"))
                        .to_string()
                };
                stack.last_mut().unwrap().text.push_str(&c);
            }
            Ok(Xml::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("junit.xml: {e}\n{text}"),
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements in\n{text}");
    let mut doc = stack.pop().unwrap();
    assert_eq!(doc.children.len(), 1, "{text}");
    doc.children.pop().unwrap()
}

/// Checks the rules of the JUnit schema (Ant's junit.xsd, as CI systems read it) and
/// returns the one test suite: counts that match the test cases, times, required
/// attributes, one outcome element at most per test case.
fn check_junit(root: &Node, sequential: bool) -> &Node {
    assert_eq!(root.name, "testsuites");
    let suites = root.all("testsuite");
    assert_eq!(suites.len(), 1);
    assert_eq!(root.children.len(), 1);
    let suite = suites[0];
    for k in ["name", "hostname"] {
        assert!(!suite.attr(k).is_empty(), "{k}");
    }
    let ts = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$").unwrap();
    assert!(ts.is_match(suite.attr("timestamp")), "{:?}", suite.attrs);
    let cases = suite.all("testcase");
    let known = ["properties", "testcase", "system-out", "system-err"];
    for c in &suite.children {
        assert!(
            known.contains(&c.name.as_str()),
            "<{}> in <testsuite>",
            c.name
        );
    }
    if let Some(props) = suite.one("properties") {
        assert_eq!(
            suite.children[0].name, "properties",
            "properties come first"
        );
        for p in &props.children {
            assert_eq!(p.name, "property");
            assert!(!p.attr("name").is_empty());
            p.attr("value");
        }
    }
    let mut counts = BTreeMap::from([("failure", 0), ("error", 0), ("skipped", 0)]);
    let mut sum = 0.0;
    for c in &cases {
        assert!(!c.attr("classname").is_empty());
        assert!(!c.attr("name").is_empty());
        let time = c.num("time");
        assert!(time >= 0.0);
        if c.attr("classname") != "autorun" {
            sum += time;
        }
        let outcomes: Vec<&Node> = c
            .children
            .iter()
            .filter(|n| counts.contains_key(n.name.as_str()))
            .collect();
        assert!(outcomes.len() <= 1, "{c:?}");
        for o in outcomes {
            *counts.get_mut(o.name.as_str()).unwrap() += 1;
            o.attr("message");
            if o.name != "skipped" {
                o.attr("type");
            }
        }
        for n in &c.children {
            let ok = [
                "properties",
                "failure",
                "error",
                "skipped",
                "system-out",
                "system-err",
            ];
            assert!(ok.contains(&n.name.as_str()), "<{}> in <testcase>", n.name);
        }
    }
    for node in [root, suite] {
        assert_eq!(node.num("tests") as usize, cases.len(), "{:?}", node.attrs);
        assert_eq!(node.num("failures") as usize, counts["failure"]);
        assert_eq!(node.num("errors") as usize, counts["error"]);
        assert_eq!(node.num("skipped") as usize, counts["skipped"]);
        let time = node.num("time");
        if sequential {
            assert!(time + 0.002 >= sum, "suite time {time} < the tests' {sum}");
        }
    }
    suite
}

fn case<'a>(suite: &'a Node, name: &str) -> &'a Node {
    suite
        .all("testcase")
        .into_iter()
        .find(|c| c.attr("name") == name)
        .unwrap_or_else(|| panic!("no testcase {name}"))
}

const OUTCOMES: &str = r#"
job.run_test("perf", #{iterations: 3, tag: "three"});
job.run_test("failing");
job.run_test("broken");
job.run_test("na");
"#;

const PERF: &str = r#"
fn run_once() {
    let i = this.iteration;
    this.write_iteration_keyval(#{ run: `r${i}` }, #{ throughput: 10.0 * i, latency: 0.5 });
}
fn postprocess() { this.write_test_keyval(#{ result: "done", count: 3 }); }
"#;

#[test]
fn every_outcome_in_results_json_and_junit_xml() {
    let run = Job::new(OUTCOMES)
        .test("perf", PERF)
        .test(
            "failing",
            "fn run_once() { test_fail(\"expected <1> & got \\\"2\\\"\\nsecond\\tline\"); }",
        )
        .test("broken", "fn run_once() { test_error(\"disk gone\"); }")
        .test("na", "fn run_once() { test_na(\"not on this machine\"); }")
        .arg("--args")
        .arg("alpha beta=2")
        .finish();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let r = results(&run.resultdir);
    assert_eq!(r.version, 1);

    let job = &r.job;
    assert_eq!(job.tag, "job");
    assert!(job.control.ends_with("/control.rhai"), "{}", job.control);
    assert_eq!(job.status, Status::Good);
    assert_eq!(job.exit_code, Some(1));
    assert_eq!(job.reason, "");
    assert_eq!(job.args, ["alpha", "beta=2"]);
    assert!(!job.host.is_empty() && !job.user.is_empty());
    let end = job.end.expect("the job ended");
    assert!(end >= job.start && end - job.start < 60.0, "{job:?}");

    let names: Vec<(&str, Status)> = r
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.status))
        .collect();
    assert_eq!(
        names,
        [
            ("perf.three", Status::Good),
            ("failing", Status::Fail),
            ("broken", Status::Error),
            ("na", Status::TestNa),
        ]
    );
    for t in &r.tests {
        assert_eq!(t.subdir, t.name);
        assert!(
            t.start >= job.start - 0.001 && t.end <= end + 0.001,
            "{t:?}"
        );
        assert!((t.duration - (t.end - t.start)).abs() < 0.0015, "{t:?}");
        assert!(t.sysinfo.contains_key("uname"), "{:?}", t.sysinfo);
        assert!(!t.keyval.keys().any(|k| k.starts_with("sysinfo-")));
    }
    for w in r.tests.windows(2) {
        assert!(w[0].end <= w[1].start + 0.001, "tests in order");
    }

    let perf = test(&r, "perf.three");
    assert_eq!(perf.reason, "completed successfully");
    assert_eq!(perf.keyval["param-iterations"], Value::Int(3));
    assert_eq!(perf.keyval["version"], Value::Int(0));
    assert_eq!(perf.keyval["result"], Value::Text("done".into()));
    assert_eq!(perf.keyval["count"], Value::Int(3));
    assert_eq!(perf.iterations.len(), 3, "{:?}", perf.iterations);
    for (i, it) in perf.iterations.iter().enumerate() {
        let n = i + 1;
        assert_eq!(it.attr["run"], format!("r{n}"));
        assert_eq!(it.perf["throughput"], 10.0 * n as f64);
        assert_eq!(it.perf["latency"], 0.5);
    }
    assert_eq!(
        test(&r, "failing").reason,
        "expected <1> & got \"2\"\nsecond\tline"
    );
    assert_eq!(test(&r, "broken").reason, "disk gone");
    assert_eq!(test(&r, "na").reason, "not on this machine");
    assert!(test(&r, "failing").iterations.is_empty());

    let root = junit(&run.resultdir);
    let suite = check_junit(&root, true);
    assert_eq!(suite.attr("name"), "job");
    assert_eq!(suite.num("tests"), 4.0);
    assert_eq!(
        (
            suite.num("failures"),
            suite.num("errors"),
            suite.num("skipped")
        ),
        (1.0, 1.0, 1.0)
    );
    let props: BTreeMap<&str, &str> = suite
        .one("properties")
        .unwrap()
        .children
        .iter()
        .map(|p| (p.attr("name"), p.attr("value")))
        .collect();
    assert_eq!(props["status"], "GOOD");
    assert_eq!(props["exit_code"], "1");
    assert_eq!(props["args"], r#"["alpha","beta=2"]"#);

    let good = case(suite, "perf.three");
    assert_eq!(good.attr("classname"), "perf");
    assert!(good.one("failure").is_none() && good.one("error").is_none());
    let perf_props: BTreeMap<&str, f64> = good
        .one("properties")
        .unwrap()
        .children
        .iter()
        .map(|p| (p.attr("name"), p.num("value")))
        .collect();
    assert_eq!(
        perf_props,
        BTreeMap::from([("latency", 0.5), ("throughput", 20.0)])
    );

    let failing = case(suite, "failing");
    assert_eq!(failing.attr("classname"), "failing");
    let failure = failing.one("failure").unwrap();
    assert_eq!(failure.attr("type"), "FAIL");
    assert_eq!(failure.attr("message"), "expected <1> & got \"2\"");
    assert_eq!(failure.text, "expected <1> & got \"2\"\nsecond\tline");
    let error = case(suite, "broken").one("error").unwrap();
    assert_eq!(
        (error.attr("type"), error.attr("message")),
        ("ERROR", "disk gone")
    );
    let skipped = case(suite, "na").one("skipped").unwrap();
    assert_eq!(skipped.attr("message"), "not on this machine");
}

#[test]
fn an_interrupted_job_keeps_valid_reports_with_the_finished_tests() {
    let job = Job::new(
        "job.run_test(\"quick\");\njob.run_test(\"slow\");\njob.run_test(\"quick\", #{tag: \"never\"});",
    )
    .test("quick", "fn run_once() { this.write_perf_keyval(#{ n: 1 }); }")
    .test(
        "slow",
        "fn run_once() { write_file(\"started\", \"\"); sleep(60); }",
    );
    let child = job.spawn();
    wait_for(&job, "slow/started");
    let dir = job.path().join("results/job");
    // While the job runs: valid, the finished test in, the job still running.
    let during = results(&dir);
    assert_eq!(during.tests.len(), 1);
    assert_eq!(during.tests[0].name, "quick");
    assert_eq!(during.job.status, Status::Running);
    assert_eq!((during.job.end, during.job.exit_code), (None, None));
    check_junit(&junit(&dir), true);
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let r = results(&dir);
    let got: Vec<(&str, Status)> = r
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.status))
        .collect();
    assert_eq!(got, [("quick", Status::Good), ("slow", Status::Abort)]);
    assert_eq!(test(&r, "quick").iterations[0].perf["n"], 1.0);
    assert_eq!(test(&r, "slow").reason, "interrupted by SIGINT");
    assert_eq!(r.job.status, Status::Abort);
    assert_eq!(r.job.reason, "interrupted by SIGINT");
    assert_eq!(r.job.exit_code, Some(2));
    assert!(r.job.end.is_some());

    let root = junit(&dir);
    let suite = check_junit(&root, true);
    // the interrupted test, and the job itself, are errors
    assert_eq!(suite.num("tests"), 3.0);
    assert_eq!(suite.num("errors"), 2.0);
    let slow = case(suite, "slow").one("error").unwrap();
    assert_eq!(slow.attr("type"), "ABORT");
    let job_case = case(suite, "job");
    assert_eq!(job_case.attr("classname"), "autorun");
    assert_eq!(
        job_case.one("error").unwrap().attr("message"),
        "interrupted by SIGINT"
    );
}

#[test]
fn tests_in_parallel_tasks_and_nested_tests_are_all_reported() {
    let run = Job::new(
        r#"
fn t(x) { job.run_test("s", #{tag: x}); }
fn outer() { t("o-before"); job.parallel([[Fn("t"), "i0"], [Fn("t"), "i1"]]); job.run_test("parent", #{tag: "p"}); }
job.run_test("s", #{tag: "first"});
job.parallel([Fn("outer"), [Fn("t"), "b"], || job.run_test("f", #{tag: "c"})]);
job.run_test("parent");
"#,
    )
    .test("s", "fn run_once() { this.write_perf_keyval(#{ v: 2 }); }")
    .test("f", "fn run_once() { test_fail(\"nope\"); }")
    .test(
        "parent",
        r#"fn run_once() { this.runsubtest("s", #{tag: "child"}); job.run_test("f", #{tag: "nested"}); }"#,
    )
    .finish();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let r = results(&run.resultdir);
    let subdirs: Vec<&str> = r.tests.iter().map(|t| t.subdir.as_str()).collect();
    assert_eq!(
        subdirs,
        [
            "s.first",
            // task 0, in the order its tests ended
            "s.o-before",
            "s.i0",
            "s.i1",
            "parent.p/s.child",
            "parent.p/f.nested",
            "parent.p",
            // task 1, task 2
            "s.b",
            "f.c",
            // after the parallel section: nested tests before their parent
            "parent/s.child",
            "parent/f.nested",
            "parent",
        ],
    );
    // exactly the tests whose END is in the status log
    let ends = run
        .status()
        .lines()
        .filter(|l| l.trim_start_matches('\t').starts_with("END ") && !l.contains("\t----\t"))
        .count();
    assert_eq!(ends, r.tests.len());
    let nested = test(&r, "parent/f.nested");
    assert_eq!(
        (nested.name.as_str(), nested.status),
        ("f.nested", Status::Fail)
    );
    assert_eq!(nested.reason, "nope");
    assert_eq!(test(&r, "f.c").status, Status::Fail);
    assert_eq!(test(&r, "s.i1").iterations[0].perf["v"], 2.0);
    assert_eq!(
        test(&r, "parent.p/s.child").keyval["version"],
        Value::Int(0)
    );
    assert_eq!(r.job.status, Status::Good);

    let root = junit(&run.resultdir);
    let suite = check_junit(&root, false);
    assert_eq!(suite.num("tests") as usize, r.tests.len());
    assert_eq!(suite.num("failures"), 3.0);
    assert_eq!(case(suite, "f.nested").attr("classname"), "f");
}

#[test]
fn a_paused_job_has_reports_and_continue_rebuilds_them_from_the_status_log() {
    let job = Job::new(
        r#"
fn step_init() { job.next_step(Fn("a")); job.next_step(Fn("b")); }
fn a() { job.run_test("t", #{tag: "first"}); job.quit(); }
fn b() { job.run_test("t", #{tag: "second"}); }
"#,
    )
    .test("t", "fn run_once() { this.write_perf_keyval(#{ v: 1 }); }");
    let first = job.run();
    assert_eq!(first.code(), 5, "{}", first.stderr());
    let paused = results(&first.resultdir);
    assert_eq!(paused.tests.len(), 1);
    assert_eq!(paused.job.status, Status::Running);
    assert_eq!((paused.job.end, paused.job.exit_code), (None, Some(5)));
    check_junit(&junit(&first.resultdir), true);

    let run = job.clone_args().arg("--continue").run();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let r = results(&run.resultdir);
    let names: Vec<&str> = r.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["t.first", "t.second"]);
    assert_eq!(r.tests[0].iterations[0].perf["v"], 1.0);
    assert_eq!(r.tests[0].status, Status::Good);
    // the job's start is the first run's (to the second, from the job keyval)
    assert!((r.job.start - paused.job.start).abs() < 1.0, "{r:?}");
    assert_eq!((r.job.status, r.job.exit_code), (Status::Good, Some(0)));
    let root = junit(&run.resultdir);
    assert_eq!(check_junit(&root, false).num("tests"), 2.0);
}

/// The fenced ```json blocks of docs/results-json.md: the example, then the JSON Schema.
fn doc_json_blocks() -> Vec<serde_json::Value> {
    let doc = include_str!("../docs/results-json.md");
    doc.split("```json\n")
        .skip(1)
        .map(|b| {
            let text = b.split("\n```").next().unwrap();
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{e} in\n{text}"))
        })
        .collect()
}

#[test]
fn the_documented_example_and_schema_match_the_types() {
    let blocks = doc_json_blocks();
    assert_eq!(blocks.len(), 2);
    let example: Results = serde_json::from_value(blocks[0].clone()).unwrap();
    assert_eq!(example.tests.len(), 2);
    // Every field of the types is a required property of the schema, and nothing else.
    let schema = &blocks[1];
    let back = serde_json::to_value(&example).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let required = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&back), required(schema));
    assert_eq!(keys(&back["job"]), required(&schema["$defs"]["job"]));
    assert_eq!(keys(&back["tests"][0]), required(&schema["$defs"]["test"]));
    let it = &schema["$defs"]["test"]["properties"]["iterations"]["items"];
    assert_eq!(keys(&back["tests"][0]["iterations"][0]), required(it));
}

#[test]
fn autorun_report_rebuilds_the_reports_from_the_folder() {
    let run = Job::new(
        r#"
job.run_test("t", #{tag: "ok"});
job.run_test("f", #{tag: "bad"});
"#,
    )
    .test(
        "t",
        "fn run_once() { this.write_perf_keyval(#{ x: this.iteration * 1.5 }); }",
    )
    .test("f", "fn run_once() { test_fail(\"no\"); }")
    .finish();
    let live = results(&run.resultdir);
    let live_junit = std::fs::read_to_string(run.resultdir.join("junit.xml")).unwrap();
    std::fs::remove_file(run.resultdir.join("results.json")).unwrap();
    std::fs::remove_file(run.resultdir.join("junit.xml")).unwrap();
    let out = assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .arg("report")
        .arg(&run.resultdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = results(&run.resultdir);
    assert_eq!(rebuilt.job.status, live.job.status);
    assert_eq!(rebuilt.job.exit_code, live.job.exit_code);
    let view = |r: &Results| -> Vec<(String, Status, String, usize)> {
        r.tests
            .iter()
            .map(|t| {
                (
                    t.subdir.clone(),
                    t.status,
                    t.reason.clone(),
                    t.iterations.len(),
                )
            })
            .collect()
    };
    assert_eq!(view(&rebuilt), view(&live));
    let cases = |x: &str| x.matches("<testcase").count();
    let rebuilt_junit = std::fs::read_to_string(run.resultdir.join("junit.xml")).unwrap();
    assert_eq!(cases(&rebuilt_junit), cases(&live_junit));
    check_junit(&junit(&run.resultdir), true);
    // not a job folder: one sentence, exit 64
    let out = assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .args(["report", "/nonexistent/job"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a job folder"));
}
