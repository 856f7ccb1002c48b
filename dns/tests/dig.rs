//! The server driven by the real `dig` (Debian's dnsutils), on 127.0.0.1 with an
//! ephemeral port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use corral_dns::{Change, DnsConfig, Record, RecordData, RunningDns, Source, Upstream, Zone, start};

/// What dig printed, read.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    /// Records as `name TYPE data` (TTL and class left out).
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    raw: String,
}

async fn dig(server: SocketAddr, args: &[&str]) -> Dig {
    let mut command = std::process::Command::new("dig");
    command.args([format!("@{}", server.ip()), "-p".into(), server.port().to_string()]);
    command.args(["+tries=1", "+time=5"]);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("dig runs (apt-get install dnsutils)");
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    parse(raw)
}

fn parse(raw: String) -> Dig {
    let mut d = Dig {
        status: String::new(),
        flags: vec![],
        answer: vec![],
        authority: vec![],
        additional: vec![],
        raw: String::new(),
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest.split(';').next().unwrap_or("").split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
        } else if line.trim().is_empty() || line.starts_with(';') {
            section = "";
        } else {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 4 {
                continue;
            }
            let rr = format!("{} {} {}", words[0], words[3], words[4..].join(" "));
            match section {
                "answer" => d.answer.push(rr),
                "authority" => d.authority.push(rr),
                "additional" => d.additional.push(rr),
                _ => {}
            }
        }
    }
    d.raw = raw;
    d
}

fn rec(name: &str, data: RecordData) -> Record {
    Record { name: name.into(), ttl: 5, data }
}

fn a(name: &str, ip: [u8; 4]) -> Record {
    rec(name, RecordData::A(ip.into()))
}

/// A zone like the cluster's: a service with two tasks, its SRV, a node, an alias, a
/// TXT, an IPv6 address.
fn cluster_zone() -> Arc<Zone> {
    let zone = Zone::new("corral.").unwrap();
    zone.apply([
        Change::Set(
            Source::new("Service", "default", "web"),
            vec![
                a("web.default.svc.corral.", [10, 0, 0, 1]),
                a("web.default.svc.corral.", [10, 0, 0, 2]),
                rec(
                    "_http._tcp.web.default.svc.corral.",
                    RecordData::Srv { priority: 0, weight: 1, port: 8080, target: "web-1.default.task.corral.".into() },
                ),
            ],
        ),
        Change::Set(Source::new("Task", "default", "web-1"), vec![a("web-1.default.task.corral.", [10, 0, 0, 1])]),
        Change::Set(
            Source::new("Node", "", "n1"),
            vec![
                a("n1.node.corral.", [192, 168, 1, 10]),
                rec("n1.node.corral.", RecordData::Aaaa("fd00::10".parse().unwrap())),
            ],
        ),
        Change::Set(
            Source::new("DnsRecord", "default", "alias"),
            vec![
                rec("www.default.corral.", RecordData::Cname("web.default.svc.corral.".into())),
                rec("info.default.corral.", RecordData::Txt(vec!["hello world".into(), "v=1".into()])),
            ],
        ),
    ]);
    Arc::new(zone)
}

async fn serve(zone: Arc<Zone>, upstream: Upstream) -> RunningDns {
    start(DnsConfig { upstream, ..DnsConfig::default() }, zone).await.unwrap()
}

#[tokio::test]
async fn a_records_are_answered_authoritatively_over_udp() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["web.default.svc.corral.", "A"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.flags.contains(&"aa".to_string()), "{}", d.raw);
    let mut answer = d.answer.clone();
    answer.sort();
    assert_eq!(answer, ["web.default.svc.corral. A 10.0.0.1", "web.default.svc.corral. A 10.0.0.2"]);
    // Letter case of the question is kept in the answer.
    let d = dig(dns.local_addr(), &["WEB.Default.svc.corral.", "A"]).await;
    assert_eq!(d.answer.len(), 2, "{}", d.raw);
    assert!(d.answer[0].starts_with("WEB.Default.svc.corral."), "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn srv_answers_carry_the_targets_addresses() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["_http._tcp.web.default.svc.corral.", "SRV"]).await;
    assert_eq!(d.answer, ["_http._tcp.web.default.svc.corral. SRV 0 1 8080 web-1.default.task.corral."], "{}", d.raw);
    assert_eq!(d.additional, ["web-1.default.task.corral. A 10.0.0.1"], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn aaaa_cname_and_txt_are_answered() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let addr = dns.local_addr();
    let d = dig(addr, &["n1.node.corral.", "AAAA"]).await;
    assert_eq!(d.answer, ["n1.node.corral. AAAA fd00::10"], "{}", d.raw);

    // The alias is followed inside the zone.
    let d = dig(addr, &["www.default.corral.", "A"]).await;
    assert_eq!(d.status, "NOERROR");
    assert_eq!(d.answer[0], "www.default.corral. CNAME web.default.svc.corral.", "{}", d.raw);
    assert_eq!(d.answer.len(), 3, "{}", d.raw);
    let d = dig(addr, &["www.default.corral.", "CNAME"]).await;
    assert_eq!(d.answer, ["www.default.corral. CNAME web.default.svc.corral."], "{}", d.raw);

    let d = dig(addr, &["info.default.corral.", "TXT"]).await;
    assert_eq!(d.answer, ["info.default.corral. TXT \"hello world\" \"v=1\""], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn soa_and_ns_are_answered_at_the_apex() {
    let zone = cluster_zone();
    let dns = serve(zone.clone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["corral.", "SOA"]).await;
    assert_eq!(
        d.answer,
        [format!("corral. SOA ns.corral. hostmaster.corral. {} 60 10 3600 5", zone.serial())],
        "{}",
        d.raw
    );
    let d = dig(dns.local_addr(), &["corral.", "NS"]).await;
    assert_eq!(d.answer, ["corral. NS ns.corral."], "{}", d.raw);
    assert_eq!(d.additional, ["ns.corral. A 127.0.0.1"], "{}", d.raw);
    let d = dig(dns.local_addr(), &["ns.corral.", "A"]).await;
    assert_eq!(d.answer, ["ns.corral. A 127.0.0.1"], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa_in_authority() {
    let zone = cluster_zone();
    let dns = serve(zone.clone(), Upstream::Refuse).await;
    let soa = format!("corral. SOA ns.corral. hostmaster.corral. {} 60 10 3600 5", zone.serial());

    let d = dig(dns.local_addr(), &["nope.default.svc.corral.", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    assert!(d.flags.contains(&"aa".to_string()));
    assert!(d.answer.is_empty());
    assert_eq!(d.authority, std::slice::from_ref(&soa), "{}", d.raw);

    // The name exists, not with that type.
    let d = dig(dns.local_addr(), &["web-1.default.task.corral.", "AAAA"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.answer.is_empty(), "{}", d.raw);
    assert_eq!(d.authority, std::slice::from_ref(&soa), "{}", d.raw);

    // A type the zone never holds.
    let d = dig(dns.local_addr(), &["web-1.default.task.corral.", "MX"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.authority, [soa], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn empty_non_terminals_answer_nodata_not_nxdomain() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    for name in ["default.task.corral.", "task.corral.", "svc.corral.", "_tcp.web.default.svc.corral."] {
        let d = dig(dns.local_addr(), &[name, "A"]).await;
        assert_eq!(d.status, "NOERROR", "{name}: {}", d.raw);
        assert!(d.answer.is_empty(), "{name}: {}", d.raw);
        assert_eq!(d.authority.len(), 1, "{name}: {}", d.raw);
    }
    let d = dig(dns.local_addr(), &["other.task.corral.", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn queries_over_tcp_are_answered() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["+tcp", "+keepopen", "n1.node.corral.", "A", "n1.node.corral.", "AAAA"]).await;
    assert!(d.raw.contains("(TCP)"), "{}", d.raw);
    assert_eq!(d.answer, ["n1.node.corral. A 192.168.1.10", "n1.node.corral. AAAA fd00::10"], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_retried_over_tcp() {
    let zone = Zone::new("corral.").unwrap();
    let many: Vec<Record> = (0..60u8).map(|i| a("big.default.svc.corral.", [10, 1, 0, i])).collect();
    zone.apply([Change::Set(Source::new("Service", "default", "big"), many)]);
    let dns = serve(Arc::new(zone), Upstream::Refuse).await;

    let d = dig(dns.local_addr(), &["+noedns", "+ignore", "big.default.svc.corral.", "A"]).await;
    assert!(d.flags.contains(&"tc".to_string()), "{}", d.raw);
    assert!(d.answer.is_empty(), "{}", d.raw);

    // 60 × 16 bytes fit in the 1232 bytes EDNS allows…
    let d = dig(dns.local_addr(), &["+ignore", "big.default.svc.corral.", "A"]).await;
    assert!(!d.flags.contains(&"tc".to_string()), "{}", d.raw);
    assert_eq!(d.answer.len(), 60);

    // …not in 512: dig retries over TCP and gets them all.
    let d = dig(dns.local_addr(), &["+noedns", "big.default.svc.corral.", "A"]).await;
    assert!(d.raw.contains("Truncated, retrying in TCP mode"), "{}", d.raw);
    assert_eq!(d.answer.len(), 60, "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn a_change_applied_is_in_the_next_answer() {
    let zone = cluster_zone();
    let dns = serve(zone.clone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["web-1.default.task.corral.", "A"]).await;
    assert_eq!(d.answer, ["web-1.default.task.corral. A 10.0.0.1"]);
    let serial = zone.serial();

    zone.apply([Change::Set(
        Source::new("Task", "default", "web-1"),
        vec![a("web-1.default.task.corral.", [10, 0, 0, 9])],
    )]);
    let d = dig(dns.local_addr(), &["web-1.default.task.corral.", "A"]).await;
    assert_eq!(d.answer, ["web-1.default.task.corral. A 10.0.0.9"], "{}", d.raw);
    let d = dig(dns.local_addr(), &["corral.", "SOA"]).await;
    assert!(d.answer[0].contains(&format!(" {} ", serial + 1)), "{}", d.raw);

    zone.apply([Change::Remove(Source::new("Task", "default", "web-1"))]);
    let d = dig(dns.local_addr(), &["web-1.default.task.corral.", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn names_outside_the_zone_are_refused_without_an_upstream() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["www.example.com.", "A"]).await;
    assert_eq!(d.status, "REFUSED", "{}", d.raw);
    assert!(!d.flags.contains(&"aa".to_string()));
    assert!(!d.flags.contains(&"ra".to_string()));
    dns.shutdown().await;
}

#[tokio::test]
async fn names_outside_the_zone_are_forwarded_to_the_upstream() {
    // The upstream: a second server of ours, authoritative for `example.`.
    let other = Zone::new("example.").unwrap();
    other.apply([Change::Set(Source::new("DnsRecord", "", "www"), vec![a("www.example.", [192, 0, 2, 1])])]);
    let upstream = serve(Arc::new(other), Upstream::Refuse).await;
    let dns = serve(cluster_zone(), Upstream::Forward(vec![upstream.local_addr()])).await;

    let d = dig(dns.local_addr(), &["www.example.", "A"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.flags.contains(&"ra".to_string()), "{}", d.raw);
    assert_eq!(d.answer, ["www.example. A 192.0.2.1"], "{}", d.raw);
    let d = dig(dns.local_addr(), &["+tcp", "nope.example.", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    // Our own names are still ours.
    let d = dig(dns.local_addr(), &["n1.node.corral.", "A"]).await;
    assert_eq!(d.answer, ["n1.node.corral. A 192.168.1.10"], "{}", d.raw);
    assert!(dns.metrics().forwarded() >= 2);
    dns.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_truncated_upstream_answer_is_fetched_again_over_tcp() {
    let other = Zone::new("example.").unwrap();
    let many: Vec<Record> = (0..60u8).map(|i| a("big.example.", [192, 0, 2, i])).collect();
    other.apply([Change::Set(Source::new("DnsRecord", "", "big"), many)]);
    let upstream = serve(Arc::new(other), Upstream::Refuse).await;
    let dns = serve(cluster_zone(), Upstream::Forward(vec![upstream.local_addr()])).await;

    // Over UDP the client gets the upstream's truncated answer, retries over TCP, and
    // over TCP the server asks the upstream over TCP.
    let d = dig(dns.local_addr(), &["+noedns", "big.example.", "A"]).await;
    assert!(d.raw.contains("Truncated, retrying in TCP mode"), "{}", d.raw);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer.len(), 60, "{}", d.raw);
    dns.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_gives_servfail() {
    // A port nobody listens on any more.
    let dead = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    let dns = serve(cluster_zone(), Upstream::Forward(vec![dead])).await;
    let d = dig(dns.local_addr(), &["www.example.com.", "A"]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    let d = dig(dns.local_addr(), &["+tcp", "www.example.com.", "A"]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    assert!(dns.metrics().forward_failures() >= 2);
    dns.shutdown().await;
}

#[tokio::test]
async fn garbage_gets_formerr_or_nothing_and_the_server_keeps_answering() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    sock.connect(dns.local_addr()).await.unwrap();

    // A header claiming two questions, followed by junk: FORMERR with our ID.
    let bad = [0xAB, 0xCD, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE, 0x01];
    sock.send(&bad).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await.unwrap().unwrap();
    assert!(n >= 12);
    assert_eq!(&buf[..2], &[0xAB, 0xCD]);
    assert_eq!(buf[2] & 0x80, 0x80, "a response");
    assert_eq!(buf[3] & 0x0F, 1, "FORMERR");

    // A name whose label runs past the end, a pointer loop, random bytes, a tiny
    // datagram: none kills the server.
    let junk: Vec<Vec<u8>> = vec![
        vec![1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'],
        vec![1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0xC0, 0x11, 0, 41],
        (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
        vec![0],
    ];
    for j in &junk {
        sock.send(j).await.unwrap();
    }
    let d = dig(dns.local_addr(), &["n1.node.corral.", "A"]).await;
    assert_eq!(d.answer, ["n1.node.corral. A 192.168.1.10"], "{}", d.raw);
    assert!(dns.metrics().queries_of(0, 1) >= 1, "FORMERR counted");
    dns.shutdown().await;
}

#[tokio::test]
async fn any_is_answered_with_every_record_at_the_name() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    let d = dig(dns.local_addr(), &["n1.node.corral.", "ANY"]).await;
    assert_eq!(d.answer, ["n1.node.corral. A 192.168.1.10", "n1.node.corral. AAAA fd00::10"], "{}", d.raw);
    dns.shutdown().await;
}

#[tokio::test]
async fn metrics_count_queries_by_type_and_rcode() {
    let dns = serve(cluster_zone(), Upstream::Refuse).await;
    dig(dns.local_addr(), &["n1.node.corral.", "A"]).await;
    dig(dns.local_addr(), &["n1.node.corral.", "A"]).await;
    dig(dns.local_addr(), &["nope.corral.", "A"]).await;
    let m = dns.metrics();
    assert_eq!(m.queries_of(1, 0), 2);
    assert_eq!(m.queries_of(1, 3), 1);
    let mut registry = prometheus_client::registry::Registry::default();
    dns.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("corral_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 2"), "{text}");
    assert!(text.contains("corral_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"} 1"), "{text}");
    dns.shutdown().await;
}
