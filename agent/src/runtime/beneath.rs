//! Opening paths inside a task's sandbox so that they can never lead out of it.
//!
//! Artifacts are unpacked into the sandbox, so it may hold any symbolic link, such as
//! `esc -> /`; and the agent acts there as root. Checking a path and then using it by
//! name would race with whatever changes the sandbox in between, so the kernel resolves
//! each path with openat2(2) and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, relative to a
//! descriptor of the sandbox, and callers use the descriptor they get (`fchdir`,
//! `mkdirat`, `symlinkat`), never the path again.
//!
//! Kernels older than 5.6 have no openat2 (`ENOSYS`). There, paths are walked one
//! component at a time with `openat(O_NOFOLLOW)`, and every symbolic link is refused
//! (`ELOOP`), even one that would stay inside the sandbox, as is `..`: without the
//! kernel's help a link cannot be followed without racing.
//!
//! # Errors
//! Plain [`io::Error`]s carrying the OS error, for callers to word:
//! - `EXDEV`: the path leads out of the sandbox (a link to an absolute path or too far
//!   up, `..` above the root, an absolute path).
//! - `ELOOP`: a symbolic link where none is allowed, or too many links.
//! - `ENOTDIR`, `ENOENT`, `EACCES` and the like, as open(2) reports them.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libc::c_int;

/// How often an openat2 interrupted by a signal, or told to retry because a rename or
/// mount raced with the `..` check (`EAGAIN`), is tried again before giving up.
const RETRIES: usize = 32;

/// Mode of the directories [`mkdir_all_beneath`] creates: only their owner writes.
const DIR_MODE: libc::mode_t = 0o755;

/// Opens `path`, the sandbox itself, as the anchor of later lookups: `O_PATH`, so it
/// grants nothing but lookups below it; not following a link as its last component.
///
/// # Errors
/// As open(2); `ENOTDIR` if `path` is not a directory or is a symbolic link.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str())?;
    // SAFETY: a valid NUL-terminated path; open returns a new descriptor or -1.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    owned(fd)
}

/// Opens `rel` below `root` with `flags` (`O_CLOEXEC` is always added), following
/// symbolic links only as long as they stay below `root`; `rel` empty or `.` is `root`
/// itself. `/proc` magic links are never followed.
///
/// `flags` must not create anything (`O_CREAT`, `O_TMPFILE`): use the returned
/// descriptor of the parent with an `*at` call instead.
///
/// # Errors
/// `EXDEV` if `rel` leads out of `root`; `EINVAL` for creating flags; otherwise as
/// openat2(2), or on kernels without it as described in the [module docs](self).
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: c_int) -> io::Result<OwnedFd> {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    match openat2(root, rel.as_os_str(), flags, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk_nofollow(root, rel, flags),
        r => r,
    }
}

/// Opens directory `rel` below `root`, creating what is missing of it one component at
/// a time (mode 755 before the umask), and returns it opened `O_PATH`. No symbolic link
/// is followed on the way, not even one that stays inside: each step opens a single
/// component relative to the previous one, refusing links, and `mkdirat` creates in the
/// directory that was opened, so nothing is ever created outside `root`.
///
/// # Errors
/// `ELOOP` if a component is a symbolic link; `ENOTDIR` if one is not a directory;
/// `EXDEV` if `rel` is absolute or holds `..`; otherwise as mkdirat(2) and open(2).
pub(crate) fn mkdir_all_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone_to_owned()?;
    for name in plain_components(rel)? {
        cur = match child_dir(cur.as_fd(), name) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdirat(cur.as_fd(), name)?;
                child_dir(cur.as_fd(), name)?
            }
            r => r?,
        };
    }
    Ok(cur)
}

/// openat2(2) of `rel` relative to `dir`, retried while interrupted or told to retry.
fn openat2(dir: BorrowedFd<'_>, rel: &OsStr, flags: c_int, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstring(rel)?;
    // SAFETY: open_how is plain integers, for which all zeroes is valid; it is
    // non-exhaustive because the kernel may grow it, and fields it grows must be zero.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::from((flags | libc::O_CLOEXEC).cast_unsigned());
    how.resolve = resolve;
    let mut tries = 0;
    loop {
        // SAFETY: a valid NUL-terminated path and an open_how that outlives the call,
        // with its true size; openat2 returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            return owned(fd as c_int);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR | libc::EAGAIN) if tries < RETRIES => tries += 1,
            _ => return Err(e),
        }
    }
}

/// Opens the directory `name`, one component, in `dir` without following a link.
fn child_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    match openat2(dir, name, libc::O_PATH | libc::O_DIRECTORY, resolve) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => child_dir_nofollow(dir, name),
        r => r,
    }
}

/// [`child_dir`] without openat2.
fn child_dir_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    // Without O_DIRECTORY, O_PATH|O_NOFOLLOW opens a link itself, so that its type
    // tells a link (ELOOP) from a file (ENOTDIR).
    let fd = openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW)?;
    match file_type(fd.as_fd())? {
        libc::S_IFDIR => Ok(fd),
        libc::S_IFLNK => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        _ => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
    }
}

/// [`open_beneath`] without openat2: a walk that refuses every link and `..`.
fn walk_nofollow(root: BorrowedFd<'_>, rel: &Path, flags: c_int) -> io::Result<OwnedFd> {
    let names = plain_components(rel)?;
    let Some((last, dirs)) = names.split_last() else {
        return openat(root, OsStr::new("."), flags);
    };
    let mut cur: Option<OwnedFd> = None;
    for name in dirs {
        let next = child_dir_nofollow(cur.as_ref().map_or(root, AsFd::as_fd), name)?;
        cur = Some(next);
    }
    let parent = cur.as_ref().map_or(root, AsFd::as_fd);
    match openat(parent, last, flags | libc::O_NOFOLLOW) {
        // O_PATH|O_NOFOLLOW opens a link itself rather than failing.
        Ok(fd) if file_type(fd.as_fd())? == libc::S_IFLNK => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        Ok(fd) => Ok(fd),
        // With O_DIRECTORY a link reads as ENOTDIR; say what it really is. The lstat
        // only words the error: nothing is opened through it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && lstat_type(parent, last) == Some(libc::S_IFLNK) => {
            Err(io::Error::from_raw_os_error(libc::ELOOP))
        }
        Err(e) => Err(e),
    }
}

/// The `Normal` components of `rel`; `EXDEV` for anything that could climb out.
fn plain_components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::from_raw_os_error(libc::EXDEV)),
        })
        .collect()
}

/// openat(2) with `O_CLOEXEC` added.
fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: c_int) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: a valid NUL-terminated path; openat returns a new descriptor or -1.
    owned(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// mkdirat(2); an `EEXIST` is fine, since the caller opens the entry next and checks it.
fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), DIR_MODE) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

/// The `S_IFMT` bits of what `fd` refers to.
fn file_type(fd: BorrowedFd<'_>) -> io::Result<libc::mode_t> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the buffer it is given when it returns 0.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so the buffer is initialised.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// The `S_IFMT` bits of `name` in `dir`, a link not followed; `None` if it cannot be seen.
fn lstat_type(dir: BorrowedFd<'_>, name: &OsStr) -> Option<libc::mode_t> {
    let c = cstring(name).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid NUL-terminated path; fstatat fills the buffer when it returns 0.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return None;
    }
    // SAFETY: fstatat succeeded, so the buffer is initialised.
    Some(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// `s` for a system call; `EINVAL` if it holds a NUL byte.
/// `s` as a C string; `EINVAL` if it holds a NUL byte.
pub(crate) fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Owns the descriptor a system call returned, or its error if it returned -1.
pub(crate) fn owned(fd: c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    /// A sandbox with `work/inner`, a file `file`, `esc -> /`, `up -> ..` and `alias -> work`.
    fn sandbox() -> (tempfile::TempDir, std::path::PathBuf, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(sandbox.join("work/inner")).unwrap();
        std::fs::write(sandbox.join("file"), b"x").unwrap();
        symlink("/", sandbox.join("esc")).unwrap();
        symlink("..", sandbox.join("up")).unwrap();
        symlink("work", sandbox.join("alias")).unwrap();
        let root = open_dir(&sandbox).unwrap();
        (dir, sandbox, root)
    }

    fn errno(r: io::Result<OwnedFd>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    fn is(fd: &OwnedFd, path: &Path) -> bool {
        let got = std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap();
        let want = std::fs::symlink_metadata(path).unwrap();
        (got.dev(), got.ino()) == (want.dev(), want.ino())
    }

    const DIR: c_int = libc::O_PATH | libc::O_DIRECTORY;

    #[test]
    fn an_absolute_symlink_cannot_escape() {
        let (_d, _s, root) = sandbox();
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("esc/etc"), DIR)), libc::EXDEV);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("esc"), DIR)), libc::EXDEV);
    }

    #[test]
    fn dot_dot_cannot_escape() {
        let (_d, _s, root) = sandbox();
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new(".."), DIR)), libc::EXDEV);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("work/../../sandbox"), DIR)), libc::EXDEV);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("up/sandbox"), DIR)), libc::EXDEV);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("/etc"), DIR)), libc::EXDEV);
    }

    #[test]
    fn a_relative_symlink_that_stays_inside_is_followed() {
        let (_d, s, root) = sandbox();
        assert!(is(&open_beneath(root.as_fd(), Path::new("alias/inner"), DIR).unwrap(), &s.join("work/inner")));
        assert!(is(&open_beneath(root.as_fd(), Path::new("work/../alias"), DIR).unwrap(), &s.join("work")));
        assert!(is(&open_beneath(root.as_fd(), Path::new(""), DIR).unwrap(), &s));
        assert!(is(&open_beneath(root.as_fd(), Path::new("."), DIR).unwrap(), &s));
    }

    #[test]
    fn a_file_where_a_directory_is_expected_is_an_error() {
        let (_d, _s, root) = sandbox();
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("file"), DIR)), libc::ENOTDIR);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("file/x"), DIR)), libc::ENOTDIR);
        assert_eq!(errno(mkdir_all_beneath(root.as_fd(), Path::new("file/x"))), libc::ENOTDIR);
        assert_eq!(errno(mkdir_all_beneath(root.as_fd(), Path::new("file"))), libc::ENOTDIR);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("missing"), DIR)), libc::ENOENT);
    }

    #[test]
    fn creating_flags_are_refused() {
        let (_d, _s, root) = sandbox();
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("new"), libc::O_CREAT | libc::O_WRONLY)), libc::EINVAL);
        assert_eq!(errno(open_beneath(root.as_fd(), Path::new("."), libc::O_TMPFILE | libc::O_RDWR)), libc::EINVAL);
    }

    #[test]
    fn mkdir_all_creates_nested_directories() {
        let (_d, s, root) = sandbox();
        let fd = mkdir_all_beneath(root.as_fd(), Path::new("a/./b/c")).unwrap();
        assert!(s.join("a/b/c").is_dir());
        assert!(is(&fd, &s.join("a/b/c")));
        let again = mkdir_all_beneath(root.as_fd(), Path::new("work/inner/d")).unwrap();
        assert!(is(&again, &s.join("work/inner/d")));
        assert!(is(&mkdir_all_beneath(root.as_fd(), Path::new("")).unwrap(), &s));
    }

    #[test]
    fn mkdir_all_never_creates_through_a_symlink() {
        let (d, s, root) = sandbox();
        symlink(d.path(), s.join("out")).unwrap();
        for rel in ["esc/tmp/pwned", "out/pwned", "alias/new", "alias", "up/pwned"] {
            assert_eq!(errno(mkdir_all_beneath(root.as_fd(), Path::new(rel))), libc::ELOOP, "{rel}");
        }
        assert!(!d.path().join("pwned").exists());
        assert!(!s.join("work/new").exists());
        assert_eq!(errno(mkdir_all_beneath(root.as_fd(), Path::new("../pwned"))), libc::EXDEV);
    }

    #[test]
    fn without_openat2_every_symlink_and_dot_dot_is_refused() {
        let (_d, s, root) = sandbox();
        assert!(is(&walk_nofollow(root.as_fd(), Path::new("work/inner"), DIR).unwrap(), &s.join("work/inner")));
        assert!(is(&walk_nofollow(root.as_fd(), Path::new("."), DIR).unwrap(), &s));
        for rel in ["esc/etc", "esc", "alias/inner", "alias"] {
            assert_eq!(errno(walk_nofollow(root.as_fd(), Path::new(rel), DIR)), libc::ELOOP, "{rel}");
        }
        assert_eq!(errno(walk_nofollow(root.as_fd(), Path::new("esc"), libc::O_PATH)), libc::ELOOP);
        assert_eq!(errno(walk_nofollow(root.as_fd(), Path::new("work/../work"), DIR)), libc::EXDEV);
        assert_eq!(errno(walk_nofollow(root.as_fd(), Path::new("file"), DIR)), libc::ENOTDIR);
        assert_eq!(errno(child_dir_nofollow(root.as_fd(), OsStr::new("alias"))), libc::ELOOP);
        assert_eq!(errno(child_dir_nofollow(root.as_fd(), OsStr::new("file"))), libc::ENOTDIR);
    }
}
