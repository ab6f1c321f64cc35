//! The status log: autotest's exact line format, its validation, its parser, and the writer
//! that appends each record to the job's `status` and to the test's own `status`.

use std::path::{Path, PathBuf};

use crate::status::Status;

/// Characters that may not appear in a subdir, an operation or a field.
const BAD_CHARS: &[char] = &['\t', '\n', '\r', '\x0b', '\x0c'];

/// One status record before it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `START`, `INFO`, `GOOD`, `END FAIL`, ...
    pub code: String,
    /// The test's folder relative to the job folder, or `None` (`----`).
    pub subdir: Option<String>,
    /// The operation (test name with its tags), or `None` (`----`).
    pub operation: Option<String>,
    /// Extra `key=value` fields, written between `timestamp` and `localtime`.
    pub fields: Vec<(String, String)>,
    /// The message; lines after the first become continuation lines.
    pub message: String,
    /// Seconds since the epoch.
    pub timestamp: i64,
}

/// Checks a status code the way autotest's `status_log_entry` does.
pub fn valid_code(code: &str) -> bool {
    if code == "START" || code == "INFO" {
        return true;
    }
    code.strip_prefix("END ")
        .unwrap_or(code)
        .parse::<Status>()
        .is_ok()
}

impl Entry {
    /// A record stamped with the current time.
    pub fn new(code: &str, subdir: Option<&str>, operation: Option<&str>, message: &str) -> Entry {
        Entry {
            code: code.to_string(),
            subdir: subdir.map(str::to_string),
            operation: operation.map(str::to_string),
            fields: Vec::new(),
            message: message.to_string(),
            timestamp: chrono::Local::now().timestamp(),
        }
    }

    /// True for `END ...` records, which close a START.
    pub fn is_end(&self) -> bool {
        self.code.starts_with("END ")
    }

    /// Rejects what autotest rejects: unknown codes, control characters in names and fields,
    /// `\r`, `\v` or `\f` in the first message line.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_code(&self.code) {
            return Err(format!("status code '{}' is not valid", self.code));
        }
        for (what, v) in [("subdir", &self.subdir), ("operation", &self.operation)] {
            if let Some(v) = v {
                if v.contains(BAD_CHARS) {
                    return Err(format!("Invalid character in {what} string: {v:?}"));
                }
            }
        }
        for (k, v) in &self.fields {
            if k.contains(BAD_CHARS) || v.contains(BAD_CHARS) || k.contains('=') {
                return Err(format!("Invalid character in field {k:?}={v:?}"));
            }
        }
        let first = self.message.split('\n').next().unwrap_or("");
        if first.contains(['\r', '\x0b', '\x0c']) {
            return Err(format!("Invalid character in message: {first:?}"));
        }
        Ok(())
    }

    /// The lines autotest writes for this record at `indent` tabs (no final newline).
    pub fn render(&self, indent: usize) -> String {
        let mut out = String::with_capacity(96 + self.message.len());
        for _ in 0..indent {
            out.push('\t');
        }
        out.push_str(&self.code);
        out.push('\t');
        out.push_str(self.subdir.as_deref().unwrap_or("----"));
        out.push('\t');
        out.push_str(self.operation.as_deref().unwrap_or("----"));
        out.push_str("\ttimestamp=");
        out.push_str(&self.timestamp.to_string());
        for (k, v) in &self.fields {
            out.push('\t');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out.push_str("\tlocaltime=");
        out.push_str(&localtime(self.timestamp));
        out.push('\t');
        let mut lines = self.message.split('\n');
        out.push_str(&lines.next().unwrap_or("").replace('\t', "        "));
        for line in lines {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out
    }
}

/// `Nov 27 00:23:41` in the C locale and local time, as autotest's `localtime=` field.
pub fn localtime(ts: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(ts, 0).single() {
        Some(t) => t.format("%b %d %H:%M:%S").to_string(),
        None => String::from("Jan 01 00:00:00"),
    }
}

/// A status line parsed back, as autotest's `status_log_entry.parse` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// Tabs before the code.
    pub indent: usize,
    /// `START`, `END GOOD`, ...
    pub code: String,
    /// `None` for `----`.
    pub subdir: Option<String>,
    /// `None` for `----`.
    pub operation: Option<String>,
    /// The `key=value` fields in order.
    pub fields: Vec<(String, String)>,
    /// The first message line.
    pub message: String,
}

/// Parses one line; continuation lines (two leading spaces) and malformed lines give `None`.
pub fn parse_line(line: &str) -> Option<ParsedLine> {
    if line.starts_with("  ") {
        return None;
    }
    let trimmed = line.trim_start_matches('\t');
    let indent = line.len() - trimmed.len();
    let parts: Vec<&str> = trimmed.split('\t').collect();
    if parts.len() < 4 {
        return None;
    }
    if !valid_code(parts[0]) {
        return None;
    }
    let opt = |s: &str| (s != "----").then(|| s.to_string());
    let fields = parts[3..parts.len() - 1]
        .iter()
        .filter_map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    Some(ParsedLine {
        indent,
        code: parts[0].to_string(),
        subdir: opt(parts[1]),
        operation: opt(parts[2]),
        fields,
        message: parts[parts.len() - 1].to_string(),
    })
}

/// Appends records to `<resultdir>/status` and `<resultdir>/<subdir>/status`, keeping
/// autotest's indentation: START indents what follows, END is written one level out.
#[derive(Debug, Clone)]
pub struct StatusLog {
    resultdir: PathBuf,
    global: PathBuf,
    indent: usize,
}

impl StatusLog {
    /// A writer for the job folder `resultdir`, starting at `indent`.
    pub fn new(resultdir: &Path, indent: usize) -> StatusLog {
        StatusLog::with_file(resultdir, "status", indent)
    }

    /// A writer whose job-wide log is `<resultdir>/<file>` (`status.<i>` in a parallel task).
    pub fn with_file(resultdir: &Path, file: &str, indent: usize) -> StatusLog {
        StatusLog {
            resultdir: resultdir.to_path_buf(),
            global: resultdir.join(file),
            indent,
        }
    }

    /// The current indentation level.
    pub fn indent(&self) -> usize {
        self.indent
    }

    /// Validates, renders and appends one record; returns the rendered text. Each file is
    /// opened in append mode and written with one call, so the record is on disk (in the
    /// page cache) before the next test starts and a crash never leaves half a line.
    pub fn record(&mut self, entry: &Entry) -> Result<String, String> {
        entry.validate()?;
        let level = if entry.is_end() {
            self.indent.saturating_sub(1)
        } else {
            self.indent
        };
        let mut text = entry.render(level);
        text.push('\n');
        append(&self.global, &text)
            .map_err(|e| format!("cannot write the status log {}: {e}", self.global.display()))?;
        if let Some(sub) = &entry.subdir {
            let path = self.resultdir.join(sub).join("status");
            append(&path, &text)
                .map_err(|e| format!("cannot write the status log {}: {e}", path.display()))?;
        }
        if entry.code == "START" {
            self.indent += 1;
        } else if entry.is_end() {
            self.indent = level;
        }
        text.pop();
        Ok(text)
    }
}

/// The status log as a subscriber of the job's events: it writes each
/// [`Event::Record`](crate::events::Event::Record) to the status files and to the debug
/// logs (as autotest's record hook logs it), in every process that records. It is
/// essential: a record that cannot be written stops the job. The writer is shared with the
/// job, which reads its indentation and moves it to `status.<i>` in parallel tasks.
#[derive(Debug, Clone)]
pub struct StatusLogWriter(pub std::rc::Rc<std::cell::RefCell<StatusLog>>);

impl crate::events::Subscriber for StatusLogWriter {
    fn name(&self) -> &str {
        "status log"
    }

    fn handle(&mut self, event: &crate::events::Event) -> Result<(), String> {
        if let crate::events::Event::Record(entry) = event {
            let text = self.0.borrow_mut().record(entry)?;
            crate::logging::status(&text);
        }
        Ok(())
    }

    fn in_forks(&self) -> bool {
        true
    }

    fn essential(&self) -> bool {
        true
    }
}

/// A rendered status record as the console shows it: indentation as two spaces a level,
/// fields apart by two spaces, no `timestamp`/`localtime` (the console line has the time),
/// so that piped output holds no tabs.
pub fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&line.replace('\t', "  "));
            continue;
        }
        let body = line.trim_start_matches('\t');
        for _ in 0..(line.len() - body.len()) {
            out.push_str("  ");
        }
        let mut first = true;
        for part in body.split('\t') {
            if part.starts_with("timestamp=") || part.starts_with("localtime=") || part.is_empty() {
                continue;
            }
            if !first {
                out.push_str("  ");
            }
            out.push_str(part);
            first = false;
        }
    }
    out
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    crate::files::append_whole(path, text.as_bytes())
}

/// A message as the status log keeps it: tabs in its first line become 8 spaces.
pub fn logged_message(message: &str) -> String {
    match message.split_once('\n') {
        Some((first, rest)) => format!("{}\n{rest}", first.replace('\t', "        ")),
        None => message.replace('\t', "        "),
    }
}

/// True when the status log at `path` holds an `END FAIL` or `END ERROR` line (see
/// [`has_failed_end`]), read line by line: the job's memory does not grow with its log.
pub fn file_has_failed_end(path: &Path) -> std::io::Result<bool> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(false);
        }
        let line = String::from_utf8_lossy(&buf);
        if has_failed_end(&line) {
            return Ok(true);
        }
    }
}

/// True when the status log holds an `END FAIL` or `END ERROR` line: the run exits 1.
pub fn has_failed_end(log: &str) -> bool {
    log.lines().any(|l| {
        let t = l.trim_start_matches('\t');
        t.starts_with("END FAIL\t") || t.starts_with("END ERROR\t")
    })
}

/// The job's final status: the code of the last unindented END line, if any.
pub fn job_end_status(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.starts_with("END "))
        .and_then(|l| l.split('\t').next())
        .map(|c| c.trim_start_matches("END ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: &str, msg: &str) -> Entry {
        let mut e = Entry::new(code, Some("t.a"), Some("t.a"), msg);
        e.timestamp = 0;
        e
    }

    #[test]
    fn renders_trailing_tab_and_continuations() {
        let e = entry("END GOOD", "");
        let r = e.render(1);
        assert!(r.starts_with("\tEND GOOD\tt.a\tt.a\ttimestamp=0\tlocaltime="));
        assert!(r.ends_with('\t'));
        let e = entry("FAIL", "first\tx\nsecond\tline\n");
        let r = e.render(2);
        let lines: Vec<&str> = r.split('\n').collect();
        assert!(lines[0].ends_with("\tfirst        x"));
        assert_eq!(lines[1], "  second\tline");
        assert_eq!(lines[2], "  ");
    }

    #[test]
    fn fields_sit_between_timestamp_and_localtime() {
        let mut e = entry("START", "");
        e.fields.push(("timeout".into(), "30".into()));
        let r = e.render(0);
        assert!(r.contains("\ttimestamp=0\ttimeout=30\tlocaltime="), "{r}");
    }

    #[test]
    fn validation_rejects_bad_codes_and_chars() {
        assert!(entry("PASS", "").validate().is_err());
        assert!(entry("END START", "").validate().is_err());
        assert!(entry("END TEST_NA", "").validate().is_ok());
        let mut e = entry("GOOD", "");
        e.subdir = Some("a\tb".into());
        assert!(e.validate().is_err());
        assert!(entry("GOOD", "a\rb").validate().is_err());
        assert!(entry("GOOD", "a\nb\rc").validate().is_ok());
    }

    #[test]
    fn parse_round_trips() {
        let e = entry("END FAIL", "boom\nmore");
        let r = e.render(1);
        let p = parse_line(r.lines().next().unwrap()).unwrap();
        assert_eq!(p.indent, 1);
        assert_eq!(p.code, "END FAIL");
        assert_eq!(p.subdir.as_deref(), Some("t.a"));
        assert_eq!(p.message, "boom");
        assert!(parse_line("  more").is_none());
        let e = Entry::new("INFO", None, None, "hi");
        let p = parse_line(&e.render(0)).unwrap();
        assert_eq!(p.subdir, None);
    }

    #[test]
    fn readable_drops_tabs_and_time_fields() {
        let text =
            "\t\tFAIL\ta\ta\ttimestamp=11\tlocaltime=Nov 27 00:00:00\tno luck\n  Trace\tback";
        assert_eq!(readable(text), "    FAIL  a  a  no luck\n  Trace  back");
        let e = Entry::new("START", None, None, "");
        assert_eq!(readable(&e.render(0)), "START  ----  ----");
    }

    #[test]
    fn failed_ends_are_found_in_a_file() {
        let log = "START\t----\t----\ttimestamp=10\tlocaltime=x\t\n\
                   \tSTART\ta\ta\ttimestamp=10\tlocaltime=x\t\n\
                   \t\tFAIL\ta\ta\ttimestamp=11\tlocaltime=x\tno\n\
                   \tEND FAIL\ta\ta\ttimestamp=11\tlocaltime=x\t\n\
                   END GOOD\t----\t----\ttimestamp=13\tlocaltime=x\t\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        std::fs::write(&path, log).unwrap();
        assert!(file_has_failed_end(&path).unwrap());
        std::fs::write(&path, log.replace("END FAIL", "END WARN")).unwrap();
        assert!(!file_has_failed_end(&path).unwrap());
    }

    #[test]
    fn failure_scan() {
        assert!(has_failed_end(
            "START\n\tEND FAIL\tx\tx\tts\t\nEND GOOD\t----\t----\t\n"
        ));
        assert!(!has_failed_end("\t\tFAIL\tx\tx\t\nEND GOOD\t----\n"));
        assert_eq!(
            job_end_status("\tEND FAIL\tx\nEND ABORT\t----\t----\t\n").as_deref(),
            Some("ABORT")
        );
    }
}
