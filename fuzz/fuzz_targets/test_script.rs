//! Test-script loading: compiling a script, checking its phases and reading its top-level
//! settings (`ScriptTest::load`), with autorun's own engine. Any text gives a loaded test or
//! an ERROR outcome with a message, never a panic or a stack overflow.
//!
//! The engine is the one tests get, with two changes so that random scripts cannot touch
//! the machine or hang the fuzzer: an operations budget, and the functions that run
//! commands, write files, sleep or drive the job disabled.
#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use autorun::job::{JobHandle, JobInfo};
use autorun::lifecycle::TestState;
use autorun::script_test::ScriptTest;
use libfuzzer_sys::fuzz_target;

/// Functions a random script must not reach.
const DISABLED: &[&str] = &[
    "run",
    "system",
    "system_output",
    "write_file",
    "append_file",
    "mkdir",
    "drop_caches",
    "sleep",
    "job",
    "exit",
    "results",
    "read_file",
    "read_keyval",
    "import",
];

struct Fixture {
    dir: tempfile::TempDir,
    engine: rhai::Engine,
}

thread_local! {
    static FIXTURE: Fixture = {
        let dir = tempfile::tempdir().expect("a temp folder");
        let root = dir.path().to_path_buf();
        let info = JobInfo {
            resultdir: root.join("results"),
            tmpdir: root.join("tmp"),
            tag: "fuzz".into(),
            args: Vec::new(),
            user: "fuzz".into(),
            hostname: "fuzz".into(),
            control: root.join("control.rhai"),
            test_dirs: Vec::new(),
            profiler_dirs: Vec::new(),
            cache_dir: root.join("cache"),
            verbose: false,
            state: root.join("state"),
            cleanup_grace: 1.0,
            status_file: "status".into(),
            master_testpath: None,
            sinks: Vec::new(),
            indent: 0,
            sysinfo: Default::default(),
        };
        let mut engine = autorun::api::engine(JobHandle::new(info));
        engine.set_max_operations(20_000);
        for name in DISABLED {
            engine.disable_symbol(*name);
        }
        Fixture { dir, engine }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    FIXTURE.with(|f| {
        let path: PathBuf = f.dir.path().join("t.rhai");
        std::fs::write(&path, text).expect("writing the script");
        let state = Rc::new(RefCell::new(TestState::default()));
        match ScriptTest::load(&f.engine, &path, "t", state) {
            Ok(_) => {}
            Err(o) => assert!(!o.message.is_empty(), "an outcome without a message"),
        }
    });
});
