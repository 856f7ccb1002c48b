//! Reading a task's logs: the whole retained history, the last lines, or a follow that
//! keeps up with appends and rotations until the task has ended.
//!
//! The shim writes `<task>/logs/stdout` and `stderr`; on rotation it renames the current
//! file to `.1` (shifting `.1` to `.2` and so on, dropping the oldest) and starts a new
//! one, and once the task has ended it writes `<task>/exit.json` after the last log
//! byte. The reader tells files apart by inode, never by name, so a rotation between
//! two reads neither loses nor repeats bytes.
//!
//! Every file is opened with `O_NOFOLLOW | O_NONBLOCK` and must be a regular file: a
//! task must not make the agent read something else by planting a symlink or a FIFO.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

/// How often a follow looks for new bytes, a rotation or the end of the task.
const POLL: Duration = Duration::from_millis(100);

/// Largest chunk read (and sent) at once.
const CHUNK: usize = 64 * 1024;

/// Rotated files looked at, at most: far more than any shim keeps.
const MAX_ROTATIONS: usize = 1000;

/// How often the successor of a file is looked up again when rotations keep racing
/// with the lookup; past this, the next poll tries again.
const LOOKUP_ATTEMPTS: usize = 5;

pub use corral_api::logs::{LogStream, parse_follow};

/// The bytes of one log, in order.
pub type LogBytes = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// Streams one log of the task whose directory is `task_dir` (built by
/// [`Layout::task`](crate::Layout::task) from a uid accepted by
/// [`check_uid`](crate::layout::check_uid)).
///
/// - Without `tail`: the whole retained history, oldest rotated file first, then the
///   current file. With `tail = Some(n)`: only the last `n` lines across the files (a
///   last line without its newline counts as a line).
/// - Without `follow`: ends at the end of the current file as found when reading gets
///   there. With `follow`: keeps reading as bytes are appended, across rotations, and
///   ends once `exit.json` exists and everything written before it has been sent. A
///   log that does not exist yet is waited for.
///
/// # Guarantees
/// Bytes come out in the order they were written, each once, as long as a file is not
/// rotated away beyond the retained count before it is read.
///
/// # Errors
/// An item is an error when a file cannot be read or is not a regular file (a symlink,
/// a FIFO); the stream ends after it.
pub fn read(task_dir: &Path, stream: LogStream, tail: Option<usize>, follow: bool) -> LogBytes {
    into_stream(Reader::new(task_dir, stream, tail, follow))
}

/// Like [`read`], but finds where reading starts before returning, so that a log
/// that cannot be read (a symlink, a FIFO, an unreadable file) is an error here rather
/// than in the stream, while an answer can still say so.
///
/// # Errors
/// The first error [`read`] would have streamed when opening the log.
pub async fn open(task_dir: &Path, stream: LogStream, tail: Option<usize>, follow: bool) -> io::Result<LogBytes> {
    let mut reader = Reader::new(task_dir, stream, tail, follow);
    let reader = tokio::task::spawn_blocking(move || reader.begin().map(|()| reader))
        .await
        .map_err(|e| io::Error::other(format!("log reader failed: {e}")))??;
    Ok(into_stream(reader))
}

fn into_stream(reader: Reader) -> LogBytes {
    let stream = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        loop {
            // File reads block; they run on the blocking pool, one step at a time, so
            // a dropped stream stops at the next step.
            let joined = tokio::task::spawn_blocking(move || {
                let step = reader.step();
                (reader, step)
            })
            .await;
            let (back, step) = match joined {
                Ok(r) => r,
                Err(e) => return Some((Err(io::Error::other(format!("log reader failed: {e}"))), None)),
            };
            reader = back;
            match step {
                Ok(Step::Data(b)) => return Some((Ok(b), Some(reader))),
                Ok(Step::Wait) => tokio::time::sleep(POLL).await,
                Ok(Step::End) => return None,
                Err(e) => return Some((Err(e), None)),
            }
        }
    });
    Box::pin(stream)
}

/// What one step of the reader produced.
enum Step {
    Data(Bytes),
    /// Nothing new yet; try again after [`POLL`].
    Wait,
    End,
}

/// An open log file, identified by its inode.
struct Open {
    file: File,
    id: (u64, u64),
    pos: u64,
}

struct Reader {
    dir: PathBuf,
    exit: PathBuf,
    name: &'static str,
    tail: Option<usize>,
    follow: bool,
    started: bool,
    /// Files to read in order; the front is being read. Only the last one can still
    /// grow.
    files: VecDeque<Open>,
    /// Read buffer, kept across steps: a follow polls every [`POLL`].
    buf: Box<[u8]>,
}

impl Reader {
    fn new(task_dir: &Path, stream: LogStream, tail: Option<usize>, follow: bool) -> Reader {
        Reader {
            dir: task_dir.join("logs"),
            exit: task_dir.join("exit.json"),
            name: stream.as_str(),
            tail,
            follow,
            started: false,
            files: VecDeque::new(),
            buf: vec![0u8; CHUNK].into_boxed_slice(),
        }
    }

    /// Opens the file reading starts in, once.
    fn begin(&mut self) -> io::Result<()> {
        if !self.started {
            self.start()?;
            self.started = true;
        }
        Ok(())
    }

    fn current(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    fn rotated(&self, k: usize) -> PathBuf {
        self.dir.join(format!("{}.{k}", self.name))
    }

    fn step(&mut self) -> io::Result<Step> {
        self.begin()?;
        loop {
            let Some(front) = self.files.front_mut() else {
                // No file yet: the task has not written anything so far.
                if !self.follow {
                    return Ok(Step::End);
                }
                let exited = exists(&self.exit)?;
                // Starting from the oldest file: the log may have been rotated already.
                if self.dir_exists()?
                    && let Some(oldest) = self.pin(false)?.into_iter().next()
                {
                    self.files.push_back(oldest);
                    continue;
                }
                return Ok(if exited { Step::End } else { Step::Wait });
            };
            let n = read_some(front, &mut self.buf)?;
            if n > 0 {
                return Ok(Step::Data(Bytes::copy_from_slice(&self.buf[..n])));
            }
            let id = front.id;
            if self.files.len() > 1 {
                self.files.pop_front();
                continue;
            }
            // The end of the newest file known. The exit marker is looked at before the
            // last look for bytes: everything was written before it appeared.
            let exited = self.follow && exists(&self.exit)?;
            if let Some(next) = self.successor(id)? {
                self.files.push_back(next);
                // Back to draining the older file before moving on.
                continue;
            }
            if !self.follow {
                return Ok(Step::End);
            }
            let Some(front) = self.files.front_mut() else { continue };
            if front.file.metadata()?.len() < front.pos {
                // Truncated in place: what is there now is new.
                front.file.seek(SeekFrom::Start(0))?;
                front.pos = 0;
                continue;
            }
            let n = read_some(front, &mut self.buf)?;
            if n > 0 {
                return Ok(Step::Data(Bytes::copy_from_slice(&self.buf[..n])));
            }
            return Ok(if exited { Step::End } else { Step::Wait });
        }
    }

    /// Opens the file reading starts in: the oldest retained one, or the one holding
    /// the first of the last `tail` lines. Later files are found through
    /// [`Reader::successor`] when reading gets there.
    fn start(&mut self) -> io::Result<()> {
        if !self.dir_exists()? {
            return Ok(());
        }
        let chain = self.pin(self.tail.is_some())?;
        let (index, offset) = match self.tail {
            None => (0, 0),
            Some(n) => tail_start(&chain, n)?,
        };
        if let Some(mut first) = chain.into_iter().nth(index) {
            first.file.seek(SeekFrom::Start(offset))?;
            first.pos = offset;
            self.files.push_back(first);
        }
        Ok(())
    }

    /// Whether the log directory exists; it must be a directory, not a symlink to one.
    fn dir_exists(&self) -> io::Result<bool> {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(true),
            Ok(_) => Err(io::Error::other(format!("{} is not a directory", self.dir.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens the files reading may start in, oldest first: all of them, or only the
    /// oldest. Each must be the very file the scan saw; one that cannot be
    /// found any more (rotated away meanwhile) makes the scan start again (on the last
    /// attempt, whatever was found is kept).
    fn pin(&self, all: bool) -> io::Result<Vec<Open>> {
        let mut files = Vec::new();
        for attempt in 0..LOOKUP_ATTEMPTS {
            let last = attempt + 1 == LOOKUP_ATTEMPTS;
            files.clear();
            let mut seen = std::collections::HashSet::new();
            // A file met twice moved during the scan; where it was seen last is where it is.
            let mut chain: Vec<_> = self.chain()?.into_iter().rev().filter(|(_, id)| seen.insert(*id)).collect();
            if !all {
                chain.truncate(1);
            }
            let mut consistent = true;
            for (index, id) in chain {
                match self.open_expected(index, id)? {
                    Some(open) => files.push(open),
                    None if last => {}
                    _ => {
                        consistent = false;
                        break;
                    }
                }
            }
            if consistent {
                break;
            }
        }
        Ok(files)
    }

    /// The log's files by age, newest first: (index, inode), index 0 being the current
    /// file and `k` the rotation `.k`. A rotation renames one file at a time, oldest
    /// first, so a scan can meet one vacant index; two in a row end the list.
    fn chain(&self) -> io::Result<Vec<(usize, (u64, u64))>> {
        let mut chain = Vec::new();
        chain.extend(file_id(&self.current())?.map(|id| (0, id)));
        let mut vacant = 0;
        for k in 1..=MAX_ROTATIONS {
            match file_id(&self.rotated(k))? {
                Some(id) => {
                    chain.push((k, id));
                    vacant = 0;
                }
                None if vacant == 0 => vacant += 1,
                None => break,
            }
        }
        Ok(chain)
    }

    fn path(&self, index: usize) -> PathBuf {
        if index == 0 { self.current() } else { self.rotated(index) }
    }

    /// The file written right after the file `id`, opened; `None` when `id` is the
    /// newest file (or its successor cannot be pinned down yet: the next poll tries
    /// again).
    fn successor(&self, id: (u64, u64)) -> io::Result<Option<Open>> {
        for attempt in 0..LOOKUP_ATTEMPTS {
            let chain = self.chain()?;
            let (index, expected) = match chain.iter().position(|(_, i)| *i == id) {
                Some(0) => return Ok(None),
                Some(p) => chain[p - 1],
                // The scan raced with renames: look again before concluding.
                None if attempt + 1 < LOOKUP_ATTEMPTS => continue,
                None => {
                    // Removed (a shim keeping no rotations) or rotated away beyond the
                    // retained count: whatever was between it and the current file is
                    // gone, if anything; carry on with the current file.
                    tracing::debug!(dir = %self.dir.display(), log = self.name, "log file gone while being read");

                    match chain.first() {
                        Some(&(0, current)) => (0, current),
                        _ => return Ok(None),
                    }
                }
            };
            if let Some(open) = self.open_expected(index, expected)? {
                return Ok(Some(open));
            }
        }
        Ok(None)
    }

    /// Opens the file `id`, seen at `index` by a scan. Rotations only ever move a file
    /// to the next index, so if it moved since the scan it is found a little further.
    fn open_expected(&self, index: usize, id: (u64, u64)) -> io::Result<Option<Open>> {
        for k in index..index + 3 {
            if let Some(open) = open_log(&self.path(k))?
                && open.id == id
            {
                return Ok(Some(open));
            }
        }
        Ok(None)
    }
}

/// Where the last `n` lines of the concatenation of `files` start: (file, offset).
fn tail_start(files: &[Open], n: usize) -> io::Result<(usize, u64)> {
    let Some(last) = files.len().checked_sub(1) else { return Ok((0, 0)) };
    if n == 0 {
        return Ok((last, files[last].file.metadata()?.len()));
    }
    let mut newlines = 0;
    // A newline ending the log closes the last line rather than starting another.
    let mut at_end = true;
    let mut buf = vec![0u8; CHUNK];
    for (i, f) in files.iter().enumerate().rev() {
        let mut end = f.file.metadata()?.len();
        while end > 0 {
            let start = end.saturating_sub(CHUNK as u64);
            let len = usize::try_from(end - start).map_err(io::Error::other)?;
            let block = &mut buf[..len];
            f.file.read_exact_at(block, start)?;
            for (j, b) in block.iter().enumerate().rev() {
                if *b == b'\n' && !at_end {
                    newlines += 1;
                    if newlines == n {
                        return Ok((i, start + j as u64 + 1));
                    }
                }
                at_end = false;
            }
            end = start;
        }
    }
    Ok((0, 0))
}

fn read_some(open: &mut Open, buf: &mut [u8]) -> io::Result<usize> {
    let n = loop {
        match open.file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    open.pos += n as u64;
    Ok(n)
}

fn exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Device and inode of `path` itself (a symlink is not followed); `None` if missing.
fn file_id(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a log file for reading if it exists; it must be a regular file.
fn open_log(path: &Path) -> io::Result<Option<Open>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO planted under the log's name must not hang.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!("{} is a symbolic link; not following it", path.display())));
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(Some(Open { file, id: (meta.dev(), meta.ino()), pos: 0 }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    /// A guard against hanging forever, not a timing assertion.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn logs(dir: &Path) -> PathBuf {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        logs
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// What the shim does on rotation, with `keep` rotated files.
    fn rotate(logs: &Path, name: &str, keep: usize) {
        let _ = std::fs::remove_file(logs.join(format!("{name}.{keep}")));
        for k in (1..keep).rev() {
            let from = logs.join(format!("{name}.{k}"));
            if from.exists() {
                std::fs::rename(&from, logs.join(format!("{name}.{}", k + 1))).unwrap();
            }
        }
        std::fs::rename(logs.join(name), logs.join(format!("{name}.1"))).unwrap();
        std::fs::File::create(logs.join(name)).unwrap();
    }

    async fn collect(s: LogBytes) -> String {
        let chunks: Vec<io::Result<Bytes>> = tokio::time::timeout(PATIENCE, s.collect()).await.unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&c.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    /// Reads from a follow until `want` has arrived.
    async fn read_until(s: &mut LogBytes, got: &mut String, want: &str) {
        tokio::time::timeout(PATIENCE, async {
            while !got.contains(want) {
                let chunk = s.next().await.expect("stream still open").unwrap();
                got.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{want:?} never arrived; got {got:?}"));
    }

    #[tokio::test]
    async fn whole_history_reads_oldest_rotation_first() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        std::fs::write(l.join("stdout.2"), "a\n").unwrap();
        std::fs::write(l.join("stdout.1"), "b\n").unwrap();
        std::fs::write(l.join("stdout"), "c\n").unwrap();
        std::fs::write(l.join("stderr"), "err\n").unwrap();
        assert_eq!(collect(read(dir.path(), LogStream::Stdout, None, false)).await, "a\nb\nc\n");
        assert_eq!(collect(read(dir.path(), LogStream::Stderr, None, false)).await, "err\n");
    }

    #[tokio::test]
    async fn tail_counts_lines_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        std::fs::write(l.join("stdout.2"), "1\n2\n").unwrap();
        std::fs::write(l.join("stdout.1"), "3\n4\n").unwrap();
        std::fs::write(l.join("stdout"), "5\n").unwrap();
        let tail = |n| collect(read(dir.path(), LogStream::Stdout, Some(n), false));
        assert_eq!(tail(0).await, "");
        assert_eq!(tail(1).await, "5\n");
        assert_eq!(tail(2).await, "4\n5\n");
        assert_eq!(tail(3).await, "3\n4\n5\n");
        assert_eq!(tail(4).await, "2\n3\n4\n5\n");
        assert_eq!(tail(100).await, "1\n2\n3\n4\n5\n");
        // A last line without its newline is a line; the empty current file adds none.
        std::fs::write(l.join("stdout"), "").unwrap();
        std::fs::write(l.join("stdout.1"), "3\n4").unwrap();
        assert_eq!(tail(2).await, "3\n4");
    }

    #[tokio::test]
    async fn tail_of_a_long_file_crosses_read_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        let lines: Vec<String> = (0..20_000).map(|i| format!("line {i:05}\n")).collect();
        std::fs::write(l.join("stdout"), lines.concat()).unwrap();
        let got = collect(read(dir.path(), LogStream::Stdout, Some(15_000), false)).await;
        assert_eq!(got, lines[5_000..].concat());
    }

    #[tokio::test]
    async fn follow_survives_rotations_without_losing_or_repeating_lines() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        let out = l.join("stdout");
        append(&out, "line 0\n");
        let mut s = read(dir.path(), LogStream::Stdout, None, true);
        let mut got = String::new();
        read_until(&mut s, &mut got, "line 0\n").await;
        let mut expected = String::from("line 0\n");
        for i in 1..40 {
            let line = format!("line {i}\n");
            append(&out, &line);
            expected.push_str(&line);
            // Several rotations, some between two polls of the reader.
            if i % 3 == 0 {
                rotate(&l, "stdout", 5);
            }
            if i % 5 == 0 {
                read_until(&mut s, &mut got, &line).await;
            }
        }
        crate::layout::write_atomic(&dir.path().join("exit.json"), b"{}").unwrap();
        got.push_str(&collect(s).await);
        assert_eq!(got, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_keeps_up_with_a_writer_rotating_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        let s = read(dir.path(), LogStream::Stdout, None, true);
        let task_dir = dir.path().to_path_buf();
        // Like the shim: rotate when the current file reaches 512 bytes, keep plenty.
        let writer = std::thread::spawn(move || {
            let mut expected = String::new();
            let mut size = 0;
            for i in 0..5000 {
                let line = format!("line {i}\n");
                if size + line.len() > 512 {
                    rotate(&l, "stdout", 1000);
                    size = 0;
                }
                append(&l.join("stdout"), &line);
                size += line.len();
                expected.push_str(&line);
            }
            crate::layout::write_atomic(&task_dir.join("exit.json"), b"{}").unwrap();
            expected
        });
        let got = collect(s).await;
        let expected = writer.join().unwrap();
        if got != expected {
            let at = got.bytes().zip(expected.bytes()).take_while(|(a, b)| a == b).count();
            panic!(
                "got {} bytes, expected {}; diverge at {at}: got {:?} expected {:?}; got ends {:?}",
                got.len(),
                expected.len(),
                &got[at.saturating_sub(20)..(at + 40).min(got.len())],
                &expected[at.saturating_sub(20)..(at + 40).min(expected.len())],
                &got[got.len().saturating_sub(40)..]
            );
        }
    }

    #[tokio::test]
    async fn follow_waits_for_the_log_and_ends_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = read(dir.path(), LogStream::Stderr, None, true);
        let l = logs(dir.path());
        append(&l.join("stderr"), "starting\n");
        let mut got = String::new();
        read_until(&mut s, &mut got, "starting\n").await;
        append(&l.join("stderr"), "last words");
        crate::layout::write_atomic(&dir.path().join("exit.json"), b"{}").unwrap();
        got.push_str(&collect(s).await);
        assert_eq!(got, "starting\nlast words");
    }

    #[tokio::test]
    async fn follow_of_an_ended_task_is_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        std::fs::write(l.join("stdout"), "1\n2\n3\n").unwrap();
        std::fs::write(dir.path().join("exit.json"), "{}").unwrap();
        assert_eq!(collect(read(dir.path(), LogStream::Stdout, Some(2), true)).await, "2\n3\n");
    }

    #[tokio::test]
    async fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "do not show\n").unwrap();
        std::os::unix::fs::symlink(&secret, l.join("stdout")).unwrap();
        let items: Vec<io::Result<Bytes>> = read(dir.path(), LogStream::Stdout, None, false).collect().await;
        assert_eq!(items.len(), 1);
        let err = items.into_iter().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        // Nor is a symlink in place of the log directory.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("stdout"), "do not show\n").unwrap();
        let task = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), task.path().join("logs")).unwrap();
        let items: Vec<io::Result<Bytes>> = read(task.path(), LogStream::Stdout, None, true).collect().await;
        assert!(items.len() == 1 && items[0].as_ref().is_err_and(|e| e.to_string().contains("not a directory")));
    }

    #[tokio::test]
    async fn a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let l = logs(dir.path());
        let path = std::ffi::CString::new(l.join("stdout").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let items: Vec<io::Result<Bytes>> =
            tokio::time::timeout(PATIENCE, read(dir.path(), LogStream::Stdout, None, false).collect()).await.unwrap();
        assert!(items[0].as_ref().is_err_and(|e| e.to_string().contains("not a regular file")));
    }
}
