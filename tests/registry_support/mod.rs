//! Shared by the `registry_*` tests: the real `skopeo`, run off the runtime's
//! workers, and a push of the test kit's busybox image with it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Runs skopeo with `args` on the blocking pool.
pub async fn skopeo(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            // The host's trust policy is not what is tested.
            .arg("--insecure-policy")
            .args(&args)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .expect("skopeo runs (scripts/setup.sh installs it)")
    })
    .await
    .expect("skopeo's thread")
}

/// Status and output of a process, for failure messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pushes the busybox `docker save` archive as `repo:tag` to the server at `base`
/// (`http://127.0.0.1:PORT`) with skopeo, authenticating with `token`.
pub async fn push_busybox(base: &str, token: &str, dir: &Path, repo: &str, tag: &str) {
    let archive = dir.join("busybox-docker.tar");
    corral_testkit::busybox::busybox_docker_archive(&archive, "busybox:1").expect("archive");
    let host = base.trim_start_matches("http://").to_string();
    let out = skopeo(vec![
        "copy".into(),
        format!("docker-archive:{}", archive.display()),
        format!("docker://{host}/{repo}:{tag}"),
        "--dest-tls-verify=false".into(),
        "--dest-creds".into(),
        format!("corral:{token}"),
    ])
    .await;
    assert!(out.status.success(), "skopeo copy failed:\n{}", show(&out));
}
