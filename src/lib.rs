//! autorun: a test harness with the semantics of autotest's client, scripted in Rhai.
//!
//! The job process runs the control file; each `job.run_test` runs the test in a forked
//! process of its own ([`child`]), which drives the [`lifecycle`] through a
//! [`script_test::ScriptTest`], or an [`exec_test::ExecTest`] for a test that is a
//! program. The job process sends [`events`] to subscribers, such as the [`report`]
//! writers (`results.json`, `junit.xml`).

pub mod api;
pub mod args;
pub mod child;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod console;
pub mod constraints;
pub mod definitions;
pub mod discovery;
pub mod error;
pub mod events;
pub mod exec_test;
pub mod files;
pub mod imports;
pub mod job;
pub mod keyval;
pub mod lifecycle;
pub mod list;
pub mod logging;
pub mod outcome;
pub mod parallel;
pub mod profilers;
pub mod progress;
pub mod repl;
pub mod report;
pub mod results;
pub mod resume;
pub mod runner;
pub mod scaffold;
pub mod script_test;
pub mod show;
pub mod state;
pub mod stats;
pub mod status;
pub mod status_log;
pub mod steps;
pub mod sysinfo;
pub mod table;
pub mod tap;

use std::ffi::OsString;

/// `println!` that ignores a closed stdout (`autorun ... | head`) instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::table::print(&format!("{}\n", format_args!($($t)*)))
    };
}

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::exit;

/// Runs the command line `argv` and returns the process exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    // One malloc arena: the work runs on a spawned thread, whose own arena would grow by
    // many small mprotect calls (about a millisecond per test process).
    // SAFETY: mallopt only tunes the allocator; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Scripts recurse on the native stack: give them a large one, the same in every build.
    let worker = std::thread::Builder::new()
        .name("autorun".into())
        .stack_size(api::SCRIPT_STACK)
        .spawn(move || dispatch(argv));
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        _ => {
            eprintln!("autorun: internal error");
            exit::ABORTED
        }
    }
}

fn dispatch(argv: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        None => runner::run_job(&cli.run),
        Some(Command::Run(opts)) => runner::run_job(&opts),
        Some(Command::Repl { results, test_dir }) => repl::run(results.as_deref(), &test_dir),
        Some(Command::List { test_dir, json }) => list::run(&test_dir, json),
        Some(Command::New { name, dir }) => scaffold::run(&name, &dir),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "autorun", &mut script);
            table::print(&String::from_utf8_lossy(&script));
            Ok(exit::OK)
        }
        Some(Command::Definitions { dir, markdown }) => definitions::run(dir.as_deref(), markdown),
        Some(Command::Show { results_dir }) => show::run(&results_dir),
        Some(Command::Compare {
            a,
            b,
            json,
            fail_on_regression,
        }) => compare::run(&a, &b, json, fail_on_regression),
        Some(Command::Report { results_dir }) => report::rebuild(&results_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("autorun: {e}");
            e.code()
        }
    }
}
