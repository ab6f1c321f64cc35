//! Sysinfo collection, as autotest's `base_sysinfo`: what the machine looked like for the
//! job (`<job>/sysinfo/`), for each test (`<test>/sysinfo/`) and, when asked, around each
//! iteration (`<test>/sysinfo/iteration.<n>/`).
//!
//! Everything the harness collects by itself is read natively (`/proc` files, `uname(2)`,
//! `statvfs(2)`, `/dev/kmsg`): a test costs no process spawn. Only the commands a script
//! adds with `job.add_sysinfo_command` run a shell. The kernel log is read, never cleared
//! (contract §9), and the per-test copy is plain text: it holds only the lines logged while
//! the test ran, which are few, so compressing it would cost more than it saves.
//! Nothing here fails a test or a job: whatever cannot be read or written is skipped with
//! a DEBUG line.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keyval::{self, Tag};
use crate::logging;

/// `/proc` files copied into the job's `sysinfo/` at job start, with their names there:
/// autotest's per-boot files (those that need no command to produce).
const JOB_FILES: [(&str, &str); 9] = [
    ("/proc/cmdline", "cmdline"),
    ("/proc/cpuinfo", "cpuinfo"),
    ("/proc/meminfo", "meminfo"),
    ("/proc/modules", "modules"),
    // autotest's name: its `mount` file is the `mount` command's output (written below).
    ("/proc/mounts", "proc_mounts"),
    ("/proc/version", "version"),
    ("/proc/interrupts", "interrupts"),
    ("/proc/partitions", "partitions"),
    ("/proc/slabinfo", "slabinfo"),
];

/// `/proc` files copied before and after each iteration, as `<name>.before`/`<name>.after`.
pub const ITERATION_FILES: [&str; 5] = [
    "schedstat",
    "meminfo",
    "slabinfo",
    "interrupts",
    "buddyinfo",
];

/// File systems `df` never shows (gnulib's `ME_DUMMY` list for Linux).
const DUMMY_FS: [&str; 14] = [
    "autofs",
    "proc",
    "subfs",
    "debugfs",
    "devpts",
    "fusectl",
    "fuse.portal",
    "mqueue",
    "rpc_pipefs",
    "sysfs",
    "devfs",
    "kernfs",
    "ignore",
    "none",
];

/// Something a script asked to collect with `job.add_sysinfo_command` or
/// `job.add_sysinfo_logfile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loggable {
    /// A shell command whose standard output goes to `logfile`.
    Command {
        /// Run by `/bin/sh -c`.
        command: String,
        /// The file name in the sysinfo folder.
        logfile: String,
    },
    /// A file copied as `logfile`.
    File {
        /// The file to copy (absolute).
        path: PathBuf,
        /// The file name in the sysinfo folder (the source's own name).
        logfile: String,
    },
}

impl Loggable {
    /// A command, its output written to `logfile` or, without one, to a name made from the
    /// command as autotest does (spaces become `_`; so do `/`, which a name cannot hold).
    pub fn command(command: &str, logfile: Option<&str>) -> Result<Loggable, String> {
        if command.trim().is_empty() {
            return Err("the command is empty".into());
        }
        let logfile = match logfile {
            Some(name) => {
                check_logfile(name)?;
                name.to_string()
            }
            None => command_logfile(command),
        };
        Ok(Loggable::Command {
            command: command.to_string(),
            logfile,
        })
    }

    /// A file, copied under its own name. A relative path is taken from the current folder
    /// now, so that it means the same when it is collected.
    pub fn file(path: &str) -> Result<Loggable, String> {
        let p = Path::new(path);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !path.ends_with('/') && check_logfile(n).is_ok())
            .ok_or_else(|| format!("'{path}' does not name a file"))?;
        Ok(Loggable::File {
            path: crate::discovery::absolute(p),
            logfile: name,
        })
    }

    /// Runs or copies it into `dir`.
    fn collect(&self, dir: &Path) {
        match self {
            Loggable::Command { command, logfile } => run_command(command, &dir.join(logfile)),
            Loggable::File { path, logfile } => {
                if let Some(data) = read_or_skip(path) {
                    write_or_skip(&dir.join(logfile), &data);
                }
            }
        }
    }
}

/// A name for a command's output file, from the command itself.
pub fn command_logfile(command: &str) -> String {
    let mut name = String::new();
    for c in command.trim().chars() {
        let c = if c.is_whitespace() || c == '/' || c == '\0' {
            '_'
        } else {
            c
        };
        if name.len() + c.len_utf8() > 200 {
            break;
        }
        name.push(c);
    }
    if name == "." || name == ".." {
        name = "command".into();
    }
    name
}

fn check_logfile(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 200
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
    {
        Err(format!(
            "invalid logfile {name:?}: it must be a file name of 1-200 bytes without '/'"
        ))
    } else {
        Ok(())
    }
}

/// A job's sysinfo settings. They live in `JobInfo`, so each test process (a fork) has
/// them in memory without reading anything again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobSysinfo {
    /// The `sysinfo-*` block appended to each test keyval, rendered once at job start.
    pub test_keyval: String,
    /// Collected into each test's `sysinfo/` after the test (`on_every_test: true`).
    pub per_test: Vec<Loggable>,
    /// Collected into the job's `sysinfo/` at the end of the job.
    pub per_job: Vec<Loggable>,
    /// The mounts `df` shows, as of job start.
    pub df: DfPlan,
}

impl JobSysinfo {
    /// Adds something to collect; adding the same thing twice collects it once, as
    /// autotest's sets of loggables do.
    pub fn add(&mut self, item: Loggable, on_every_test: bool) {
        let list = if on_every_test {
            &mut self.per_test
        } else {
            &mut self.per_job
        };
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn debug(msg: &str) {
    logging::debug("sysinfo", msg);
}

fn read_or_skip(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Some(data),
        Err(e) => {
            debug(&format!("not logging {}: {e}", path.display()));
            None
        }
    }
}

fn write_or_skip(path: &Path, data: &[u8]) {
    if let Err(e) = std::fs::write(path, data) {
        debug(&format!("cannot write {}: {e}", path.display()));
    }
}

fn make_dir(dir: &Path) -> bool {
    match std::fs::create_dir_all(dir) {
        Ok(()) => true,
        Err(e) => {
            debug(&format!("cannot create {}: {e}", dir.display()));
            false
        }
    }
}

/// Job start: fills `<resultdir>/sysinfo/` and returns the job's sysinfo settings, with the
/// test keyval block computed from what was read.
pub fn collect_job_start(resultdir: &Path) -> JobSysinfo {
    let dir = resultdir.join("sysinfo");
    let ok = make_dir(&dir);
    let write = |name: &str, data: &[u8]| {
        if ok {
            write_or_skip(&dir.join(name), data);
        }
    };
    let mut cmdline = None;
    let mut meminfo = None;
    for (src, name) in JOB_FILES {
        let Some(data) = read_or_skip(Path::new(src)) else {
            continue;
        };
        write(name, &data);
        match name {
            "cmdline" => cmdline = Some(String::from_utf8_lossy(&data).into_owned()),
            "meminfo" => meminfo = Some(String::from_utf8_lossy(&data).into_owned()),
            "proc_mounts" => write(
                "mount",
                mount_text(&String::from_utf8_lossy(&data)).as_bytes(),
            ),
            _ => {}
        }
    }
    let uname = Uname::get();
    if let Some(u) = &uname {
        write("uname", format!("{}\n", u.all()).as_bytes());
        write("hostname", format!("{}\n", u.nodename).as_bytes());
    }
    // The watch first, so that nothing changing in between goes unseen.
    watch_mounts();
    let df = DfPlan::now();
    write("df", df.df_text().as_bytes());
    match Kmsg::open(false).and_then(|mut k| k.read_new()) {
        Ok(text) => write("dmesg", text.as_bytes()),
        Err(e) => debug(&format!("not logging the kernel log (/dev/kmsg): {e}")),
    }
    JobSysinfo {
        test_keyval: test_keyval(
            cmdline.as_deref(),
            meminfo.as_deref(),
            uname.map(|u| u.all()).as_deref(),
        ),
        df,
        ..JobSysinfo::default()
    }
}

/// Job end: the job's own commands and files (`on_every_test` false) into
/// `<resultdir>/sysinfo/`.
pub fn collect_job_end(resultdir: &Path, sysinfo: &JobSysinfo) {
    if sysinfo.per_job.is_empty() {
        return;
    }
    let dir = resultdir.join("sysinfo");
    if make_dir(&dir) {
        for item in &sysinfo.per_job {
            item.collect(&dir);
        }
    }
}

/// The `sysinfo-*` test keyval lines, sorted as autotest writes them: the first line of
/// `/proc/cmdline`, `MemTotal` in kB, the guessed physical memory in MiB, and `uname -a`
/// from its third field on (the host name left out). What could not be read is left out.
pub fn test_keyval(cmdline: Option<&str>, meminfo: Option<&str>, uname: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(c) = cmdline {
        let line = c.lines().next().unwrap_or("").replace('\r', "");
        pairs.push(("sysinfo-cmdline".into(), line));
    }
    if let Some(kb) = meminfo.and_then(memtotal_kb) {
        pairs.push(("sysinfo-memtotal-in-kb".into(), kb.to_string()));
        pairs.push((
            "sysinfo-phys-mbytes".into(),
            (rounded_memtotal_kb(kb) / 1024).to_string(),
        ));
    }
    if let Some(u) = uname {
        let rest: Vec<&str> = u.split_whitespace().skip(2).collect();
        pairs.push(("sysinfo-uname".into(), rest.join(" ")));
    }
    keyval::render(&pairs, Tag::None).unwrap_or_default()
}

/// `MemTotal` of a `/proc/meminfo` text, in kB.
pub fn memtotal_kb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        l.strip_prefix("MemTotal:")?
            .trim()
            .strip_suffix(" kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// autotest's `utils.rounded_memtotal()`: the machine's physical memory in kB, guessed from
/// the usable `MemTotal` by undoing the kernel's 1.5-5.5 % deduction and rounding up to a
/// multiple of a power of two.
pub fn rounded_memtotal_kb(usable_kb: u64) -> u64 {
    let usable = usable_kb as f64;
    let min_kb = (usable / (1.0 - 0.015)) as u64;
    let round_kb = ((usable / (1.0 - 0.055)) as u64).saturating_sub(min_kb);
    let mod2n: u64 = if round_kb <= 1 {
        1
    } else {
        1 << (round_kb as f64).log2().ceil() as u32
    };
    let phys = min_kb + mod2n - 1;
    phys - phys % mod2n
}

/// The fields of `uname(2)`.
#[derive(Debug, Clone)]
pub struct Uname {
    /// `Linux`.
    pub sysname: String,
    /// The host name.
    pub nodename: String,
    /// The kernel release.
    pub release: String,
    /// The kernel version (`#1 SMP ...`).
    pub version: String,
    /// The machine (`x86_64`).
    pub machine: String,
}

impl Uname {
    /// The running kernel's, or `None` if `uname(2)` fails.
    pub fn get() -> Option<Uname> {
        // SAFETY: utsname is plain bytes; uname fills it with NUL-terminated strings.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } != 0 {
            return None;
        }
        let text = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Some(Uname {
            sysname: text(&u.sysname),
            nodename: text(&u.nodename),
            release: text(&u.release),
            version: text(&u.version),
            machine: text(&u.machine),
        })
    }

    /// What `uname -a` prints (GNU coreutils leaves out the processor and platform when they
    /// are unknown, as they are on Linux).
    pub fn all(&self) -> String {
        let os = if self.sysname == "Linux" {
            "GNU/Linux"
        } else {
            &self.sysname
        };
        format!(
            "{} {} {} {} {} {os}",
            self.sysname, self.nodename, self.release, self.version, self.machine
        )
    }
}

/// Undoes the octal escapes (`\040` for a space) of `/proc` mount tables.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `mount` command's listing (`SRC on DIR type FS (OPTS)`) of a `/proc/mounts` text.
pub fn mount_text(proc_mounts: &str) -> String {
    let mut out = String::new();
    for line in proc_mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() >= 4 {
            let _ = writeln!(
                out,
                "{} on {} type {} ({})",
                unescape(f[0]),
                unescape(f[1]),
                f[2],
                f[3]
            );
        }
    }
    out
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    root: String,
    dir: String,
    fstype: String,
    source: String,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            (l.len() >= 5 && r.len() >= 2).then(|| Mount {
                root: unescape(l[3]),
                dir: unescape(l[4]),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
            })
        })
        .collect()
}

/// GNU df's choice between two mounts of one device: true if `new` should replace
/// `seen` (a real device name wins, then the mount nearer the root, then an overmount).
fn replaces(new: &Mount, seen: &Mount) -> bool {
    let nearer_root = seen.dir.len() > new.dir.len();
    let source_below_root = seen.root.len() < new.root.len();
    (new.source.contains('/') && !seen.source.contains('/'))
        || (nearer_root && !source_below_root)
        || (seen.source != new.source && seen.dir == new.dir)
}

/// Which mounts `df` shows, worked out from `/proc/self/mountinfo`. Reading that table is
/// most of what `df` costs (about 40 us in a fresh test process), and it rarely changes
/// during a job: the job works the plan out once, test processes inherit it, and it is
/// worked out again only when [`watch_mounts`]'s watch says the table changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DfPlan {
    /// (file system, mount point), in mount order.
    mounts: Vec<(String, String)>,
}

impl DfPlan {
    /// The plan for the mount table as it is now.
    pub fn now() -> DfPlan {
        DfPlan::from_mountinfo(std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    fn from_mountinfo(mountinfo: String) -> DfPlan {
        // Keyed by the device the mount point shows now, so an overmounted entry folds
        // into the mount that hides it, as in GNU df.
        let mut kept: Vec<(u64, Mount)> = Vec::new();
        for m in parse_mountinfo(&mountinfo) {
            if DUMMY_FS.contains(&m.fstype.as_str()) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&m.dir) else {
                continue;
            };
            let dev = std::os::unix::fs::MetadataExt::dev(&meta);
            match kept.iter_mut().find(|(d, _)| *d == dev) {
                Some(slot) if replaces(&m, &slot.1) => slot.1 = m,
                Some(_) => {}
                None => kept.push((dev, m)),
            }
        }
        DfPlan {
            mounts: kept.into_iter().map(|(_, m)| (m.source, m.dir)).collect(),
        }
    }

    /// Works the plan out again if this process's watch says the mount table changed
    /// since the last look (the control file or a test mounted or unmounted something).
    /// The job calls it before starting each test, so the test inherits a current plan.
    pub fn refresh(&mut self) {
        if mounts_changed() {
            *self = DfPlan::now();
        }
    }

    /// What `df -mP` prints for these mounts.
    pub fn df_text(&self) -> String {
        render_df(&self.mounts)
    }
}

/// This process's watch on the mount table: an open `/proc/self/mountinfo`, which
/// `poll(2)` flags with `POLLPRI` once the table changed since the last poll. Each process
/// needs its own open file, because the "already seen" mark belongs to the open file and
/// a fork shares it with its parent; the process id tells an inherited watch from ours.
static MOUNT_WATCH: Mutex<Option<(u32, File)>> = Mutex::new(None);

/// Starts watching the mount table from this process (the job at its start, each test
/// process at its own), dropping a watch inherited from the parent process.
pub fn watch_mounts() {
    let watch = File::open("/proc/self/mountinfo")
        .map_err(|e| debug(&format!("cannot watch the mount table: {e}")))
        .ok();
    *MOUNT_WATCH.lock().unwrap_or_else(|p| p.into_inner()) = watch.map(|f| (std::process::id(), f));
}

/// False only when this process's watch says the mount table did not change since the
/// last call (or since the watch started).
fn mounts_changed() -> bool {
    changed_since_last_poll(&MOUNT_WATCH.lock().unwrap_or_else(|p| p.into_inner()))
}

fn changed_since_last_poll(watch: &Option<(u32, File)>) -> bool {
    use std::os::fd::AsRawFd;
    match watch {
        Some((pid, f)) if *pid == std::process::id() => {
            let mut p = libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no waiting.
            unsafe { libc::poll(&mut p, 1, 0) != 0 }
        }
        _ => true,
    }
}

/// What `df -mP` prints: one line per real file system (dummy ones and those without
/// blocks left out, one line per device), sizes in MiB rounded up, capacity as the used
/// share of what non-root users can have, rounded up. Computed with `statvfs(2)`, no spawn.
pub fn df_text() -> String {
    render_df(&DfPlan::now().mounts)
}

fn render_df(mounts: &[(String, String)]) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "Filesystem".into(),
        "1048576-blocks".into(),
        "Used".into(),
        "Available".into(),
        "Capacity".into(),
        "Mounted on".into(),
    ]];
    for (source, dir) in mounts {
        let Some(s) = statvfs(dir) else { continue };
        if s.blocks == 0 {
            continue;
        }
        let mib = |n: u64| (n as u128 * s.frsize as u128).div_ceil(1 << 20).to_string();
        let used = s.blocks.saturating_sub(s.bfree);
        let total = used as u128 + s.bavail as u128;
        let pct = if total == 0 {
            "-".to_string()
        } else {
            format!("{}%", (used as u128 * 100).div_ceil(total))
        };
        rows.push([
            source.clone(),
            mib(s.blocks),
            mib(used),
            mib(s.bavail),
            pct,
            dir.clone(),
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let w: Vec<usize> = (0..5).map(width).collect();
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<w0$} {:>w1$} {:>w2$} {:>w3$} {:>w4$} {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    }
    out
}

struct FsStats {
    frsize: u64,
    blocks: u64,
    bfree: u64,
    bavail: u64,
}

fn statvfs(dir: &str) -> Option<FsStats> {
    let c = std::ffi::CString::new(dir).ok()?;
    // SAFETY: statvfs fills the zeroed struct for a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Some(FsStats {
        frsize: frsize as u64,
        blocks: s.f_blocks as u64,
        bfree: s.f_bfree as u64,
        bavail: s.f_bavail as u64,
    })
}

/// A reader of the kernel log through `/dev/kmsg`. Each reader has its own position, so
/// reading takes nothing away from anyone (unlike `dmesg -c`).
pub struct Kmsg(File);

impl Kmsg {
    /// Opens the kernel log at its oldest record, or at its end (`at_end`: only what is
    /// logged from now on will be read).
    pub fn open(at_end: bool) -> std::io::Result<Kmsg> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/kmsg")?;
        if at_end {
            f.seek(SeekFrom::End(0))?;
        }
        Ok(Kmsg(f))
    }

    /// The records since the last read, as `dmesg` prints them (`[    1.378471] text`).
    pub fn read_new(&mut self) -> std::io::Result<String> {
        use std::os::fd::AsRawFd;
        let mut out = String::new();
        // One record per read; the kernel refuses a buffer smaller than the record. Left
        // uninitialised: most reads find nothing, and zeroing it would cost page faults in
        // every test process.
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut lost = 0;
        loop {
            // SAFETY: read writes at most `capacity` bytes into the buffer's spare room.
            let n =
                unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.capacity()) };
            let res = if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            };
            match res {
                Ok(0) => break,
                Ok(n) => {
                    // SAFETY: the kernel initialised the first n bytes.
                    unsafe { buf.set_len(n) };
                    format_record(&buf, &mut out);
                    buf.clear();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Records were overwritten before we read them; the next read resumes at
                // the oldest one left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) && lost < 1000 => lost += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// One `/dev/kmsg` record (`PRI,SEQ,USEC,FLAGS;text\n KEY=value...`) as a `dmesg` line.
fn format_record(rec: &[u8], out: &mut String) {
    let text = String::from_utf8_lossy(rec);
    let first = text.split('\n').next().unwrap_or("");
    let Some((header, msg)) = first.split_once(';') else {
        return;
    };
    let usec: u64 = header
        .split(',')
        .nth(2)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "[{:>5}.{:06}] {msg}",
        usec / 1_000_000,
        usec % 1_000_000
    );
}

/// The relative target of `<test>/sysinfo/reboot_current`: the job's `sysinfo/`, seen from
/// a test whose folder is `subdir` (`a` → `../../sysinfo`, `a/b` → `../../../sysinfo`).
pub fn reboot_current_target(subdir: &str) -> PathBuf {
    let depth = subdir.split('/').filter(|p| !p.is_empty()).count();
    let mut p = PathBuf::new();
    for _ in 0..=depth {
        p.push("..");
    }
    p.join("sysinfo")
}

/// Per-test collection, started when the test process starts and finished after the test's
/// phases (even when the test failed), in the test's process.
pub struct TestSysinfo {
    kmsg: Option<Kmsg>,
}

impl TestSysinfo {
    /// Marks where the kernel log stands, so that the test gets only its own lines, and
    /// starts this process's watch on the mount table.
    pub fn start() -> TestSysinfo {
        watch_mounts();
        let kmsg = match Kmsg::open(true) {
            Ok(k) => Some(k),
            Err(e) => {
                debug(&format!("not logging the kernel log (/dev/kmsg): {e}"));
                None
            }
        };
        TestSysinfo { kmsg }
    }

    /// Fills `<outputdir>/sysinfo/` (`reboot_current`, `df`, `dmesg` if the kernel logged
    /// anything, the job's `on_every_test` items) and appends the `sysinfo-*` keyvals to `<outputdir>/keyval`.
    /// `subdir` is the test folder relative to the job folder; `job` the test process's
    /// current settings (its `df` plan kept up to date by the nested tests it ran).
    pub fn finish(self, outputdir: &Path, subdir: &str, job: &JobSysinfo) {
        let dir = outputdir.join("sysinfo");
        if make_dir(&dir) {
            let link = dir.join("reboot_current");
            if let Err(e) = std::os::unix::fs::symlink(reboot_current_target(subdir), &link) {
                debug(&format!("cannot link {}: {e}", link.display()));
            }
            let fresh;
            let df = if mounts_changed() {
                fresh = DfPlan::now();
                &fresh
            } else {
                &job.df
            };
            write_or_skip(&dir.join("df"), df.df_text().as_bytes());
            // Only when the kernel logged something: most tests log nothing, and on a disk
            // file system each new file is a good part of what sysinfo costs a test.
            if let Some(mut k) = self.kmsg {
                match k.read_new() {
                    Ok(text) if text.is_empty() => {}
                    Ok(text) => write_or_skip(&dir.join("dmesg"), text.as_bytes()),
                    Err(e) => debug(&format!("cannot read the kernel log: {e}")),
                }
            }
            for item in &job.per_test {
                item.collect(&dir);
            }
        }
        if !job.test_keyval.is_empty() {
            if let Err(e) = keyval::append(&outputdir.join("keyval"), &job.test_keyval) {
                debug(&e.to_string());
            }
        }
    }
}

/// Before or after an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the iteration's hooks and phases.
    Before,
    /// After them.
    After,
}

impl Stage {
    fn suffix(self) -> &'static str {
        match self {
            Stage::Before => "before",
            Stage::After => "after",
        }
    }
}

thread_local! {
    /// Iteration files already reported missing in this process: said once, not per
    /// iteration.
    static MISSING: RefCell<HashSet<&'static str>> = RefCell::new(HashSet::new());
}

/// Copies the [`ITERATION_FILES`] into `<outputdir>/sysinfo/iteration.<iteration>/` as
/// `<name>.before` or `<name>.after`.
pub fn log_iteration(outputdir: &Path, iteration: i64, stage: Stage) {
    let dir = outputdir
        .join("sysinfo")
        .join(format!("iteration.{iteration}"));
    if !make_dir(&dir) {
        return;
    }
    for name in ITERATION_FILES {
        let src = Path::new("/proc").join(name);
        match std::fs::read(&src) {
            Ok(data) => write_or_skip(&dir.join(format!("{name}.{}", stage.suffix())), &data),
            Err(e) => {
                if MISSING.with(|m| m.borrow_mut().insert(name)) {
                    debug(&format!(
                        "not logging {} around iterations: {e}",
                        src.display()
                    ));
                }
            }
        }
    }
}

/// Runs `command` with `/bin/sh -c`, its standard output into `out` (standard error
/// dropped, as autotest does), in a process group of its own that is killed if this
/// process is told to stop.
fn run_command(command: &str, out: &Path) {
    let file = match File::create(out) {
        Ok(f) => f,
        Err(e) => return debug(&format!("cannot write {}: {e}", out.display())),
    };
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return debug(&format!("cannot run `{command}`: {e}")),
    };
    let pid = child.id();
    let slot = crate::commands::track_group(pid as i32);
    // Polled rather than waited for, so that Ctrl-C on the job is not held up by a
    // command that never ends.
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if crate::child::interrupted().is_some() {
            crate::commands::kill_group(pid, libc::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    crate::commands::untrack_group(slot);
    match status {
        Some(s) if s.success() => {}
        Some(s) => debug(&format!("`{command}` for {} ended with {s}", out.display())),
        None => debug(&format!("`{command}` for {} did not finish", out.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_memtotal_matches_autotest() {
        // The reference run: MemTotal 24683656 kB gave sysinfo-phys-mbytes=24576.
        assert_eq!(rounded_memtotal_kb(24_683_656) / 1024, 24_576);
        // 16 GiB with about 3 % taken by the kernel.
        assert_eq!(rounded_memtotal_kb(16_262_000) / 1024, 16_384);
        assert!(rounded_memtotal_kb(1) >= 1);
    }

    #[test]
    fn keyval_block_is_sorted_and_drops_the_host_name() {
        let kv = test_keyval(
            Some("console=ttyS0 quiet\n"),
            Some("MemTotal:       24683656 kB\nMemFree: 1 kB\n"),
            Some("Linux vm 6.18.44-fc #1 SMP PREEMPT_DYNAMIC @0 x86_64 GNU/Linux"),
        );
        assert_eq!(
            kv,
            "sysinfo-cmdline=console=ttyS0 quiet\n\
             sysinfo-memtotal-in-kb=24683656\n\
             sysinfo-phys-mbytes=24576\n\
             sysinfo-uname=6.18.44-fc #1 SMP PREEMPT_DYNAMIC @0 x86_64 GNU/Linux\n"
        );
        assert_eq!(test_keyval(None, Some("nothing\n"), None), "");
    }

    #[test]
    fn uname_is_like_uname_a() {
        let u = Uname::get().unwrap();
        let all = u.all();
        assert!(all.starts_with(&format!("{} {} {}", u.sysname, u.nodename, u.release)));
        // Distributions differ after the machine field (some add the processor), so only
        // the part up to it is compared with the real command.
        if let Ok(out) = Command::new("uname").arg("-a").output() {
            let real = String::from_utf8_lossy(&out.stdout);
            let upto = format!("{} {}", u.version, u.machine);
            let ours = &all[..all.find(&upto).unwrap() + upto.len()];
            assert!(real.starts_with(ours), "{real} vs {ours}");
        }
    }

    #[test]
    fn command_logfiles_are_file_names() {
        assert_eq!(command_logfile("uname -a"), "uname_-a");
        assert_eq!(command_logfile("cat /proc/version"), "cat__proc_version");
        assert_eq!(command_logfile(".."), "command");
        assert_eq!(command_logfile(&"x".repeat(500)).len(), 200);
        assert!(Loggable::command("  ", None).is_err());
        assert!(Loggable::command("ls", Some("a/b")).is_err());
        assert!(Loggable::command("ls", Some("..")).is_err());
        assert_eq!(
            Loggable::command("ls -l", Some("listing")).unwrap(),
            Loggable::Command {
                command: "ls -l".into(),
                logfile: "listing".into()
            }
        );
        match Loggable::file("/etc/hostname").unwrap() {
            Loggable::File { path, logfile } => {
                assert_eq!(path, PathBuf::from("/etc/hostname"));
                assert_eq!(logfile, "hostname");
            }
            other => panic!("{other:?}"),
        }
        assert!(Loggable::file("/").is_err());
        assert!(Loggable::file("dir/").is_err());
        let mut s = JobSysinfo::default();
        s.add(Loggable::command("ls", None).unwrap(), true);
        s.add(Loggable::command("ls", None).unwrap(), true);
        s.add(Loggable::command("ls", None).unwrap(), false);
        assert_eq!((s.per_test.len(), s.per_job.len()), (1, 1));
    }

    #[test]
    fn kmsg_records_print_like_dmesg() {
        let mut out = String::new();
        format_record(
            b"6,339,5140900,-;NET: Registered\n SUBSYSTEM=net\n",
            &mut out,
        );
        format_record(
            b"4,340,1143802416,-,caller=T1;autorun (20906): drop_caches: 3\n",
            &mut out,
        );
        format_record(b"garbage", &mut out);
        assert_eq!(
            out,
            "[    5.140900] NET: Registered\n[ 1143.802416] autorun (20906): drop_caches: 3\n"
        );
    }

    #[test]
    fn reboot_current_climbs_out_of_nested_tests() {
        assert_eq!(reboot_current_target("t"), PathBuf::from("../../sysinfo"));
        assert_eq!(
            reboot_current_target("parent/child.a"),
            PathBuf::from("../../../sysinfo")
        );
    }

    #[test]
    fn mount_tables() {
        let m = parse_mountinfo(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             28 27 0:25 / /mnt/with\\040space ro - tmpfs tmp\\040fs ro\n",
        );
        assert_eq!(m[1].dir, "/mnt/with space");
        assert_eq!(m[1].source, "tmp fs");
        assert_eq!(
            mount_text("/dev/vda / ext4 rw,relatime 0 0\n"),
            "/dev/vda on / type ext4 (rw,relatime)\n"
        );
        let mk = |src: &str, dir: &str| Mount {
            root: "/".into(),
            dir: dir.into(),
            fstype: "tmpfs".into(),
            source: src.into(),
        };
        assert!(replaces(&mk("/dev/sda", "/x"), &mk("tmpfs", "/")));
        assert!(replaces(&mk("tmpfs", "/"), &mk("tmpfs", "/x")));
        assert!(!replaces(&mk("tmpfs", "/x"), &mk("tmpfs", "/x")));
    }

    #[test]
    fn df_lists_the_root_file_system_like_df() {
        let text = df_text();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            [
                "Filesystem",
                "1048576-blocks",
                "Used",
                "Available",
                "Capacity",
                "Mounted",
                "on"
            ]
        );
        let root = text
            .lines()
            .find(|l| l.ends_with(" /"))
            .unwrap_or_else(|| panic!("no / in:\n{text}"));
        // The same row as GNU df's, when the machine has it (sizes may move in between).
        if let Ok(out) = Command::new("df").args(["-mP", "/"]).output() {
            let real = String::from_utf8_lossy(&out.stdout);
            let theirs: Vec<&str> = real.lines().nth(1).unwrap().split_whitespace().collect();
            let ours: Vec<&str> = root.split_whitespace().collect();
            assert_eq!((ours[0], ours[1]), (theirs[0], theirs[1]), "{real}\n{text}");
        }
    }

    #[test]
    fn the_mount_watch_must_be_this_processs_own() {
        let plan = DfPlan::now();
        assert_eq!(plan.df_text().lines().count(), df_text().lines().count());
        let open = || File::open("/proc/self/mountinfo").unwrap();
        let me = std::process::id();
        // No watch, or one inherited from the parent process: the plan is redone.
        assert!(changed_since_last_poll(&None));
        assert!(changed_since_last_poll(&Some((me + 1, open()))));
        // Our own: kept until the mount table changes (tests/sysinfo.rs mounts something
        // in a mount namespace of its own to check that side).
        assert!(!changed_since_last_poll(&Some((me, open()))));
    }

    #[test]
    fn iteration_files_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        log_iteration(dir.path(), 3, Stage::Before);
        log_iteration(dir.path(), 3, Stage::After);
        let it = dir.path().join("sysinfo/iteration.3");
        for name in ITERATION_FILES {
            let src = Path::new("/proc").join(name);
            let exists = std::fs::read(&src).is_ok();
            for stage in ["before", "after"] {
                assert_eq!(
                    it.join(format!("{name}.{stage}")).exists(),
                    exists,
                    "{name}"
                );
            }
        }
        assert!(it.join("meminfo.after").metadata().unwrap().len() > 0);
    }

    #[test]
    fn job_and_test_collection() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = collect_job_start(dir.path());
        let sys = dir.path().join("sysinfo");
        for f in [
            "cmdline",
            "meminfo",
            "uname",
            "df",
            "cpuinfo",
            "proc_mounts",
            "mount",
        ] {
            let len = sys.join(f).metadata().map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{f} is missing or empty");
        }
        assert!(s.test_keyval.contains("sysinfo-memtotal-in-kb="));
        s.add(
            Loggable::command("echo every", Some("every")).unwrap(),
            true,
        );
        s.add(Loggable::command("echo once", None).unwrap(), false);
        let test = dir.path().join("t");
        std::fs::create_dir(&test).unwrap();
        TestSysinfo::start().finish(&test, "t", &s);
        assert_eq!(
            std::fs::read_link(test.join("sysinfo/reboot_current")).unwrap(),
            PathBuf::from("../../sysinfo")
        );
        assert!(test.join("sysinfo/reboot_current/uname").exists());
        assert_eq!(
            std::fs::read_to_string(test.join("sysinfo/every")).unwrap(),
            "every\n"
        );
        assert!(std::fs::read_to_string(test.join("keyval"))
            .unwrap()
            .starts_with("sysinfo-cmdline="));
        collect_job_end(dir.path(), &s);
        assert_eq!(
            std::fs::read_to_string(sys.join("echo_once")).unwrap(),
            "once\n"
        );
    }
}
