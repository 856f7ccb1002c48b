//! The cluster DNS flags of `corral server` (the same as `corral up`'s), through the
//! real binary and the real `dig`: `--dns-listen`, `--dns-upstream`, `--no-dns`.

mod dns_support;

use std::net::SocketAddr;

use dns_support::{Server, dig_short, dig_status};
use reqwest::Method;

/// A port free for UDP and TCP alike at this moment. Picked beforehand, as the test
/// is of an address given; should a parallel test's process take it first, the
/// server cannot bind it and exits, and [`Server::start`] fails saying so.
fn free_port() -> u16 {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_listen_serves_on_the_address_given_and_prints_it() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let s = Server::start(&["--dns-listen", &addr.to_string(), "--dns-upstream", "refuse"]);
    assert_eq!(s.dns, Some(addr), "the start line names the address:\n{}", s.log_text());
    assert_eq!(dig_short(addr, "leader.corral.", "A"), vec!["127.0.0.1"]);
    // Over TCP too.
    let tcp = dns_support::dig(addr, &["+tcp", "+short", "leader.corral.", "A"]);
    assert_eq!(tcp.trim(), "127.0.0.1");
    assert_eq!(dig_status(addr, "corral.", "SOA"), "NOERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_upstream_refuse_answers_names_outside_the_zone_refused() {
    let s = Server::start(&["--dns-listen", "127.0.0.1:0", "--dns-upstream", "refuse"]);
    let dns = s.dns.expect("dns");
    assert_eq!(dig_status(dns, "example.com.", "A"), "REFUSED");
    assert_eq!(dig_status(dns, "nothing.corral.", "A"), "NXDOMAIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_upstream_forwards_names_outside_the_zone_to_the_servers_given() {
    // The upstream: a second server, whose zone is `corral.` too, so a name it serves
    // can be told apart: the first refuses nothing, forwarding `example.com.` there,
    // which refuses it — REFUSED comes back through the forwarder.
    let upstream = Server::start(&["--dns-listen", "127.0.0.1:0", "--dns-upstream", "refuse"]);
    let up = upstream.dns.expect("dns");
    let s = Server::start(&["--dns-listen", "127.0.0.1:0", "--dns-upstream", &up.to_string()]);
    let dns = s.dns.expect("dns");
    assert_eq!(dig_status(dns, "example.com.", "A"), "REFUSED", "the upstream's answer");
    assert_eq!(dig_status(dns, "nothing.corral.", "A"), "NXDOMAIN", "the zone is answered, not forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dns_serves_no_dns_and_no_records_endpoint() {
    let s = Server::start(&["--no-dns"]);
    assert_eq!(s.dns, None);
    assert!(!s.log_text().contains("cluster DNS:"), "{}", s.log_text());
    let (code, _) = s.call(Method::GET, "/dns/records", None).await;
    assert_eq!(code, 404);
    let (code, _, err) = s.corral(&["dns", "records"]);
    assert_eq!(code, 1);
    assert!(err.contains("--no-dns"), "{err}");
}

#[test]
fn a_bad_upstream_is_refused_at_start_with_what_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--dns-upstream", "nonsense"])
        .env("CORRAL_CONFIG", dir.path().join("no-config"))
        .output()
        .expect("corral runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dns-upstream") && err.contains("IP:PORT"), "{err}");
}
