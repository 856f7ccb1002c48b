//! What the agent does for a launch before the shim takes over: the task's directory,
//! its durable checkpoint, then the bundle or the sandbox.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::checkpoint::{self, ExitRecord, LaunchRecord};
use super::{Mount, beneath, bundle};
use crate::error::{Error, Result};
use crate::layout::{TaskDir, sync_dir};

/// Creates `m.destination` in the sandbox as a symbolic link to `m.source`, with the
/// directories above it. Artifacts may have planted links in the sandbox, and creating
/// through one would write outside it, as root: so each directory is opened beneath the
/// one before, refusing links (see [`beneath::mkdir_all_beneath`]), and the link is made
/// relative to the last one's descriptor, never by a path that could be redirected.
fn link_mount(sandbox: &Path, root: BorrowedFd<'_>, m: &Mount) -> Result<()> {
    let dest = Path::new(&m.destination);
    let invalid = |what: &str| Error::Invalid(format!("volume mount path {:?}: {what}", m.destination));
    let name = dest.file_name().ok_or_else(|| invalid("names no file in the sandbox"))?;
    let parent = dest.parent().unwrap_or(Path::new(""));
    let dir = beneath::mkdir_all_beneath(root, parent).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => invalid(&format!("{} in the sandbox is, or goes through, a symlink", parent.display())),
        Some(libc::EXDEV) => invalid("leads out of the sandbox"),
        Some(libc::ENOTDIR) => invalid(&format!("{} in the sandbox is not a directory", parent.display())),
        _ => Error::io("cannot create", sandbox.join(parent), e),
    })?;
    let (target, c_name) = (cstring(m.source.as_os_str())?, cstring(name)?);
    // SAFETY: valid NUL-terminated strings and a descriptor we own; symlinkat never
    // follows a link at `name`, it fails with EEXIST.
    if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), c_name.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        let link = sandbox.join(dest);
        if e.raw_os_error() == Some(libc::EEXIST) && link.symlink_metadata().is_ok_and(|md| md.is_symlink()) {
            return Err(invalid(&format!("{} in the sandbox is a symlink", dest.display())));
        }
        return Err(Error::io("cannot link", link, e));
    }
    Ok(())
}

/// `s` for a system call.
fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::Invalid(format!("{s:?} holds a NUL byte")))
}

/// Creates the task's directory and checkpoint, then what the shim needs. A failure
/// after the checkpoint is recorded as the task's end, since it will not be retried.
pub(crate) fn prepare(dir: &TaskDir, rec: &LaunchRecord) -> Result<()> {
    std::fs::create_dir_all(&dir.0).map_err(|e| Error::io("cannot create", &dir.0, e))?;
    if let Some(parent) = dir.0.parent() {
        sync_dir(parent)?;
    }
    checkpoint::write_json(&dir.launch(), rec)?;
    let built = build(dir, rec);
    if let Err(e) = &built {
        checkpoint::write_exit_once(dir, &ExitRecord::not_run(format!("cannot prepare the task: {e}"), false))?;
    }
    built
}

fn build(dir: &TaskDir, rec: &LaunchRecord) -> Result<()> {
    for d in [dir.logs(), dir.sandbox(), dir.bundle()] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, e))?;
    }
    if let Some((uid, gid)) = rec.spec.user {
        let sandbox = dir.sandbox();
        std::os::unix::fs::chown(&sandbox, Some(uid), Some(gid)).map_err(|e| Error::io("cannot chown", &sandbox, e))?;
    }
    match &rec.spec.rootfs {
        Some(image) => bundle::create(&rec.spec, image, dir),
        None => {
            let sandbox = dir.sandbox();
            let root = beneath::open_dir(&sandbox).map_err(|e| Error::io("cannot open", &sandbox, e))?;
            for m in &rec.spec.mounts {
                link_mount(&sandbox, root.as_fd(), m)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mount(destination: &str, source: &Path) -> Mount {
        Mount { source: source.into(), destination: destination.into(), read_only: false }
    }

    #[test]
    fn a_volume_link_is_never_made_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let (sandbox, outside) = (dir.path().join("sandbox"), dir.path().join("outside"));
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, sandbox.join("esc")).unwrap();
        symlink("/", sandbox.join("root")).unwrap();
        symlink(&outside, sandbox.join("taken")).unwrap();
        let root = beneath::open_dir(&sandbox).unwrap();
        let vol = Path::new("/vol");

        link_mount(&sandbox, root.as_fd(), &mount("data/deep/v", vol)).unwrap();
        assert_eq!(std::fs::read_link(sandbox.join("data/deep/v")).unwrap(), vol);

        for dest in ["esc/v", "esc/a/b/v", "root/tmp/v"] {
            let err = link_mount(&sandbox, root.as_fd(), &mount(dest, vol)).unwrap_err().to_string();
            assert!(err.contains(&format!("volume mount path {dest:?}")) && err.contains("symlink"), "{err}");
        }
        let err = link_mount(&sandbox, root.as_fd(), &mount("taken", vol)).unwrap_err().to_string();
        assert!(err.contains("taken in the sandbox is a symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was created outside");
        assert_eq!(std::fs::read_link(sandbox.join("taken")).unwrap(), outside, "the planted link is left alone");
    }
}
