//! The status-log readers: one line at a time (`parse_line`) and the whole-log readers that
//! `autorun show`, `results(dir)`, `--continue` and the reports use.
#![no_main]

use autorun::status_log;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = std::str::from_utf8(data) else {
        return;
    };
    for line in log.lines() {
        let _ = status_log::parse_line(line);
    }
    let _ = status_log::finished_tests(log);
    let _ = status_log::summary(log);
    let _ = status_log::has_failed_end(log);
    let _ = status_log::job_end_status(log);
});
