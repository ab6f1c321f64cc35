//! `autorun definitions`: the script API described from the engine's own metadata, as Rhai
//! definition files (`.d.rhai`) for editors and as the Markdown reference
//! `docs/api-reference.md`.
//!
//! Both come from the engine that runs scripts ([`api::described_engine`]): the functions
//! carry their parameter names and doc comments from their registration ([`api::doc_fn`]),
//! so the reference cannot drift from what scripts can call.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api;
use crate::error::{exit, Error};

/// Where `autorun definitions` writes without a folder argument (rhai's own convention).
pub const DEFAULT_DIR: &str = ".rhai/definitions";

/// The command that refreshes `docs/api-reference.md`.
pub const REFRESH: &str = "cargo run -- definitions --markdown > docs/api-reference.md";

/// The definition of the `job` variable, which the engine resolves outside any scope.
const SCOPE_FILE: &str = "module static;

/// The running job: `job.run_test(...)`, `job.record(...)`, `job.tag`, ... (a test sees it too).
const job: Job;
";

/// `autorun definitions [DIR]` and `autorun definitions --markdown`.
pub fn run(dir: Option<&Path>, markdown: bool) -> Result<i32, Error> {
    if markdown {
        crate::table::print(&self::markdown());
        return Ok(exit::OK);
    }
    let dir = dir.unwrap_or(Path::new(DEFAULT_DIR));
    let written = write(dir).map_err(|e| {
        Error::Io(format!(
            "cannot write definitions in {}: {e}",
            dir.display()
        ))
    })?;
    crate::outln!(
        "Wrote {} definition files to {}",
        written.len(),
        dir.display()
    );
    Ok(exit::OK)
}

/// The definition files: `(file name, contents)`, Rhai's standard library included.
pub fn files() -> Vec<(String, String)> {
    let engine = api::described_engine();
    let mut files: Vec<(String, String)> = engine
        .definitions()
        .include_standard_packages(true)
        .iter_files()
        .collect();
    files.push(("__scope__.d.rhai".to_string(), SCOPE_FILE.to_string()));
    files
}

/// Writes [`files`] into `dir` (created if needed) and returns their paths.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    files()
        .into_iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).map(|_| path)
        })
        .collect()
}

/// One function as rhai's metadata JSON describes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FnMeta {
    name: String,
    #[serde(default)]
    params: Vec<Param>,
    #[serde(default)]
    return_type: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Param {
    name: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    functions: Vec<FnMeta>,
}

/// Where a function belongs in the reference: by the name of its first parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Functions,
    Job,
    Profilers,
    Test,
}

impl Section {
    fn of(f: &FnMeta) -> Section {
        match f.params.first().and_then(|p| p.name.as_deref()) {
            Some("job") => Section::Job,
            Some("profilers") => Section::Profilers,
            Some("test") => Section::Test,
            _ => Section::Functions,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Section::Functions => "Functions (every kind of script)",
            Section::Job => "`job`",
            Section::Profilers => "`job.profilers`",
            Section::Test => "The test object `this`",
        }
    }

    /// How a call is written: `run(...)`, `job.run_test(...)`, `this.runsubtest(...)`.
    fn prefix(self) -> &'static str {
        match self {
            Section::Functions => "",
            Section::Job => "job.",
            Section::Profilers => "job.profilers.",
            Section::Test => "this.",
        }
    }
}

/// A type as the reference shows it: rhai's short names, `any` for a value of any type.
fn show_type(t: &str) -> String {
    let t = t.trim();
    if let Some(inner) = t
        .strip_prefix("RhaiResultOf<")
        .or_else(|| t.strip_prefix("Result<"))
    {
        return show_type(
            inner
                .split(',')
                .next()
                .unwrap_or(inner)
                .trim_end_matches('>'),
        );
    }
    match t.rsplit("::").next().unwrap_or(t) {
        "" | "?" | "Dynamic" => "any".to_string(),
        "&str" | "str" | "String" | "ImmutableString" => "string".to_string(),
        "i64" | "INT" => "int".to_string(),
        "f64" | "FLOAT" => "float".to_string(),
        "FnPtr" => "Fn".to_string(),
        short => short.to_string(),
    }
}

/// A doc comment's `///` lines as text.
fn doc_text(comments: &[String]) -> String {
    comments
        .iter()
        .flat_map(|c| c.lines())
        .map(|l| l.trim_start().trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// The Markdown reference of autorun's script API (Rhai's standard library left out).
pub fn markdown() -> String {
    let json = api::described_engine()
        .gen_fn_metadata_to_json(false)
        .expect("rhai metadata serializes");
    let meta: Metadata = serde_json::from_str(&json).expect("rhai metadata parses");
    // section -> name -> overloads
    let mut sections: BTreeMap<Section, BTreeMap<String, Vec<FnMeta>>> = BTreeMap::new();
    for f in meta.functions {
        // Indexers (`this.anything`) are described in the guide.
        if f.name.starts_with("index$") {
            continue;
        }
        let name = f
            .name
            .trim_start_matches("get$")
            .trim_start_matches("set$")
            .to_string();
        sections
            .entry(Section::of(&f))
            .or_default()
            .entry(name)
            .or_default()
            .push(f);
    }
    // The engine lists overloads in hash order: sort them so the page is the same each time.
    for fns in sections.values_mut() {
        for ovs in fns.values_mut() {
            ovs.sort_by_cached_key(|f| {
                let sig: Vec<String> = f
                    .params
                    .iter()
                    .map(|p| format!("{:?}:{:?}", p.name, p.typ))
                    .collect();
                (f.name.clone(), f.params.len(), sig, f.return_type.clone())
            });
        }
    }
    let mut out = String::new();
    out.push_str(
        "# autorun script API reference\n\n\
         <!-- Generated from the engine's metadata: do not edit. Refresh it with\n",
    );
    let _ = writeln!(out, "     {REFRESH} -->\n");
    out.push_str(
        "Every function and property autorun adds to Rhai, with the parameter names and doc \
         comments it was registered with. [script-api.md](script-api.md) is the guide: how \
         tests and control files use these, and the error messages. Rhai's own standard \
         library (strings, arrays, maps, math, ...) is in the \
         [Rhai book](https://rhai.rs/book/). `any` means any type. Editors can complete and \
         check all of it from the definition files of `autorun definitions` \
         ([authoring.md](authoring.md)).\n",
    );
    for (section, fns) in &sections {
        while out.ends_with("\n\n") {
            out.pop();
        }
        let _ = writeln!(out, "\n## {}\n", section.title());
        let (props, methods): (Vec<_>, Vec<_>) = fns
            .iter()
            .partition(|(_, ovs)| ovs.iter().all(|f| f.name.contains('$')));
        if !props.is_empty() {
            out.push_str("| property | type | access | description |\n|---|---|---|---|\n");
            for (name, ovs) in &props {
                let getter = ovs.iter().find(|f| f.name.starts_with("get$"));
                let settable = ovs.iter().any(|f| f.name.starts_with("set$"));
                let typ = getter
                    .map(|f| show_type(&f.return_type))
                    .unwrap_or_default();
                let doc = getter
                    .or(ovs.first())
                    .map(|f| doc_text(&f.doc_comments))
                    .unwrap_or_default();
                let access = if settable { "read-write" } else { "read" };
                let _ = writeln!(
                    out,
                    "| `{}{name}` | {typ} | {access} | {} |",
                    section.prefix(),
                    doc.replace('|', "\\|")
                );
            }
            if !methods.is_empty() {
                out.push('\n');
            }
        }
        for (name, ovs) in methods {
            let _ = writeln!(out, "### `{}{name}`\n\n```rhai", section.prefix());
            let skip = usize::from(*section != Section::Functions);
            for f in ovs {
                let params: Vec<String> = f
                    .params
                    .iter()
                    .skip(skip)
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.name.as_deref().unwrap_or("_"),
                            show_type(p.typ.as_deref().unwrap_or(""))
                        )
                    })
                    .collect();
                let ret = if f.return_type.is_empty() || f.return_type == "()" {
                    String::new()
                } else {
                    format!(" -> {}", show_type(&f.return_type))
                };
                let _ = writeln!(
                    out,
                    "{}{name}({}){ret}",
                    section.prefix(),
                    params.join(", ")
                );
            }
            out.push_str("```\n\n");
            // The overload with the most parameters documents the others too.
            let longest = ovs.iter().max_by_key(|f| f.params.len());
            for line in longest
                .map(|f| f.doc_comments.clone())
                .unwrap_or_default()
                .iter()
                .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
            {
                let text = line.trim_start().trim_start_matches('/').trim();
                if !text.is_empty() {
                    let _ = writeln!(out, "{text}\n");
                }
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
