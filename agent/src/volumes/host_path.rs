//! Host-path volumes: a directory of the host, used as it is, only under a prefix of
//! the agent's allow-list (`--host-path-allow`, none by default).
//!
//! The path is resolved (every symbolic link followed, `..` taken away) before it is
//! compared, and compared by whole components: `/data` allows `/data/a`, never
//! `/data2`, nor `/data/link` when the link leads to `/etc`. The resolved path is
//! what tasks mount, so a link changed after the check does not move the mount.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Resolves `host_path` and checks it against `allow`.
///
/// # Errors
/// [`Error::Invalid`], saying why: no allow-list, a relative path, a path that does
/// not resolve to a directory, or one outside every allowed prefix.
pub fn resolve(host_path: &str, allow: &[PathBuf]) -> Result<PathBuf> {
    if allow.is_empty() {
        return Err(Error::Invalid(format!(
            "host path {host_path:?} refused: this node allows no host paths (start its agent with \
             --host-path-allow DIR)"
        )));
    }
    let asked = Path::new(host_path);
    if !asked.is_absolute() {
        return Err(Error::Invalid(format!("host path {host_path:?} must be absolute")));
    }
    let real = std::fs::canonicalize(asked)
        .map_err(|e| Error::Invalid(format!("host path {host_path:?} cannot be resolved on this node: {e}")))?;
    if !real.is_dir() {
        return Err(Error::Invalid(format!("host path {host_path:?} is not a directory")));
    }
    let allowed = allow.iter().filter_map(|a| std::fs::canonicalize(a).ok()).any(|a| real.starts_with(&a));
    if !allowed {
        let list: Vec<String> = allow.iter().map(|a| a.display().to_string()).collect();
        return Err(Error::Invalid(format!(
            "host path {host_path:?} (resolved to {}) is outside this node's allowed host paths ({})",
            real.display(),
            list.join(", ")
        )));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_resolve_under_an_allowed_prefix_by_whole_components() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["data/a", "data2", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("etc"), root.join("data/link")).unwrap();
        let allow = vec![root.join("data")];
        let ok = |p: &Path| resolve(p.to_str().unwrap(), &allow);

        assert_eq!(ok(&root.join("data/a")).unwrap(), root.join("data/a"));
        assert_eq!(ok(&root.join("data")).unwrap(), root.join("data"));
        for bad in ["data2", "data/link", "data/../etc", "data/a/../../etc", "nope"] {
            let err = ok(&root.join(bad)).unwrap_err().to_string();
            assert!(err.contains("host path"), "{bad}: {err}");
        }
        let err = resolve("data/a", &allow).unwrap_err().to_string();
        assert!(err.contains("absolute"), "{err}");
        let err = resolve(root.join("data/a").to_str().unwrap(), &[]).unwrap_err().to_string();
        assert!(err.contains("--host-path-allow"), "{err}");
    }
}
