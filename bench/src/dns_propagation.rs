//! `corral-bench dns-propagation`: how long the cluster DNS takes to follow a task.
//!
//! A `corral server` (started by the bench, serving DNS on a loopback port) with N
//! hollow nodes (SIMULATED: no process runs) and T tasks bound to them, churning: the
//! bench deletes and re-creates tasks at a steady rate while it measures. Each probe
//! is a task of its own, bound to a node no hollow node plays, whose status the bench
//! writes itself as an agent would: `RUNNING` (with its host address), then, once the
//! DNS answers with it, `FINISHED`. Measured, per probe, from the acknowledgement of
//! each status write to the first answer of the DNS server — asked directly over UDP
//! by a small client here, every millisecond — that includes the task
//! (`TASK.NS.task.corral. A`), and then one that no longer does (NXDOMAIN).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_api::kinds::node::{NodePhase, Resources};
use corral_api::kinds::task::{TaskPhase, TaskSpec, TaskStatus};
use corral_api::kinds::{Namespace, NamespaceSpec, Node, Task};
use corral_client::{Api, Client, Config, DeleteParams, ListParams};
use corral_runtime::CancellationToken;

use crate::hollow::{HollowOptions, HollowStats, run_hollow};
use crate::procs::{free_port, start_corral_with};
use crate::services::{Background, ProcStats, child_pid_serving, mib};

/// The bench's namespace.
const NAMESPACE: &str = "dnsbench";
/// The node the probes are bound to: no hollow node plays it, the bench does.
const PROBE_NODE: &str = "dns-probe";
/// The address the probes report.
const PROBE_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
/// How often a probe asks the DNS.
const ASK_EVERY: Duration = Duration::from_millis(1);
/// Longest a probe waits for the DNS before it counts as lost.
const PROBE_PATIENCE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone, Debug)]
pub struct DnsPropagationOptions {
    /// Hollow nodes.
    pub nodes: usize,
    /// Tasks kept bound to them.
    pub tasks: usize,
    /// Tasks replaced per second (one deletion and one creation each) while probing.
    pub churn_per_sec: u32,
    /// Probes (each measures an appearance and a disappearance).
    pub probes: usize,
    /// Extra arguments of the `corral server` started.
    pub server_args: Vec<String>,
    /// How long setting up may take.
    pub timeout: Duration,
}

impl Default for DnsPropagationOptions {
    fn default() -> Self {
        DnsPropagationOptions {
            nodes: 1000,
            tasks: 10_000,
            churn_per_sec: 200,
            probes: 200,
            server_args: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// The server could not be started, a write failed, or setting up took too long.
pub async fn run_dns_propagation(opts: DnsPropagationOptions) -> anyhow::Result<()> {
    println!(
        "corral-bench dns-propagation: {} SIMULATED hollow nodes, {} tasks churning at {}/s, {} probes",
        opts.nodes, opts.tasks, opts.churn_per_sec, opts.probes
    );
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let dns_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let args: Vec<String> = [
        "--no-audit-log".to_string(),
        "--dns-listen".into(),
        dns_addr.to_string(),
        "--dns-upstream".into(),
        "refuse".into(),
    ]
    .into_iter()
    .chain(opts.server_args.iter().cloned())
    .collect();
    let proc = start_corral_with(&data, &args).await?;
    let stats = ProcStats { pid: child_pid_serving(&data).context("finding the started corral server's process")? };
    let config = Config {
        server: format!("http://{}", proc.addr),
        token: crate::procs::admin_token(),
        ca_pem: None,
        client_identity: None,
    };
    let client = Client::from_config(&config)?;
    Api::<Namespace>::all(client.clone())
        .create(&Namespace::new(NAMESPACE, NamespaceSpec {}))
        .await
        .context("creating the bench namespace")?;
    println!("  control plane: corral server (pid {}) at {}; cluster DNS at {dns_addr}", stats.pid, config.server);

    let stop = CancellationToken::new();
    let hollow_rt = Background::threads("hollow")?;
    let hollow_opts = HollowOptions {
        stats: Arc::new(HollowStats::default()),
        nodes: opts.nodes,
        capacity: Resources { cpus: 1000.0, mem: 1 << 30, disk: 1 << 30 },
        ..Default::default()
    };
    let hollow = hollow_rt.spawn(run_hollow(Client::from_config(&config)?, hollow_opts, stop.child_token()));
    let outcome = measure(&client, &opts, dns_addr, &stop, &hollow).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), hollow).await;
    drop(hollow_rt);
    if let Some(m) = stats.memory() {
        println!("  control plane RSS at the end: {:.0} MiB", mib(m.rss));
    }
    drop(proc);
    outcome
}

async fn measure(
    client: &Client,
    opts: &DnsPropagationOptions,
    dns: SocketAddr,
    stop: &CancellationToken,
    hollow: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list.items.iter().filter(|n| n.status.as_ref().is_some_and(|s| s.phase == NodePhase::Ready));
        if ready.count() >= opts.nodes {
            break;
        }
        if hollow.is_finished() || started.elapsed() > opts.timeout {
            bail!("the {} hollow nodes did not all become Ready", opts.nodes);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("  {} hollow nodes Ready after {:.1} s", opts.nodes, started.elapsed().as_secs_f64());

    // The load: tasks spread over the hollow nodes, which report them RUNNING.
    let tasks: Api<Task> = Api::namespaced(client.clone(), NAMESPACE);
    let load = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    create_load(&tasks, opts, &next, opts.tasks).await?;
    // The last load task answers once the hollow nodes ran the whole load and the
    // DNS followed.
    let last = format!("load-{}.{NAMESPACE}.task.corral.", opts.tasks.saturating_sub(1));
    while !ask(dns, &last)?.is_some_and(|a| a.found) {
        if started.elapsed() > opts.timeout {
            bail!("the DNS did not answer for the load's last task ({last}) in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("  {} load tasks created and answered by the DNS after {:.1} s", opts.tasks, load.elapsed().as_secs_f64());

    // Churn in the background.
    let churning = Arc::new(AtomicBool::new(true));
    let churn = tokio::spawn(churn(tasks.clone(), opts.clone(), next.clone(), churning.clone(), stop.clone()));

    let probes: Api<Task> = Api::namespaced(client.clone(), NAMESPACE);
    let mut appear = Vec::with_capacity(opts.probes);
    let mut vanish = Vec::with_capacity(opts.probes);
    let mut lost = 0;
    for i in 0..opts.probes {
        let name = format!("probe-{i}");
        let fqdn = format!("{name}.{NAMESPACE}.task.corral.");
        let spec = TaskSpec { node_name: Some(PROBE_NODE.into()), image: Some("busybox".into()), ..Default::default() };
        let created = probes.create(&Task::namespaced(NAMESPACE, &name, spec)).await?;
        let mut running = created.clone();
        running.status = Some(TaskStatus {
            phase: TaskPhase::Running,
            host_ip: Some(PROBE_IP.to_string()),
            start_time: Some(corral_api::meta::now_timestamp()),
            ..Default::default()
        });
        let running = probes.update_status(&running).await?;
        let acked = Instant::now();
        match wait_dns(dns, &fqdn, true).await? {
            Some(at) => appear.push(at.duration_since(acked)),
            None => lost += 1,
        }
        let mut ended = running.clone();
        if let Some(s) = ended.status.as_mut() {
            s.phase = TaskPhase::Finished;
            s.exit_code = Some(0);
            s.finish_time = Some(corral_api::meta::now_timestamp());
        }
        probes.update_status(&ended).await?;
        let acked = Instant::now();
        match wait_dns(dns, &fqdn, false).await? {
            Some(at) => vanish.push(at.duration_since(acked)),
            None => lost += 1,
        }
        let _ = probes.delete(&name, &DeleteParams::default()).await;
    }
    churning.store(false, Ordering::Relaxed);
    let replaced = churn.await.unwrap_or(Ok(0))?;
    let elapsed = load.elapsed().as_secs_f64();
    println!("  churn: {replaced} tasks replaced while probing");
    report("RUNNING acknowledged → answer includes the task", &mut appear);
    report("end acknowledged → answer without the task (NXDOMAIN)", &mut vanish);
    if lost > 0 {
        println!("  {lost} probe answers never came within {} s", PROBE_PATIENCE.as_secs());
    }
    let p99 = percentile(&appear, 0.99).max(percentile(&vanish, 0.99));
    println!(
        "  target p99 < 1000 ms: {} (p99 {:.1} ms; {:.0} s in all)",
        if p99 < 1000.0 && lost == 0 { "met" } else { "NOT met" },
        p99,
        elapsed
    );
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let max = samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "  {what}: n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(samples, 0.50),
        percentile(samples, 0.99),
        max
    );
}

/// The `p` quantile (0 to 1) of sorted `samples`, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn load_task(i: u64, nodes: usize) -> Task {
    let node = format!("hollow-{}", i as usize % nodes.max(1));
    let spec = TaskSpec { node_name: Some(node), image: Some("busybox".into()), ..Default::default() };
    Task::namespaced(NAMESPACE, format!("load-{i}"), spec)
}

/// Creates `count` load tasks, 64 at a time.
async fn create_load(
    tasks: &Api<Task>,
    opts: &DnsPropagationOptions,
    next: &AtomicU64,
    count: usize,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let creates = (0..count).map(|_| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let t = load_task(i, opts.nodes);
        let tasks = tasks.clone();
        async move { tasks.create(&t).await.map(drop) }
    });
    let results: Vec<_> = futures::stream::iter(creates).buffer_unordered(64).collect().await;
    for r in results {
        r.context("creating a load task")?;
    }
    Ok(())
}

/// Replaces the oldest load task by a new one, `churn_per_sec` times a second, until
/// told to stop; returns how many it replaced.
async fn churn(
    tasks: Api<Task>,
    opts: DnsPropagationOptions,
    next: Arc<AtomicU64>,
    churning: Arc<AtomicBool>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let mut oldest = 0u64;
    let mut replaced = 0;
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.churn_per_sec.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while churning.load(Ordering::Relaxed) && !stop.is_cancelled() {
        tick.tick().await;
        let gone = format!("load-{oldest}");
        oldest += 1;
        let _ = tasks.delete(&gone, &DeleteParams::default()).await;
        let i = next.fetch_add(1, Ordering::Relaxed);
        tasks.create(&load_task(i, opts.nodes)).await.context("creating a churn task")?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Asks the DNS every [`ASK_EVERY`] until its answer has the name (`present`) or
/// is NXDOMAIN (`!present`); when, or `None` past [`PROBE_PATIENCE`].
async fn wait_dns(dns: SocketAddr, name: &str, present: bool) -> anyhow::Result<Option<Instant>> {
    let deadline = Instant::now() + PROBE_PATIENCE;
    while Instant::now() < deadline {
        if let Some(a) = ask(dns, name)?
            && a.found == present
        {
            return Ok(Some(Instant::now()));
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
    Ok(None)
}

/// What one answer said.
struct Answer {
    /// NOERROR with at least one answer record.
    found: bool,
}

/// One UDP query for `name` A; `None` when no answer came within 200 ms.
fn ask(dns: SocketAddr, name: &str) -> anyhow::Result<Option<Answer>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let id: u16 = rand_id();
    socket.send_to(&query(id, name), dns)?;
    let mut buf = [0u8; 1500];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        let rcode = buf[3] & 0x0f;
        let answers = u16::from_be_bytes([buf[6], buf[7]]);
        return Ok(Some(Answer { found: rcode == 0 && answers > 0 }));
    }
}

/// A DNS query (RFC 1035 §4.1) for `name` A IN, recursion not desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

fn rand_id() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0x1234);
    (NEXT.fetch_add(0x9e37, Ordering::Relaxed) & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_laid_out_as_rfc_1035_says() {
        let q = query(7, "a.bc.");
        assert_eq!(&q[..2], &[0, 7]);
        assert_eq!(&q[4..6], &[0, 1], "one question");
        assert_eq!(&q[12..], &[1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
    }
}
