//! A task's credential to the API, as kubelet's projected service-account volume: a
//! task whose spec names a service account gets, before it starts, a token bound to
//! it (`POST /auth/task-token`, asked with the node's own credential), in
//! `.corral/serviceaccount/` of its sandbox:
//!
//! - `token`: the bearer token, mode 0400, owned by the task's user;
//! - `namespace`: the task's namespace;
//! - `ca.crt`: the authority the API's certificate chains to, when the agent reaches
//!   the API over HTTPS with an authority of its own.
//!
//! A container sees the directory, read-only, at [`DIR_IN_CONTAINER`] too. The
//! environment names it (`CORRAL_SERVICE_ACCOUNT_DIR`) and the API's URL
//! (`CORRAL_SERVER`). A task that names no service account gets none of this.
//!
//! Artifacts are unpacked into the sandbox before, and may have planted symbolic
//! links there; the agent writes as root. So every step is taken relative to a
//! descriptor of the directory above it, refusing links (`O_NOFOLLOW`), and files are
//! created afresh (`O_EXCL`), never opened through a name that could lead elsewhere.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use corral_api::kinds::task::Task;
use serde::Deserialize;
use serde_json::json;

use super::TaskContext;
use crate::error::{Error, Result};
use crate::runtime::{Mount, beneath};

/// Where the agent asks for a task's token.
const TOKEN_PATH: &str = "/auth/task-token";
/// The credential's directory, relative to the sandbox.
pub(super) const DIR_IN_SANDBOX: [&str; 2] = [".corral", "serviceaccount"];
/// Where a container sees the credential's directory.
pub(super) const DIR_IN_CONTAINER: &str = "/var/run/secrets/corral.dev/serviceaccount";
/// The environment variable naming the directory, as the task sees it.
pub(super) const DIR_ENV: &str = "CORRAL_SERVICE_ACCOUNT_DIR";
/// The environment variable holding the API's URL.
pub(super) const SERVER_ENV: &str = "CORRAL_SERVER";

/// What a task with a service account gets on top of the rest of its launch.
#[derive(Debug)]
pub(super) struct Credential {
    /// Variables naming the directory and the API.
    pub env: Vec<(String, String)>,
    /// The directory, mounted read-only at [`DIR_IN_CONTAINER`] (containers only).
    pub mount: Option<Mount>,
}

/// Answer of `POST /auth/task-token` (what the agent reads of it).
#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
}

/// Asks for the token of `task` (uid `uid`) and writes its directory into `sandbox`,
/// the token owned by `owner`; `None` if the task names no service account.
///
/// # Errors
/// [`Error::Invalid`] naming the service account and why, if the API refuses the
/// token or cannot be reached; [`Error::Io`] if the directory cannot be written (a
/// symbolic link in the way among them).
pub(super) async fn provide(
    ctx: &TaskContext,
    task: &Task,
    uid: &str,
    sandbox: &Path,
    owner: Option<(u32, u32)>,
    in_container: bool,
) -> Result<Option<Credential>> {
    let Some(account) = task.spec.service_account.as_deref() else { return Ok(None) };
    let ns = task.metadata.namespace.as_deref().unwrap_or("default");
    let client = ctx.tasks.client();
    let body = json!({"namespace": ns, "task": task.metadata.name, "uid": uid});
    let answer: TokenAnswer = client.call_json(TOKEN_PATH, Some(&body)).await.map_err(|e| {
        Error::Invalid(format!("cannot get a token of service account {account:?} for the task from the API: {e}"))
    })?;
    let dir = write(sandbox, owner, ns, &answer.token, ctx.server_ca.as_deref())?;
    let seen = if in_container { DIR_IN_CONTAINER.to_string() } else { dir.display().to_string() };
    let mut env = vec![(DIR_ENV.to_string(), seen)];
    let server = client.server();
    // An agent in the server's own process has no URL to hand on.
    if server.starts_with("http://") || server.starts_with("https://") {
        env.push((SERVER_ENV.to_string(), server));
    }
    let mount =
        in_container.then(|| Mount { source: dir.clone(), destination: DIR_IN_CONTAINER.into(), read_only: true });
    tracing::info!(uid, task = %task.metadata.name, account, "service account token written");
    Ok(Some(Credential { env, mount }))
}

/// Writes the credential's directory below `sandbox`; returns its host path.
fn write(sandbox: &Path, owner: Option<(u32, u32)>, ns: &str, token: &str, ca: Option<&[u8]>) -> Result<PathBuf> {
    let rel: PathBuf = DIR_IN_SANDBOX.iter().collect();
    let path = sandbox.join(&rel);
    let root = beneath::open_dir(sandbox).map_err(|e| Error::io("cannot open the sandbox", sandbox, e))?;
    // No link is followed on the way, not even one that stays in the sandbox.
    let dir = beneath::mkdir_all_beneath(root.as_fd(), &rel).map_err(|e| Error::io("cannot create", &path, e))?;
    let file = |name: &str, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>| {
        let at = path.join(name);
        create_file(&dir, name, bytes, mode, owner).map_err(|e| Error::io("cannot write", at, e))
    };
    // Only the task's user reads the token; the namespace and the authority are no
    // secrets.
    file("token", token.as_bytes(), 0o400, owner)?;
    file("namespace", ns.as_bytes(), 0o444, None)?;
    if let Some(ca) = ca {
        file("ca.crt", ca, 0o444, None)?;
    }
    Ok(path)
}

/// Creates file `name` in `dir` afresh (whatever was there goes, a link included,
/// without being followed) holding `bytes`, with `mode` and `owner`.
fn create_file(dir: &OwnedFd, name: &str, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let c = beneath::cstring(std::ffi::OsStr::new(name))?;
    // SAFETY: a valid descriptor and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; the mode is passed as the variadic argument open(2) expects.
    let fd = beneath::owned(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) })?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_token_is_readable_by_the_task_user_alone() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), Some((65534, 65534)), "team", "id.secret", Some(b"PEM")).unwrap();
        assert_eq!(written, dir.path().join(".corral/serviceaccount"));
        let token = std::fs::metadata(written.join("token")).unwrap();
        assert_eq!((token.uid(), token.gid(), token.mode() & 0o7777), (65534, 65534, 0o400));
        assert_eq!(std::fs::read_to_string(written.join("token")).unwrap(), "id.secret");
        assert_eq!(std::fs::read_to_string(written.join("namespace")).unwrap(), "team");
        assert_eq!(std::fs::read_to_string(written.join("ca.crt")).unwrap(), "PEM");
        // Asking again (an agent restarted before the start) replaces the files.
        write(dir.path(), Some((65534, 65534)), "team", "id.other", None).unwrap();
        assert_eq!(std::fs::read_to_string(written.join("token")).unwrap(), "id.other");
    }

    #[test]
    fn a_symbolic_link_planted_in_the_sandbox_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".corral")).unwrap();
        let err = write(dir.path(), None, "team", "id.secret", None).unwrap_err();
        assert!(err.to_string().contains(".corral"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".corral/serviceaccount")).unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(".corral/serviceaccount/token")).unwrap();
        write(dir.path(), None, "team", "id.secret", None).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep", "the link was replaced, not followed");
        let token = std::fs::symlink_metadata(dir.path().join(".corral/serviceaccount/token")).unwrap();
        assert!(token.file_type().is_file());
    }
}
