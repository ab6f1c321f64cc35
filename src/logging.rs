//! Debug logs as autotest keeps them: `debug/<name>.{DEBUG,INFO,WARNING,ERROR}` per job and
//! per test (each file gets its level and above), plus the console.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// A log level, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Details: command output, phase calls.
    Debug,
    /// Progress: status lines, `print`.
    Info,
    /// Something looks wrong.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    const ALL: [Level; 4] = [Level::Debug, Level::Info, Level::Warning, Level::Error];

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// The four files of one log name.
struct Sink {
    files: Vec<(Level, File)>,
}

struct Logger {
    console: Level,
    sinks: Vec<Sink>,
    /// The second the stamps below were made for, and the stamps: formatting a time is
    /// most of the cost of a log line, and a busy test logs many lines a second.
    second: i64,
    file_stamp: String,
    console_stamp: String,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger {
    console: Level::Info,
    sinks: Vec::new(),
    second: i64::MIN,
    file_stamp: String::new(),
    console_stamp: String::new(),
});

fn logger() -> std::sync::MutexGuard<'static, Logger> {
    LOGGER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the lowest level shown on the console (`--verbose` shows DEBUG).
pub fn set_console_level(level: Level) {
    logger().console = level;
}

/// Starts teeing every log line into `dir/<name>.{DEBUG,INFO,WARNING,ERROR}` (appended).
pub fn push_sink(dir: &Path, name: &str) -> std::io::Result<()> {
    let mut files = Vec::with_capacity(4);
    for level in Level::ALL {
        let path = dir.join(format!("{name}.{}", level.name()));
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        files.push((level, f));
    }
    logger().sinks.push(Sink { files });
    Ok(())
}

/// Stops the most recently pushed sink.
pub fn pop_sink() {
    logger().sinks.pop();
}

/// Logs `message` from `module` at `level`.
pub fn log(level: Level, module: &str, message: &str) {
    write(level, module, message, None);
}

/// Sends `message` to the debug logs, and `console` (or `message`) to the console.
fn write(level: Level, module: &str, message: &str, console: Option<&str>) {
    let mut lg = logger();
    let now = chrono::Local::now();
    if now.timestamp() != lg.second {
        lg.second = now.timestamp();
        lg.file_stamp = now.format("%m/%d %H:%M:%S").to_string();
        lg.console_stamp = now.format("%H:%M:%S").to_string();
    }
    let lg = &mut *lg;
    if !lg.sinks.is_empty() {
        let line = format!(
            "{} {:<5.5}|{:>10.10}:{:04}| {}\n",
            lg.file_stamp,
            level.name(),
            module,
            0,
            message
        );
        for sink in &mut lg.sinks {
            for (threshold, f) in &mut sink.files {
                if level >= *threshold {
                    // A debug log that cannot be written must not stop the test.
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }
    if level >= lg.console {
        // Over the console's live progress line, a line starts by erasing it.
        let clear = if crate::console::live_on_stdout() {
            "\r\x1b[2K"
        } else {
            ""
        };
        let line = format!(
            "{clear}{} {:<5.5}| {}\n",
            lg.console_stamp,
            level.name(),
            console.unwrap_or(message)
        );
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Logs a rendered status record at INFO: the debug logs get it as the status log has it,
/// the console in [`crate::status_log::readable`] form.
pub fn status(text: &str) {
    write(
        Level::Info,
        "job",
        text,
        Some(&crate::status_log::readable(text)),
    );
}

/// Logs at INFO.
pub fn info(module: &str, message: &str) {
    log(Level::Info, module, message);
}

/// Logs at DEBUG.
pub fn debug(module: &str, message: &str) {
    log(Level::Debug, module, message);
}

/// Logs at ERROR.
pub fn error(module: &str, message: &str) {
    log(Level::Error, module, message);
}

/// Logs at WARNING.
pub fn warning(module: &str, message: &str) {
    log(Level::Warning, module, message);
}
