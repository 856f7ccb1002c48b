//! Resolving `spec.user` (`name`, `uid` or `uid:gid`) to numeric ids.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Parses `uid` or `uid:gid`; `None` if the user is given by name.
fn numeric(user: &str) -> Option<(u32, u32)> {
    match user.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        None => user.parse().ok().map(|u| (u, u)),
    }
}

/// Finds `name` in passwd-format text.
fn lookup(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

/// Who runs a task nobody chose a user for: `nobody`.
pub const UNPRIVILEGED: (u32, u32) = (65534, 65534);

/// The user a task runs as: the one it asks for, else its image's if not root, else
/// [`UNPRIVILEGED`]. Root only when asked for, and only in a privileged namespace.
///
/// # Errors
/// [`Error::Invalid`] when the task asks for uid 0 (by number or by a name that maps
/// to it) outside a privileged namespace.
pub fn effective(asked: Option<(u32, u32)>, image: Option<(u32, u32)>, privileged: bool) -> Result<(u32, u32)> {
    match asked {
        Some((0, _)) if !privileged => {
            Err(Error::Invalid("spec.user: uid 0 (root) is allowed only in a privileged namespace".into()))
        }
        Some(ids) => Ok(ids),
        None => Ok(image.filter(|(uid, _)| *uid != 0).unwrap_or(UNPRIVILEGED)),
    }
}

/// Resolves a user of a container, looking names up in the image's `/etc/passwd`.
/// That file is opened without following symlinks, since the image is untrusted.
pub fn resolve_in_rootfs(user: &str, rootfs: &Path) -> Result<(u32, u32)> {
    if let Some(ids) = numeric(user) {
        return Ok(ids);
    }
    let path = rootfs.join("etc/passwd");
    let text = open_nofollow(&path).map_err(|e| {
        Error::Invalid(format!("spec.user: {user:?} is a name, but the image's /etc/passwd cannot be read: {e}"))
    })?;
    lookup(&text, user).ok_or_else(|| Error::Invalid(format!("spec.user: no user {user:?} in the image's /etc/passwd")))
}

/// Resolves a user of a native task on this host.
pub fn resolve_on_host(user: &str) -> Result<(u32, u32)> {
    if let Some(ids) = numeric(user) {
        return Ok(ids);
    }
    let text = std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("cannot read", "/etc/passwd", e))?;
    lookup(&text, user).ok_or_else(|| Error::Invalid(format!("spec.user: no user {user:?} on this host")))
}

fn open_nofollow(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Parent components could be symlinks too: refuse any that is.
    let mut cur = std::path::PathBuf::new();
    for c in path.components() {
        cur.push(c);
        if std::fs::symlink_metadata(&cur)?.file_type().is_symlink() {
            return Err(std::io::Error::other("path goes through a symlink"));
        }
    }
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut s = String::new();
    f.by_ref().take(1 << 20).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_run_as_root_only_when_asked_in_a_privileged_namespace() {
        use super::{UNPRIVILEGED, effective};
        assert_eq!(effective(None, None, true).unwrap(), UNPRIVILEGED);
        assert_eq!(effective(None, Some((0, 0)), true).unwrap(), UNPRIVILEGED, "an image's root is not taken");
        assert_eq!(effective(None, Some((101, 101)), false).unwrap(), (101, 101));
        assert_eq!(effective(Some((1000, 5)), Some((101, 101)), false).unwrap(), (1000, 5));
        assert_eq!(effective(Some((0, 0)), None, true).unwrap(), (0, 0));
        assert!(effective(Some((0, 0)), None, false).is_err());
    }

    use super::*;

    #[test]
    fn users_resolve_by_number_and_name() {
        assert_eq!(numeric("1000"), Some((1000, 1000)));
        assert_eq!(numeric("1000:50"), Some((1000, 50)));
        assert_eq!(numeric("nobody"), None);
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        assert_eq!(lookup(passwd, "nobody"), Some((65534, 65534)));
        assert_eq!(lookup(passwd, "ghost"), None);
    }

    #[test]
    fn passwd_behind_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).expect("symlink");
        assert!(resolve_in_rootfs("root", dir.path()).is_err());
        assert_eq!(resolve_in_rootfs("0:0", dir.path()).expect("numeric"), (0, 0));
    }
}
