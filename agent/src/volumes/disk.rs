//! The disk side of a volume, all blocking: a filesystem image of the volume's size,
//! loop-mounted at the volume's directory (writes beyond the size fail with `ENOSPC`),
//! or, where the host cannot, a plain directory whose usage is measured.
//!
//! What is on disk decides, so that an agent restarted (or a host rebooted) finds each
//! volume as it was made:
//! - `<name>.img` exists: the volume is enforced; its image is mounted at `<name>/`
//!   unless it already is (mounts are kept across agent restarts: tasks still running
//!   use them);
//! - only `<name>/` exists: the volume is measured, even if images work now (its data
//!   is in the directory, not in an image);
//! - neither: a new volume, made as the host allows.
//!
//! An image is formatted under a temporary name and renamed into place, so that a
//! crash never leaves a `<name>.img` that is not a filesystem.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::layout::sync_dir;

/// Bytes in a MiB.
pub const MIB: u64 = 1024 * 1024;

/// Files visited at most when measuring a directory's usage; beyond, the figure is
/// a lower bound (and said to be).
pub const MEASURE_LIMIT: usize = 1_000_000;

/// How a volume's size is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// A filesystem image of the volume's size: writes beyond it fail.
    Filesystem,
    /// A plain directory: usage is measured and reported, never enforced.
    Measured,
    /// A host directory: neither enforced nor measured.
    None,
}

impl Enforcement {
    /// As written in `status.enforcement`.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Filesystem => "filesystem",
            Enforcement::Measured => "measured",
            Enforcement::None => "none",
        }
    }
}

/// A volume ready to be mounted into tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The directory tasks mount.
    pub dir: PathBuf,
    /// How its size is held.
    pub enforcement: Enforcement,
    /// Why the size is not enforced, when the host could not (for the status message).
    pub note: Option<String>,
}

/// The tools an image needs: `mkfs.ext4` (e2fsprogs) and `mount` (util-linux).
#[derive(Clone, Debug)]
pub struct ImageTools {
    /// The `mkfs.ext4` executable.
    pub mkfs: PathBuf,
    /// The `mount` executable.
    pub mount: PathBuf,
}

/// Whether this host can back volumes with loop-mounted images: the agent runs as
/// root, loop devices exist, and `mkfs.ext4` and `mount` are installed. `enabled`
/// false (`--no-volume-images`) says no at once.
///
/// # Errors
/// Why not, in words for a status message.
pub fn image_support(enabled: bool) -> std::result::Result<ImageTools, String> {
    if !enabled {
        return Err("volume images are turned off on this node (--no-volume-images)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the agent does not run as root, so it cannot mount filesystem images".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("this host has no loop devices (/dev/loop-control is missing)".into());
    }
    let mkfs = find_program("mkfs.ext4").ok_or("mkfs.ext4 is not installed (Debian: e2fsprogs)")?;
    let mount = find_program("mount").ok_or("mount is not installed (Debian: mount)")?;
    Ok(ImageTools { mkfs, mount })
}

/// `name` on `$PATH`, or in the system directories a service's `$PATH` may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Makes the volume at `dir` (its image at `image`) ready: see the module's rules.
/// `tools` is what [`image_support`] found; a new volume falls back to a measured
/// directory when it is an error, or when the image cannot be made or mounted.
///
/// # Errors
/// An existing image that cannot be mounted (its data would be out of reach: the
/// volume has failed), or a directory that cannot be created.
pub fn prepare(
    dir: &Path,
    image: &Path,
    size_mib: u64,
    tools: &std::result::Result<ImageTools, String>,
) -> Result<Prepared> {
    let parent = dir.parent().ok_or_else(|| Error::Invalid(format!("{} has no parent", dir.display())))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
    if image.exists() {
        let mount = match tools {
            Ok(t) => t.mount.clone(),
            Err(why) => {
                if is_mounted(dir) {
                    return Ok(Prepared { dir: dir.into(), enforcement: Enforcement::Filesystem, note: None });
                }
                return Err(Error::Invalid(format!("the volume's image {} cannot be mounted: {why}", image.display())));
            }
        };
        mount_image(&mount, image, dir)?;
        return Ok(Prepared { dir: dir.into(), enforcement: Enforcement::Filesystem, note: None });
    }
    if dir.exists() {
        let note = tools.as_ref().err().cloned().or_else(|| {
            Some("made as a plain directory before this node could enforce sizes; its usage is measured".into())
        });
        return Ok(Prepared { dir: dir.into(), enforcement: Enforcement::Measured, note });
    }
    let note = match tools {
        Ok(t) => match make_and_mount(t, dir, image, size_mib) {
            Ok(()) => return Ok(Prepared { dir: dir.into(), enforcement: Enforcement::Filesystem, note: None }),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot make a volume image; measuring instead");
                format!("cannot make a filesystem image ({e}); usage is measured instead")
            }
        },
        Err(why) => format!("{why}; usage is measured instead"),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create volume", dir, e))?;
    sync_dir(parent)?;
    Ok(Prepared { dir: dir.into(), enforcement: Enforcement::Measured, note: Some(note) })
}

/// A new image, then its mount; on failure nothing of either is left.
fn make_and_mount(tools: &ImageTools, dir: &Path, image: &Path, size_mib: u64) -> Result<()> {
    make_image(&tools.mkfs, image, size_mib)?;
    let mounted = std::fs::create_dir_all(dir)
        .map_err(|e| Error::io("cannot create volume", dir, e))
        .and_then(|()| mount_image(&tools.mount, image, dir));
    if let Err(e) = mounted {
        let _ = std::fs::remove_dir(dir);
        let _ = std::fs::remove_file(image);
        return Err(e);
    }
    Ok(())
}

/// Writes a sparse file of `size_mib` MiB formatted ext4 at `image` (under a temporary
/// name, renamed into place once formatted and synced).
///
/// # Errors
/// A size of 0, a file that cannot be made, or `mkfs.ext4` failing.
pub fn make_image(mkfs: &Path, image: &Path, size_mib: u64) -> Result<()> {
    if size_mib == 0 {
        return Err(Error::Invalid("a volume of size 0 cannot hold a filesystem".into()));
    }
    let tmp = image.with_extension("img.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
    file.set_len(size_mib.saturating_mul(MIB)).map_err(|e| Error::io("cannot size", &tmp, e))?;
    drop(file);
    // -m 0: no blocks reserved for root, the task gets the whole size; nodiscard: a
    // sparse file has nothing to discard.
    let out = Command::new(mkfs)
        .args(["-q", "-F", "-m", "0", "-E", "nodiscard"])
        .arg(&tmp)
        .output()
        .map_err(|e| Error::io("cannot run", mkfs, e));
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Invalid(format!(
                "{} failed ({}): {}",
                mkfs.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    drop(out);
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io("cannot sync", &tmp, e))?;
    std::fs::rename(&tmp, image).map_err(|e| Error::io("cannot rename into place", image, e))?;
    if let Some(parent) = image.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Mounts `image` at `dir` through a loop device (`mount -o loop`, which sets the
/// device to detach itself once unmounted), unless something is mounted there already.
///
/// # Errors
/// `mount` failing.
pub fn mount_image(mount: &Path, image: &Path, dir: &Path) -> Result<()> {
    if is_mounted(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create volume", dir, e))?;
    let out = Command::new(mount)
        .args(["-t", "ext4", "-o", "loop,nosuid,nodev"])
        .arg(image)
        .arg(dir)
        .output()
        .map_err(|e| Error::io("cannot run", mount, e))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "cannot mount {} at {} ({}): {}",
            image.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Unmounts whatever is mounted at `dir` (its loop device detaches itself once the
/// last user, a container's bind mount included, lets go).
///
/// # Errors
/// The unmount failing (`EBUSY`: a process on this host still uses it).
pub fn unmount(dir: &Path) -> Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{} holds a NUL byte", dir.display())))?;
    while is_mounted(dir) {
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            return Err(Error::io("cannot unmount", dir, std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Unmounts the volume and, if `delete_data`, removes its image and directory (links
/// a task planted are removed, never followed). The namespace's directory goes with
/// its last volume.
///
/// # Errors
/// The unmount or a removal failing.
pub fn release(dir: &Path, image: &Path, delete_data: bool) -> Result<()> {
    unmount(dir)?;
    if !delete_data {
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("cannot remove", dir, e)),
        _ => {}
    }
    match std::fs::remove_file(image) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("cannot remove", image, e)),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        // Fails, harmlessly, while other volumes of the namespace remain.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Whether something is mounted at `dir`, from /proc/self/mountinfo.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = dir.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape_mountinfo(m) == want))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// What a volume holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in use.
    pub bytes: u64,
    /// False when the walk stopped at [`MEASURE_LIMIT`] files: `bytes` is a lower bound.
    pub complete: bool,
}

impl Usage {
    /// MiB in use, rounded down.
    pub fn mib(&self) -> u64 {
        self.bytes / MIB
    }
}

/// The usage of a prepared volume: for a filesystem, what the filesystem says it
/// uses (one call); for a measured directory, the blocks of its files (a walk,
/// without following links, bounded by [`MEASURE_LIMIT`]). `None` for a host directory.
///
/// # Errors
/// `statvfs` failing on a filesystem.
pub fn usage(p: &Prepared) -> Result<Option<Usage>> {
    match p.enforcement {
        Enforcement::Filesystem => filesystem_used(&p.dir).map(Some),
        Enforcement::Measured => Ok(Some(measure(&p.dir, MEASURE_LIMIT))),
        Enforcement::None => Ok(None),
    }
}

/// Bytes the filesystem mounted at `dir` has in use.
fn filesystem_used(dir: &Path) -> Result<Usage> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{} holds a NUL byte", dir.display())))?;
    // SAFETY: statvfs is plain data; zeroed is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io("cannot stat the filesystem of", dir, std::io::Error::last_os_error()));
    }
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64).saturating_mul(st.f_frsize as u64);
    Ok(Usage { bytes: used, complete: true })
}

/// Bytes allocated to the files under `dir` (hard links counted once per name: a
/// bound, not an exact figure), visiting at most `limit` entries.
pub fn measure(dir: &Path, limit: usize) -> Usage {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut seen) = (0u64, 0usize);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > limit {
                return Usage { bytes, complete: false };
            }
            let Ok(m) = e.path().symlink_metadata() else { continue };
            bytes = bytes.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Usage { bytes, complete: true }
}

/// Gives an empty volume to the task's user: an empty volume belongs to the first
/// (non-root) task to use it, as a new directory did before volumes were objects.
/// Root-owned volumes with content (and `lost+found` alone counts as empty) are left
/// alone, as is anything for a task running as root.
///
/// # Errors
/// Reading the directory or the `chown` failing.
pub fn claim(dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some((uid, gid)) = user.filter(|u| u.0 != 0) else { return Ok(()) };
    let m = std::fs::metadata(dir).map_err(|e| Error::io("cannot stat", dir, e))?;
    if m.uid() != 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))?;
    let mut names = entries.flatten().map(|e| e.file_name());
    if names.any(|n| n != "lost+found") {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| Error::io("cannot chown volume", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measuring_counts_allocated_blocks_and_stops_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![1u8; 64 * 1024]).unwrap();
        }
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        let all = measure(dir.path(), 100);
        assert!(all.complete);
        assert!(all.bytes >= 5 * 64 * 1024, "{all:?}");
        assert!(all.bytes < 5 * 64 * 1024 + 64 * 1024, "the link to / is not followed: {all:?}");
        assert!(!measure(dir.path(), 2).complete);
    }

    #[test]
    fn an_empty_volume_goes_to_the_first_non_root_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        std::fs::create_dir(&vol).unwrap();
        claim(&vol, Some((0, 0))).unwrap();
        claim(&vol, None).unwrap();
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&vol).unwrap().uid() != 0 {
            return; // not run as root: nothing to claim from
        }
        std::fs::create_dir(vol.join("lost+found")).unwrap();
        claim(&vol, Some((1000, 1000))).unwrap();
        assert_eq!(std::fs::metadata(&vol).unwrap().uid(), 1000);
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("data"), "x").unwrap();
        claim(&full, Some((1000, 1000))).unwrap();
        assert_eq!(std::fs::metadata(&full).unwrap().uid(), 0, "a volume with data keeps its owner");
    }
}
