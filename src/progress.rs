//! The live progress board: the tests running now in any process of the job (the job
//! itself, parallel tasks, test processes running nested tests), each with its name, when
//! it started and its iteration. It is a small page shared by every process of the job
//! (an anonymous `MAP_SHARED` mapping made before the first fork), written with atomics,
//! so a test reports an iteration without a system call; the console draws it.
//!
//! The board exists only when the console draws a live line (a terminal); without it
//! every call here is a no-op.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU8, Ordering};

use crate::events::{Event, Subscriber};

/// How many tests the board shows at once; more are not shown.
const SLOTS: usize = 32;
/// The bytes of a name kept.
const NAME: usize = 120;

/// One running test. All zero is a free slot.
#[repr(C)]
struct Slot {
    /// 0 free, 1 being filled, 2 shown.
    state: AtomicU32,
    /// Bytes of `name` in use.
    len: AtomicU32,
    /// The process that claimed it: a slot whose process died without giving it back (a
    /// parallel task killed) is not shown.
    pid: AtomicI32,
    /// When it started, in milliseconds since the epoch.
    started_ms: AtomicI64,
    /// The iteration running, or the count of timed runs.
    iteration: AtomicI64,
    /// How many iterations: -1 not known yet, 0 a timed run.
    of: AtomicI64,
    name: [AtomicU8; NAME],
}

static BOARD: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
/// In a test process: the slot its parent claimed for it (forks inherit it).
static CURRENT: AtomicI32 = AtomicI32::new(-1);

/// Makes the board, in the job process before any fork. False if it cannot be mapped.
pub fn open() -> bool {
    if !BOARD.load(Ordering::SeqCst).is_null() {
        return true;
    }
    // SAFETY: an anonymous shared mapping, zero-filled by the kernel; a zeroed Slot is a
    // valid free slot (atomics of zero).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SLOTS * std::mem::size_of::<Slot>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    BOARD.store(p as *mut Slot, Ordering::SeqCst);
    true
}

/// True when there is a board to report to.
pub fn is_open() -> bool {
    !BOARD.load(Ordering::Relaxed).is_null()
}

fn slots() -> Option<&'static [Slot]> {
    let p = BOARD.load(Ordering::Relaxed);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` maps SLOTS slots for the life of the process (never unmapped).
    Some(unsafe { std::slice::from_raw_parts(p, SLOTS) })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Puts `name` on the board; its slot, or `None` when the board is full or absent.
fn claim(name: &str) -> Option<usize> {
    let slots = slots()?;
    for (i, s) in slots.iter().enumerate() {
        if s.state
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let bytes = name.as_bytes();
            let n = bytes.len().min(NAME);
            for (dst, b) in s.name.iter().zip(&bytes[..n]) {
                dst.store(*b, Ordering::Relaxed);
            }
            s.len.store(n as u32, Ordering::Relaxed);
            s.pid.store(std::process::id() as i32, Ordering::Relaxed);
            s.started_ms.store(now_ms(), Ordering::Relaxed);
            s.iteration.store(0, Ordering::Relaxed);
            s.of.store(-1, Ordering::Relaxed);
            s.state.store(2, Ordering::Release);
            return Some(i);
        }
    }
    None
}

fn release(i: usize) {
    if let Some(s) = slots().and_then(|s| s.get(i)) {
        s.state.store(0, Ordering::Release);
    }
}

/// A running test as the board shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    /// Its name with tags.
    pub name: String,
    /// Milliseconds since it started.
    pub elapsed_ms: i64,
    /// The iteration running (or the timed runs so far).
    pub iteration: i64,
    /// How many iterations: -1 not known yet, 0 a timed run.
    pub of: i64,
}

/// The tests on the board now, oldest first.
pub fn snapshot() -> Vec<Running> {
    let Some(slots) = slots() else {
        return Vec::new();
    };
    let now = now_ms();
    let mut out: Vec<(i64, Running)> = Vec::new();
    for s in slots {
        if s.state.load(Ordering::Acquire) != 2 {
            continue;
        }
        let pid = s.pid.load(Ordering::Relaxed);
        // SAFETY: signal 0 only checks that the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } != 0 {
            // Its process is gone: free the slot for the tests to come.
            let _ = s
                .state
                .compare_exchange(2, 0, Ordering::AcqRel, Ordering::Relaxed);
            continue;
        }
        let len = (s.len.load(Ordering::Relaxed) as usize).min(NAME);
        let bytes: Vec<u8> = s.name[..len]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let started = s.started_ms.load(Ordering::Relaxed);
        out.push((
            started,
            Running {
                name: String::from_utf8_lossy(&bytes).into_owned(),
                elapsed_ms: (now - started).max(0),
                iteration: s.iteration.load(Ordering::Relaxed),
                of: s.of.load(Ordering::Relaxed),
            },
        ));
    }
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Keeps the board in step with the job's events, in every process: a test that starts
/// takes a slot (which its process inherits as its own), an iteration that starts is
/// shown on the slot of the test running it, a test that ends gives its slot back.
#[derive(Debug, Default)]
pub struct ProgressWriter {
    /// The tests this process started and has not seen end: (subdir, slot, the slot
    /// current before).
    open: Vec<(String, Option<usize>, i32)>,
}

impl Subscriber for ProgressWriter {
    fn name(&self) -> &str {
        "progress"
    }

    fn in_forks(&self) -> bool {
        true
    }

    fn handle(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::TestStarted { name, subdir, .. } => {
                let slot = claim(name);
                let before = CURRENT.swap(slot.map_or(-1, |s| s as i32), Ordering::SeqCst);
                self.open.push((subdir.clone(), slot, before));
            }
            Event::TestFinished(t) => {
                if let Some(at) = self.open.iter().rposition(|(s, _, _)| *s == t.subdir) {
                    let (_, slot, before) = self.open.remove(at);
                    if let Some(slot) = slot {
                        release(slot);
                    }
                    CURRENT.store(before, Ordering::SeqCst);
                }
            }
            Event::IterationStarted { iteration, of } => {
                let cur = CURRENT.load(Ordering::Relaxed);
                if let (Ok(i), Some(slots)) = (usize::try_from(cur), slots()) {
                    if let Some(s) = slots.get(i) {
                        s.iteration.store(*iteration, Ordering::Relaxed);
                        s.of.store(*of, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_follows_tests_and_iterations() {
        assert!(open());
        let mut w = ProgressWriter::default();
        let start = |name: &str| Event::TestStarted {
            name: name.into(),
            subdir: name.into(),
            start: std::time::SystemTime::now(),
        };
        w.handle(&start("progress-a")).unwrap();
        w.handle(&Event::IterationStarted {
            iteration: 2,
            of: 3,
        })
        .unwrap();
        let mine: Vec<Running> = snapshot()
            .into_iter()
            .filter(|r| r.name.starts_with("progress-"))
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].iteration, mine[0].of), (2, 3));
        let t = crate::events::FinishedTest {
            name: "progress-a".into(),
            subdir: "progress-a".into(),
            status: crate::status::Status::Good,
            reason: String::new(),
            start: std::time::SystemTime::now(),
            end: std::time::SystemTime::now(),
            keyval: Default::default(),
            iterations: Vec::new(),
        };
        w.handle(&Event::TestFinished(t)).unwrap();
        assert!(!snapshot().iter().any(|r| r.name == "progress-a"));
    }

    #[test]
    fn a_slot_whose_process_died_is_not_shown() {
        assert!(open());
        // SAFETY: the child only claims a slot and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = claim("orphaned-slot");
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(!snapshot().iter().any(|r| r.name == "orphaned-slot"));
    }
}
