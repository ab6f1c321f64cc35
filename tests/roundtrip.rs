//! Property tests: what autorun writes, it reads back the same, across arbitrary keys,
//! values and messages.

use autorun::keyval::{self, Tag, Value};
use autorun::status_log::{parse_line, Entry};
use proptest::prelude::*;
use rhai::{Dynamic, Map};

/// Keys autotest accepts: `[-.\w]+` in ASCII.
fn key() -> impl Strategy<Value = String> {
    "[-._a-zA-Z0-9]{1,24}"
}

/// A keyval value of each kind a script writes.
fn value() -> impl Strategy<Value = Dynamic> {
    prop_oneof![
        any::<i64>().prop_map(Dynamic::from_int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Dynamic::from_float),
        any::<bool>().prop_map(Dynamic::from_bool),
        // Text as read_keyval keeps it: no newline, no '#' (a comment to autotest's reader),
        // no whitespace at the end (stripped by it).
        "[^\n\r#]{0,30}[^\\s#]".prop_map(Dynamic::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A map written with `write_keyval` reads back, key by key, as the written text types.
    #[test]
    fn keyvals_written_then_read(map in prop::collection::btree_map(key(), value(), 0..12)) {
        let rhai_map: Map = map.iter().map(|(k, v)| (k.as_str().into(), v.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        keyval::write_map(dir.path(), &rhai_map, Tag::None).unwrap();
        let text = std::fs::read_to_string(dir.path().join("keyval")).unwrap();
        let read = keyval::parse_values(&text).unwrap();
        prop_assert_eq!(read.len(), map.len());
        for (k, v) in &map {
            let written = keyval::py_str(v);
            prop_assert_eq!(&read[k], &Value::parse(&written), "key {}", k);
            // A float comes back as the same number.
            if let Ok(f) = v.as_float() {
                match &read[k] {
                    Value::Float(g) => prop_assert_eq!(*g, f),
                    Value::Int(i) => prop_assert_eq!(*i as f64, f),
                    Value::Text(t) => prop_assert_eq!(t.parse::<f64>().unwrap(), f),
                }
            }
        }
        // The typed reader and the Rhai one agree.
        let pairs = keyval::parse(&text).unwrap();
        prop_assert_eq!(pairs.len(), map.len());
    }

    /// Perf blocks of `results/keyval` read back as tko reads them: every value a number.
    #[test]
    fn perf_keyvals_written_then_read_as_iterations(
        perf in prop::collection::btree_map(key(), any::<f64>().prop_filter("finite", |f| f.is_finite()), 1..8),
        records in 1usize..4,
    ) {
        let pairs: Vec<(String, String)> =
            perf.iter().map(|(k, v)| (k.clone(), keyval::py_float(*v))).collect();
        let mut text = String::new();
        for _ in 0..records {
            text.push_str(&keyval::render(&pairs, Tag::Perf).unwrap());
            text.push('\n');
        }
        let its = keyval::iterations(&text);
        prop_assert_eq!(its.len(), records);
        for it in its {
            prop_assert_eq!(&it.perf, &perf);
        }
    }

    /// A value with a newline or carriage return, or a key outside `[-.\w]+`, is refused and
    /// nothing is rendered.
    #[test]
    fn bad_keys_and_values_are_refused(k in key(), bad in "[^\n]{0,8}[\n\r=/ \t][^\n]{0,8}") {
        let bad_value = vec![(k.clone(), bad.clone())];
        let r = keyval::render(&bad_value, Tag::None);
        prop_assert_eq!(r.is_err(), bad.contains(['\n', '\r']));
        let bad_key = vec![(bad.clone(), "1".to_string())];
        prop_assert!(keyval::render(&bad_key, Tag::Perf).is_err());
    }
}

/// Status codes a record may carry.
fn code() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "START",
        "INFO",
        "GOOD",
        "FAIL",
        "ERROR",
        "WARN",
        "TEST_NA",
        "ABORT",
        "ALERT",
        "END GOOD",
        "END FAIL",
        "END ERROR",
        "END ABORT",
        "END TEST_NA",
        "END WARN",
    ])
    .prop_map(str::to_string)
}

/// A subdir or operation: anything without tabs, line breaks, `\v`, `\f`; `None` is `----`.
fn name() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[^\t\n\r\x0b\x0c]{0,20}".prop_filter("not ----", |s| s != "----"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A status record rendered at any indentation parses back to what was recorded; the
    /// message's further lines are continuation lines no parser takes for records.
    #[test]
    fn status_lines_rendered_then_parsed(
        code in code(),
        subdir in name(),
        operation in name(),
        fields in prop::collection::vec(("[^\t\n\r\x0b\x0c=]{0,10}", "[^\t\n\r\x0b\x0c]{0,16}"), 0..4),
        first in "[^\n\r\x0b\x0c]{0,40}",
        more in prop::collection::vec("[^\n]{0,20}", 0..3),
        indent in 0usize..5,
        timestamp in 0i64..4_000_000_000,
    ) {
        let mut message = first.clone();
        for m in &more {
            message.push('\n');
            message.push_str(m);
        }
        let entry = Entry {
            code: code.clone(),
            subdir: subdir.clone(),
            operation: operation.clone(),
            fields: fields.clone(),
            message,
            timestamp,
        };
        prop_assert!(entry.validate().is_ok());
        let text = entry.render(indent);
        let mut lines = text.split('\n');
        let parsed = parse_line(lines.next().unwrap()).expect("the record line parses");
        prop_assert_eq!(parsed.indent, indent);
        prop_assert_eq!(parsed.code, code);
        prop_assert_eq!(parsed.subdir, subdir);
        prop_assert_eq!(parsed.operation, operation);
        prop_assert_eq!(parsed.message, first.replace('\t', "        "));
        let mut expected = vec![("timestamp".to_string(), timestamp.to_string())];
        expected.extend(fields);
        prop_assert_eq!(&parsed.fields[..parsed.fields.len() - 1], &expected[..]);
        prop_assert_eq!(&parsed.fields.last().unwrap().0, "localtime");
        for continuation in lines {
            prop_assert!(continuation.starts_with("  "));
            prop_assert!(parse_line(continuation).is_none());
        }
    }

    /// Names and fields holding a tab or a line break are refused before anything is
    /// written.
    #[test]
    fn status_records_with_control_characters_are_refused(
        bad in "[^\t]{0,5}[\t\n\r\x0b\x0c][^\t]{0,5}",
        which in 0usize..3,
    ) {
        let mut e = Entry::new("GOOD", Some("t"), Some("t"), "ok");
        match which {
            0 => e.subdir = Some(bad),
            1 => e.operation = Some(bad),
            _ => e.fields.push(("k".into(), bad)),
        }
        prop_assert!(e.validate().is_err());
    }
}
