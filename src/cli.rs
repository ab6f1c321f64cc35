//! The command line (contract §1).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// autorun: run autotest-style test jobs written in Rhai.
#[derive(Debug, Parser)]
#[command(
    name = "autorun",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: run CONTROL_FILE).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of a job run.
    #[command(flatten)]
    pub run: RunOpts,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job from a control file.
    Run(RunOpts),
    /// Explore a live job interactively.
    Repl {
        /// Job folder to use.
        #[arg(long)]
        results: Option<PathBuf>,
        /// A folder to find tests in (repeatable).
        #[arg(short = 'd', long = "test-dir")]
        test_dir: Vec<PathBuf>,
    },
    /// List the tests that can be found, with their parameters.
    List {
        /// A folder to find tests in (repeatable).
        #[arg(short = 'd', long = "test-dir")]
        test_dir: Vec<PathBuf>,
        /// Print the list as JSON (see docs/authoring.md).
        #[arg(long)]
        json: bool,
    },
    /// Create a new test NAME/NAME.rhai and a control file that runs it.
    New {
        /// The test's name (letters, digits, '_' and '-').
        name: String,
        /// The test folder to create it in (default ./tests).
        #[arg(long, value_name = "DIR", default_value = "tests")]
        dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write Rhai definition files (.d.rhai) of the script API, for editors.
    Definitions {
        /// Where to write them (default .rhai/definitions).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print the Markdown API reference (docs/api-reference.md) instead.
        #[arg(long, conflicts_with = "dir")]
        markdown: bool,
    },
    /// Summarise a finished (or interrupted) job.
    Show {
        /// The job folder.
        results_dir: PathBuf,
    },
    /// Compare the perf keyvals of two jobs, with statistics.
    Compare {
        /// The baseline job folder (A).
        #[arg(value_name = "DIR_A")]
        a: PathBuf,
        /// The job folder compared with it (B).
        #[arg(value_name = "DIR_B")]
        b: PathBuf,
        /// Print the comparison as JSON (see docs/compare.md).
        #[arg(long)]
        json: bool,
        /// Exit 1 when a perf key got worse by more than PCT percent (higher is better,
        /// except for keys named like times: *_ms, *_s, *latency, *time, ...).
        #[arg(long, value_name = "PCT")]
        fail_on_regression: Option<f64>,
    },
    /// Rewrite the reports of a job.
    Report {
        /// The job folder.
        results_dir: PathBuf,
    },
}

/// Options of `autorun run`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunOpts {
    /// The control file.
    #[arg(value_name = "CONTROL_FILE")]
    pub control: Option<PathBuf>,
    /// Job name: results go to `<output-dir>/TAG/`.
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Where job folders are created (default ./results).
    #[arg(short, long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Extra arguments, split as autotest does, into job.args.
    #[arg(short, long, value_name = "STR", allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Resume the job of this control file from its saved state.
    #[arg(short = 'c', long = "continue")]
    pub cont: bool,
    /// A folder to find tests in; repeatable; searched before the defaults.
    #[arg(short = 'd', long = "test-dir", value_name = "DIR")]
    pub test_dir: Vec<PathBuf>,
    /// DEBUG lines on the console.
    #[arg(short, long)]
    pub verbose: bool,
    /// Also write TAP reports.
    #[arg(long)]
    pub tap: bool,
    /// Reuse an existing job folder (its contents are removed first).
    #[arg(long)]
    pub overwrite: bool,
}
