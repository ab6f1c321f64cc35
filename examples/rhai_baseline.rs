//! Baseline for `scripts/bench`: the cost of calling an empty Rhai `run_once` the way a
//! test process does, without the harness around it.
//!
//! Builds the engine with `autorun::api::engine` (exactly what test processes use), compiles
//! `fn run_once() {}` and calls it N times with `call_fn_with_options` (`eval_ast(false)`,
//! `rewind_scope(true)`, `this` bound to a test object, a fresh `Scope` each call), as
//! `ScriptTest::call_fn` does. For comparison it also times a bare engine
//! (`Engine::new_raw()` + `StandardPackage`, no autorun callbacks or registrations).
//!
//! It also times `autorun::api::engine` itself, which every test process builds once.
//!
//! Usage: `rhai_baseline [CALLS]` (default 100000). Prints one machine-readable line:
//! `us_per_call=<autorun engine> raw_us_per_call=<bare engine> calls=<CALLS>
//! engine_build_ms=<one autorun::api::engine() call>`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use autorun::job::{JobHandle, JobInfo};
use autorun::lifecycle::TestState;
use autorun::script_test::TestObj;
use rhai::packages::{Package, StandardPackage};
use rhai::{CallFnOptions, Dynamic, Engine, Scope, AST};

const SCRIPT: &str = "fn run_once() {}";

/// Calls `run_once` `calls` times; returns µs per call.
fn time_calls(engine: &Engine, ast: &AST, this: &mut Dynamic, calls: u64) -> f64 {
    let call = |this: &mut Dynamic| {
        let opts = CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true)
            .bind_this_ptr(this);
        let result = engine
            .call_fn_with_options::<Dynamic>(
                opts,
                &mut Scope::new(),
                ast,
                "run_once",
                Vec::<Dynamic>::new(),
            )
            .expect("run_once fails");
        let _ = std::hint::black_box(result);
    };
    // Warm up caches (function resolution cache, allocator) before timing.
    for _ in 0..calls.min(1000) {
        call(this);
    }
    let start = Instant::now();
    for _ in 0..calls {
        call(this);
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("CALLS must be a positive integer"))
        .unwrap_or(100_000)
        .max(1);

    // The engine test processes build. The job handle only needs a description; nothing
    // is written unless a script records something.
    let dir = std::env::temp_dir();
    let info = JobInfo {
        resultdir: dir.clone(),
        tmpdir: dir.clone(),
        tag: "bench".into(),
        args: Vec::new(),
        user: "bench".into(),
        hostname: "localhost".into(),
        control: PathBuf::from("control.rhai"),
        test_dirs: Vec::new(),
        profiler_dirs: Vec::new(),
        cache_dir: dir.clone(),
        verbose: false,
        state: dir.join("autorun-bench.state"),
        cleanup_grace: 10.0,
        status_file: "status".into(),
        master_testpath: None,
        sinks: Vec::new(),
        indent: 0,
        sysinfo: Default::default(),
    };
    // What each test process pays once: building the engine (median of a few builds).
    let mut builds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            let e = autorun::api::engine(JobHandle::new(info.clone()));
            let ms = start.elapsed().as_secs_f64() * 1e3;
            drop(std::hint::black_box(e));
            ms
        })
        .collect();
    builds.sort_by(f64::total_cmp);
    let build_ms = builds[builds.len() / 2];

    let engine = autorun::api::engine(JobHandle::new(info));
    let ast = engine.compile(SCRIPT).expect("the script compiles");
    let mut this = Dynamic::from(TestObj(Rc::new(RefCell::new(TestState::default()))));
    let autorun_us = time_calls(&engine, &ast, &mut this, calls);

    // A bare engine built the same way, without autorun's callbacks and functions.
    let mut raw = Engine::new_raw();
    raw.register_global_module(StandardPackage::new().as_shared_module());
    let raw_ast = raw.compile(SCRIPT).expect("the script compiles");
    let mut raw_this = Dynamic::from(rhai::Map::new());
    let raw_us = time_calls(&raw, &raw_ast, &mut raw_this, calls);

    println!(
        "us_per_call={autorun_us:.4} raw_us_per_call={raw_us:.4} calls={calls} engine_build_ms={build_ms:.4}"
    );
}
