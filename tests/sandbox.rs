//! The script sandbox: `import` stays inside the control file's and the test's folders,
//! temp folders are private, and the engine limits hold.

mod common;
use common::Job;

#[test]
fn import_reads_modules_next_to_the_script_and_nothing_outside() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.rhai"), "fn f() { 666 }").unwrap();
    let evil = outside.path().join("evil").display().to_string();
    let job = Job::new(&format!(
        "import \"lib/util\" as u;\nprint(`CONTROL ${{u::add(1, 2)}}`);\n\
         job.run_test(\"t\", #{{evil: \"{evil}\"}});\njob.run_test(\"linked\");\nimport \"{evil}\" as e;"
    ))
    .file("lib/util.rhai", "import \"more\" as m;\nfn add(a, b) { m::plus(a, b) }")
    .file("lib/more.rhai", "fn plus(a, b) { a + b }")
    .file("tests/t/helpers.rhai", "fn twice(x) { x * 2 }")
    .test(
        "t",
        r#"fn run_once(evil) {
    import "helpers" as h;
    print(`TEST ${h::twice(21)}`);
    try { import "../../lib/util" as u; print(`CONTROL DIR ${u::add(2, 2)}`); } catch (e) { print(`REFUSED ${e}`); }
    try { import evil as x; print("ESCAPED"); } catch (e) { print(`REFUSED ${e.message}`); }
}"#,
    )
    .test("linked", "fn run_once() { import \"escape\" as x; }");
    std::os::unix::fs::symlink(
        outside.path().join("evil.rhai"),
        job.path().join("tests/linked/escape.rhai"),
    )
    .unwrap();
    let run = job.run();
    let out = run.stdout();
    assert!(out.contains("CONTROL 3"), "{out}");
    assert!(out.contains("TEST 42"), "{out}");
    // The control file's folder is allowed to a test too.
    assert!(out.contains("CONTROL DIR 4"), "{out}");
    assert!(!out.contains("ESCAPED"), "{out}");
    assert!(
        out.contains(&format!(
            "REFUSED import \"{evil}\": {}.rhai is outside the folders scripts may import from",
            std::fs::canonicalize(outside.path())
                .unwrap()
                .join("evil")
                .display()
        )),
        "{out}"
    );
    // A link out of the folder is followed, and refused.
    let (s, m) = run.result_of("linked");
    assert_eq!(s, "FAIL");
    assert!(
        m.starts_with("Unhandled ImportError: import \"escape\": ") && m.contains("is outside"),
        "{m}"
    );
    // The control file's own import from outside aborts the job.
    assert_eq!(run.code(), 2);
    assert!(run
        .stderr()
        .contains("is outside the folders scripts may import from"));
}

#[test]
fn a_module_that_imports_itself_is_an_error_not_a_crash() {
    let run = Job::new("job.run_test(\"t\");")
        .file("tests/t/a.rhai", "import \"b\" as b;")
        .file("tests/t/b.rhai", "import \"a\" as a;")
        .test("t", "fn run_once() { import \"a\" as a; }")
        .finish();
    let (s, m) = run.result_of("t");
    assert_eq!(s, "FAIL");
    assert!(m.contains("a.rhai imports itself"), "{m}");
}

#[test]
fn temp_folders_are_private() {
    let run = Job::new(
        "print(`JOBTMP ${job.tmpdir}`);\njob.run_test(\"t\");",
    )
    .test(
        "t",
        "fn run_once() { print(`TESTTMP ${this.tmpdir}`); run(`stat -c %a ${this.tmpdir} ${job.tmpdir} > modes`); }",
    )
    .finish();
    assert_eq!(run.result_of("t").0, "GOOD", "{}", run.stdout());
    assert_eq!(run.read("t/modes"), "700\n700\n");
    // Both are gone after the job.
    for tag in ["JOBTMP ", "TESTTMP "] {
        let dir = run
            .stdout()
            .lines()
            .find_map(|l| l.split(tag).nth(1).map(str::to_string))
            .unwrap();
        assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    }
}

#[test]
fn deep_expressions_and_huge_strings_are_refused_with_a_message() {
    let deep = format!(
        "fn run_once() {{ let x = {}1{}; }}",
        "(".repeat(300),
        ")".repeat(300)
    );
    let run = Job::new("job.run_test(\"deep\");\njob.run_test(\"huge\");")
        .test("deep", &deep)
        .test("huge", "fn run_once() { let s = \"x\"; loop { s += s; } }")
        .finish();
    let (s, m) = run.result_of("deep");
    assert_eq!(s, "ERROR");
    assert!(
        m.starts_with("Unhandled SyntaxError: Expression exceeds maximum complexity (")
            && m.contains("deep.rhai:1:"),
        "{m}"
    );
    let (s, m) = run.result_of("huge");
    assert_eq!(s, "FAIL");
    assert!(m.contains("Length of string"), "{m}");
    assert_eq!(run.code(), 1);
}

#[test]
fn the_call_depth_limit_is_128_in_tests_and_in_the_control_file() {
    let f = "fn f(n, max) { if n >= max { return n; } f(n + 1, max) }\n";
    let run = Job::new(&format!(
        "{f}print(`CONTROL ${{f(1, 128)}}`);\njob.run_test(\"ok\");\njob.run_test(\"too_deep\");\nf(1, 129);"
    ))
    .test("ok", &format!("{f}fn run_once() {{ print(`TEST ${{f(1, 128)}}`); }}"))
    .test("too_deep", &format!("{f}fn run_once() {{ f(1, 129); }}"))
    .finish();
    assert!(run.stdout().contains("CONTROL 128"), "{}", run.stdout());
    assert!(run.stdout().contains("TEST 128"), "{}", run.stdout());
    assert_eq!(run.result_of("ok").0, "GOOD");
    let (s, m) = run.result_of("too_deep");
    assert_eq!(s, "FAIL");
    assert!(m.contains("more than 128 levels deep"), "{m}");
    assert_eq!(run.code(), 2);
    assert!(run
        .stderr()
        .contains("more than 128 levels deep (unbounded recursion?) ("));
}

#[test]
fn adding_a_profiler_does_not_open_its_folder_to_the_control_files_imports() {
    let other = tempfile::tempdir().unwrap();
    let p = other.path().join("profilers/p");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("p.rhai"), "fn start(test) {}\nfn stop(test) {}").unwrap();
    std::fs::write(p.join("helper.rhai"), "fn f() { 1 }").unwrap();
    let helper = p.join("helper").display().to_string();
    let run = Job::new(&format!(
        "job.profilers.add(\"p\");\nimport \"{helper}\" as h;\nprint(\"IMPORTED\");"
    ))
    .arg("-d")
    .arg(&other.path().display().to_string())
    .finish();
    assert!(!run.stdout().contains("IMPORTED"), "{}", run.stdout());
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("is outside the folders scripts may import from")
            && run.stderr().contains("control.rhai:2:"),
        "{}",
        run.stderr()
    );
}
