//! The registry over HTTPS (`corral server --tls-auto`): the real skopeo pushes with
//! the server's own authority trusted, `corral image push` and `ls` work with the
//! kubeconfig the server writes.

mod tls_support;

use std::process::Command;

use tls_support::{corral, tls_server};

#[test]
fn skopeo_and_corral_image_push_work_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, listen, data) = tls_server(dir.path());
    let admin = data.join("admin.conf");
    let config = corral_client::Config::from_kubeconfig(&admin).expect("tls_server waits for it");
    let token = config.token.clone().expect("an admin token");
    // skopeo trusts the `*.crt` files of --dest-cert-dir as authorities.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(data.join("tls/ca.crt"), certs.join("ca.crt")).unwrap();
    let archive = dir.path().join("busybox.tar");
    corral_testkit::busybox::busybox_docker_archive(&archive, "busybox:1").unwrap();

    let out = corral_testkit::eventually_blocking("skopeo pushes over HTTPS", || {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{listen}/over/https:1"))
            .arg("--dest-cert-dir")
            .arg(&certs)
            .arg("--dest-creds")
            .arg(format!("corral:{token}"))
            .output()
            .unwrap();
        out.status.success().then_some(out)
    });
    assert!(out.status.success());

    let push = corral()
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["image", "push", archive.to_str().unwrap(), "over/https:2"])
        .output()
        .unwrap();
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    // skopeo compressed the layers it pushed, so only the config (the image's id)
    // is the same blob: that one is skipped.
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert_eq!(stderr.matches("already in the registry").count(), 1, "{stderr}");
    assert!(stderr.contains("config sha256:") && stderr.contains("layer 2/2"), "{stderr}");

    let ls = corral().arg("--kubeconfig").arg(&admin).args(["image", "ls"]).output().unwrap();
    let table = String::from_utf8_lossy(&ls.stdout);
    let tags: Vec<&str> = table.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(tags, ["1", "2"], "{table}");
}
