//! The console: what a person running `autorun` sees besides the log lines.
//!
//! - On a terminal (stderr is a TTY and `TERM` is not `dumb`), a live line at the bottom
//!   shows the tests running now (name, iteration i/N, time so far), redrawn ten times a
//!   second from the [progress board](crate::progress); log lines erase it as they are
//!   printed and it comes back under them. `AUTORUN_PROGRESS=0` turns it off.
//! - At the end, a summary: how many tests ended with each status (in colour on a
//!   terminal unless `NO_COLOR` is set), the total time, and where the results are.
//! - When piped, plain lines only: no live line, no colour, no control characters.
//!
//! The console is a subscriber of the job's events in the job process.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::events::{Event, Subscriber};
use crate::progress::{self, Running};
use crate::status::Status;

/// True while the live line is drawn on the terminal stdout also goes to: log lines then
/// start by erasing it. Forks inherit it.
static LIVE_ON_STDOUT: AtomicBool = AtomicBool::new(false);

/// True when log lines must erase the live line first.
pub fn live_on_stdout() -> bool {
    LIVE_ON_STDOUT.load(Ordering::Relaxed)
}

/// True when `NO_COLOR` asks for no colour (set and not empty, as no-color.org says).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether this console draws a live line: stderr is a terminal that can take escape
/// codes, and `AUTORUN_PROGRESS` is not `0`.
pub fn wants_live() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
        && std::env::var("AUTORUN_PROGRESS").map_or(true, |v| v != "0")
}

/// The live line for `running`, at most `width` characters.
pub fn live_line(running: &[Running], width: usize) -> String {
    let one = |r: &Running| {
        let secs = r.elapsed_ms as f64 / 1000.0;
        let it = match r.of {
            n if n > 0 => format!("iteration {}/{n}, ", r.iteration.clamp(1, n)),
            0 if r.iteration > 0 => format!("run {}, ", r.iteration),
            _ => String::new(),
        };
        format!("{} ({it}{secs:.1} s)", r.name)
    };
    let text = match running {
        [] => String::new(),
        [r] => format!("▶ {}", one(r)),
        many => format!(
            "▶ {} running: {}",
            many.len(),
            many.iter().map(one).collect::<Vec<_>>().join(" · ")
        ),
    };
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct for a terminal descriptor.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}

/// Writes `bytes` to stderr with one system call and no lock: the drawing thread must
/// never hold a lock a forked test process would inherit held.
fn raw_stderr(bytes: &[u8]) {
    // SAFETY: write(2) on our own stderr descriptor with a valid buffer.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
}

/// The thread drawing the live line.
struct Drawer {
    stop: Arc<AtomicBool>,
    /// True while a live line is on the screen. Held while drawing, so that the job's
    /// thread can erase the line when the last test ends without the drawer putting it
    /// back a moment later (over a REPL prompt, say).
    shown: Arc<std::sync::Mutex<bool>>,
    thread: std::thread::JoinHandle<()>,
}

impl Drawer {
    fn start() -> Option<Drawer> {
        if !progress::open() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shown = Arc::new(std::sync::Mutex::new(false));
        let (flag, on_screen) = (stop.clone(), shown.clone());
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    {
                        let mut shown = on_screen.lock().unwrap_or_else(|p| p.into_inner());
                        let running = progress::snapshot();
                        if running.is_empty() {
                            if *shown {
                                raw_stderr(b"\r\x1b[2K");
                                *shown = false;
                            }
                        } else {
                            let line = live_line(&running, terminal_width().saturating_sub(1));
                            raw_stderr(format!("\r\x1b[2K{line}").as_bytes());
                            *shown = true;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                raw_stderr(b"\r\x1b[2K");
            })
            .ok()?;
        Some(Drawer {
            stop,
            shown,
            thread,
        })
    }

    /// Erases the live line now if no test runs any more.
    fn settle(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if *shown && progress::snapshot().is_empty() {
            raw_stderr(b"\r\x1b[2K");
            *shown = false;
        }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// The console's part of the job: the live line and the closing summary.
pub struct Console {
    resultdir: PathBuf,
    live: bool,
    color: bool,
    drawer: Option<Drawer>,
    started: Option<SystemTime>,
    counts: Vec<(Status, usize)>,
    tests: usize,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("live", &self.live)
            .field("color", &self.color)
            .finish()
    }
}

impl Console {
    /// The console of the job in `resultdir`, drawing a live line when `live`.
    pub fn new(resultdir: &std::path::Path, live: bool) -> Console {
        Console {
            resultdir: resultdir.to_path_buf(),
            live,
            color: std::io::stdout().is_terminal() && !no_color(),
            drawer: None,
            started: None,
            counts: Vec::new(),
            tests: 0,
        }
    }

    fn stop_drawing(&mut self) {
        LIVE_ON_STDOUT.store(false, Ordering::SeqCst);
        if let Some(d) = self.drawer.take() {
            d.finish();
        }
    }

    /// `3 tests: 1 FAIL, 2 GOOD in 4.2 s.`, statuses in autotest's severity order.
    pub fn summary(&self, end: SystemTime) -> String {
        let secs = self
            .started
            .and_then(|s| end.duration_since(s).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let mut counts = Vec::new();
        for st in crate::status::ALL {
            if let Some((_, n)) = self.counts.iter().find(|(s, _)| *s == st) {
                let text = format!("{n} {st}");
                counts.push(if self.color { paint(st, &text) } else { text });
            }
        }
        let what = if self.tests == 1 { "test" } else { "tests" };
        let time = human_secs(secs);
        if counts.is_empty() {
            format!("{} {what} in {time}.", self.tests)
        } else {
            format!("{} {what}: {} in {time}.", self.tests, counts.join(", "))
        }
    }
}

/// `0.4 s`, `12.0 s`, `3 min 05 s`, `2 h 01 min`.
pub fn human_secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// `text` in the colour of status `st` (ANSI).
fn paint(st: Status, text: &str) -> String {
    let code = match st {
        Status::Good => "32",
        Status::Warn | Status::TestNa => "33",
        Status::Fail | Status::Error | Status::Abort => "31",
        _ => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

impl Subscriber for Console {
    fn name(&self) -> &str {
        "console"
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::JobStarted { .. } => {
                self.started.get_or_insert_with(SystemTime::now);
                if self.live && self.drawer.is_none() {
                    self.drawer = Drawer::start();
                    LIVE_ON_STDOUT.store(
                        self.drawer.is_some() && std::io::stdout().is_terminal(),
                        Ordering::SeqCst,
                    );
                }
            }
            Event::TestFinished(t) => {
                if let Some(d) = &self.drawer {
                    d.settle();
                }
                self.tests += 1;
                match self.counts.iter_mut().find(|(s, _)| *s == t.status) {
                    Some((_, n)) => *n += 1,
                    None => self.counts.push((t.status, 1)),
                }
            }
            Event::JobPaused { .. } => self.stop_drawing(),
            Event::JobFinished { end, .. } => {
                self.stop_drawing();
                crate::outln!("{}", self.summary(*end));
                crate::outln!("Results are in {}", self.resultdir.display());
            }
            _ => {}
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop_drawing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, ms: i64, it: i64, of: i64) -> Running {
        Running {
            name: name.into(),
            elapsed_ms: ms,
            iteration: it,
            of,
        }
    }

    #[test]
    fn live_line_shows_name_iteration_and_time() {
        assert_eq!(
            live_line(&[r("sleeptest.short", 1234, 2, 3)], 80),
            "▶ sleeptest.short (iteration 2/3, 1.2 s)"
        );
        assert_eq!(live_line(&[r("t", 0, 0, -1)], 80), "▶ t (0.0 s)");
        assert_eq!(live_line(&[r("t", 5000, 7, 0)], 80), "▶ t (run 7, 5.0 s)");
        assert_eq!(
            live_line(&[r("a", 100, 1, 1), r("b", 2000, 0, -1)], 80),
            "▶ 2 running: a (iteration 1/1, 0.1 s) · b (2.0 s)"
        );
        let long = live_line(&[r(&"x".repeat(200), 0, 0, -1)], 40);
        assert_eq!(long.chars().count(), 40);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn human_times() {
        assert_eq!(human_secs(0.42), "0.4 s");
        assert_eq!(human_secs(185.0), "3 min 05 s");
        assert_eq!(human_secs(7260.0), "2 h 01 min");
    }
}
