//! Writing tests and scripts: `autorun list`, `new`, `completions`, `definitions`, and the
//! generated API reference.

mod common;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn autorun(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("autorun").unwrap();
    cmd.current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn out(cmd: &mut Command) -> (i32, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn samples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

#[test]
fn list_shows_the_sample_tests_with_their_parameters() {
    let (code, stdout, stderr) = out(autorun(&samples()).arg("list"));
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sleeptest "))
        .unwrap_or_else(|| panic!("no sleeptest in:\n{stdout}"));
    let cells: Vec<&str> = line.split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(cells[1].trim(), "1", "version: {line}");
    assert_eq!(cells[2].trim(), "seconds", "parameters: {line}");
    assert!(line.contains("Sleeps for `seconds`"), "{line}");
    assert!(stdout.contains("kvtest"), "{stdout}");
    // The executable sample test is listed too; it takes every parameter.
    let writetest = stdout
        .lines()
        .find(|l| l.starts_with("writetest "))
        .unwrap_or_else(|| panic!("no writetest in:\n{stdout}"));
    assert!(
        writetest.contains("(all, as AUTORUN_PARAM_*)"),
        "{writetest}"
    );
    assert!(writetest.contains("An executable test"), "{writetest}");
    assert!(stdout.contains("5 tests in "), "{stdout}");
}

#[test]
fn list_json_parses_and_describes_each_test() {
    let (code, stdout, stderr) = out(autorun(&samples()).args(["list", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let tests: Vec<Value> = serde_json::from_str(&stdout).expect("list --json is JSON");
    let sleep = tests
        .iter()
        .find(|t| t["name"] == "sleeptest")
        .expect("sleeptest listed");
    assert_eq!(sleep["version"], 1);
    assert_eq!(sleep["parameters"], serde_json::json!(["seconds"]));
    assert_eq!(sleep["phases"]["run_once"], serde_json::json!(["seconds"]));
    assert_eq!(sleep["phases"]["initialize"], serde_json::json!([]));
    assert!(sleep["folder"]
        .as_str()
        .unwrap()
        .ends_with("samples/tests/sleeptest"));
    assert_eq!(sleep["kind"], "script");
    let kv = tests.iter().find(|t| t["name"] == "kvtest").unwrap();
    assert_eq!(kv["version"], 2);
    let w = tests.iter().find(|t| t["name"] == "writetest").unwrap();
    assert_eq!(w["kind"], "executable");
    assert!(w["script"]
        .as_str()
        .unwrap()
        .ends_with("writetest/writetest"));
    assert!(tests.iter().all(|t| t.get("error").is_none()), "{stdout}");
}

#[test]
fn list_searches_test_dirs_first_and_finds_groups() {
    let d = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("tests/a/a.rhai", "let version = 1;\nfn run_once() {}");
    write("extra/a/a.rhai", "let version = 7;\nfn run_once() {}");
    write(
        "tests/grp/b/b.rhai",
        "/// Grouped.\nfn run_once(x) {}\nfn setup(y) {}",
    );
    write("tests/broken/broken.rhai", "fn run_once( {");
    write("conf/c/c.rhai", "fn execute(iterations) {}");
    write("autorun.toml", "test_dirs = [\"conf\"]\n");
    let (code, stdout, stderr) = out(autorun(d.path()).args(["list", "--json", "-d", "extra"]));
    assert_eq!(code, 0, "{stderr}");
    let tests: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let by = |n: &str| tests.iter().find(|t| t["name"] == n).cloned();
    assert_eq!(by("a").unwrap()["version"], 7, "--test-dir wins");
    let b = by("grp:b").expect("group test listed");
    assert_eq!(b["parameters"], serde_json::json!(["y", "x"]));
    assert_eq!(b["description"], "Grouped.");
    assert!(by("c").is_some(), "config test_dirs searched: {stdout}");
    let broken = by("broken").unwrap();
    assert!(
        broken["error"].as_str().unwrap().contains("broken.rhai:1:"),
        "{broken}"
    );
    // The table marks the broken test too.
    let (_, table, _) = out(autorun(d.path()).arg("list"));
    assert!(table.contains("error: "), "{table}");

    let (code, _, stderr) = out(autorun(d.path()).args(["list", "-d", "nowhere"]));
    assert_eq!(code, 64);
    assert_eq!(stderr.trim(), "autorun: --test-dir nowhere: no such folder");
}

#[test]
fn new_scaffolds_a_test_whose_control_file_runs_good() {
    let d = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = out(autorun(d.path()).args(["new", "disk_io"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(d.path().join("tests/disk_io/disk_io.rhai").is_file());
    assert!(d.path().join("disk_io.control.rhai").is_file());
    assert!(stdout.contains("autorun disk_io.control.rhai"), "{stdout}");

    let (code, stdout, stderr) =
        out(autorun(d.path()).args(["disk_io.control.rhai", "-o", "results", "-t", "job"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let status = std::fs::read_to_string(d.path().join("results/job/status")).unwrap();
    assert!(
        status
            .lines()
            .last()
            .unwrap()
            .starts_with("END GOOD\t----\t----"),
        "{status}"
    );
    assert_eq!(status.matches("\tGOOD\tdisk_io").count(), 2, "{status}");
    let keyval =
        std::fs::read_to_string(d.path().join("results/job/disk_io/results/keyval")).unwrap();
    assert_eq!(keyval.matches("numbers{perf}=10000").count(), 3, "{keyval}");

    // `list` sees the new test with its parameters.
    let (_, listed, _) = out(autorun(d.path()).args(["list", "--json"]));
    let tests: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(tests[0]["name"], "disk_io");
    assert_eq!(
        tests[0]["parameters"],
        serde_json::json!(["count", "label"])
    );

    // An existing test, a bad name: one sentence, exit 64, nothing touched.
    let before = std::fs::read_to_string(d.path().join("tests/disk_io/disk_io.rhai")).unwrap();
    let (code, _, stderr) = out(autorun(d.path()).args(["new", "disk_io"]));
    assert_eq!(code, 64);
    assert_eq!(
        stderr.trim(),
        "autorun: tests/disk_io already exists; choose another name or remove it"
    );
    let after = std::fs::read_to_string(d.path().join("tests/disk_io/disk_io.rhai")).unwrap();
    assert_eq!(before, after);
    for bad in ["a/b", "../x", "9lives", ""] {
        let (code, _, stderr) = out(autorun(d.path()).args(["new", bad]));
        assert_eq!(code, 64, "{bad}");
        assert!(stderr.starts_with("autorun: invalid test name"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1);
    }
}

#[test]
fn new_in_another_folder_runs_with_test_dir() {
    let d = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = out(autorun(d.path()).args(["new", "t1", "--dir", "suite"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("autorun --test-dir suite t1.control.rhai"),
        "{stdout}"
    );
    let (code, stdout, stderr) =
        out(autorun(d.path()).args(["--test-dir", "suite", "t1.control.rhai", "-o", "results"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

#[test]
fn completions_for_bash_name_the_subcommands() {
    let d = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = out(autorun(d.path()).args(["completions", "bash"]));
    assert_eq!(code, 0, "{stderr}");
    for sub in [
        "run",
        "list",
        "new",
        "show",
        "compare",
        "report",
        "definitions",
        "completions",
    ] {
        assert!(stdout.contains(sub), "{sub} missing");
    }
    assert!(stdout.contains("complete -F"), "not a bash script");
    let (code, _, _) = out(autorun(d.path()).args(["completions", "tcsh"]));
    assert_eq!(code, 64);
}

/// Checks one declaration of a definition file and returns its name and parameter names.
fn check_declaration(line: &str) -> Option<(String, Vec<String>)> {
    let re = regex::Regex::new(
        r"^fn (?:(get|set) )?([A-Za-z_][A-Za-z0-9_]*|index\$get\$|index\$set\$)\((.*?)\)(?: -> ([^;]*))?;$",
    )
    .unwrap();
    let c = re.captures(line)?;
    let params = c.get(3).unwrap().as_str();
    let mut names = Vec::new();
    let ident = regex::Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap();
    if !params.is_empty() {
        for p in params.split(", ") {
            let (name, ty) = p.split_once(": ")?;
            if !ident.is_match(name) || ty.trim().is_empty() {
                return None;
            }
            names.push(name.to_string());
        }
    }
    Some((c.get(2).unwrap().as_str().to_string(), names))
}

#[test]
fn definitions_are_well_formed_and_cover_the_api() {
    let d = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = out(autorun(d.path()).args(["definitions", "defs"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("definition files to defs"), "{stdout}");
    let read = |f: &str| std::fs::read_to_string(d.path().join("defs").join(f)).unwrap();
    let engine = rhai::Engine::new_raw();
    let mut ours = Vec::new();
    for f in [
        "__static__.d.rhai",
        "__builtin__.d.rhai",
        "__builtin-operators__.d.rhai",
        "__scope__.d.rhai",
    ] {
        let text = read(f);
        assert!(text.starts_with("module static;\n"), "{f}");
        // The builtin files are rhai's own text (with `...args` and keywords such as
        // `print`); the others are generated from autorun's engine.
        if f.starts_with("__builtin") {
            continue;
        }
        let mut doc = false;
        for line in text.lines() {
            if line.starts_with("fn ") {
                let (name, params) = check_declaration(line)
                    .unwrap_or_else(|| panic!("{f}: malformed declaration: {line}"));
                // Rhai itself must accept the name and the parameter names.
                if !name.contains('$') {
                    let skeleton = format!("fn {name}({}) {{}}", params.join(", "));
                    let skeleton = skeleton.replace("(_", "(p_").replace(", _", ", p_");
                    if let Err(e) = engine.compile(&skeleton) {
                        panic!("{f}: {line}: rhai rejects {skeleton}: {e}");
                    }
                }
                if doc && f == "__static__.d.rhai" {
                    ours.push(line.to_string());
                }
            }
            doc = line.starts_with("///");
        }
    }
    for expected in [
        "fn run_test(job: Job, name: string, args: ?) -> bool;",
        "fn run_group(job: Job, f: Fn, args: map) -> ?;",
        "fn record(job: Job, status: string, subdir: ?, operation: ?, message: string, fields: map) -> ();",
        "fn parallel(job: Job, tasks: array) -> ();",
        "fn next_step(job: Job, f: ?) -> ();",
        "fn quit(job: Job) -> ();",
        "fn get tag(job: Job) -> string;",
        "fn set run_test_cleanup(job: Job, value: ?) -> ();",
        "fn add(profilers: Profilers, name: string, args: map) -> ();",
        "fn write_perf_keyval(test: Test, perf: map) -> ();",
        "fn runsubtest(test: Test, name: string) -> bool;",
        "fn get outputdir(test: Test) -> string;",
        "fn test_fail(message: ?) -> ();",
        "fn run(cmd: ?, opts: map) -> map;",
        "fn system_output(cmd: ?) -> string;",
        "fn results(dir: string) -> map;",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "missing or undocumented: {expected}"
        );
    }
    assert!(read("__scope__.d.rhai").contains("\nconst job: Job;\n"));
    // Rhai's standard library comes along, for completion of strings, arrays...
    assert!(read("__static__.d.rhai").contains("fn len("));

    // Without a folder: .rhai/definitions.
    let (code, _, stderr) = out(autorun(d.path()).arg("definitions"));
    assert_eq!(code, 0, "{stderr}");
    assert!(d
        .path()
        .join(".rhai/definitions/__static__.d.rhai")
        .is_file());
}

#[test]
fn api_reference_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, generated, stderr) = out(autorun(root).args(["definitions", "--markdown"]));
    assert_eq!(code, 0, "{stderr}");
    let committed = std::fs::read_to_string(root.join("docs/api-reference.md")).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api-reference.md is out of date with the engine's metadata: refresh it with `{}`",
        autorun::definitions::REFRESH
    );
    for name in [
        "job.run_test",
        "this.write_perf_keyval",
        "system_output",
        "job.profilers.add",
    ] {
        assert!(generated.contains(&format!("### `{name}`")), "{name}");
    }
}
