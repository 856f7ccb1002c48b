//! Fetching artifacts from `file://` URIs and from a real HTTP server on
//! `127.0.0.1:0`: checksums, modes, safe names and safe extraction.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use corral_agent::Error;
use corral_agent::artifacts::{ArtifactPolicy, fetch};
use corral_api::kinds::task::Artifact;
use sha2::{Digest, Sha256};

/// The tests' servers are on loopback, which agents refuse unless allowed.
fn loopback() -> ArtifactPolicy {
    ArtifactPolicy { allowed_nets: vec!["127.0.0.0/8".parse().unwrap()], ..Default::default() }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn artifact(uri: &str) -> Artifact {
    Artifact { uri: uri.to_string(), sha256: None, dest: None, executable: false, extract: false }
}

/// Serves `files` (path → body) over HTTP on `127.0.0.1:0`; returns the base URL.
async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    serve_on("127.0.0.1", files).await
}

/// Serves `files` over HTTP on `ip:0`; returns the base URL.
async fn serve_on(ip: &str, files: Vec<(&'static str, Vec<u8>)>) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    let files: std::sync::Arc<std::collections::HashMap<String, Vec<u8>>> =
        std::sync::Arc::new(files.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    let app = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::get(
                |State(files): State<std::sync::Arc<std::collections::HashMap<String, Vec<u8>>>>,
                 UrlPath(path): UrlPath<String>| async move {
                    match files.get(&path) {
                        Some(body) => (StatusCode::OK, body.clone()),
                        None => (StatusCode::NOT_FOUND, b"no such file".to_vec()),
                    }
                },
            ),
        )
        .with_state(files);
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A tar.gz with a directory, an executable and a symlink.
fn tgz() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, "app/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(10);
    h.set_mode(0o755);
    b.append_data(&mut h, "app/run.sh", &b"#!/bin/sh\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "app/link", "run.sh").unwrap();
    let tar = b.into_inner().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    enc.finish().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Only the sandbox's visible files: no temporary leftovers.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn file_uris_are_copied_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tool");
    fs::write(&src, b"#!/bin/sh\necho hi\n").unwrap();
    let sandbox = tmp.path().join("sandbox");
    fs::create_dir(&sandbox).unwrap();

    let mut a = artifact(&format!("file://{}", src.display()));
    a.sha256 = Some(sha(b"#!/bin/sh\necho hi\n").to_uppercase());
    a.executable = true;
    let mut b = artifact(&format!("file://{}", src.display()));
    b.dest = Some("copy.txt".into());
    // Refused until the agent allows the directory: it reads as root.
    let err = fetch(&[a.clone()], &sandbox, &loopback()).await.unwrap_err().to_string();
    assert!(err.contains("--artifact-dir"), "{err}");
    let shadow = artifact("file:///etc/shadow");
    let allowed = ArtifactPolicy { file_dirs: vec![tmp.path().to_path_buf()], ..Default::default() };
    let err = fetch(&[shadow], &sandbox, &allowed).await.unwrap_err().to_string();
    assert!(err.contains("outside the directories"), "{err}");
    // A host path that does not exist gets the same answer: nothing is learnt of it.
    let probe = artifact("file:///etc/no-such-file-here");
    let err = fetch(&[probe], &sandbox, &allowed).await.unwrap_err().to_string();
    assert!(err.contains("outside the directories") && !err.contains("No such file"), "{err}");
    // A link inside the allowed directory leading out of it is refused as well.
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("passwd")).unwrap();
    let linked = artifact(&format!("file://{}/passwd", tmp.path().display()));
    let err = fetch(&[linked], &sandbox, &allowed).await.unwrap_err().to_string();
    assert!(err.contains("outside the directories"), "{err}");
    assert!(names(&sandbox).is_empty(), "nothing was copied");
    fetch(&[a, b], &sandbox, &allowed).await.unwrap();
    assert_eq!(fs::read(sandbox.join("tool")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(mode(&sandbox.join("tool")), 0o755);
    assert_eq!(mode(&sandbox.join("copy.txt")), 0o644);
    assert_eq!(names(&sandbox), ["copy.txt", "tool"]);

    let missing = artifact(&format!("file://{}/nope", tmp.path().display()));
    let err = fetch(&[missing], &sandbox, &allowed).await.unwrap_err();
    assert!(matches!(&err, Error::Artifact { uri, .. } if uri.ends_with("/nope")), "{err}");
}

#[tokio::test]
async fn http_downloads_are_checked_and_extracted() {
    let body = b"payload bytes".to_vec();
    let url = serve(vec![("bin/tool", body.clone()), ("pkg/app.tgz", tgz())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path();

    let mut tool = artifact(&format!("{url}/bin/tool?version=1"));
    tool.sha256 = Some(sha(&body));
    tool.executable = true;
    let mut pkg = artifact(&format!("{url}/pkg/app.tgz"));
    pkg.extract = true;
    fetch(&[tool, pkg], sandbox, &loopback()).await.unwrap();
    assert_eq!(fs::read(sandbox.join("tool")).unwrap(), body);
    assert_eq!(mode(&sandbox.join("tool")), 0o755);
    assert_eq!(fs::read(sandbox.join("app/run.sh")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(mode(&sandbox.join("app/run.sh")), 0o755);
    assert_eq!(fs::read_link(sandbox.join("app/link")).unwrap(), Path::new("run.sh"));
    assert_eq!(names(sandbox), ["app", "tool"], "the archive itself is not kept");

    let err = fetch(&[artifact(&format!("{url}/missing"))], sandbox, &loopback()).await.unwrap_err().to_string();
    assert!(err.contains("/missing") && err.contains("404"), "{err}");
}

#[tokio::test]
async fn a_checksum_mismatch_fails_and_leaves_nothing() {
    let url = serve(vec![("f", b"actual".to_vec())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut a = artifact(&format!("{url}/f"));
    a.sha256 = Some("00".repeat(32));
    let err = fetch(&[a], tmp.path(), &loopback()).await.unwrap_err();
    match &err {
        Error::Artifact { uri, reason } => {
            assert_eq!(uri, &format!("{url}/f"));
            assert!(reason.contains(&"00".repeat(32)) && reason.contains(&sha(b"actual")), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
}

#[tokio::test]
async fn unsafe_names_and_archives_are_refused() {
    let url = serve(vec![("f", b"x".to_vec()), ("evil.tar", evil_tar())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("a/b/sandbox");
    fs::create_dir_all(&sandbox).unwrap();
    for dest in ["../escape", "x/y", "..", "", "."] {
        let mut a = artifact(&format!("{url}/f"));
        a.dest = Some(dest.into());
        let err = fetch(&[a], &sandbox, &loopback()).await.unwrap_err();
        assert!(matches!(err, Error::Artifact { .. }), "{dest:?}: {err}");
    }
    let err = fetch(&[artifact(&format!("{url}/"))], &sandbox, &loopback()).await.unwrap_err();
    assert!(matches!(err, Error::Artifact { .. }), "{err}");
    assert!(fetch(&[artifact("ftp://host/file")], &sandbox, &loopback()).await.is_err());
    let mut not_archive = artifact(&format!("{url}/f"));
    not_archive.extract = true;
    assert!(fetch(&[not_archive], &sandbox, &loopback()).await.unwrap_err().to_string().contains(".tgz"));

    let mut evil = artifact(&format!("{url}/evil.tar"));
    evil.extract = true;
    let err = fetch(&[evil], &sandbox, &loopback()).await.unwrap_err().to_string();
    assert!(err.contains("../../escaped"), "{err}");
    assert!(!tmp.path().join("a/escaped").exists() && !tmp.path().join("escaped").exists());
    // What came before the bad entry stays (the task fails anyway); no temporary file does.
    assert_eq!(names(&sandbox), ["fine"]);
}

#[tokio::test]
async fn a_symlink_in_the_sandbox_is_replaced_not_followed() {
    let url = serve(vec![("f", b"new".to_vec())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"old").unwrap();
    let sandbox = tmp.path().join("sandbox");
    fs::create_dir(&sandbox).unwrap();
    std::os::unix::fs::symlink(&outside, sandbox.join("f")).unwrap();
    fetch(&[artifact(&format!("{url}/f"))], &sandbox, &loopback()).await.unwrap();
    assert_eq!(fs::read(&outside).unwrap(), b"old");
    assert!(fs::symlink_metadata(sandbox.join("f")).unwrap().is_file());
    assert_eq!(fs::read(sandbox.join("f")).unwrap(), b"new");
}

/// A tar whose second entry climbs out of the sandbox.
fn evil_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "fine", &b"ok"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    let name = b"../../escaped";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"no"[..]).unwrap();
    b.into_inner().unwrap()
}

/// Serves on `ip:0` one redirect: every path answers 302 to `to`.
async fn redirect_to(ip: &str, to: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move { (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, to)]) }
    });
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Finding 4: artifacts were fetched from wherever the agent could reach — its own
/// loopback services, a cloud's metadata address — directly, by name or through a
/// redirect. They are refused now unless the operator allows the range.
#[tokio::test]
async fn internal_addresses_are_refused_directly_by_name_and_through_redirects() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path();
    let url = serve(vec![("f", b"secret".to_vec())]).await;
    let closed = ArtifactPolicy::default();
    let port = url.rsplit(':').next().unwrap().to_string();
    for uri in [
        format!("{url}/f"),
        format!("http://localhost:{port}/f"),
        "http://169.254.169.254/latest/meta-data/iam".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/f"),
    ] {
        let err = fetch(&[artifact(&uri)], sandbox, &closed).await.unwrap_err().to_string();
        assert!(err.contains("private address"), "{uri}: {err}");
    }
    assert!(names(sandbox).is_empty(), "nothing fetched: {:?}", names(sandbox));
    // Allowed: 127.0.0.1 only. A redirect from there to 127.0.0.2 is refused.
    let only_one = ArtifactPolicy { allowed_nets: vec!["127.0.0.1/32".parse().unwrap()], ..Default::default() };
    let elsewhere = serve_on("127.0.0.2", vec![("g", b"other".to_vec())]).await;
    let hop = redirect_to("127.0.0.1", format!("{elsewhere}/g")).await;
    let err = fetch(&[artifact(&format!("{hop}/x"))], sandbox, &only_one).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.2") && err.contains("private address"), "{err}");
    // A redirect to an allowed place is followed, a loop is not followed for ever.
    let ok_hop = redirect_to("127.0.0.1", format!("{url}/f")).await;
    let mut a = artifact(&format!("{ok_hop}/x"));
    a.dest = Some("f".into());
    fetch(&[a], sandbox, &only_one).await.unwrap();
    assert_eq!(fs::read(sandbox.join("f")).unwrap(), b"secret");
    let looping = redirect_to("127.0.0.1", "/again".into()).await;
    let err = fetch(&[artifact(&format!("{looping}/again"))], sandbox, &only_one).await.unwrap_err().to_string();
    assert!(err.contains("redirect"), "{err}");
}

#[tokio::test]
async fn an_artifact_larger_than_the_limit_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let url = serve(vec![("big", vec![b'x'; 4096])]).await;
    let small = ArtifactPolicy { max_bytes: Some(1000), ..loopback() };
    let err = fetch(&[artifact(&format!("{url}/big"))], tmp.path(), &small).await.unwrap_err().to_string();
    assert!(err.contains("larger than the agent's limit of 1000 bytes"), "{err}");
    assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
}
