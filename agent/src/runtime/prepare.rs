//! What the agent does for a launch before the shim takes over: the task's directory,
//! its durable checkpoint, then the bundle or the sandbox.

use std::path::Path;

use super::bundle;
use super::checkpoint::{self, ExitRecord, LaunchRecord};
use crate::error::{Error, Result};
use crate::layout::{TaskDir, sync_dir};

/// Refuses `path` if any existing component of it below `root` is a symlink.
fn no_symlink_below(root: &Path, path: &Path) -> Result<()> {
    let rel =
        path.strip_prefix(root).map_err(|_| Error::Invalid(format!("{} is outside the sandbox", path.display())))?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Invalid(format!(
                    "volume mount path {}: {} in the sandbox is a symlink",
                    rel.display(),
                    cur.display()
                )));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
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
            for m in &rec.spec.mounts {
                let link = dir.sandbox().join(&m.destination);
                // Artifacts may have planted symlinks in the sandbox: creating through
                // one would write outside it, as root.
                no_symlink_below(&dir.sandbox(), &link)?;
                if let Some(parent) = link.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
                }
                std::os::unix::fs::symlink(&m.source, &link).map_err(|e| Error::io("cannot link", &link, e))?;
            }
            Ok(())
        }
    }
}
