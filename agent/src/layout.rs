//! Where the agent keeps things in its work dir. Every path the agent, the shim and
//! the image store use is built here, from validated names only, so that no input
//! can point outside the work dir.
//!
//! ```text
//! <work>/images/                 content-addressed image store (see `image`)
//! <work>/tasks/<uid>/launch.json checkpoint, written (and fsynced) before a launch
//! <work>/tasks/<uid>/shim.json   the shim's pid and start time, written by the shim
//! <work>/tasks/<uid>/started.json written by the shim once the task runs
//! <work>/tasks/<uid>/exit.json   written atomically by the shim when the task ended
//! <work>/tasks/<uid>/logs/       stdout, stderr and their rotations .1 (newest) … .N
//! <work>/tasks/<uid>/bundle/     OCI bundle: config.json, rootfs (overlay), upper, work
//! <work>/tasks/<uid>/sandbox/    the task's sandbox, /mnt/sandbox in containers
//! <work>/volumes/<ns>/<name>/    a persistent volume: the directory tasks mount
//! <work>/volumes/<ns>/<name>.img its filesystem image, where the size is enforced
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The agent's work dir and the paths inside it.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (made absolute, so that paths handed to runc and to
    /// the shim do not depend on a working directory).
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| Error::io("cannot create work dir", root, e))?;
        let root = std::fs::canonicalize(root).map_err(|e| Error::io("cannot resolve work dir", root, e))?;
        Ok(Layout { root })
    }

    /// The work dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image store's directory.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The directory holding every task's directory.
    pub fn tasks(&self) -> PathBuf {
        self.root.join("tasks")
    }

    /// One task's directory; `uid` must come from [`check_uid`].
    pub fn task(&self, uid: &str) -> PathBuf {
        self.tasks().join(uid)
    }

    /// The directory holding every persistent volume, by namespace.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// A persistent volume's directory (what tasks mount); `namespace` and `name`
    /// must be RFC 1123 labels, so that neither can lead out of [`Layout::volumes`].
    pub fn volume(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        corral_api::names::check_dns_label(namespace)
            .map_err(|e| Error::Invalid(format!("volume namespace {namespace:?}: {e}")))?;
        corral_api::names::check_dns_label(name).map_err(|e| Error::Invalid(format!("volume name {name:?}: {e}")))?;
        Ok(self.volumes().join(namespace).join(name))
    }

    /// A persistent volume's filesystem image, beside its directory (`<name>.img`:
    /// no label holds a dot, so it never names another volume's directory).
    pub fn volume_image(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        Ok(self.volume(namespace, name)?.with_extension("img"))
    }
}

/// Paths inside one task's directory.
#[derive(Clone, Debug)]
pub struct TaskDir(pub PathBuf);

impl TaskDir {
    /// The launch checkpoint.
    pub fn launch(&self) -> PathBuf {
        self.0.join("launch.json")
    }
    /// The shim's identity file.
    pub fn shim(&self) -> PathBuf {
        self.0.join("shim.json")
    }
    /// Written once the task runs.
    pub fn started(&self) -> PathBuf {
        self.0.join("started.json")
    }
    /// Written when the task has ended.
    pub fn exit(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    /// The log directory.
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }
    /// The OCI bundle.
    pub fn bundle(&self) -> PathBuf {
        self.0.join("bundle")
    }
    /// The sandbox.
    pub fn sandbox(&self) -> PathBuf {
        self.0.join("sandbox")
    }
}

/// Accepts a task uid only if it is made of `[0-9a-zA-Z-]`, so it can name a directory
/// and a runc container.
pub fn check_uid(uid: &str) -> Result<&str> {
    if !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(uid)
    } else {
        Err(Error::Invalid(format!("task uid {uid:?} is not usable as a directory name")))
    }
}

/// Writes `bytes` to `path` atomically but not durably: readers see the old content
/// or the new, never a part, yet a machine crash may lose the write. For files that
/// only matter while the machine is up (a shim's pid, a running container's config),
/// where an fsync would only slow task starts.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, false)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it, fsync,
/// rename, fsync of the directory. Readers see the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, true)
}

/// A temporary file beside `path`, renamed onto it; `durable` adds the fsyncs.
fn write_via_temp(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| Error::Invalid(format!("{} has no parent", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io("cannot write", &tmp, e))?;
    if durable {
        f.sync_all().map_err(|e| Error::io("cannot sync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into place", path, e))?;
    if durable { sync_dir(dir) } else { Ok(()) }
}

/// Makes the entries of directory `dir` (creations, renames) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("cannot sync", dir, e))
}
