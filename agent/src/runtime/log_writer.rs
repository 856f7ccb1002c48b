//! Size-rotated log files, written by the shim. The naming is the contract with the
//! log reader: `stdout` is current, `stdout.1` the newest rotation … `stdout.N` the oldest.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Appends to `<dir>/<name>`, rotating when the file would exceed `max_bytes`.
pub(crate) struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Opens (appending to) the current file.
    pub fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> std::io::Result<Self> {
        let file = open_log(&path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path, max_bytes: max_bytes.max(1), max_files, file, size })
    }

    /// Writes all of `buf`, splitting it across files so none exceeds the limit.
    pub fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            if self.size >= self.max_bytes {
                self.rotate()?;
            }
            let room = usize::try_from(self.max_bytes - self.size).unwrap_or(usize::MAX);
            let n = room.min(buf.len());
            self.file.write_all(&buf[..n])?;
            self.size += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_files == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&numbered(&self.path, self.max_files))?;
            for i in (1..self.max_files).rev() {
                rename_if_exists(&numbered(&self.path, i), &numbered(&self.path, i + 1))?;
            }
            rename_if_exists(&self.path, &numbered(&self.path, 1))?;
        }
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Copies `src` into a rotated log until end of file. Write errors (a full disk) drop
/// output rather than stop reading, so the task never blocks on a full pipe.
pub(crate) fn copy_to_log(mut src: File, mut log: LogWriter) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = log.write_all(&buf[..n]) {
                    eprintln!("corral shim: cannot write {}: {e}", log.path.display());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("corral shim: cannot read task output: {e}");
                return;
            }
        }
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_log(path: &Path) -> std::io::Result<File> {
    // O_NOFOLLOW: the log dir is shared with readers; a planted symlink must not make
    // the shim (root) write elsewhere.
    std::fs::OpenOptions::new().create(true).append(true).custom_flags(libc::O_NOFOLLOW).mode(0o640).open(path)
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_files_under_the_limit_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = LogWriter::open(path.clone(), 10, 2).unwrap();
        w.write_all(b"0123456789abcdefghij").unwrap();
        w.write_all(b"KLMNOPQRSTxyz").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"xyz");
        assert_eq!(std::fs::read(numbered(&path, 1)).unwrap(), b"KLMNOPQRST");
        assert_eq!(std::fs::read(numbered(&path, 2)).unwrap(), b"abcdefghij");
        assert!(!numbered(&path, 3).exists());
    }

    #[test]
    fn reopening_appends_and_counts_existing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        LogWriter::open(path.clone(), 8, 1).unwrap().write_all(b"12345").unwrap();
        LogWriter::open(path.clone(), 8, 1).unwrap().write_all(b"6789").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"9");
        assert_eq!(std::fs::read(numbered(&path, 1)).unwrap(), b"12345678");
    }

    #[test]
    fn logs_refuse_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        assert!(LogWriter::open(path, 8, 1).is_err());
    }
}
