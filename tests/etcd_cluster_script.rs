//! `scripts/etcd-cluster.sh`: three etcd members on loopback that a store reaches
//! through any of them, stopped again by the script.

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// A base port `b` such that `b + d` is free just now for each TCP offset `d` (and,
/// for each UDP offset, free for UDP).
///
/// Below the kernel's ephemeral range (32768 and up): a port found free there may be
/// taken, before the script binds it, as the local port of any outgoing connection
/// (the members' own to each other, say). And the tests of this file, which run at
/// once, each take their own block: two that checked the same ports before either
/// bound them would collide.
fn free_base(tcp: &[u16], udp: &[u16]) -> u16 {
    const FIRST: u16 = 20_000;
    const BLOCK: u16 = 64;
    // The last block ends below 32,000.
    const BLOCKS: u32 = 187;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    for _ in 0..100 {
        // Another run of these tests may be going on: each process starts elsewhere.
        let block = (std::process::id() + TAKEN.fetch_add(1, Ordering::SeqCst)) % BLOCKS;
        let base = FIRST + block as u16 * BLOCK;
        let free_tcp = tcp.iter().all(|d| TcpListener::bind(("127.0.0.1", base + d)).is_ok());
        if free_tcp && udp.iter().all(|d| std::net::UdpSocket::bind(("127.0.0.1", base + d)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports at offsets {tcp:?} (TCP) and {udp:?} (UDP) below the ephemeral range");
}

/// The ports of an etcd cluster the script starts: clients and peers.
const ETCD_PORTS: [u16; 6] = [0, 1, 2, 10, 11, 12];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_starts_three_members_a_store_uses_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = free_base(&ETCD_PORTS, &[]).to_string();
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

fn ha_script(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha-cluster.sh"))
        .args(args)
        .env("CORRAL", env!("CARGO_BIN_EXE_corral"))
        .output()
        .expect("run scripts/ha-cluster.sh")
}

/// `scripts/ha-cluster.sh`: three etcd members and two API servers; the configuration
/// it writes names both servers, so the real CLI goes on through the second when the
/// first is gone; stop stops everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_script_starts_two_servers_on_three_members_and_the_cli_uses_either() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = free_base(&[&ETCD_PORTS[..], &[20, 21, 30, 31]].concat(), &[30, 31]);
    let out = ha_script(&["start", d, &base.to_string()]);
    struct Stop<'a>(&'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = ha_script(&["stop", self.0]);
        }
    }
    let stop = Stop(d);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (format!("http://127.0.0.1:{}", base + 20), format!("http://127.0.0.1:{}", base + 21));
    assert!(printed.contains(&format!("servers: {a},{b}")), "{printed}");
    let config = dir.path().join("admin.conf");
    let corral = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("CORRAL_CONFIG", &config)
            .output()
            .expect("run corral")
    };
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: ha\nspec:\n  data:\n    k: v\n",
    )
    .unwrap();
    let applied = corral(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    // The first server goes; the CLI, with the same configuration, reaches the second.
    let pid = std::fs::read_to_string(dir.path().join("api0.pid")).unwrap();
    let killed = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
    assert!(killed.success());
    let got = corral(&["get", "configmap", "ha", "-o", "name"]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "configmap/ha");
    drop(stop);
    assert!(!dir.path().join("api1.pid").exists(), "stop removes what it stopped");
    assert!(reqwest::get(format!("{b}/healthz")).await.is_err(), "the second server is stopped");
}
