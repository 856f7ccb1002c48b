//! `scripts/etcd-cluster.sh`: three etcd members on loopback that a store reaches
//! through any of them, stopped again by the script.

use std::net::TcpListener;
use std::process::Command;

use corral_api::Selector;
use corral_store::{Key, Storage};
use corral_store_etcd::{EtcdStore, Options};
use serde_json::json;

fn script(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/etcd-cluster.sh"))
        .args(args)
        .output()
        .expect("run scripts/etcd-cluster.sh")
}

/// A base port whose six ports (clients and peers) are free just now.
fn free_base() -> u16 {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if base > 65000 {
            continue;
        }
        if [0, 1, 2, 10, 11, 12].iter().all(|d| TcpListener::bind(("127.0.0.1", base + d)).is_ok()) {
            return base;
        }
    }
    panic!("no six free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_starts_three_members_a_store_uses_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = free_base().to_string();
    let out = script(&["start", d, &base]);
    // Stopped whatever happens below.
    struct Stop<'a>(&'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = script(&["stop", self.0]);
        }
    }
    let stop = Stop(d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let endpoints = corral_store_etcd::parse_store_url(&spec).unwrap();
    assert_eq!(endpoints.len(), 3, "{spec}");
    let store = EtcdStore::connect(&endpoints, Options::default()).await.unwrap();
    let key = Key::namespaced("corral.dev/configmaps", "default", "a");
    let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "spec": {}});
    store.create(key.clone(), body).await.unwrap();
    // Each member has it: one store per endpoint.
    for e in &endpoints {
        let one = EtcdStore::connect(std::slice::from_ref(e), Options::default()).await.unwrap();
        assert_eq!(one.list("corral.dev/configmaps", None, &Selector::everything()).await.unwrap().items.len(), 1);
    }
    drop(stop);
    let pids: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .collect();
    assert!(pids.is_empty(), "stop removes what it stopped");
    assert!(EtcdStore::connect(&endpoints, Options::default()).await.is_err(), "no member answers after stop");
}
