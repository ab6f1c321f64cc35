//! `junit.xml`: the job as one JUnit test suite, for CI systems.
//!
//! ```text
//! <testsuites name="autorun" tests= failures= errors= skipped= time=>
//!   <testsuite name="<tag>" tests= failures= errors= skipped= time= timestamp= hostname=>
//!     <properties> control, user, args, status, exit_code, reason </properties>
//!     <testcase classname="<test>" name="<operation>" time="<s>">
//!       <properties> one per perf key: the mean over the iterations that report it </properties>
//!       <failure|error|skipped message="<first line>" type="<status>">reason</...>
//!     </testcase>
//!   </testsuite>
//! </testsuites>
//! ```
//!
//! FAIL is a `<failure>`; ERROR, ABORT and the other bad statuses an `<error>`; TEST_NA
//! `<skipped>`; GOOD and WARN pass (WARN with its reason in `<system-out>`). A job that
//! aborted gets one more test case, `autorun`/`job`, with the abort as its error, so that a
//! job which stopped before or between its tests does not look green.
//!
//! Each test case is rendered once, when its test ends, and appended to an unnamed temp
//! file in the job folder (a line per test case; kept out of memory, so that the job
//! process does not grow with each test). The whole file is rewritten from it (temp file
//! and rename) when the job starts,
//! pauses and ends, and after a test at most once a second (less often when a rewrite takes
//! longer than a fiftieth of that), so that a long job keeps a recent valid file at a
//! bounded cost.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event as Xml};
use quick_xml::name::QName;
use quick_xml::Writer;

use crate::events::{unix_seconds, Event, FinishedTest, Subscriber};
use crate::keyval::py_float;
use crate::report::millis;
use crate::status::Status;

/// The file's name in the job folder.
pub const FILE: &str = "junit.xml";

/// The least time between two rewrites while tests run.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What a test case is in JUnit's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GOOD, WARN.
    Passed,
    /// FAIL.
    Failure,
    /// ERROR, ABORT and every other status.
    Error,
    /// TEST_NA.
    Skipped,
}

impl Kind {
    /// The kind of a test that ended with `status`.
    pub fn of(status: Status) -> Kind {
        match status {
            Status::Good | Status::Warn => Kind::Passed,
            Status::Fail => Kind::Failure,
            Status::TestNa => Kind::Skipped,
            _ => Kind::Error,
        }
    }
}

/// How many test cases of each kind.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        self.tests += 1;
        match kind {
            Kind::Passed => {}
            Kind::Failure => self.failures += 1,
            Kind::Error => self.errors += 1,
            Kind::Skipped => self.skipped += 1,
        }
    }
}

/// One test case.
#[derive(Debug, Clone)]
struct Case {
    classname: String,
    name: String,
    time: f64,
    status: Status,
    reason: String,
    /// Mean perf value per key.
    perf: Vec<(String, f64)>,
}

impl Case {
    fn of(t: &FinishedTest) -> Case {
        let mut sums: std::collections::BTreeMap<&str, (f64, u32)> = Default::default();
        for it in &t.iterations {
            for (k, v) in &it.perf {
                let e = sums.entry(k).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        Case {
            classname: classname(&t.name).to_string(),
            name: t.name.clone(),
            time: (unix_seconds(t.end) - unix_seconds(t.start)).max(0.0),
            status: t.status,
            reason: t.reason.clone(),
            perf: sums
                .into_iter()
                .map(|(k, (sum, n))| (k.to_string(), sum / f64::from(n)))
                .collect(),
        }
    }
}

/// The test's name from its operation: what comes before the first tag (`kvtest` for
/// `kvtest.three`).
pub fn classname(operation: &str) -> &str {
    operation.split('.').next().unwrap_or(operation)
}

/// The job as the suite shows it.
#[derive(Debug, Clone)]
struct Suite {
    tag: String,
    control: String,
    start: SystemTime,
    args: Vec<String>,
    host: String,
    user: String,
    status: Status,
    reason: String,
    exit_code: Option<i32>,
    end: Option<SystemTime>,
}

/// Writes `junit.xml` as the events come.
#[derive(Debug)]
pub struct JunitWriter {
    path: PathBuf,
    suite: Option<Suite>,
    /// The `<testcase>` elements so far, each on a line of its own, in a temp file (not
    /// in memory: the job would grow with each test).
    cases: Option<File>,
    /// The length of `cases`.
    cases_len: u64,
    /// Room to render one test case in, kept from one test to the next.
    scratch: Vec<u8>,
    counts: Counts,
    last_write: Option<Instant>,
    last_cost: Duration,
}

/// How much of the cases file is copied at a time when the file is rewritten.
const COPY_CHUNK: usize = 64 << 10;

impl JunitWriter {
    /// A writer for `<resultdir>/junit.xml`; the file appears when the job starts.
    pub fn new(resultdir: &Path) -> JunitWriter {
        JunitWriter {
            path: resultdir.join(FILE),
            suite: None,
            cases: None,
            cases_len: 0,
            scratch: Vec::new(),
            counts: Counts::default(),
            last_write: None,
            last_cost: Duration::ZERO,
        }
    }

    fn write(&mut self) -> Result<(), String> {
        let Some(suite) = &self.suite else {
            return Ok(());
        };
        let started = Instant::now();
        let (head, tail) = render(suite, self.counts, SystemTime::now())
            .map_err(|e| format!("cannot render {}: {e}", self.path.display()))?;
        let cases = self.cases.as_ref().map(|f| (f, self.cases_len));
        write_document(&self.path, &head, cases, &tail)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.last_write = Some(Instant::now());
        self.last_cost = started.elapsed();
        Ok(())
    }

    /// True when a rewrite now keeps the time spent rewriting under a fiftieth of the job's.
    fn due(&self) -> bool {
        self.last_write.map_or(true, |t| {
            t.elapsed() >= MIN_INTERVAL.max(self.last_cost * 50)
        })
    }
}

impl Subscriber for JunitWriter {
    fn name(&self) -> &str {
        FILE
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::JobStarted {
                tag,
                control,
                start,
                args,
                host,
                user,
            } => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                let cases = tempfile::tempfile_in(dir)
                    .map_err(|e| format!("cannot make a temp file in {}: {e}", dir.display()))?;
                self.cases = Some(cases);
                self.cases_len = 0;
                self.counts = Counts::default();
                self.suite = Some(Suite {
                    tag: tag.clone(),
                    control: control.display().to_string(),
                    start: *start,
                    args: args.clone(),
                    host: host.clone(),
                    user: user.clone(),
                    status: Status::Running,
                    reason: String::new(),
                    exit_code: None,
                    end: None,
                });
                self.write()
            }
            Event::TestStarted { .. }
            | Event::Record(_)
            | Event::IterationStarted { .. }
            | Event::IterationDone { .. } => Ok(()),
            Event::TestFinished(t) => {
                let case = Case::of(t);
                self.scratch.clear();
                render_case(&mut self.scratch, &case)
                    .map_err(|e| format!("cannot render {}: {e}", self.path.display()))?;
                if let Some(file) = &self.cases {
                    file.write_all_at(&self.scratch, self.cases_len)
                        .map_err(|e| format!("cannot keep a test case for {}: {e}", FILE))?;
                    self.cases_len += self.scratch.len() as u64;
                }
                self.counts.add(Kind::of(case.status));
                if self.due() {
                    self.write()?;
                }
                Ok(())
            }
            Event::JobPaused { exit_code, .. } => {
                if let Some(s) = &mut self.suite {
                    s.exit_code = Some(*exit_code);
                }
                self.write()
            }
            Event::JobFinished {
                status,
                reason,
                exit_code,
                end,
            } => {
                if let Some(s) = &mut self.suite {
                    s.status = *status;
                    s.reason = reason.clone();
                    s.exit_code = Some(*exit_code);
                    s.end = Some(*end);
                }
                self.write()
            }
        }
    }
}

/// Seconds as JUnit's `time` attributes write them.
fn seconds(s: f64) -> String {
    format!("{:.3}", millis(s.max(0.0)))
}

/// Text that XML 1.0 can hold: the control characters it forbids (even as character
/// references) are written as `\x1b`-style escapes.
fn xml_text(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
    };
    if !s.contains(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An attribute whose value is escaped for XML, tabs and line breaks included (as character
/// references, which parsers keep instead of turning them into spaces).
fn attr<'a>(key: &'a str, value: &str) -> Attribute<'a> {
    let value = xml_text(value);
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    Attribute {
        key: QName(key.as_bytes()),
        value: Cow::Owned(out.into_bytes()),
    }
}

fn properties<T: std::io::Write>(
    w: &mut Writer<T>,
    props: &[(&str, String)],
) -> std::io::Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    w.create_element("properties").write_inner_content(|w| {
        for (k, v) in props {
            w.create_element("property")
                .with_attributes([attr("name", k), attr("value", v)])
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Appends `c` as one line, indented to sit inside `<testsuite>`.
fn render_case(out: &mut Vec<u8>, c: &Case) -> std::io::Result<()> {
    out.extend_from_slice(b"\n    ");
    let mut w = Writer::new(out);
    w.create_element("testcase")
        .with_attributes([
            attr("classname", &c.classname),
            attr("name", &c.name),
            attr("time", &seconds(c.time)),
        ])
        .write_inner_content(|w| {
            let perf: Vec<(&str, String)> = c
                .perf
                .iter()
                .map(|(k, v)| (k.as_str(), py_float(*v)))
                .collect();
            properties(w, &perf)?;
            let message = c.reason.lines().next().unwrap_or("");
            let element = match Kind::of(c.status) {
                Kind::Passed if c.status == Status::Good => return Ok(()),
                Kind::Passed => {
                    let text = format!("{}: {}", c.status, c.reason);
                    w.create_element("system-out")
                        .write_text_content(BytesText::new(&xml_text(&text)))?;
                    return Ok(());
                }
                Kind::Skipped => {
                    w.create_element("skipped")
                        .with_attribute(attr("message", message))
                        .write_empty()?;
                    return Ok(());
                }
                Kind::Failure => "failure",
                Kind::Error => "error",
            };
            w.create_element(element)
                .with_attributes([attr("message", message), attr("type", c.status.as_str())])
                .write_text_content(BytesText::new(&xml_text(&c.reason)))?;
            Ok(())
        })?;
    Ok(())
}

/// Writes `path` through a temp file and a rename: `head`, the first `len` bytes of the
/// `cases` file, `tail`.
fn write_document(
    path: &Path,
    head: &[u8],
    cases: Option<(&File, u64)>,
    tail: &[u8],
) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(COPY_CHUNK, File::create(&tmp)?);
        out.write_all(head)?;
        if let Some((file, len)) = cases {
            let mut buf = vec![0; COPY_CHUNK];
            let mut at = 0;
            while at < len {
                let want = COPY_CHUNK.min((len - at) as usize);
                file.read_exact_at(&mut buf[..want], at)?;
                out.write_all(&buf[..want])?;
                at += want as u64;
            }
        }
        out.write_all(tail)?;
        out.flush()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The document around the test cases: what comes before them and what comes after,
/// for `suite` with `counts` test cases, times taken at `now` for a job that has not
/// ended.
fn render(
    suite: &Suite,
    mut counts: Counts,
    now: SystemTime,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let elapsed = unix_seconds(suite.end.unwrap_or(now)) - unix_seconds(suite.start);
    let mut job_case = Vec::new();
    if suite.status == Status::Abort {
        let case = Case {
            classname: "autorun".into(),
            name: "job".into(),
            time: elapsed,
            status: Status::Abort,
            reason: suite.reason.clone(),
            perf: Vec::new(),
        };
        render_case(&mut job_case, &case)?;
        counts.add(Kind::of(case.status));
    }
    let totals = [
        ("tests", counts.tests.to_string()),
        ("failures", counts.failures.to_string()),
        ("errors", counts.errors.to_string()),
        ("skipped", counts.skipped.to_string()),
        ("time", seconds(elapsed)),
    ];
    let timestamp = chrono::DateTime::<chrono::Local>::from(suite.start)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let mut job_props: Vec<(&str, String)> = vec![
        ("control", suite.control.clone()),
        ("user", suite.user.clone()),
        (
            "args",
            serde_json::to_string(&suite.args).unwrap_or_default(),
        ),
        ("status", suite.status.as_str().to_string()),
    ];
    if let Some(code) = suite.exit_code {
        job_props.push(("exit_code", code.to_string()));
    }
    if !suite.reason.is_empty() {
        job_props.push(("reason", suite.reason.clone()));
    }
    let mut w = Writer::new_with_indent(Vec::with_capacity(4096), b' ', 2);
    w.write_event(Xml::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let root = BytesStart::new("testsuites")
        .with_attributes(std::iter::once(attr("name", "autorun")))
        .with_attributes(totals.iter().map(|(k, v)| attr(k, v)));
    w.write_event(Xml::Start(root))?;
    let suite_start = BytesStart::new("testsuite")
        .with_attributes(std::iter::once(attr("name", &suite.tag)))
        .with_attributes(totals.iter().map(|(k, v)| attr(k, v)))
        .with_attributes([attr("timestamp", &timestamp), attr("hostname", &suite.host)]);
    w.write_event(Xml::Start(suite_start))?;
    properties(&mut w, &job_props)?;
    let head_len = w.get_ref().len();
    w.get_mut().extend_from_slice(&job_case);
    w.write_event(Xml::End(BytesEnd::new("testsuite")))?;
    w.write_event(Xml::End(BytesEnd::new("testsuites")))?;
    let mut head = w.into_inner();
    let mut tail = head.split_off(head_len);
    tail.push(b'\n');
    Ok((head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyval::Iteration;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(xml_text("a\x1bb\tc"), "a\\x1bb\tc");
        let a = attr("m", "<a & \"b\">\n\tc\x07");
        assert_eq!(
            std::str::from_utf8(&a.value).unwrap(),
            "&lt;a &amp; &quot;b&quot;&gt;&#10;&#9;c\\x07"
        );
    }

    #[test]
    fn perf_means_and_kinds() {
        let now = SystemTime::now();
        let it = |v: f64| Iteration {
            attr: Default::default(),
            perf: [("x".to_string(), v)].into_iter().collect(),
        };
        let t = FinishedTest {
            name: "kv.a".into(),
            subdir: "kv.a".into(),
            status: Status::Fail,
            reason: "no".into(),
            start: now,
            end: now + Duration::from_millis(250),
            keyval: Default::default(),
            iterations: vec![it(1.0), Iteration::default(), it(2.0)],
        };
        let c = Case::of(&t);
        assert_eq!(c.classname, "kv");
        assert_eq!(c.perf, [("x".to_string(), 1.5)]);
        assert!((c.time - 0.25).abs() < 1e-9);
        assert_eq!(Kind::of(Status::Abort), Kind::Error);
        assert_eq!(Kind::of(Status::Warn), Kind::Passed);
    }
}
