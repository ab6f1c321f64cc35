//! Appending records to result files (status logs, keyvals) whole or not at all: a write
//! that fails part way (a full disk, a file size limit) is rolled back, so that what the
//! file held before is intact and readers never see half a record. Temp folders are made
//! private.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Appends `bytes` to `path` (created if missing) with as few writes as the kernel allows.
/// On an error, the file is cut back to its length before the call, unless another writer
/// appended meanwhile (then its data is left alone).
pub fn append_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let before = f.metadata()?.len();
    let mut written = 0;
    while written < bytes.len() {
        match f.write(&bytes[written..]) {
            Ok(0) => {
                return Err(roll_back(
                    &f,
                    before,
                    written,
                    std::io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(roll_back(&f, before, written, e)),
        }
    }
    Ok(())
}

/// Permissions of temp folders: the owner's only (tempfile's default follows the umask).
pub fn private() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o700)
}

fn roll_back(f: &std::fs::File, before: u64, written: usize, e: std::io::Error) -> std::io::Error {
    if written > 0
        && f.metadata()
            .is_ok_and(|m| m.len() == before + written as u64)
    {
        let _ = f.set_len(before);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file size limit (RLIMIT_FSIZE) makes the kernel write part of a record and then
    /// refuse the rest; the part must not stay.
    #[test]
    fn a_write_cut_short_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "first\n").unwrap();
        // In a child process, so the limit and the ignored SIGXFSZ stay there.
        // SAFETY: fork in a test; the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: 10,
                    rlim_max: libc::RLIM_INFINITY,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                let code = match append_whole(&path, b"second record\n") {
                    Err(e) if e.raw_os_error() == Some(libc::EFBIG) => 0,
                    _ => 1,
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the append did not fail with EFBIG"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
    }
}
