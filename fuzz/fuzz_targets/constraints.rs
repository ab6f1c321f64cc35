//! Perf constraint evaluation: any string, over a few perf values, gives "met", "not met"
//! or "could not evaluate", never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rhai::{Dynamic, Map};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut perf = Map::new();
    perf.insert("throughput".into(), Dynamic::from_int(10));
    perf.insert("latency".into(), Dynamic::from_float(0.25));
    perf.insert("name".into(), Dynamic::from("x"));
    let constraints: Vec<String> = text.split('\n').map(str::to_string).collect();
    let failed = autorun::constraints::analyze(&constraints, &perf);
    assert!(failed.len() <= constraints.len());
    let _ = autorun::constraints::failure_message(&[failed]);
});
