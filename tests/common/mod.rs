//! A small builder that lays out a control file and tests in a temp folder, runs the real
//! `autorun` binary on it, and reads back the results folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct Job {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

pub struct Run {
    pub output: Output,
    pub resultdir: PathBuf,
    /// Keeps the job's temp folder alive when the `Job` itself is gone.
    _dir: Option<tempfile::TempDir>,
}

impl Job {
    pub fn new(control: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("control.rhai"), control).unwrap();
        Job {
            dir,
            args: Vec::new(),
        }
    }

    /// Adds `tests/NAME/NAME.rhai` (NAME may be `group:name`).
    pub fn test(self, name: &str, source: &str) -> Job {
        let rel: PathBuf = name.split(':').collect();
        let base = name.rsplit(':').next().unwrap();
        let d = self.dir.path().join("tests").join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{base}.rhai")), source).unwrap();
        self
    }

    pub fn file(self, rel: &str, text: &str) -> Job {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn arg(mut self, a: &str) -> Job {
        self.args.push(a.to_string());
        self
    }

    /// The same job folder layout with the same arguments, for another run.
    pub fn clone_args(&self) -> JobRef<'_> {
        JobRef {
            job: self,
            args: self.args.clone(),
        }
    }

    /// Starts the job in the background (tag `job`), output captured.
    pub fn spawn(&self) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_autorun"))
            .current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .args(["control.rhai", "-o", "results", "-t", "job"])
            .args(&self.args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the job with tag `job` into `<tmp>/results`.
    pub fn run(&self) -> Run {
        self.run_tagged("job")
    }

    pub fn run_tagged(&self, tag: &str) -> Run {
        self.run_with(tag, &self.args)
    }

    fn run_with(&self, tag: &str, args: &[String]) -> Run {
        let mut cmd = Command::cargo_bin("autorun").unwrap();
        cmd.current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .arg("control.rhai")
            .args(["-o", "results", "-t", tag])
            .args(args)
            .timeout(std::time::Duration::from_secs(60));
        let output = cmd.output().unwrap();
        Run {
            output,
            resultdir: self.dir.path().join("results").join(tag),
            _dir: None,
        }
    }

    /// Runs the job and hands its temp folder to the result.
    pub fn finish(self) -> Run {
        let mut run = self.run();
        run._dir = Some(self.dir);
        run
    }
}

/// A job with extra arguments for one run.
pub struct JobRef<'a> {
    job: &'a Job,
    args: Vec<String>,
}

impl JobRef<'_> {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn run(&self) -> Run {
        self.job.run_with("job", &self.args)
    }
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.resultdir.join(rel)).unwrap_or_else(|e| {
            panic!(
                "reading {rel}: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    pub fn status(&self) -> String {
        self.read("status")
    }

    /// The status log with timestamps, local times and absolute temp paths redacted.
    pub fn status_redacted(&self) -> String {
        redact(
            &self.status(),
            self.resultdir.parent().unwrap().parent().unwrap(),
        )
    }

    /// The operations of the top-level tests' START lines, in log order.
    pub fn top_level_starts(&self) -> Vec<String> {
        self.status()
            .lines()
            .filter(|l| l.starts_with("\tSTART\t"))
            .map(|l| l.split('\t').nth(2).unwrap_or("").to_string())
            .collect()
    }

    /// The non-START/END line for `subdir`: (status, message first line).
    pub fn result_of(&self, subdir: &str) -> (String, String) {
        for line in self.status().lines() {
            let t = line.trim_start_matches('\t');
            let parts: Vec<&str> = t.split('\t').collect();
            if parts.len() >= 4
                && parts[1] == subdir
                && parts[0] != "START"
                && !parts[0].starts_with("END ")
            {
                return (parts[0].to_string(), parts[parts.len() - 1].to_string());
            }
        }
        panic!("no result line for {subdir} in:\n{}", self.status());
    }
}

pub fn redact(text: &str, root: &Path) -> String {
    let ts = regex::Regex::new(r"timestamp=\d+").unwrap();
    let lt = regex::Regex::new(r"localtime=[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d").unwrap();
    let s = text.replace(&root.display().to_string(), "<TMP>");
    let s = ts.replace_all(&s, "timestamp=<TS>");
    lt.replace_all(&s, "localtime=<LT>").into_owned()
}

/// Waits (up to 20 s) until `rel` exists below the job's results folder `results/job`.
pub fn wait_for(job: &Job, rel: &str) {
    let path = job.path().join("results/job").join(rel);
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed().as_secs() < 20, "{rel} never appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `sig` to a job started with [`Job::spawn`].
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sends a signal to a process this test started.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// True when process `pid` is running (gone, or a zombie waiting to be reaped, is not).
pub fn alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    stat.split(") ")
        .nth(1)
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Every line of a status log parses as autotest's parser reads it.
pub fn assert_parses(log: &str) {
    for line in log.lines() {
        assert!(
            autorun::status_log::parse_line(line).is_some(),
            "unparsable line {line:?} in\n{log}"
        );
    }
}

/// The job's status log ends with the job aborted by SIGINT.
pub fn assert_ends_interrupted(log: &str) {
    let last = log.lines().last().unwrap_or("");
    assert!(last.ends_with("\tinterrupted by SIGINT"), "{log}");
}

/// A job whose control file runs `before`, then `job.parallel` with two tasks that each run
/// a slow test (`slow.a`, `slow.b`), then prints `NEVER`; the tests given with `with` are
/// added. Once both slow tests have started the job gets `sig`. Checks what every
/// interrupted parallel section must show: exit 2, nothing after the section ran, the
/// status log parses, each slow test ABORTed and its cleanup ran. Returns the job (its
/// folder lives as long as it) and the status log.
pub fn interrupt_parallel_section(
    before: &str,
    with: impl FnOnce(Job) -> Job,
    sig: i32,
) -> (Job, String) {
    let job = with(Job::new(&format!(
        "{before}fn t(x) {{ job.run_test(\"slow\", #{{tag: x}}); }}\n\
         job.parallel([[Fn(\"t\"), \"a\"], [Fn(\"t\"), \"b\"]]);\nprint(\"NEVER\");"
    )))
    .test(
        "slow",
        "fn run_once() { write_file(\"started\", \"\"); sleep(60); }\n\
         fn cleanup() { write_file(\"cleanup.ran\", \"\"); }",
    );
    let child = job.spawn();
    wait_for(&job, "slow.a/started");
    wait_for(&job, "slow.b/started");
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("NEVER"));
    let results = job.path().join("results/job");
    let log = std::fs::read_to_string(results.join("status")).unwrap();
    assert_parses(&log);
    for x in ["a", "b"] {
        assert!(
            log.contains(&format!("\t\tABORT\tslow.{x}\tslow.{x}\t")),
            "{log}"
        );
        assert!(results.join(format!("slow.{x}/cleanup.ran")).exists());
    }
    (job, log)
}
