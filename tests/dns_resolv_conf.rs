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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_resolves_names_of_the_zone_through_the_cluster_dns() {
    // A cluster DNS on port 53 of a loopback address of this test's own (tasks share
    // the host's network), serving one record.
    let zone = corral_dns::Zone::new("corral.").expect("zone");
    zone.apply([corral_dns::Change::Set(
        corral_dns::Source::new("DnsRecord", "default", "hello"),
        vec![corral_dns::Record {
            name: "hello.default.corral.".into(),
            ttl: 5,
            data: corral_dns::RecordData::A([192, 0, 2, 44].into()),
        }],
    )]);
    let mut server = None;
    for i in 0..32u8 {
        let ip = std::net::Ipv4Addr::new(127, 53, std::process::id() as u8, 10 + i);
        let config = corral_dns::DnsConfig { listen: (ip, 53).into(), ..Default::default() };
        if let Ok(s) = corral_dns::start(config, std::sync::Arc::new(zone.clone())).await {
            server = Some(s);
            break;
        }
    }
    let server = server.expect("a loopback address with port 53 free");
    let dns = server.local_addr().ip().to_string();
    let c = Cluster::start_with("dnsask", Duration::from_secs(60), &["--cluster-dns", &dns]).await;
    // busybox's nslookup asks the resolv.conf's nameserver (it applies no search
    // domains itself: their line is checked above).
    let ask = ["/bin/busybox", "nslookup", "hello.default.corral."];
    c.create_task("asker", json!({"image": "busybox", "command": ask})).await;
    let done = c.wait_phase("asker", "FINISHED").await;
    let uid = done.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("stdout");
    assert!(out.contains("192.0.2.44"), "{out}");
    c.stop().await;
    server.shutdown().await;
}
