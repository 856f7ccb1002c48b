//! `corral-bench dns`: Corral's authoritative DNS server side by side with Knot DNS
//! (`knotd`), both serving the same zone of N records (like a cluster's: tasks' A,
//! services' A and SRV, nodes' A), loaded by `dnsperf` in alternating rounds over
//! the same query file (names that exist, and some that do not). Prints queries/s per
//! round, the medians and their ratio, the CPU each server spent per query, and the
//! memory the zone takes in Corral.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_dns::{Change, DnsConfig, Record, RecordData, Source, Upstream, Zone};

use crate::procs::{cpu_time_of, free_port, median, own_cpu_time, rss_of};

/// Options of the DNS benchmark.
#[derive(Clone, Debug)]
pub struct DnsBenchOptions {
    /// Records in the zone.
    pub records: usize,
    /// Rounds; each runs dnsperf once against each server.
    pub rounds: usize,
    /// Seconds of each dnsperf run.
    pub seconds: u64,
    /// dnsperf clients (`-c`).
    pub clients: u32,
    /// dnsperf queries outstanding (`-q`).
    pub outstanding: u32,
    /// Lines of the query file.
    pub queries: usize,
    /// Query every task's name, not two per service: about as many names as records
    /// (about 51,000 distinct queries with the missing names, against 24,000), a
    /// larger working set for Corral's answer cache.
    pub all_names: bool,
}

impl Default for DnsBenchOptions {
    fn default() -> Self {
        DnsBenchOptions {
            records: 100_000,
            rounds: 3,
            seconds: 10,
            clients: 4,
            outstanding: 200,
            queries: 100_000,
            all_names: false,
        }
    }
}

/// Instances of each service: per service, that many task A, service A and SRV records.
const INSTANCES: usize = 10;
const NAMESPACES: usize = 10;

/// How many nodes and services make about `records` records: one A per node; per
/// service, [`INSTANCES`] tasks' A, as many service A and SRV records.
fn shape(records: usize) -> (usize, usize) {
    let nodes = (records / 100).max(1);
    (nodes, records.saturating_sub(nodes) / (3 * INSTANCES))
}

/// The zone's content, one change per object.
fn objects(records: usize) -> Vec<Change> {
    let (nodes, services) = shape(records);
    let a = |name: String, ip: u32| Record { name, ttl: 5, data: RecordData::A(Ipv4Addr::from(ip)) };
    let mut out = Vec::with_capacity(nodes + services * (INSTANCES + 1));
    for n in 0..nodes {
        out.push(Change::Set(
            Source::new("Node", "", &format!("node-{n}")),
            vec![a(format!("node-{n}.node.corral."), 0xC0A8_0000 + n as u32)],
        ));
    }
    let mut ip = 0x0A00_0000u32;
    for s in 0..services {
        let (ns, svc) = (format!("ns{}", s % NAMESPACES), format!("svc-{s}"));
        let svc_name = format!("{svc}.{ns}.svc.corral.");
        let srv_name = format!("_http._tcp.{svc_name}");
        let mut svc_records = Vec::with_capacity(2 * INSTANCES);
        for i in 0..INSTANCES {
            ip += 1;
            let task = format!("{svc}-{i}");
            let task_name = format!("{task}.{ns}.task.corral.");
            svc_records.push(a(svc_name.clone(), ip));
            svc_records.push(Record {
                name: srv_name.clone(),
                ttl: 5,
                data: RecordData::Srv { priority: 0, weight: 1, port: 8080, target: task_name.clone() },
            });
            out.push(Change::Set(Source::new("Task", &ns, &task), vec![a(task_name, ip)]));
        }
        out.push(Change::Set(Source::new("Service", &ns, &svc), svc_records));
    }
    out
}

/// Names worth querying, with their type: every node, every service (A and SRV), two
/// tasks of each service (all of them with `all_tasks`).
fn names(records: usize, all_tasks: bool) -> Vec<(String, &'static str)> {
    let (nodes, services) = shape(records);
    let mut out = Vec::new();
    out.extend((0..nodes).map(|n| (format!("node-{n}.node.corral."), "A")));
    for s in 0..services {
        let (ns, svc) = (format!("ns{}", s % NAMESPACES), format!("svc-{s}"));
        out.push((format!("{svc}.{ns}.svc.corral."), "A"));
        out.push((format!("_http._tcp.{svc}.{ns}.svc.corral."), "SRV"));
        out.extend((0..if all_tasks { INSTANCES } else { 2 }).map(|i| (format!("{svc}-{i}.{ns}.task.corral."), "A")));
    }
    out
}

/// The query file: `queries` lines drawn from the cluster's names (9 in 10) and
/// names that do not exist (1 in 10), in a fixed pseudo-random order.
fn query_file(names: &[(String, &'static str)], queries: usize) -> String {
    let mut out = String::with_capacity(queries * 40);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..queries {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i % 10 == 9 {
            let _ = writeln!(out, "missing-{}.ns{}.task.corral. A", x % 1_000_000, x % NAMESPACES as u64);
        } else {
            let (name, t) = &names[(x % names.len() as u64) as usize];
            let _ = writeln!(out, "{name} {t}");
        }
    }
    out
}

/// The same zone as a Knot zone file.
fn zone_file(zone: &Zone) -> String {
    let records = zone.records(None);
    let mut out = String::with_capacity(records.len() * 60);
    out.push_str("$ORIGIN corral.\n$TTL 5\n");
    out.push_str("@ SOA ns.corral. hostmaster.corral. 1 60 10 3600 5\n@ NS ns.corral.\nns A 127.0.0.1\n");
    for (_, r) in &records {
        let _ = writeln!(out, "{} {} {} {}", r.name, r.ttl, r.data.record_type(), r.data);
    }
    out
}

/// `knotd` serving the zone file, killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_knot(dir: &Path, zone: &str) -> anyhow::Result<Knot> {
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    std::fs::write(dir.join("corral.zone"), zone)?;
    std::fs::create_dir_all(dir.join("db"))?;
    let d = dir.display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 2\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{d}/db\"\n\
         log:\n  - target: stderr\n    any: warning\n\
         zone:\n  - domain: corral.\n    storage: \"{d}\"\n    file: \"corral.zone\"\n    zonefile-sync: -1\n    journal-content: none\n"
    );
    let conf_path = dir.join("knot.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("knotd")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting knotd (apt-get install knot)")?;
    let mut knot = Knot { child, addr };
    let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    probe.set_read_timeout(Some(Duration::from_millis(100)))?;
    let query = soa_query();
    for _ in 0..300 {
        if let Ok(Some(status)) = knot.child.try_wait() {
            bail!("knotd exited: {status}");
        }
        let _ = probe.send_to(&query, addr);
        let mut buf = [0u8; 512];
        // An answer with rcode NOERROR: the zone is loaded.
        if let Ok((n, _)) = probe.recv_from(&mut buf)
            && n >= 12
            && buf[3] & 0x0F == 0
            && u16::from_be_bytes([buf[6], buf[7]]) == 1
        {
            return Ok(knot);
        }
    }
    bail!("knotd on {addr} did not answer for the zone within 30 s")
}

/// A query for `corral. SOA`.
fn soa_query() -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 6];
    q.extend_from_slice(b"corral");
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    q
}

struct Round {
    qps: f64,
    lost: String,
    cpu_us_per_query: f64,
}

/// One dnsperf run against `addr`; `cpu` reads the server's CPU time.
fn dnsperf(
    addr: SocketAddr,
    file: &Path,
    opts: &DnsBenchOptions,
    cpu: &dyn Fn() -> anyhow::Result<Duration>,
) -> anyhow::Result<Round> {
    let cpu_before = cpu()?;
    let out = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(file)
        .args(["-l", &opts.seconds.to_string(), "-c", &opts.clients.to_string(), "-q", &opts.outstanding.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running dnsperf (apt-get install dnsperf)")?;
    let cpu_spent = cpu()?.saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| text.lines().find_map(|l| l.trim().strip_prefix(key)).map(|v| v.trim().to_string());
    let qps: f64 = field("Queries per second:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no 'Queries per second' in dnsperf's output:\n{text}"))?;
    let completed: f64 = field("Queries completed:")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(f64::NAN);
    let lost = field("Queries lost:").unwrap_or_default();
    Ok(Round { qps, lost, cpu_us_per_query: cpu_spent.as_secs_f64() * 1e6 / completed })
}

/// Runs the DNS benchmark and prints its figures.
pub async fn run_dns_bench(opts: DnsBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let load = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "corral-bench dns: {} records, {} rounds × {} s, dnsperf -c {} -q {}, {} queries over {}; {load} cores, load average {}",
        opts.records,
        opts.rounds,
        opts.seconds,
        opts.clients,
        opts.outstanding,
        opts.queries,
        if opts.all_names { "every name" } else { "nodes, services and two tasks per service" },
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // The zone, and its memory as the growth of this process's RSS around building it
    // and applying it (the input moves into the zone; what the allocator keeps of
    // temporaries counts too, so it is an upper bound).
    let rss_before = rss_of("self")?;
    let build = Instant::now();
    let zone = Zone::new("corral.")?;
    zone.apply(objects(opts.records));
    let build_time = build.elapsed();
    let zone_bytes = rss_of("self")?.saturating_sub(rss_before);
    println!(
        "zone: {} records built and applied in {:.0} ms; memory {:.1} MiB ({:.0} bytes/record, RSS growth)",
        zone.len(),
        build_time.as_secs_f64() * 1e3,
        zone_bytes as f64 / 1048576.0,
        zone_bytes as f64 / zone.len().max(1) as f64,
    );
    let queries = query_file(&names(opts.records, opts.all_names), opts.queries);
    let knot_zone = zone_file(&zone);
    let zone = Arc::new(zone);
    let query_path = dir.path().join("queries.txt");
    std::fs::write(&query_path, &queries)?;

    let corral = corral_dns::start(
        DnsConfig { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream: Upstream::Refuse, ttl: 5 },
        zone.clone(),
    )
    .await?;
    let knot_dir = dir.path().join("knot");
    std::fs::create_dir_all(&knot_dir)?;
    let knot_load = Instant::now();
    let knot = tokio::task::block_in_place(|| start_knot(&knot_dir, &knot_zone))?;
    let knot_pid = knot.child.id().to_string();
    println!(
        "knotd {} up in {:.1} s, RSS {:.1} MiB (whole process, zone loaded)",
        knot.addr,
        knot_load.elapsed().as_secs_f64(),
        rss_of(&knot_pid)? as f64 / 1048576.0
    );

    let (mut corral_qps, mut knot_qps, mut corral_us, mut knot_us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let corral_cpu = || own_cpu_time();
    let knot_cpu = || cpu_time_of(&knot_pid);
    println!("{:<6} {:<7} {:>12} {:>16} {:>14}", "round", "server", "queries/s", "CPU µs/query", "lost");
    for round in 1..=opts.rounds {
        // Alternate who goes first, so neither always gets the quieter moment.
        let order: [&str; 2] = if round % 2 == 1 { ["corral", "knot"] } else { ["knot", "corral"] };
        for who in order {
            let (addr, cpu): (SocketAddr, &dyn Fn() -> anyhow::Result<Duration>) = match who {
                "corral" => (corral.local_addr(), &corral_cpu),
                _ => (knot.addr, &knot_cpu),
            };
            let r = tokio::task::block_in_place(|| dnsperf(addr, &query_path, &opts, cpu))?;
            println!("{round:<6} {who:<7} {:>12.0} {:>16.1} {:>14}", r.qps, r.cpu_us_per_query, r.lost);
            match who {
                "corral" => {
                    corral_qps.push(r.qps);
                    corral_us.push(r.cpu_us_per_query);
                }
                _ => {
                    knot_qps.push(r.qps);
                    knot_us.push(r.cpu_us_per_query);
                }
            }
        }
    }
    let (c, k) = (median(corral_qps), median(knot_qps));
    let (cu, ku) = (median(corral_us), median(knot_us));
    let m = corral.metrics();
    println!(
        "median queries/s: corral {c:.0}, knot {k:.0}; corral/knot = {:.2} (corral answer-cache hits {:.0}%)",
        c / k,
        100.0 * m.cache_hits() as f64 / m.queries().max(1) as f64
    );
    println!(
        "median server CPU per query: corral {cu:.2} µs (the whole bench process), knot {ku:.2} µs; knot/corral = {:.2}",
        ku / cu
    );
    corral.shutdown().await;
    drop(knot);
    Ok(())
}
