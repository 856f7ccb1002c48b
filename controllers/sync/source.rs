//! Fetching a Sync's source: a git repository through the `git` command (any URL git
//! understands; one working copy per Sync, fetched again only when the remote's
//! commit moved), or a directory, whose revision is a hash of its manifests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use corral_api::kinds::sync::GitSource;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest a git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Extensions of the files that make a directory's revision (those read as manifests).
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// A revision of a source, ready to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// A commit id, or `sha256:…` of a directory's manifests.
    pub revision: String,
    /// The directory holding it (a git working copy checked out at the revision).
    pub root: PathBuf,
}

/// Runs `git ARGS` in `dir`; its stdout, trimmed, or an error with its stderr.
async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        // Never wait for a password on a terminal no one watches.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("git {}", args.join(" "));
    let child = cmd.spawn().map_err(|e| Error::Source(format!("cannot run {shown}: {e} (is git installed?)")))?;
    let out = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Source(format!("{shown} took more than {} s", GIT_TIMEOUT.as_secs())))?
        .map_err(|e| Error::Source(format!("{shown}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().lines().last().unwrap_or("").trim().to_string();
        return Err(Error::Source(format!("{shown} failed: {err}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The remote ref `src` follows (`refs/heads/B`, `refs/tags/T`), the remote's
/// default branch when it names none; `None` for a commit.
async fn remote_ref(work: &Path, src: &GitSource) -> Result<Option<String>> {
    if src.commit.is_some() {
        return Ok(None);
    }
    if let Some(t) = &src.tag {
        return Ok(Some(format!("refs/tags/{t}")));
    }
    if let Some(b) = &src.branch {
        return Ok(Some(format!("refs/heads/{b}")));
    }
    let out = git(Some(work), &["ls-remote", "--symref", "origin", "HEAD"]).await?;
    out.lines()
        .find_map(|l| l.strip_prefix("ref: ")?.split_whitespace().next().map(str::to_string))
        .map(Some)
        .ok_or_else(|| Error::Source(format!("{} has no default branch (HEAD); name spec.source.git.branch", src.url)))
}

/// Fetches `src` into the working copy `work` (made on first use) and checks out
/// its commit. When the remote's commit is `known` and the working copy has it, no
/// fetch is made: an unchanged repository costs one `ls-remote`.
///
/// # Errors
/// [`Error::Source`] naming the git command that failed and why (unreachable URL,
/// unknown branch, tag or commit).
pub async fn fetch_git(work: &Path, src: &GitSource, known: Option<&str>) -> Result<Fetched> {
    let set = [src.branch.is_some(), src.tag.is_some(), src.commit.is_some()].iter().filter(|x| **x).count();
    if set > 1 {
        return Err(Error::Source("spec.source.git: name at most one of branch, tag and commit".into()));
    }
    if !work.join(".git").exists() {
        tokio::fs::create_dir_all(work).await.map_err(|e| Error::Source(format!("{}: {e}", work.display())))?;
        git(Some(work), &["init", "-q"]).await?;
        git(Some(work), &["remote", "add", "origin", &src.url]).await?;
    } else {
        git(Some(work), &["remote", "set-url", "origin", &src.url]).await?;
    }
    let reference = remote_ref(work, src).await?;
    let commit = match &reference {
        Some(r) => {
            let listed = git(Some(work), &["ls-remote", "origin", r]).await?;
            let remote = listed.split_whitespace().next().map(str::to_string).ok_or_else(|| {
                Error::Source(format!(
                    "{} has no {}",
                    src.url,
                    r.replace("refs/heads/", "branch ").replace("refs/tags/", "tag ")
                ))
            })?;
            let have = git(Some(work), &["cat-file", "-t", &remote]).await.is_ok_and(|t| t == "commit");
            if known != Some(remote.as_str()) || !have {
                git(Some(work), &["fetch", "-q", "--force", "--no-tags", "origin", &format!("+{r}:refs/sync/head")])
                    .await?;
            }
            // A tag names its commit through the tag object.
            git(Some(work), &["rev-parse", "--verify", "refs/sync/head^{commit}"]).await?
        }
        None => {
            let wanted = src.commit.as_deref().unwrap_or_default();
            let spec = format!("{wanted}^{{commit}}");
            match git(Some(work), &["rev-parse", "--verify", "-q", &spec]).await {
                Ok(c) => c,
                Err(_) => {
                    git(
                        Some(work),
                        &[
                            "fetch",
                            "-q",
                            "--force",
                            "origin",
                            "+refs/heads/*:refs/sync/heads/*",
                            "+refs/tags/*:refs/sync/tags/*",
                        ],
                    )
                    .await?;
                    git(Some(work), &["rev-parse", "--verify", "-q", &spec])
                        .await
                        .map_err(|_| Error::Source(format!("{} has no commit {wanted}", src.url)))?
                }
            }
        }
    };
    let head = git(Some(work), &["rev-parse", "-q", "--verify", "HEAD"]).await.unwrap_or_default();
    if head != commit {
        git(Some(work), &["checkout", "-q", "--force", "--detach", &commit]).await?;
        git(Some(work), &["clean", "-q", "-f", "-d", "-x"]).await?;
    }
    Ok(Fetched { revision: commit, root: work.to_path_buf() })
}

/// `dir`, resolved (symbolic links followed), if it lies under one of `allow`.
///
/// # Errors
/// [`Error::Source`] naming the directory and the allowed ones when it lies under
/// none of them, or cannot be resolved.
pub fn allowed(dir: &Path, allow: &[PathBuf]) -> Result<PathBuf> {
    let resolved =
        std::fs::canonicalize(dir).map_err(|e| Error::Source(format!("directory {}: {e}", dir.display())))?;
    let under = allow.iter().filter_map(|a| std::fs::canonicalize(a).ok()).any(|a| resolved.starts_with(a));
    if under {
        return Ok(resolved);
    }
    let shown: Vec<String> = allow.iter().map(|a| a.display().to_string()).collect();
    Err(Error::Source(if shown.is_empty() {
        format!(
            "directory {} is not read: this control plane allows no directory sources \
             (start it with --sync-directory-allow DIR), use a git source",
            dir.display()
        )
    } else {
        format!("directory {} is not under an allowed one ({})", dir.display(), shown.join(", "))
    }))
}

/// The revision of the manifests under `dir`: `sha256:` of every manifest file's
/// path (relative) and content, in path order.
///
/// # Errors
/// [`Error::Source`] when `dir` cannot be read.
pub async fn directory(dir: &Path) -> Result<Fetched> {
    let root = dir.to_path_buf();
    let revision = tokio::task::spawn_blocking(move || hash_dir(&root))
        .await
        .map_err(|e| Error::Source(format!("hashing {}: {e}", dir.display())))??;
    Ok(Fetched { revision, root: dir.to_path_buf() })
}

fn hash_dir(root: &Path) -> Result<String> {
    let meta = std::fs::metadata(root).map_err(|e| Error::Source(format!("{}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(Error::Source(format!("{} is not a directory", root.display())));
    }
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        let content = std::fs::read(&f).map_err(|e| Error::Source(format!("{}: {e}", f.display())))?;
        h.update((content.len() as u64).to_le_bytes());
        h.update(&content);
    }
    Ok(format!("sha256:{}", corral_client::credentials::hex(&h.finalize())))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let cannot = |e: std::io::Error| Error::Source(format!("cannot list {}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            // A git working copy's own files are not manifests.
            if entry.file_name() != ".git" {
                walk(&path, out)?;
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let st = std::process::Command::new("git").arg("-C").arg(dir).args(args).status().unwrap();
        assert!(st.success(), "git {args:?}");
    }

    fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        sh(d.path(), &["init", "-q", "-b", "main"]);
        for (f, c) in files {
            std::fs::write(d.path().join(f), c).unwrap();
        }
        sh(d.path(), &["add", "."]);
        sh(d.path(), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]);
        d
    }

    #[tokio::test]
    async fn a_branch_is_fetched_once_and_again_only_when_it_moves() {
        let repo = repo_with(&[("a.yaml", "kind: A\n")]);
        let work = tempfile::tempdir().unwrap();
        let src = GitSource { url: format!("file://{}", repo.path().display()), ..Default::default() };
        let first = fetch_git(work.path(), &src, None).await.unwrap();
        assert_eq!(first.revision.len(), 40);
        assert!(first.root.join("a.yaml").exists());
        let again = fetch_git(work.path(), &src, Some(&first.revision)).await.unwrap();
        assert_eq!(again, first);
        std::fs::write(repo.path().join("b.yaml"), "kind: B\n").unwrap();
        std::fs::remove_file(repo.path().join("a.yaml")).unwrap();
        sh(repo.path(), &["add", "-A"]);
        sh(repo.path(), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "two"]);
        let moved = fetch_git(work.path(), &src, Some(&first.revision)).await.unwrap();
        assert_ne!(moved.revision, first.revision);
        assert!(moved.root.join("b.yaml").exists() && !moved.root.join("a.yaml").exists());
        // The first commit, by its id.
        let pinned = GitSource { commit: Some(first.revision[..10].to_string()), ..src.clone() };
        let back = fetch_git(work.path(), &pinned, None).await.unwrap();
        assert_eq!(back.revision, first.revision);
        assert!(back.root.join("a.yaml").exists());
    }

    #[tokio::test]
    async fn a_missing_branch_says_so() {
        let repo = repo_with(&[("a.yaml", "kind: A\n")]);
        let work = tempfile::tempdir().unwrap();
        let src = GitSource {
            url: format!("file://{}", repo.path().display()),
            branch: Some("nope".into()),
            ..Default::default()
        };
        let err = fetch_git(work.path(), &src, None).await.unwrap_err().to_string();
        assert!(err.contains("branch nope"), "{err}");
    }

    #[test]
    fn a_directory_source_is_read_only_under_an_allowed_directory() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("site");
        std::fs::create_dir(&inside).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(allowed(&inside, &[root.path().to_path_buf()]).is_ok());
        let err = allowed(elsewhere.path(), &[root.path().to_path_buf()]).unwrap_err().to_string();
        assert!(err.contains("not under an allowed one"), "{err}");
        // `..` does not climb out.
        let climbing = inside.join("..").join("..");
        assert!(allowed(&climbing, &[root.path().to_path_buf()]).is_err());
        let err = allowed(&inside, &[]).unwrap_err().to_string();
        assert!(err.contains("--sync-directory-allow"), "{err}");
    }

    #[tokio::test]
    async fn a_directory_revision_follows_its_manifests_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "kind: A\n").unwrap();
        let one = directory(d.path()).await.unwrap().revision;
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        assert_eq!(directory(d.path()).await.unwrap().revision, one);
        std::fs::write(d.path().join("a.yaml"), "kind: B\n").unwrap();
        assert_ne!(directory(d.path()).await.unwrap().revision, one);
    }
}
