//! Sysinfo collection: the job's `sysinfo/`, each test's `sysinfo/` and `sysinfo-*`
//! keyvals, per-iteration copies, the commands and files scripts add, and the kernel log
//! left as it was (behaviour §1.1, §3.2, §4; contract §3, §9).

mod common;
use common::Job;

use std::path::Path;

const TRIVIAL: &str = "fn run_once() {}";

fn non_empty(p: &Path) -> bool {
    p.metadata().map(|m| m.len() > 0).unwrap_or(false)
}

/// The sorted folder names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_job_folder_gets_the_machines_sysinfo() {
    let run = Job::new(r#"job.run_test("t");"#)
        .test("t", TRIVIAL)
        .finish();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let sys = run.resultdir.join("sysinfo");
    // Each file is there and non-empty when the machine has its source.
    for (src, name) in [
        ("/proc/cmdline", "cmdline"),
        ("/proc/meminfo", "meminfo"),
        ("/proc/cpuinfo", "cpuinfo"),
        ("/proc/mounts", "proc_mounts"),
        ("/proc/modules", "modules"),
    ] {
        let readable = std::fs::read(src).map(|d| !d.is_empty()).unwrap_or(false);
        assert_eq!(non_empty(&sys.join(name)), readable, "{name}");
    }
    for name in ["uname", "df", "mount"] {
        assert!(non_empty(&sys.join(name)), "{name}");
    }
    let uname = run.read("sysinfo/uname");
    assert!(uname.starts_with("Linux "), "{uname}");
    assert!(run.read("sysinfo/df").starts_with("Filesystem "));
    if autorun::sysinfo::Kmsg::open(false).is_ok() {
        assert!(sys.join("dmesg").exists());
    }
}

#[test]
fn test_keyval_ends_with_the_sysinfo_keys() {
    let run = Job::new(
        r#"job.run_test("t", #{tag: "good"});
job.run_test("t", #{tag: "bad", fail: true});"#,
    )
    .test(
        "t",
        r#"fn run_once(fail) { if fail == true { test_fail("no"); } }
fn postprocess() { this.write_test_keyval(#{ own: 1 }); }"#,
    )
    .finish();
    assert_eq!(run.code(), 1);
    let expected_keys = [
        "sysinfo-cmdline",
        "sysinfo-memtotal-in-kb",
        "sysinfo-phys-mbytes",
        "sysinfo-uname",
    ];
    // After the test's own keyvals, and even when the test failed.
    for (test, before) in [("t.good", "own=1"), ("t.bad", "version=0")] {
        let kv = run.read(&format!("{test}/keyval"));
        let lines: Vec<&str> = kv.lines().collect();
        let tail = &lines[lines.len() - 4..];
        let keys: Vec<&str> = tail.iter().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(keys, expected_keys, "{kv}");
        assert_eq!(lines[lines.len() - 5], before, "{kv}");
    }
    let kv = run.read("t.good/keyval");
    let get = |k: &str| {
        kv.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let mem: u64 = get("sysinfo-memtotal-in-kb").parse().unwrap();
    let phys: u64 = get("sysinfo-phys-mbytes").parse().unwrap();
    assert!(phys * 1024 >= mem, "{kv}");
    // uname -a without the system name and the host name
    let uname = run.read("sysinfo/uname");
    let fields: Vec<&str> = uname.split_whitespace().collect();
    assert_eq!(get("sysinfo-uname"), fields[2..].join(" "));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    assert_eq!(get("sysinfo-cmdline"), cmdline.lines().next().unwrap_or(""));
}

#[test]
fn each_test_gets_a_sysinfo_folder_linked_to_the_jobs() {
    let run = Job::new(r#"job.run_test("parent");"#)
        .test(
            "parent",
            r#"fn run_once() { this.runsubtest("child", #{tag: "a"}); }"#,
        )
        .test("child", TRIVIAL)
        .finish();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for (test, target) in [
        ("parent", "../../sysinfo"),
        ("parent/child.a", "../../../sysinfo"),
    ] {
        let sys = run.resultdir.join(test).join("sysinfo");
        let link = std::fs::read_link(sys.join("reboot_current")).unwrap();
        assert_eq!(link.to_str(), Some(target), "{test}");
        // the link resolves to the job's sysinfo folder
        assert_eq!(
            std::fs::read_to_string(sys.join("reboot_current/uname")).unwrap(),
            run.read("sysinfo/uname")
        );
        assert!(run
            .read(&format!("{test}/sysinfo/df"))
            .starts_with("Filesystem "));
        // nothing per iteration unless asked for
        assert!(!names(&sys).iter().any(|n| n.starts_with("iteration.")));
    }
}

#[test]
fn per_iteration_copies_when_enabled() {
    let run = Job::new(
        r#"let was = job.sysinfo_per_iteration;
job.sysinfo_per_iteration = true;
print(`FLAG ${was} ${job.sysinfo_per_iteration}`);
job.run_test("t", #{iterations: 3});
job.run_test("t", #{tag: "timed", test_length: 0.05});
job.run_test("t", #{tag: "po", iterations: 2, profile_only: true});
job.sysinfo_per_iteration = false;
job.run_test("t", #{tag: "off", iterations: 2});
try { job.sysinfo_per_iteration = 1; } catch (e) { print(`CAUGHT ${e.message}`); }"#,
    )
    .test("t", TRIVIAL)
    .finish();
    let out = run.stdout();
    assert!(out.contains("FLAG false true"), "{out}");
    assert!(
        out.contains("CAUGHT job.sysinfo_per_iteration must be true or false, not 1"),
        "{out}"
    );
    let iterations = |test: &str| -> Vec<String> {
        names(&run.resultdir.join(test).join("sysinfo"))
            .into_iter()
            .filter(|n| n.starts_with("iteration."))
            .collect()
    };
    // 1..N; nothing for the profiled-run slot (N+1)
    assert_eq!(
        iterations("t"),
        ["iteration.1", "iteration.2", "iteration.3"]
    );
    // a timed run keeps iteration 0
    assert_eq!(iterations("t.timed"), ["iteration.0"]);
    // profile_only iterations still run the hooks
    assert_eq!(iterations("t.po"), ["iteration.1", "iteration.2"]);
    assert!(iterations("t.off").is_empty());
    let it = run.resultdir.join("t/sysinfo/iteration.2");
    for name in [
        "meminfo",
        "interrupts",
        "buddyinfo",
        "slabinfo",
        "schedstat",
    ] {
        let readable = std::fs::read(Path::new("/proc").join(name)).is_ok();
        for stage in ["before", "after"] {
            let f = it.join(format!("{name}.{stage}"));
            assert_eq!(f.exists(), readable, "{}", f.display());
        }
    }
    assert!(run
        .read("t/sysinfo/iteration.2/meminfo.after")
        .contains("MemTotal:"));
}

#[test]
fn the_config_file_can_turn_per_iteration_copies_on() {
    let run = Job::new(
        r#"print(`FLAG ${job.sysinfo_per_iteration}`); job.run_test("t", #{iterations: 2});"#,
    )
    .test("t", TRIVIAL)
    .file("autorun.toml", "sysinfo_per_iteration = true\n")
    .finish();
    assert!(run.stdout().contains("FLAG true"), "{}", run.stdout());
    assert!(run.resultdir.join("t/sysinfo/iteration.2").is_dir());
}

#[test]
fn added_commands_and_files_go_to_the_test_or_the_job() {
    let run = Job::new(
        r#"job.add_sysinfo_command("echo every test", #{on_every_test: true});
job.add_sysinfo_command("ls " + job.resultdir);
job.add_sysinfo_command("echo named", #{logfile: "named.txt", on_every_test: false});
job.add_sysinfo_logfile(job.control, #{on_every_test: true});
job.add_sysinfo_logfile("extra.txt");
job.run_test("t", #{tag: "a"});
job.run_test("t", #{tag: "b"});
"#,
    )
    .test("t", TRIVIAL)
    .file("extra.txt", "extra contents\n")
    .finish();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for test in ["t.a", "t.b"] {
        assert_eq!(
            run.read(&format!("{test}/sysinfo/echo_every_test")),
            "every test\n"
        );
        assert!(run
            .read(&format!("{test}/sysinfo/control.rhai"))
            .contains("add_sysinfo_command"));
        assert!(!run
            .resultdir
            .join(format!("{test}/sysinfo/named.txt"))
            .exists());
    }
    let sys = run.resultdir.join("sysinfo");
    assert!(!sys.join("echo_every_test").exists());
    assert_eq!(run.read("sysinfo/named.txt"), "named\n");
    assert_eq!(run.read("sysinfo/extra.txt"), "extra contents\n");
    // Collected at the end of the job: the listing already holds the test folders.
    let listing = names(&sys)
        .into_iter()
        .find(|n| n.starts_with("ls__"))
        .expect("the ls output");
    let text = run.read(&format!("sysinfo/{listing}"));
    assert!(
        text.lines().any(|l| l == "t.a") && text.lines().any(|l| l == "t.b"),
        "{text}"
    );
}

#[test]
fn bad_sysinfo_options_are_clear_errors() {
    let run = Job::new(
        r#"
fn try_it(f) { try { f.call(); print("NO ERROR"); } catch (e) { print(`CAUGHT ${e.kind}: ${e.message}`); } }
try_it(|| job.add_sysinfo_command("ls", #{bogus: 1}));
try_it(|| job.add_sysinfo_logfile("/etc/hostname", #{logfile: "x"}));
try_it(|| job.add_sysinfo_command("ls", #{on_every_test: "yes"}));
try_it(|| job.add_sysinfo_command("ls", #{logfile: "a/b"}));
try_it(|| job.add_sysinfo_command(""));
try_it(|| job.add_sysinfo_logfile("/"));
job.add_sysinfo_command("ls", #{typo_key: true});
"#,
    )
    .finish();
    let out = run.stdout();
    for expected in [
        "CAUGHT ValueError: job.add_sysinfo_command: unknown option 'bogus' (known: logfile, on_every_test)",
        "CAUGHT ValueError: job.add_sysinfo_logfile: unknown option 'logfile' (known: on_every_test)",
        "CAUGHT TypeError: job.add_sysinfo_command: on_every_test must be true or false, not yes",
        "CAUGHT ValueError: job.add_sysinfo_command: invalid logfile \"a/b\"",
        "CAUGHT ValueError: job.add_sysinfo_command: the command is empty",
        "CAUGHT ValueError: job.add_sysinfo_logfile: '/' does not name a file",
    ] {
        assert!(out.contains(expected), "{expected}\nin:\n{out}");
    }
    assert!(!out.contains("NO ERROR"), "{out}");
    // Uncaught, it aborts the job naming the key.
    assert_eq!(run.code(), 2);
    let last = run.status().lines().last().unwrap().to_string();
    assert!(
        last.contains("Unhandled ValueError: job.add_sysinfo_command: unknown option 'typo_key'"),
        "{last}"
    );
}

/// Writes a line into the kernel log; false when this user may not.
fn kmsg_write(line: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
        .is_ok()
}

fn kmsg_all() -> Option<String> {
    autorun::sysinfo::Kmsg::open(false)
        .and_then(|mut k| k.read_new())
        .ok()
}

#[test]
fn the_kernel_log_is_read_and_never_cleared() {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let before = format!("autorun sysinfo test: before the job {nonce}");
    let during = format!("autorun sysinfo test: during the test {nonce}");
    if kmsg_all().is_none() || !kmsg_write(&format!("<6>{before}\n")) {
        eprintln!("skipped: this user cannot read and write /dev/kmsg");
        return;
    }
    let run = Job::new(r#"job.run_test("t");"#)
        .test(
            "t",
            &format!(r#"fn run_once() {{ write_file("/dev/kmsg", "<6>{during}\n"); }}"#),
        )
        .finish();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // The job's copy has what was there at its start; the test's has what it logged.
    assert!(run.read("sysinfo/dmesg").contains(&before));
    let test_dmesg = run.read("t/sysinfo/dmesg");
    assert!(test_dmesg.contains(&during), "{test_dmesg}");
    assert!(!test_dmesg.contains(&before), "{test_dmesg}");
    // Both lines are still in the kernel's buffer: nothing was cleared.
    let after = kmsg_all().unwrap();
    assert!(after.contains(&before) && after.contains(&during));
}

#[test]
fn df_follows_mounts_made_by_tests() {
    // In a mount namespace of its own, so that the machine's mounts are left alone.
    let private = ["-m", "--propagation", "private"];
    let allowed = std::process::Command::new("unshare")
        .args(private)
        .arg("true")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !allowed {
        eprintln!("skipped: unshare -m is not permitted here");
        return;
    }
    let job = Job::new(
        r#"let mnt = job.resultdir + "/mnt";
mkdir(mnt);
job.run_test("t", #{tag: "mounts", cmd: ["mount", "-t", "tmpfs", "-o", "size=1m", "autorun-df-probe", mnt]});
job.run_test("t", #{tag: "next", cmd: ["true"]});
job.run_test("t", #{tag: "unmounts", cmd: ["umount", mnt]});
job.run_test("t", #{tag: "last", cmd: ["true"]});"#,
    )
    .test("t", "fn run_once(cmd) { system(cmd); }");
    let out = std::process::Command::new("unshare")
        .args(private)
        .arg(assert_cmd::cargo::cargo_bin("autorun"))
        .args(["control.rhai", "-o", "results", "-t", "job"])
        .current_dir(job.path())
        .env("XDG_CACHE_HOME", job.path().join("cache"))
        .env("XDG_CONFIG_HOME", job.path().join("config"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let res = job.path().join("results/job");
    let shows = |rel: &str| {
        std::fs::read_to_string(res.join(rel))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("autorun-df-probe "))
    };
    assert!(!shows("sysinfo/df"));
    // the test that mounted it sees it, and so do the tests after it, until it is gone
    assert!(shows("t.mounts/sysinfo/df"));
    assert!(shows("t.next/sysinfo/df"));
    assert!(!shows("t.unmounts/sysinfo/df"));
    assert!(!shows("t.last/sysinfo/df"));
}
