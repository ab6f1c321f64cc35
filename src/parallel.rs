//! `job.parallel(tasks)`: each task runs in a fork of the job process at the same time;
//! tests inside a task still run in processes of their own. A task's status lines go to
//! `status.<i>`, appended to `status` task by task once all have ended, as autotest does.

use std::io::Write;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, NativeCallContext};

use crate::child::{self, die_with_parent};
use crate::commands::{kill_group, track_group, untrack_group};
use crate::job::{abort, JobHandle};
use crate::logging;
use crate::outcome::{escape_of, native_error, Escape};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// One task: a function and its arguments.
struct Task {
    f: FnPtr,
    args: Vec<Dynamic>,
}

fn tasks_of(list: &Array) -> RhaiResult<Vec<Task>> {
    list.iter()
        .map(|t| {
            if let Some(f) = t.read_lock::<FnPtr>() {
                return Ok(Task {
                    f: f.clone(),
                    args: Vec::new(),
                });
            }
            if let Some(parts) = t.read_lock::<Array>() {
                if let Some(f) = parts.first().and_then(|f| f.read_lock::<FnPtr>()) {
                    return Ok(Task {
                        f: f.clone(),
                        args: parts[1..].to_vec(),
                    });
                }
            }
            Err(native_error(
                "TypeError",
                format!(
                    "job.parallel: a task is a function pointer or closure, or an array [f, args...], not {}",
                    t.type_name()
                ),
            ))
        })
        .collect()
}

/// Runs the tasks in parallel and waits for all of them.
pub fn run(ctx: &NativeCallContext, job: &JobHandle, list: &Array) -> RhaiResult<()> {
    let tasks = tasks_of(list)?;
    let resultdir = job.info().resultdir;
    // Tasks of a task write `status.<i>.<j>`, merged into their task's file.
    let own_file = job.info().status_file;
    let grace = job.info().cleanup_grace;
    let _ = std::io::stdout().flush();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut pids = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.iter().enumerate() {
        let file = format!("{own_file}.{i}");
        let _ = std::fs::remove_file(resultdir.join(&file));
        // SAFETY: as for test processes (child.rs): one script thread, fork-safe malloc.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            die_with_parent(parent);
            crate::commands::adopt_table(None);
            // SAFETY: setpgid on this process.
            unsafe { libc::setpgid(0, 0) };
            job.set_status_file(&file);
            // The task's own watch on the mount table (the job's is not valid in a fork,
            // and every test would work the df plan out again), then a plan from now.
            crate::sysinfo::watch_mounts();
            job.0.borrow_mut().info.sysinfo.df = crate::sysinfo::DfPlan::now();
            let code = match task
                .f
                .call_within_context::<Dynamic>(ctx, task.args.clone())
            {
                Ok(_) => 0,
                Err(e) => {
                    let file = job.info().control.display().to_string();
                    let msg = match escape_of(e, &file) {
                        Escape::Outcome(o) => format!("{}: {}", o.status, o.message),
                        Escape::Unhandled(m) => m,
                    };
                    logging::error("job", &format!("task {i} of job.parallel failed: {msg}"));
                    1
                }
            };
            let _ = std::io::stdout().flush();
            // SAFETY: ends the task without running the job's destructors.
            unsafe { libc::_exit(code) };
        }
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            for (p, slot) in pids.drain(..) {
                kill_group(p, libc::SIGKILL);
                untrack_group(slot);
            }
            return Err(abort(format!("job.parallel: cannot start task {i}: {err}")).into_rhai());
        }
        // SAFETY: setpgid on our own child, racing its own call harmlessly.
        unsafe { libc::setpgid(pid, pid) };
        pids.push((pid as u32, track_group(pid)));
    }
    let failed = wait_all(&pids, grace);
    for (i, _) in tasks.iter().enumerate() {
        let path = resultdir.join(format!("{own_file}.{i}"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            crate::keyval::append(&resultdir.join(&own_file), &text)
                .map_err(|e| abort(e.to_string()).into_rhai())?;
            // The task's tests ran in forks: the job's reports learn of them from their lines.
            job.replay(&text);
        }
        let _ = std::fs::remove_file(path);
    }
    for (_, slot) in pids {
        untrack_group(slot);
    }
    if let Some(why) = child::interruption() {
        return Err(abort(why).into_rhai());
    }
    if failed > 0 {
        return Err(abort(format!("{failed} task(s) failed in job.parallel")).into_rhai());
    }
    Ok(())
}

/// Waits for every task; on an interrupt passes SIGINT on to the tasks (which stop their
/// tests and let them clean up) and kills what is left after the grace. Returns how many
/// tasks failed.
fn wait_all(pids: &[(u32, Option<usize>)], grace: f64) -> usize {
    let mut done: Vec<Option<bool>> = vec![None; pids.len()];
    let mut deadline: Option<Instant> = None;
    while done.iter().any(Option::is_none) {
        for (i, (pid, _)) in pids.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let mut status = 0;
            // SAFETY: polls our own child.
            let r = unsafe { libc::waitpid(*pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if r == *pid as libc::pid_t || r < 0 {
                let ok = r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                done[i] = Some(ok);
            }
        }
        if child::interrupted().is_some() && deadline.is_none() {
            for (pid, _) in pids {
                kill_group(*pid, libc::SIGINT);
            }
            // The tasks' tests get their own grace; the tasks get a little more.
            deadline = Some(Instant::now() + Duration::from_secs_f64(grace.max(0.0) + 3.0));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            for (pid, _) in pids {
                kill_group(*pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done.iter().filter(|d| **d != Some(true)).count()
}
