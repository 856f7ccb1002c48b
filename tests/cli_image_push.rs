//! `corral image push` and `corral image ls` with the real binary against a real
//! server: archives of both formats go to the cluster's registry (layers it already
//! holds are skipped), `ls` lists the cluster's images, `ls --work-dir` a node's
//! own store; a push without a valid credential fails and says why.

mod cli_support;

use cli_support::Env;
use corral_testkit::busybox;
use sha2::{Digest, Sha256};

/// The rows of a table, split on runs of spaces, header first.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split("   ").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()).collect()
}

#[test]
fn push_then_ls_shows_the_image_and_the_registry_serves_it() {
    let env = Env::start();
    let tmp = tempfile::tempdir().unwrap();
    let docker = tmp.path().join("busybox-docker.tar");
    let oci = tmp.path().join("busybox-oci.tar");
    busybox::busybox_docker_archive(&docker, "busybox:docker").unwrap();
    busybox::busybox_oci_archive(&oci, "busybox:oci").unwrap();

    let empty = env.ok(&["image", "ls"]);
    assert_eq!(rows(&empty), [["REPOSITORY", "TAG", "DIGEST", "SIZE"]]);

    let r = env.run(&["image", "push", docker.to_str().unwrap(), "tools/busybox:1"]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().contains("layer 1/2") && r.stderr().contains("layer 2/2"), "progress per layer:\n{r}");
    assert!(r.stderr().contains("pushed tools/busybox:1"), "{r}");
    let (name, digest) = r.stdout().trim().split_once('@').map(|(n, d)| (n.to_string(), d.to_string())).unwrap();
    assert_eq!(name, "tools/busybox:1");

    // The same layers again, under another tag: nothing is sent twice.
    let again = env.run(&["image", "push", docker.to_str().unwrap(), "tools/busybox:2"]);
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(again.stderr().matches("already in the registry, skipped").count(), 3, "{again}");

    // An OCI archive keeps its own manifest, under the name it records.
    let r = env.run(&["image", "push", oci.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stdout().starts_with("busybox:oci@sha256:"), "{r}");

    let listed = rows(&env.ok(&["image", "ls"]));
    let tags: Vec<(&str, &str)> = listed[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(tags, [("busybox", "oci"), ("tools/busybox", "1"), ("tools/busybox", "2")], "{listed:?}");
    let row = &listed[2];
    assert_eq!(row[2], digest, "ls shows the digest push printed");
    assert!(row[3].ends_with("MiB") || row[3].ends_with("KiB"), "{row:?}");

    // The registry serves that digest's manifest, and the blobs it names.
    let http = corral_testkit::authorized_http(&env.token);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = http.get(format!("{}/v2/tools/busybox/manifests/{digest}", env.url)).send().await.unwrap();
        assert_eq!(m.status(), 200);
        let body = m.bytes().await.unwrap();
        let hex: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("sha256:{hex}"), digest);
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // A docker archive's image keeps its id: the config is the archive's own.
        let config = manifest["config"]["digest"].as_str().unwrap();
        let blob = http.get(format!("{}/v2/tools/busybox/blobs/{config}", env.url)).send().await.unwrap();
        let bytes = blob.bytes().await.unwrap();
        let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("sha256:{hex}"), config);
    });

    // A node's local store is still listed with --work-dir (here: empty).
    let local = env.ok(&["image", "ls", "--work-dir", tmp.path().join("agent").to_str().unwrap()]);
    assert_eq!(rows(&local), [["NAME", "ID", "SIZE", "LAYERS", "CREATED"]]);
}

#[test]
fn a_push_without_a_valid_credential_fails_and_says_why() {
    let env = Env::start();
    let tmp = tempfile::tempdir().unwrap();
    let docker = tmp.path().join("busybox.tar");
    busybox::busybox_docker_archive(&docker, "busybox:1").unwrap();
    let r = env
        .command(&["--token", "nope.nope", "image", "push", docker.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let r = cli_support::Run(r);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("401") && r.stderr().contains("UNAUTHORIZED"), "{r}");
    let listed = env.ok(&["image", "ls"]);
    assert_eq!(rows(&listed).len(), 1, "nothing was stored:\n{listed}");

    // A missing archive names itself.
    let r = env.run(&["image", "push", "no-such.tar", "x:1"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("no-such.tar"), "{r}");
}

#[test]
fn an_import_into_a_directory_no_agent_uses_warns_and_points_to_push() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("busybox.tar");
    busybox::busybox_docker_archive(&archive, "busybox:1").unwrap();
    let import = |work: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["image", "import", archive.to_str().unwrap(), "--work-dir", work.to_str().unwrap()])
            .env_remove("CORRAL_AGENT_DIR")
            .output()
            .unwrap();
        cli_support::Run(out)
    };
    let r = import(&tmp.path().join("typo"));
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().contains("warning: no agent has run in") && r.stderr().contains("corral image push"), "{r}");
    // A work dir an agent has used: no warning.
    let used = tmp.path().join("agent");
    std::fs::create_dir_all(used.join("tasks")).unwrap();
    let r = import(&used);
    assert_eq!(r.code(), 0, "{r}");
    assert!(!r.stderr().contains("warning"), "{r}");
}
