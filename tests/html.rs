//! `report.html`: written at the end of every job and by `autorun report DIR`, one
//! self-contained page; and, where a Chromium is installed, rendered by a real browser.

mod common;
use common::{Job, Run};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTROL: &str = r#"
job.run_test("perf", #{iterations: 3, tag: "three"});
job.run_test("good");
job.run_test("failing");
job.run_test("na");
"#;

const PERF: &str = r#"
fn run_once() {
    let i = this.iteration;
    this.write_iteration_keyval(#{ run: `r${i}` }, #{ throughput: 10.0 * i, latency: 0.5 + i });
}
"#;

fn job() -> Run {
    Job::new(CONTROL)
        .test("perf", PERF)
        .test("good", "fn run_once() { }")
        .test(
            "failing",
            "fn run_once() { test_fail(\"expected <b>&\\\"x\\\" here\"); }",
        )
        .test("na", "fn run_once() { test_na(\"not on this machine\"); }")
        .finish()
}

fn check_page(html: &str) {
    for name in ["perf.three", "good", "failing", "na"] {
        assert!(
            html.contains(&format!(">{name}<")),
            "no test {name} in\n{html}"
        );
    }
    for class in ["st-good", "st-fail", "st-test_na"] {
        assert!(html.contains(&format!("status {class}")), "no {class}");
    }
    assert!(
        html.contains("expected &lt;b&gt;&amp;&quot;x&quot; here"),
        "reason not escaped:\n{html}"
    );
    assert!(!html.contains("<b>&"), "unescaped reason");
    // One plot per perf key of perf.three: throughput and latency.
    assert_eq!(html.matches("<svg").count(), 2, "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("<link"));
    assert!(
        html.contains("<a href=\"failing/status\">status</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"failing/debug/failing.DEBUG\">debug</a>"));
}

#[test]
fn every_job_writes_a_self_contained_report_html() {
    let run = job();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let html = run.read("report.html");
    check_page(&html);
    // The job summary: 4 tests, counted per status.
    assert!(html.contains("<th>Tag</th><td>job</td>"), "{html}");
    assert!(html.contains("4 tests"), "{html}");
    assert!(html.contains("2 <span class=\"status st-good\">GOOD</span>"));

    // `autorun report DIR` writes it again from the job folder.
    std::fs::remove_file(run.resultdir.join("report.html")).unwrap();
    let out = assert_cmd::Command::cargo_bin("autorun")
        .unwrap()
        .arg("report")
        .arg(&run.resultdir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
    assert_eq!(run.read("report.html"), html);
}

fn browser() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|b| Path::new("/usr/bin").join(b))
        .find(|p| p.is_file())
}

/// Runs the browser with `args`, killed after 60 s; its stdout.
fn run_browser(bin: &Path, profile: &Path, args: &[String]) -> Vec<u8> {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        buf
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within 60 s", bin.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

#[test]
fn report_html_renders_in_a_browser() {
    let Some(bin) = browser() else {
        eprintln!("skipped: chromium not installed");
        return;
    };
    let run = job();
    let page = format!("file://{}", run.resultdir.join("report.html").display());
    let tmp = tempfile::tempdir().unwrap();
    let shot = tmp.path().join("shot.png");
    run_browser(
        &bin,
        &tmp.path().join("profile1"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1024".into(),
            page.clone(),
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    let dom = run_browser(
        &bin,
        &tmp.path().join("profile2"),
        &["--dump-dom".into(), page],
    );
    let dom = String::from_utf8_lossy(&dom);
    for name in ["perf.three", "good", "failing", "na"] {
        assert!(
            dom.contains(&format!(">{name}<")),
            "no {name} in the DOM:\n{dom}"
        );
    }
    assert_eq!(dom.matches("<svg").count(), 2);
}
