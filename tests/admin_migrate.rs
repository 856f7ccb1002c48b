//! `corral admin migrate`: a sled store copied into an empty etcd, offline, with the
//! real binary and a real etcd; the objects are as they were, revisions apart.

use std::process::Command;

use corral_api::Selector;
use corral_store::{Key, SledStore, Storage};
use corral_store_etcd::{EtcdStore, Options};
use serde_json::json;

const RES: &str = "corral.dev/configmaps";

fn migrate(data_dir: &std::path::Path, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["admin", "migrate", "--to", to, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run corral admin migrate")
}

/// The form the issue names: `--from sled:DIR`.
fn migrate_from(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["admin", "migrate", "--from", from, "--to", to])
        .output()
        .expect("run corral admin migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_store_moves_to_an_empty_etcd_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path(), Default::default()).unwrap();
    // More than one page and one transaction's worth, of two kinds.
    for i in 0..620 {
        let name = format!("cm{i:04}");
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"i": i.to_string()}},
            "spec": {"data": {"v": "1"}}});
        sled.create(Key::namespaced(RES, "default", &name), body).await.unwrap();
    }
    let mut held = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace",
        "metadata": {"name": "leaving", "finalizers": ["corral.dev/test"]}, "spec": {}});
    held["status"] = json!({"phase": "Active"});
    let ns = Key::cluster("corral.dev/namespaces", "leaving");
    sled.create(ns.clone(), held).await.unwrap();
    sled.delete(ns.clone(), None).await.unwrap();
    let before = sled.list("", None, &Selector::everything()).await.unwrap().items;
    sled.shutdown().await;

    let etcd_dir = tempfile::tempdir().unwrap();
    let (etcd, _version) = corral_bench::procs::start_etcd(etcd_dir.path()).await.expect("etcd");
    let to = format!("etcd://{}", etcd.addr);
    // Only a sled store is a source; refused before anything is written.
    let out = migrate_from(&to, &to);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from sled:DIR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migrate_from(&format!("sled:{}", dir.path().display()), &to);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("copied {} objects", before.len())));

    let store = EtcdStore::connect(&[format!("http://{}", etcd.addr)], Options::default()).await.unwrap();
    let after = store.list("", None, &Selector::everything()).await.unwrap().items;
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.key, b.key);
        let (mut bv, mut av) = (b.value().unwrap(), a.value().unwrap());
        bv["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        av["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert_eq!(av, bv, "{} changed on the way", a.key);
    }
    assert!(store.head(&ns).await.unwrap().expect("still there").deleting, "its deletion is still pending");

    // Into an etcd that holds objects: refused, nothing written.
    let out = migrate(dir.path(), &to);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds objects"));
    // From a directory without a store: refused, none created.
    let empty = tempfile::tempdir().unwrap();
    let out = migrate(empty.path(), &to);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no store"));
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
    drop(etcd);
}
