//! Test-script loading: compiling a script, checking its phases and reading its top-level
//! settings (`ScriptTest::load`), with autorun's own engine. Any text gives a loaded test or
//! an ERROR outcome with a message, never a panic or a stack overflow.
//!
//! The engine is the one tests get, with an operations budget so that endless loops end,
//! and the functions that run commands, write files or sleep replaced by ones that throw,
//! so that a random script cannot touch the machine.
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;

use autorun::job::{JobHandle, JobInfo};
use autorun::lifecycle::TestState;
use autorun::script_test::ScriptTest;
use libfuzzer_sys::fuzz_target;
use rhai::{Dynamic, EvalAltResult, Map, FLOAT, INT};

struct Fixture {
    _dir: tempfile::TempDir,
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
        disable_side_effects(&mut engine);
        Fixture { _dir: dir, engine }
    };
}

type Refused = Result<(), Box<EvalAltResult>>;

fn refused() -> Refused {
    Err("disabled in the fuzzer".into())
}

/// Registers, over autorun's own, functions of the same signatures that only throw.
fn disable_side_effects(e: &mut rhai::Engine) {
    e.register_fn("run", |_: Dynamic| refused())
        .register_fn("run", |_: Dynamic, _: Map| refused())
        .register_fn("system", |_: Dynamic| refused())
        .register_fn("system", |_: Dynamic, _: Map| refused())
        .register_fn("system_output", |_: Dynamic| refused())
        .register_fn("system_output", |_: Dynamic, _: Map| refused())
        .register_fn("sleep", |_: INT| refused())
        .register_fn("sleep", |_: FLOAT| refused())
        .register_fn("write_file", |_: &str, _: &str| refused())
        .register_fn("append_file", |_: &str, _: &str| refused())
        .register_fn("mkdir", |_: &str| refused())
        .register_fn("drop_caches", refused);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    FIXTURE.with(|f| {
        let path = f._dir.path().join("t.rhai");
        std::fs::write(&path, text).expect("writing the script");
        let state = Rc::new(RefCell::new(TestState::default()));
        match ScriptTest::load(&f.engine, &path, "t", state) {
            Ok(_) => {}
            Err(o) => assert!(!o.message.is_empty(), "an outcome without a message"),
        }
    });
});
