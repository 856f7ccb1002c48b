//! Fetching a task's artifacts into its sandbox before it starts: `http://` (and
//! `https://` where the HTTP client was built with TLS) and `file://` URIs, checked
//! against their sha256 when one is given, optionally made executable or unpacked.
//!
//! Each download goes to a temporary file in the sandbox and is renamed to its name
//! only once complete and verified, so a task never sees half an artifact, and a
//! symbolic link already in the sandbox is replaced rather than written through.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corral_api::kinds::task::Artifact;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::image::unpack::{self, Options, Unpacker};

/// What artifacts this agent may fetch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArtifactPolicy {
    /// Directories `file://` artifacts may be copied from (`corral agent
    /// --artifact-dir`); none: `file://` is refused. The agent reads as root: without
    /// the list a task could copy `/etc/shadow` or the agent's own environment into
    /// its sandbox.
    pub file_dirs: Vec<PathBuf>,
    /// Internal address ranges `http(s)` artifacts may still come from (`corral agent
    /// --artifact-allow-net`); none by default (see [`crate::net_guard`]).
    pub allowed_nets: Vec<crate::net_guard::Cidr>,
    /// Largest artifact downloaded; `None`: [`DEFAULT_MAX_BYTES`].
    pub max_bytes: Option<u64>,
}

/// Largest artifact downloaded unless the agent says otherwise: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// Redirects followed before a download fails.
pub const MAX_REDIRECTS: usize = 5;

impl ArtifactPolicy {
    /// The file `path` names, with links resolved, if it lies in an allowed directory.
    /// A path outside them is refused before it is looked at, so that the message
    /// does not tell a task whether some host file exists.
    fn allowed_file(&self, path: &Path) -> std::result::Result<PathBuf, String> {
        // As given and as resolved, so that a URI may name either.
        let dirs: Vec<PathBuf> =
            self.file_dirs.iter().flat_map(|d| [Some(d.clone()), d.canonicalize().ok()]).flatten().collect();
        let inside = |p: &Path| dirs.iter().any(|d| p.starts_with(d));
        let plain = path.components().all(|c| !matches!(c, std::path::Component::ParentDir));
        if plain && inside(path) {
            let real = path.canonicalize().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if inside(&real) {
                return Ok(real);
            }
        }
        Err(format!(
            "{} is outside the directories this agent serves file:// artifacts from ({}); \
             add one with `corral agent --artifact-dir DIR`, or serve the file over http(s)",
            path.display(),
            if self.file_dirs.is_empty() {
                "none".to_string()
            } else {
                self.file_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            }
        ))
    }
}

/// Fetches every artifact into `sandbox` (which must exist), in order, as `policy`
/// allows.
///
/// # Errors
/// [`Error::Artifact`] naming the URI: unsupported scheme, a file outside the
/// policy's directories, unsafe or empty file
/// name, download failure, sha256 mismatch (with both digests), or an archive that
/// cannot be unpacked safely. Files already fetched stay.
pub async fn fetch(artifacts: &[Artifact], sandbox: &Path, policy: &ArtifactPolicy) -> Result<()> {
    for artifact in artifacts {
        fetch_one(artifact, sandbox, policy).await.map_err(|e| match e {
            Error::Artifact { .. } => e,
            other => Error::Artifact { uri: artifact.uri.clone(), reason: other.to_string() },
        })?;
    }
    Ok(())
}

async fn fetch_one(a: &Artifact, sandbox: &Path, policy: &ArtifactPolicy) -> Result<()> {
    let fail = |reason: String| Error::Artifact { uri: a.uri.clone(), reason };
    let name = file_name(a).map_err(fail)?;
    if a.extract && ![".tar", ".tar.gz", ".tgz"].iter().any(|ext| name.ends_with(ext)) {
        return Err(fail(format!("cannot extract {name:?}: only .tar, .tar.gz and .tgz archives can be extracted")));
    }
    let tmp = temp_path(sandbox);
    let guard = TempFile(Some(tmp.clone()));
    let actual = if let Some(path) = a.uri.strip_prefix("file://") {
        let src = PathBuf::from(percent_decode(path));
        if !src.is_absolute() {
            return Err(fail("a file:// URI needs an absolute path (file:///dir/file)".into()));
        }
        let src = policy.allowed_file(&src).map_err(fail)?;
        let dst = tmp.clone();
        tokio::task::spawn_blocking(move || copy_hashing(&src, &dst))
            .await
            .map_err(|e| fail(format!("copy task failed: {e}")))??
    } else if a.uri.starts_with("http://") || a.uri.starts_with("https://") {
        download(&a.uri, &tmp, policy).await.map_err(fail)?
    } else {
        return Err(fail("unsupported scheme: use http://, https:// or file://".into()));
    };
    if let Some(expected) = &a.sha256
        && !expected.eq_ignore_ascii_case(&actual)
    {
        return Err(fail(format!("sha256 mismatch: expected {expected}, got {actual}")));
    }
    if a.extract {
        let root = sandbox.to_path_buf();
        let what = a.uri.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut unpacker = Unpacker::new(&root, Options { whiteouts: false, chown: false, mode_mask: 0o777 });
            unpacker.apply(unpack::maybe_gunzip(&tmp)?, &what)?;
            unpacker.finish()
        })
        .await
        .map_err(|e| fail(format!("extract task failed: {e}")))??;
        drop(guard);
        return Ok(());
    }
    let mode = if a.executable { 0o755 } else { 0o644 };
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("cannot chmod", &tmp, e))?;
    let dst = sandbox.join(&name);
    if fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
        return Err(fail(format!("{name:?} is a directory in the sandbox")));
    }
    // rename(2) replaces a symbolic link at `dst` instead of following it.
    fs::rename(&tmp, &dst).map_err(|e| Error::io("cannot move into place", &dst, e))?;
    guard.keep();
    Ok(())
}

/// The artifact's file name in the sandbox: `dest`, or the URI's last segment
/// (without query or fragment). One plain name: no `/`, not `.` or `..`.
fn file_name(a: &Artifact) -> std::result::Result<String, String> {
    let name = match &a.dest {
        Some(d) => d.clone(),
        None => {
            let path = a.uri.split(['?', '#']).next().unwrap_or("");
            let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
            percent_decode(after_scheme.rsplit('/').next().unwrap_or(""))
        }
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "{name:?} cannot be a file name in the sandbox; set dest to a plain name (no '/', not '.' or '..')"
        ));
    }
    Ok(name)
}

/// Streams `uri` into a new file `dst`, returning the sha256 hex.
async fn download(uri: &str, dst: &Path, policy: &ArtifactPolicy) -> std::result::Result<String, String> {
    let nets = std::sync::Arc::new(crate::net_guard::NetPolicy { allowed: policy.allowed_nets.clone() });
    let url = reqwest::Url::parse(uri).map_err(|e| format!("not a URL: {e}"))?;
    if let Some(why) = crate::net_guard::literal_ip(&url).and_then(|ip| nets.refuse(ip)) {
        return Err(why);
    }
    let on_redirect = nets.clone();
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(30))
        // No overall limit (artifacts can be big), but a stalled server fails the task.
        .read_timeout(std::time::Duration::from_secs(120))
        .dns_resolver(std::sync::Arc::new(crate::net_guard::GuardedResolver::new(nets)))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match crate::net_guard::literal_ip(attempt.url()).and_then(|ip| on_redirect.refuse(ip)) {
                Some(why) => {
                    let message = format!("redirected to {}: {why}", attempt.url());
                    attempt.error(message)
                }
                None => attempt.follow(),
            }
        }))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let resp = client.get(url).send().await.map_err(|e| {
        // The guard's reason is the root of the chain; say it, not "error sending request".
        let mut root: &dyn std::error::Error = &e;
        while let Some(next) = root.source() {
            root = next;
        }
        format!("request failed: {root}")
    })?;
    if !resp.status().is_success() {
        return Err(format!("server answered {}", resp.status()));
    }
    let limit = policy.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(format!("the artifact is larger than the agent's limit of {limit} bytes"));
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    let mut hasher = Sha256::new();
    let mut body = resp.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("download interrupted: {e}"))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(format!("the artifact is larger than the agent's limit of {limit} bytes"));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
    }
    file.sync_all().await.map_err(|e| format!("cannot sync {}: {e}", dst.display()))?;
    Ok(unpack::hex(&hasher.finalize()))
}

/// Copies `src` to a new file `dst`, returning the sha256 hex.
fn copy_hashing(src: &Path, dst: &Path) -> Result<String> {
    let mut input = fs::File::open(src).map_err(|e| Error::io("cannot open", src, e))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)
        .map_err(|e| Error::io("cannot create", dst, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read", src, e)),
        };
        hasher.update(&buf[..n]);
        io::Write::write_all(&mut out, &buf[..n]).map_err(|e| Error::io("cannot write", dst, e))?;
    }
    Ok(unpack::hex(&hasher.finalize()))
}

/// A unique hidden name in the sandbox for a download in progress.
fn temp_path(sandbox: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    sandbox.join(format!(".corral-artifact-{}-{}.part", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Removes a partial download when the fetch fails.
struct TempFile(Option<PathBuf>);

impl TempFile {
    /// The file was moved into place: nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(uri: &str, dest: Option<&str>) -> Artifact {
        Artifact { uri: uri.into(), sha256: None, dest: dest.map(Into::into), executable: false, extract: false }
    }

    #[test]
    fn names_come_from_dest_or_the_last_segment() {
        assert_eq!(file_name(&art("http://h/a/b.tgz?x=1", None)).unwrap(), "b.tgz");
        assert_eq!(file_name(&art("file:///a/my%20file", None)).unwrap(), "my file");
        assert_eq!(file_name(&art("http://h/a/b", Some("c"))).unwrap(), "c");
        for (uri, dest) in [("http://h/", None), ("http://h/x", Some("../x")), ("http://h/x", Some("a/b"))] {
            assert!(file_name(&art(uri, dest)).is_err(), "{uri} {dest:?}");
        }
        assert!(file_name(&art("file:///a/%2e%2e", None)).is_err());
    }
}
