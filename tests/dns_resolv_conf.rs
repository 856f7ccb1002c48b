//! Container tasks resolve through the cluster DNS: a real `corral agent` given
//! `--cluster-dns` writes each container task a resolv.conf naming it, with the
//! task's namespace's search domains; real runc, a busybox container reading its own
//! /etc/resolv.conf.

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

async fn resolv_conf_of_a_container(c: &Cluster, name: &str) -> String {
    c.create_task(name, json!({"image": "busybox", "command": ["cat", "/etc/resolv.conf"]})).await;
    let done = c.wait_phase(name, "FINISHED").await;
    let uid = done.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("stdout log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_task_gets_the_cluster_dns_and_its_namespace_search_domains() {
    let c = Cluster::start_with("dnsres", Duration::from_secs(60), &["--cluster-dns", "127.0.0.153"]).await;
    let text = resolv_conf_of_a_container(&c, "reader").await;
    assert!(text.lines().any(|l| l == "nameserver 127.0.0.153"), "{text}");
    assert!(text.lines().any(|l| l == "search default.corral. default.task.corral. corral."), "{text}");
    assert!(text.lines().any(|l| l == "options ndots:3"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("nameserver")).count(), 1, "{text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_dns_off_port_53_leaves_the_host_resolv_conf_and_says_why() {
    let c = Cluster::start_with("dnsport", Duration::from_secs(60), &["--cluster-dns", "127.0.0.1:5353"]).await;
    let text = resolv_conf_of_a_container(&c, "reader").await;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(text, host, "the host's resolv.conf");
    assert!(c.agent_log().contains("cannot name a port"), "{}", c.agent_log());
    c.stop().await;
}
