//! For `scripts/bench`: the peak resident memory of one process, not of its children.
//!
//! `peak_rss PROGRAM [ARGS...]` runs the program traced (ptrace) only to be stopped just
//! before it exits (`PTRACE_O_TRACEEXIT`), while its memory is still whole; it then reads
//! that process's own `VmHWM` from `/proc/<pid>/status`. The processes it forks (an autorun
//! job's test processes) are not traced and do not count: `/usr/bin/time` and `wait4`'s
//! `ru_maxrss` would give the largest of the whole process tree instead.
//!
//! Prints one line to stderr, `peak_rss_kb=<VmHWM> rss_at_exit_kb=<VmRSS>`, and exits with
//! the program's exit code (128 + N when a signal N killed it).

use std::ffi::CString;

fn status_kb(pid: libc::pid_t, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn main() {
    let args: Vec<CString> = std::env::args()
        .skip(1)
        .map(|a| CString::new(a).expect("an argument holds a NUL byte"))
        .collect();
    if args.is_empty() {
        eprintln!("usage: peak_rss PROGRAM [ARGS...]");
        std::process::exit(64);
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: fork in a single-threaded program; the child only calls ptrace and execvp.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("peak_rss: fork: {}", std::io::Error::last_os_error());
        std::process::exit(70);
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, with valid pointers.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::execvp(argv[0], argv.as_ptr());
            libc::_exit(127);
        }
    }
    let mut peak = None;
    let mut at_exit = None;
    let mut first = true;
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut st, 0) } < 0 {
            eprintln!("peak_rss: waitpid: {}", std::io::Error::last_os_error());
            std::process::exit(70);
        }
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            match (peak, at_exit) {
                (Some(p), Some(r)) => eprintln!("peak_rss_kb={p} rss_at_exit_kb={r}"),
                _ => eprintln!("peak_rss: the process exited before its exit stop"),
            }
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                128 + libc::WTERMSIG(st)
            };
            std::process::exit(code);
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        let mut deliver = 0;
        if first && sig == libc::SIGTRAP {
            // The stop after execvp: ask for a stop at exit, and nothing else.
            first = false;
            // SAFETY: our tracee, stopped.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_SETOPTIONS,
                    pid,
                    0,
                    libc::PTRACE_O_TRACEEXIT as libc::c_long,
                )
            };
        } else if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
            peak = status_kb(pid, "VmHWM:");
            at_exit = status_kb(pid, "VmRSS:");
        } else {
            // A signal for the program (SIGCHLD of its tests...): pass it on.
            deliver = sig;
        }
        // SAFETY: our tracee, stopped.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver as libc::c_long) };
    }
}
