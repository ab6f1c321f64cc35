//! The keyval readers: `read_keyval`'s parser (typed and untyped) and tko's iteration reader.
//! Whatever the bytes, they return a value or a `BadLine` error; what they accept renders
//! back into text that reads the same.
#![no_main]

use autorun::keyval::{self, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keyval::parse_values(text);
    let _ = keyval::iterations(text);
    if let Ok(pairs) = keyval::parse(text) {
        // Accepted pairs (without the type suffix) render and read back to the same keys.
        let plain: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| !k.ends_with('}'))
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        if let Ok(rendered) = keyval::render(&plain, Tag::None) {
            let again = keyval::parse(&rendered).expect("rendered keyvals read back");
            assert_eq!(again.len(), plain.len());
        }
    }
});
