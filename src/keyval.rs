//! Keyval files in autotest's format: `key=value` lines in sorted key order, appended one
//! block per write, plus the Python-like rendering of values (`str()` and `repr()`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{Dynamic, Map};

/// The type tag of an iteration keyval block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Untagged (the test keyval).
    None,
    /// `{attr}` keys.
    Attr,
    /// `{perf}` keys.
    Perf,
}

impl Tag {
    /// `""`, `"{attr}"` or `"{perf}"`.
    pub fn suffix(self) -> &'static str {
        match self {
            Tag::None => "",
            Tag::Attr => "{attr}",
            Tag::Perf => "{perf}",
        }
    }
}

/// A keyval write that was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyvalError {
    /// The key does not match `[-.\w]+` (ASCII).
    #[error("Invalid key: {0}")]
    InvalidKey(String),
    /// The value would span lines.
    #[error("Invalid value for key {0}: a keyval value may not contain a newline")]
    InvalidValue(String),
    /// The file could not be written.
    #[error("cannot write keyval file {0}: {1}")]
    Io(String, String),
    /// A line of a keyval file that `read_keyval` cannot read.
    #[error("Invalid format line: {0}")]
    BadLine(String),
}

/// True for keys autotest accepts: ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A float as Python's `repr()`/py3 `str()`: shortest round trip, `.0` on whole numbers.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let mant = mant.strip_suffix(".0").unwrap_or(mant);
            format!("{mant}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// A value as autotest's `str()` writes it into keyval files.
pub fn py_str(v: &Dynamic) -> String {
    if v.is_unit() {
        "None".into()
    } else if let Ok(b) = v.as_bool() {
        if b { "True" } else { "False" }.into()
    } else if let Ok(f) = v.as_float() {
        py_float(f)
    } else if v.is_string() {
        v.clone().into_string().unwrap_or_default()
    } else if v.is_array() || v.is_map() {
        py_repr(v)
    } else {
        v.to_string()
    }
}

/// A value as Python's `repr()`: strings single-quoted, `None`, `True`, lists, dicts.
pub fn py_repr(v: &Dynamic) -> String {
    if v.is_string() {
        let s = v.clone().into_string().unwrap_or_default();
        // Python quotes with ' unless the text holds ' and no ".
        let quote = if s.contains('\'') && !s.contains('"') {
            '"'
        } else {
            '\''
        };
        let mut out = String::with_capacity(s.len() + 2);
        out.push(quote);
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push(quote);
        out
    } else if let Some(arr) = v.read_lock::<rhai::Array>() {
        let items: Vec<String> = arr.iter().map(py_repr).collect();
        format!("[{}]", items.join(", "))
    } else if let Some(map) = v.read_lock::<Map>() {
        let items: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{}: {}", py_repr(&Dynamic::from(k.to_string())), py_repr(v)))
            .collect();
        format!("{{{}}}", items.join(", "))
    } else if let Some(fp) = v.read_lock::<rhai::FnPtr>() {
        format!("<function {}>", fp.fn_name())
    } else {
        py_str(v)
    }
}

/// The path a keyval write goes to: a folder means its `keyval` file.
pub fn keyval_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("keyval")
    } else {
        path.to_path_buf()
    }
}

/// Renders `pairs` (already sorted by key) as keyval lines, checking every key and value
/// first so that one bad entry writes nothing.
pub fn render(pairs: &[(String, String)], tag: Tag) -> Result<String, KeyvalError> {
    let mut out = String::new();
    for (k, v) in pairs {
        if !valid_key(k) {
            return Err(KeyvalError::InvalidKey(format!("{k}{}", tag.suffix())));
        }
        if v.contains(['\n', '\r']) {
            return Err(KeyvalError::InvalidValue(k.clone()));
        }
        out.push_str(k);
        out.push_str(tag.suffix());
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    Ok(out)
}

/// Sorts `pairs` as autotest writes them: by the key with its `{attr}`/`{perf}` suffix
/// (so `lat_p99{perf}` comes before `lat{perf}`).
pub fn sort_tagged(pairs: &mut [(String, String)], tag: Tag) {
    if tag != Tag::None {
        pairs.sort_by_cached_key(|(k, _)| format!("{k}{}", tag.suffix()));
    }
}

/// A Rhai map as sorted `(key, str(value))` pairs.
pub fn map_pairs(map: &Map) -> Vec<(String, String)> {
    // Rhai maps are B-trees keyed by string, so iteration is already byte-sorted.
    map.iter()
        .map(|(k, v)| (k.to_string(), py_str(v)))
        .collect()
}

/// Appends `text` to the keyval file at `path` (a folder means its `keyval`).
pub fn append(path: &Path, text: &str) -> Result<(), KeyvalError> {
    let path = keyval_path(path);
    crate::files::append_whole(&path, text.as_bytes())
        .map_err(|e| KeyvalError::Io(path.display().to_string(), e.to_string()))
}

/// `write_keyval(path, map, tag)`: validates everything, then appends one sorted block.
pub fn write_map(path: &Path, map: &Map, tag: Tag) -> Result<(), KeyvalError> {
    let text = render(&map_pairs(map), tag)?;
    append(path, &text)
}

/// A keyval value as autotest's `read_keyval` types it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// `^\d+$`.
    Int(i64),
    /// `^(\d+\.)?\d+$`.
    Float(f64),
    /// Anything else, kept as written.
    Text(String),
}

impl Value {
    /// Types `v` as autotest does: `^\d+$` an int, `^(\d+\.)?\d+$` a float, else a string.
    pub fn parse(v: &str) -> Value {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(v) {
            if let Ok(i) = v.parse::<i64>() {
                return Value::Int(i);
            }
        }
        let is_float = match v.split_once('.') {
            Some((a, b)) => digits(a) && digits(b),
            None => false,
        };
        if is_float {
            if let Ok(f) = v.parse::<f64>() {
                return Value::Float(f);
            }
        }
        Value::Text(v.to_string())
    }
}

/// A keyval value parsed as autotest does: `^\d+$` an int, `^(\d+\.)?\d+$` a float, else a
/// string kept as written.
pub fn parse_value(v: &str) -> Dynamic {
    match Value::parse(v) {
        Value::Int(i) => Dynamic::from_int(i),
        Value::Float(f) => Dynamic::from_float(f),
        Value::Text(s) => Dynamic::from(s),
    }
}

/// Reads keyval text into `(key, value)` pairs in file order. Comments (`#...`) and blank
/// lines are skipped; `{perf}`/`{attr}` suffixes are kept in the keys.
pub fn parse(text: &str) -> Result<Vec<(String, Dynamic)>, KeyvalError> {
    Ok(lines(text)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), parse_value(v)))
        .collect())
}

/// Reads keyval text into a typed map, as `read_keyval`: the last duplicate wins.
pub fn parse_values(text: &str) -> Result<BTreeMap<String, Value>, KeyvalError> {
    Ok(lines(text)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::parse(v)))
        .collect())
}

/// The `key=value` lines of keyval text, checked, comments and blank lines skipped.
fn lines(text: &str) -> Result<Vec<(&str, &str)>, KeyvalError> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = match raw.find('#') {
            Some(i) => &raw[..i],
            None => raw,
        }
        .trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(KeyvalError::BadLine(raw.to_string()));
        };
        let bare = key
            .strip_suffix("{perf}")
            .or_else(|| key.strip_suffix("{attr}"))
            .unwrap_or(key);
        if !valid_key(bare) {
            return Err(KeyvalError::BadLine(raw.to_string()));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// One record of an iteration keyval file (`results/keyval`), as autotest's results
/// parser (tko) reads it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Iteration {
    /// The `{attr}` keys, values as written.
    pub attr: BTreeMap<String, String>,
    /// The `{perf}` keys (and untyped ones), values as floats.
    pub perf: BTreeMap<String, f64>,
}

/// Reads `results/keyval` text as tko's `iteration.load_from_keyval` does: each blank line
/// ends a record (so two blank lines in a row make an empty one), `key{attr}=v` is an
/// attribute, `key{perf}=v` and untyped `key=v` are perf values read as floats. Lines tko
/// would skip with a warning (another type tag, a perf value that is no number) are
/// skipped, and so are perf values JSON cannot hold (`nan`, `inf`).
pub fn iterations(text: &str) -> Vec<Iteration> {
    let mut out = Vec::new();
    let mut current = Iteration::default();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            out.push(std::mem::take(&mut current));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, tag) = match key.strip_suffix('}').and_then(|k| k.rsplit_once('{')) {
            Some((k, t)) => (k, t),
            None => (key, "perf"),
        };
        match tag {
            "attr" => {
                current.attr.insert(key.to_string(), value.to_string());
            }
            "perf" => {
                // Python's float(): blanks around the number are allowed.
                if let Some(f) = value.trim().parse::<f64>().ok().filter(|f| f.is_finite()) {
                    current.perf.insert(key.to_string(), f);
                }
            }
            _ => {}
        }
    }
    // A last record without its blank line counts when it holds something.
    if !current.attr.is_empty() || !current.perf.is_empty() {
        out.push(current);
    }
    out
}

/// `read_keyval(path)`: a folder means its `keyval`; a missing file is an empty map; the
/// last duplicate wins.
pub fn read(path: &Path) -> Result<Map, KeyvalError> {
    let path = keyval_path(path);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(KeyvalError::Io(path.display().to_string(), e.to_string())),
    };
    Ok(parse(&text)?
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_like_values() {
        assert_eq!(py_float(1.5), "1.5");
        assert_eq!(py_float(3.0), "3.0");
        assert_eq!(py_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(py_float(1e20), "1e+20");
        assert_eq!(py_float(1.5e-7), "1.5e-07");
        assert_eq!(py_str(&Dynamic::UNIT), "None");
        assert_eq!(py_str(&Dynamic::TRUE), "True");
        assert_eq!(py_str(&Dynamic::from("lbl")), "lbl");
        assert_eq!(py_repr(&Dynamic::from("l'b")), "\"l'b\"");
        assert_eq!(py_repr(&Dynamic::from("a'b\"c")), "'a\\'b\"c'");
        assert_eq!(py_repr(&Dynamic::from_int(5)), "5");
        let arr: rhai::Array = vec![Dynamic::from_int(1), Dynamic::from("a")];
        assert_eq!(py_repr(&Dynamic::from_array(arr)), "[1, 'a']");
    }

    #[test]
    fn render_sorted_and_tagged() {
        let mut m = Map::new();
        m.insert("b".into(), Dynamic::from_int(2));
        m.insert("a".into(), Dynamic::from_float(1.5));
        let text = render(&map_pairs(&m), Tag::Perf).unwrap();
        assert_eq!(text, "a{perf}=1.5\nb{perf}=2\n");
    }

    #[test]
    fn one_bad_key_writes_nothing() {
        let mut m = Map::new();
        m.insert("a".into(), Dynamic::from_int(1));
        m.insert("bad key".into(), Dynamic::from_int(1));
        assert_eq!(
            render(&map_pairs(&m), Tag::Perf).unwrap_err().to_string(),
            "Invalid key: bad key{perf}"
        );
        let mut m = Map::new();
        m.insert("a".into(), Dynamic::from("x\ny"));
        assert!(render(&map_pairs(&m), Tag::None).is_err());
    }

    #[test]
    fn parse_numbers_like_autotest() {
        let kv = parse("a=1\nb=1.5\nc=-1\nd=1e3\ne=.5\nf=1.\n\n# c\ng{perf}=2 # x\n").unwrap();
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
        assert_eq!(get("a").as_int().unwrap(), 1);
        assert_eq!(get("b").as_float().unwrap(), 1.5);
        for s in ["c", "d", "e", "f"] {
            assert!(get(s).is_string(), "{s}");
        }
        assert_eq!(get("g{perf}").as_int().unwrap(), 2);
        assert!(parse("no equals\n").is_err());
        let typed = parse_values("a=1\nb=1.5\nc=-1\na=2\n").unwrap();
        assert_eq!(typed["a"], Value::Int(2));
        assert_eq!(typed["b"], Value::Float(1.5));
        assert_eq!(typed["c"], Value::Text("-1".into()));
    }

    #[test]
    fn iterations_read_like_tko() {
        let text = "label{attr}=lbl\n\nratio{perf}=0.5\nn{perf}=20\nold=3\n\n\n\
                    x{perf}=nan\ny{perf}=abc\nz{other}=1\nw{perf}=1e3";
        let it = iterations(text);
        assert_eq!(it.len(), 4, "{it:?}");
        assert_eq!(it[0].attr["label"], "lbl");
        assert!(it[0].perf.is_empty());
        assert_eq!(it[1].perf["ratio"], 0.5);
        assert_eq!(it[1].perf["n"], 20.0);
        // untyped keys are perf values
        assert_eq!(it[1].perf["old"], 3.0);
        // two blank lines in a row make an empty record, as in tko
        assert_eq!(it[2], Iteration::default());
        // unreadable or non-finite values are skipped; a last record needs no blank line
        assert_eq!(it[3].perf.len(), 1);
        assert_eq!(it[3].perf["w"], 1000.0);
        assert!(iterations("").is_empty());
    }
}
