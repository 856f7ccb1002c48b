//! `corral-bench ha`: Corral highly available on etcd (issue 16), all on this machine —
//! a 3-member etcd cluster on loopback ([`EtcdCluster`]) and two `corral server`s on
//! it, each with the controller manager beside it as `corral server` runs by default
//! (one of the two leads; the other campaigns).
//!
//! 1. **Throughput.** For `seconds` at each concurrency, closed-loop clients creating
//!    ConfigMaps (a 1,000-byte value each, distinct names) through the two API servers,
//!    half the clients on each; and, side by side, closed-loop clients putting distinct
//!    keys straight into the same etcd cluster with `etcd-client`, each value as long as
//!    the one Corral stored for such a ConfigMap (measured at the start). The two take
//!    turns for `rounds` rounds (etcd first in even rounds, Corral first in odd ones) so
//!    that what drifts on a shared machine falls on both; the medians are the figures,
//!    and their ratio Corral/etcd the overhead.
//!    Connections: etcd's side has one `etcd_client::Client` (one gRPC channel to each
//!    member, balanced) per client up to 16, as the store benchmark
//!    does; Corral's side is the Corral client of a user (`corral_client`, HTTP/1.1),
//!    one per API server, whose pool opens a connection per request in flight.
//! 2. **etcd leader killed.** `writers` clients, each its own `corral_client::Client`
//!    listing both servers (half with one first, half with the other), create
//!    ConfigMaps back to back; the etcd leader is killed with SIGKILL. A client's
//!    unavailability is the gap between its last write acknowledged before the kill and
//!    its first acknowledged after it; p50/p99/max over clients × `failovers` rounds.
//!    A write that fails (an error or no answer within [`WRITE_TIMEOUT`]) has an unknown
//!    outcome; it is counted, the client pauses [`ERROR_PAUSE`] and writes the next
//!    name. At the end of each round every acknowledged write is looked for in the
//!    store: the count missing must be 0. As a peer, as many `etcd-client` writers put
//!    keys straight into the cluster through the same kill, measured the same way: what
//!    of the unavailability is etcd's own (its election, and a proposal lost with the
//!    old leader answering only at etcd's request timeout, about 7 s). Between rounds
//!    the member is started again on its data and the cluster settles (a leader, a
//!    write through each server).
//! 3. **API server killed.** The same, killing one API server (each round the other
//!    one); the unavailability is that of the clients that had the killed server first
//!    (they fail over to the other); the clients of the surviving server are reported
//!    beside it. The server is started again between rounds.
//! 4. **Controller-manager failover.** The server whose identity (`HOSTNAME/ADDR`)
//!    holds the Lease `corral-controller-manager` in `corral-system` is killed with
//!    SIGKILL; the figure is the time until the Lease, read through the surviving
//!    server, names the survivor's manager. The lease's timing bounds it: a candidate
//!    takes over only once it has watched the same lease record stay unrenewed for the
//!    whole lease duration (15 s), polling every 2 s, and the holder renewed it at most
//!    5 s before it died, so a failover takes roughly 10 to 17 s whatever the machine.
//!
//! It prints figures and asserts nothing.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_api::kinds::{ConfigMap, ConfigMapSpec, Lease, Namespace, NamespaceSpec};
use corral_client::{Api, Client, ListParams};
use futures::future::BoxFuture;

use crate::cluster::{EtcdCluster, Server};
use crate::load::{LoadResult, closed_loop, percentile_ms};
use crate::procs::{etcd_version, median};
use crate::store::{ETCD_CONNECTIONS, etcd_puts, payload, row_in};

/// A failover writer gives up on a write after this long (its outcome is unknown).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A failover writer waits this long after a failed write before the next.
pub const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The controller managers' lease, and where it is.
const MANAGER_LEASE: &str = "corral-controller-manager";
const MANAGER_LEASE_NAMESPACE: &str = "corral-system";
/// The unit of the throughput figures.
const WRITES: &str = "writes/s";
/// How often the lease and the writers' progress are looked at.
const POLL: Duration = Duration::from_millis(20);

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct HaBenchOptions {
    /// Seconds of each throughput run.
    pub seconds: u64,
    /// Rounds of the throughput comparison, each running both sides.
    pub rounds: usize,
    /// Concurrent clients of the throughput comparison.
    pub clients: Vec<usize>,
    /// Clients writing through each failover.
    pub writers: usize,
    /// Rounds of each failover.
    pub failovers: usize,
    /// How long any wait (recovery, settling, a lease holder) may take.
    pub timeout: Duration,
    /// Only these parts (`throughput`, `etcd-leader`, `api-server`,
    /// `controller-manager`); empty: all.
    pub only: Vec<String>,
}

impl Default for HaBenchOptions {
    fn default() -> Self {
        HaBenchOptions {
            seconds: 10,
            rounds: 2,
            clients: vec![16, 256],
            writers: 16,
            failovers: 3,
            timeout: Duration::from_secs(120),
            only: Vec::new(),
        }
    }
}

impl HaBenchOptions {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// The control plane under test: the etcd cluster and the two API servers on it.
struct Plane {
    /// Dropped (killed) before the etcd cluster, so that they do not log its end.
    servers: [Server; 2],
    etcd: EtcdCluster,
    /// The administrator's connection (server A's `admin.conf`; the credential is in
    /// the shared store, so it works on both).
    admin: corral_client::Config,
}

impl Plane {
    async fn start(dir: &Path) -> anyhow::Result<Plane> {
        let etcd = EtcdCluster::start(&dir.join("etcd"), 3).await?;
        let store = etcd.store_url();
        let a = Server::start(&dir.join("server-a"), &store, &[]).await?;
        let b = Server::start(&dir.join("server-b"), &store, &[]).await?;
        let admin = a.admin_config(&a.base_url())?;
        Ok(Plane { etcd, servers: [a, b], admin })
    }

    /// A client of both servers, server `first` first.
    fn client(&self, first: usize) -> anyhow::Result<Client> {
        let servers = format!("{},{}", self.servers[first].base_url(), self.servers[1 - first].base_url());
        Ok(Client::from_config(&corral_client::Config { server: servers, ..self.admin.clone() })?)
    }

    /// A client of server `i` alone.
    fn client_of(&self, i: usize) -> anyhow::Result<Client> {
        let server = self.servers[i].base_url();
        Ok(Client::from_config(&corral_client::Config { server, ..self.admin.clone() })?)
    }

    /// Waits (bounded) until the etcd cluster has a leader and a write through each
    /// server alone is acknowledged.
    async fn settle(&self, ns: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.etcd.leader().await.is_err() {
            if Instant::now() > deadline {
                bail!("the etcd cluster has no leader after {timeout:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        for i in 0..2 {
            let api = Api::<ConfigMap>::namespaced(self.client_of(i)?, ns);
            for attempt in 0.. {
                match api.create(&configmap(ns, &format!("settle-{i}-{attempt}"), 0)).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        bail!("no write through {} within {timeout:?}: {e}", self.servers[i].base_url())
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
        }
        Ok(())
    }
}

/// A ConfigMap of one 1,000-byte value (the store benchmark's), named `name`.
fn configmap(ns: &str, name: &str, seq: u64) -> ConfigMap {
    let mut spec = ConfigMapSpec::default();
    spec.data.insert("v".into(), payload(seq));
    ConfigMap::namespaced(ns, name, spec)
}

async fn create_namespace(client: &Client, ns: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(&Namespace::new(ns, NamespaceSpec {}))
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    Ok(())
}

/// Runs the parts `opts` selects and prints their figures.
pub async fn run_ha_bench(opts: HaBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let version = etcd_version()?;
    let mut plane = Plane::start(dir.path()).await?;
    println!(
        "corral-bench ha: 3-member etcd cluster on loopback ({version}), 2 corral servers on it, each with its default controller manager (as `corral server` runs; one leads)"
    );
    let mut summary = Vec::new();
    if opts.runs("throughput") {
        summary.extend(throughput(&plane, &opts).await?);
    }
    for fault in [Fault::EtcdLeader, Fault::ApiServer] {
        if opts.runs(fault.part()) {
            summary.push(failovers(&mut plane, fault, &opts).await?);
        }
    }
    if opts.runs("controller-manager") {
        summary.push(manager_failovers(&mut plane, &opts).await?);
    }
    println!("\nsummary");
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

/// How long the value Corral stores in etcd for one of the bench's ConfigMaps is.
async fn stored_value_len(plane: &Plane, ns: &str) -> anyhow::Result<usize> {
    let name = "size-probe";
    Api::<ConfigMap>::namespaced(plane.client(0)?, ns).create(&configmap(ns, name, 0)).await?;
    let mut etcd = etcd_client::Client::connect(plane.etcd.endpoints(), None).await?;
    let resp = etcd.get("/corral/", Some(etcd_client::GetOptions::new().with_prefix())).await?;
    let suffix = format!("\0{ns}\0{name}");
    resp.kvs()
        .iter()
        .find(|kv| kv.key().ends_with(suffix.as_bytes()))
        .map(|kv| kv.value().len())
        .context("the size probe's key is not in etcd under /corral/")
}

/// Part 1; returns its summary lines.
async fn throughput(plane: &Plane, opts: &HaBenchOptions) -> anyhow::Result<Vec<String>> {
    let ns = "throughput";
    create_namespace(&plane.client(0)?, ns).await?;
    let value_len = stored_value_len(plane, ns).await?;
    let dur = Duration::from_secs(opts.seconds);
    println!(
        "\nthroughput: corral ConfigMap creates through both API servers (half the clients on each) vs etcd puts of {value_len}-byte values (what corral stores for one), {}s each, rounds: {} (alternating who goes first)",
        opts.seconds, opts.rounds
    );
    println!(
        "  (etcd: one etcd-client per client up to {ETCD_CONNECTIONS}, each balancing over the 3 members; corral: the corral client, HTTP/1.1, a connection per request in flight)"
    );
    let endpoints = plane.etcd.endpoints();
    let apis = [Api::<ConfigMap>::namespaced(plane.client(0)?, ns), Api::<ConfigMap>::namespaced(plane.client(1)?, ns)];
    let mut etcd_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); opts.clients.len()];
    let mut corral_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); opts.clients.len()];
    for round in 0..opts.rounds {
        for (k, &c) in opts.clients.iter().enumerate() {
            for etcd_turn in [round % 2 == 0, round % 2 == 1] {
                if etcd_turn {
                    let r = etcd_puts(&endpoints, c, dur, &format!("/bench-etcd/r{round}-c{c}"), value_len).await?;
                    row_in(&format!("round {}: etcd put, {c} clients", round + 1), &r, WRITES);
                    etcd_runs[k].push(r);
                } else {
                    let r = corral_creates(&apis, c, dur, &format!("r{round}-c{c}-")).await;
                    row_in(&format!("round {}: corral create, {c} clients", round + 1), &r, WRITES);
                    corral_runs[k].push(r);
                }
            }
        }
    }
    println!("\n  medians (rounds: {})", opts.rounds);
    let mut summary = Vec::new();
    for (k, &c) in opts.clients.iter().enumerate() {
        let etcd = median_result(&etcd_runs[k]);
        let corral = median_result(&corral_runs[k]);
        row_in(&format!("etcd put, {c} clients"), &etcd, WRITES);
        row_in(&format!("corral create, {c} clients"), &corral, WRITES);
        let ratios: Vec<f64> =
            corral_runs[k].iter().zip(&etcd_runs[k]).map(|(a, b)| a.per_sec / b.per_sec.max(1e-9)).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let ratio = corral.per_sec / etcd.per_sec.max(1e-9);
        println!(
            "  {:<44} {ratio:>10.2}x   (per round: {lo:.2}–{hi:.2})",
            format!("corral/etcd throughput, {c} clients")
        );
        summary.push(format!(
            "corral/etcd write throughput at {c:>3} clients: {ratio:.2}x ({:.0} vs {:.0} writes/s; p99 {:.1} vs {:.1} ms)",
            corral.per_sec, etcd.per_sec, corral.p99_ms, etcd.p99_ms
        ));
    }
    Ok(summary)
}

/// `clients` closed loops creating ConfigMaps `{prefix}{seq}`, client `c` through
/// `apis[c % 2]`.
async fn corral_creates(apis: &[Api<ConfigMap>; 2], clients: usize, dur: Duration, prefix: &str) -> LoadResult {
    let (apis, prefix) = (apis.clone(), prefix.to_string());
    closed_loop(clients, dur, u64::MAX, move |c, seq| {
        let api = apis[c % 2].clone();
        let ns = api.namespace().unwrap_or_default().to_string();
        let cm = configmap(&ns, &format!("{prefix}{seq}"), seq);
        async move { api.create(&cm).await.map(|_| ()).map_err(Into::into) }
    })
    .await
}

/// The median throughput and median latencies of several runs.
fn median_result(runs: &[LoadResult]) -> LoadResult {
    let of = |f: fn(&LoadResult) -> f64| median(runs.iter().map(f).collect());
    LoadResult {
        ops: runs.iter().map(|r| r.ops).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        per_sec: of(|r| r.per_sec),
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
    }
}

/// What is killed in a failover round.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The etcd member that leads.
    EtcdLeader,
    /// One API server.
    ApiServer,
}

impl Fault {
    fn part(self) -> &'static str {
        match self {
            Fault::EtcdLeader => "etcd-leader",
            Fault::ApiServer => "api-server",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::EtcdLeader => "etcd leader killed",
            Fault::ApiServer => "API server killed",
        }
    }
}

/// What one failover writer did: times are microseconds since the round began.
#[derive(Default)]
struct Writes {
    /// Each acknowledged write: when the answer came, and the object's name.
    acked: Vec<(u64, String)>,
    /// The names of writes that failed: applied or not, no one knows.
    errored: Vec<String>,
}

/// What one kind of writer saw in failover rounds.
#[derive(Default)]
struct Tally {
    /// Unavailability of each writer the fault hit that wrote again, microseconds.
    gaps_us: Vec<u64>,
    /// Writers with no acknowledged write after the kill within the timeout.
    unrecovered: usize,
    acked: usize,
    errored: usize,
    /// Of the errored writes, those found in the store (applied after all).
    errored_applied: usize,
    /// Acknowledged writes not in the store.
    missing: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.gaps_us.extend(other.gaps_us);
        self.unrecovered += other.unrecovered;
        self.acked += other.acked;
        self.errored += other.errored;
        self.errored_applied += other.errored_applied;
        self.missing += other.missing;
    }

    /// p50, p99 and max of the gaps, milliseconds.
    fn spread(&mut self) -> (f64, f64, f64) {
        self.gaps_us.sort_unstable();
        let max = self.gaps_us.last().copied().unwrap_or(0) as f64 / 1000.0;
        (percentile_ms(&self.gaps_us, 0.5), percentile_ms(&self.gaps_us, 0.99), max)
    }
}

/// What failover rounds measured.
#[derive(Default)]
struct RoundOutcome {
    /// The Corral clients (gaps: those the fault hit).
    corral: Tally,
    /// Gaps of the Corral clients of the surviving API server (API server faults).
    spared_us: Vec<u64>,
    /// The etcd clients beside them (etcd leader faults).
    etcd: Tally,
}

/// Part 2 or 3: `failovers` rounds of `fault`; prints the figures, returns the summary
/// line.
async fn failovers(plane: &mut Plane, fault: Fault, opts: &HaBenchOptions) -> anyhow::Result<String> {
    let beside = match fault {
        Fault::EtcdLeader => format!(", and {} etcd-client writers beside them (same kill)", opts.writers),
        Fault::ApiServer => String::new(),
    };
    println!(
        "\n{}: {} clients creating ConfigMaps through both API servers (each its own client, half with either server first){beside}, rounds: {}",
        fault.title(),
        opts.writers,
        opts.failovers
    );
    let mut all = RoundOutcome::default();
    for round in 0..opts.failovers {
        let mut r = failover_round(plane, fault, round, opts).await?;
        let (_, _, max) = r.corral.spread();
        println!(
            "  {:<44} max {max:>8.1} ms   ({} clients hit; writes: {} acknowledged, {} errored, {} missing)",
            format!("round {}: write unavailability", round + 1),
            r.corral.gaps_us.len(),
            r.corral.acked,
            r.corral.errored,
            r.corral.missing
        );
        all.corral.add(r.corral);
        all.etcd.add(r.etcd);
        all.spared_us.extend(r.spared_us);
    }
    let (p50, p99, max) = all.corral.spread();
    let who = match fault {
        Fault::EtcdLeader => "clients",
        Fault::ApiServer => "clients of the killed server",
    };
    let spread = |label: &str, (p50, p99, max): (f64, f64, f64), n: usize, who: &str| {
        println!("  {label:<44} p50 {p50:>8.1} ms   p99 {p99:>8.1} ms   max {max:>8.1} ms   ({n} {who} × rounds)");
    };
    spread("write unavailability", (p50, p99, max), all.corral.gaps_us.len(), who);
    if let Fault::ApiServer = fault {
        let mut spared = Tally { gaps_us: std::mem::take(&mut all.spared_us), ..Tally::default() };
        let n = spared.gaps_us.len();
        spread("write gap, surviving server's clients", spared.spread(), n, "clients");
    }
    let c = &all.corral;
    println!(
        "  {:<44} {:>8}   (of which {} are in the store)",
        "writes errored (outcome unknown)", c.errored, c.errored_applied
    );
    println!("  {:<44} {:>8}   (must be 0; of {} acknowledged)", "acknowledged writes missing", c.missing, c.acked);
    println!(
        "  {:<44} {:>8}   (no write acknowledged within {:?} of the kill)",
        "clients that did not recover", c.unrecovered, opts.timeout
    );
    let mut etcd_note = String::new();
    if let Fault::EtcdLeader = fault {
        let n = all.etcd.gaps_us.len();
        let (e50, e99, emax) = all.etcd.spread();
        spread("etcd-client beside them: unavailability", (e50, e99, emax), n, "clients");
        let e = &all.etcd;
        println!(
            "  {:<44} {:>8}   ({} in etcd), {} of {} acknowledged missing (must be 0), {} did not recover",
            "etcd-client beside them: writes errored", e.errored, e.errored_applied, e.missing, e.acked, e.unrecovered
        );
        etcd_note = format!("; etcd-client directly: p99 {e99:.1} ms, max {emax:.1} ms");
    }
    Ok(format!(
        "write unavailability, {}: p99 {p99:.1} ms, max {max:.1} ms ({} {who} × rounds; {} errored, {} missing, {} unrecovered){etcd_note}",
        fault.title(),
        c.gaps_us.len(),
        c.errored,
        c.missing,
        c.unrecovered
    ))
}

/// Microseconds since `epoch`.
fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// One write of a failover writer: the object or key named, with payload `seq`.
type WriteFn = Arc<dyn Fn(String, u64) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A writer writing `{prefix}{seq}` back to back through `write` until `stop`, storing
/// when each write was acknowledged in `last_ack[slot]`.
fn spawn_writer(
    prefix: String,
    write: WriteFn,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    last_ack: Arc<Vec<AtomicU64>>,
    slot: usize,
) -> tokio::task::JoinHandle<Writes> {
    tokio::spawn(async move {
        let mut w = Writes::default();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let name = format!("{prefix}{seq}");
            let attempt = write(name.clone(), seq);
            seq += 1;
            match tokio::time::timeout(WRITE_TIMEOUT, attempt).await {
                Ok(Ok(())) => {
                    let at = since(epoch);
                    last_ack[slot].store(at, Ordering::Release);
                    w.acked.push((at, name));
                }
                _ => {
                    w.errored.push(name);
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
        w
    })
}

/// Who writes in a failover round.
#[derive(Clone, Copy, PartialEq)]
enum Writer {
    /// A Corral client listing both servers, this one first.
    Corral { first: usize },
    /// An etcd client of the three members, beside them.
    Etcd,
}

async fn failover_round(
    plane: &mut Plane,
    fault: Fault,
    round: usize,
    opts: &HaBenchOptions,
) -> anyhow::Result<RoundOutcome> {
    let ns = format!("{}-{round}", fault.part());
    create_namespace(&plane.client(0)?, &ns).await?;
    let etcd_prefix = format!("/bench-etcd/{ns}/");
    let mut who: Vec<Writer> = (0..opts.writers).map(|i| Writer::Corral { first: i % 2 }).collect();
    if let Fault::EtcdLeader = fault {
        who.extend((0..opts.writers).map(|_| Writer::Etcd));
    }
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // When each writer's latest write was acknowledged (0: none yet).
    let last_ack: Arc<Vec<AtomicU64>> = Arc::new(who.iter().map(|_| AtomicU64::new(0)).collect());
    let mut writers = Vec::with_capacity(who.len());
    for (i, w) in who.iter().enumerate() {
        let write: WriteFn = match *w {
            Writer::Corral { first } => {
                let api = Api::<ConfigMap>::namespaced(plane.client(first)?, &ns);
                let ns = ns.clone();
                Arc::new(move |name, seq| {
                    let (api, cm) = (api.clone(), configmap(&ns, &name, seq));
                    Box::pin(async move { api.create(&cm).await.map(|_| ()).map_err(Into::into) })
                })
            }
            Writer::Etcd => {
                let kv = etcd_client::Client::connect(plane.etcd.endpoints(), None).await?.kv_client();
                let prefix = etcd_prefix.clone();
                Arc::new(move |name, seq| {
                    let (mut kv, key) = (kv.clone(), format!("{prefix}{name}"));
                    Box::pin(async move { kv.put(key, payload(seq), None).await.map(|_| ()).map_err(Into::into) })
                })
            }
        };
        writers.push(spawn_writer(format!("w{i}-"), write, epoch, stop.clone(), last_ack.clone(), i));
    }
    // Warm up: a second of writing, and every writer acknowledged.
    let warm = wait_until(opts.timeout, || {
        epoch.elapsed() >= Duration::from_secs(1) && last_ack.iter().all(|a| a.load(Ordering::Acquire) > 0)
    })
    .await;
    if !warm {
        stop.store(true, Ordering::Relaxed);
        bail!("{}: not every writer had a write acknowledged within {:?}", fault.title(), opts.timeout);
    }
    let (victim, killed_at) = match fault {
        Fault::EtcdLeader => {
            let leader = plane.etcd.leader().await?;
            let at = since(epoch);
            plane.etcd.kill(leader);
            (leader, at)
        }
        Fault::ApiServer => {
            let victim = round % 2;
            let at = since(epoch);
            plane.servers[victim].kill();
            (victim, at)
        }
    };
    wait_until(opts.timeout, || last_ack.iter().all(|a| a.load(Ordering::Acquire) > killed_at)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::with_capacity(writers.len());
    for w in writers {
        results.push(w.await.context("a writer panicked")?);
    }
    match fault {
        Fault::EtcdLeader => plane.etcd.restart(victim).await?,
        Fault::ApiServer => plane.servers[victim].restart().await?,
    }
    plane.settle(&ns, opts.timeout).await?;

    // What is in the store now, through Corral and straight from etcd.
    let in_corral: HashSet<String> = Api::<ConfigMap>::namespaced(plane.client(0)?, &ns)
        .list_all(&ListParams::default(), 500)
        .await?
        .items
        .into_iter()
        .map(|o| o.metadata.name)
        .collect();
    let mut etcd = etcd_client::Client::connect(plane.etcd.endpoints(), None).await?;
    let keys =
        etcd.get(etcd_prefix.as_str(), Some(etcd_client::GetOptions::new().with_prefix().with_keys_only())).await?;
    let in_etcd: HashSet<String> = keys
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok()?.strip_prefix(etcd_prefix.as_str()).map(str::to_string))
        .collect();
    let mut out = RoundOutcome::default();
    for (w, writes) in who.iter().zip(&results) {
        let (tally, stored) = match w {
            Writer::Corral { .. } => (&mut out.corral, &in_corral),
            Writer::Etcd => (&mut out.etcd, &in_etcd),
        };
        tally.acked += writes.acked.len();
        tally.errored += writes.errored.len();
        tally.errored_applied += writes.errored.iter().filter(|n| stored.contains(*n)).count();
        tally.missing += writes.acked.iter().filter(|(_, n)| !stored.contains(n)).count();
        let before = writes.acked.iter().rev().find(|(t, _)| *t <= killed_at).map(|(t, _)| *t);
        let Some(after) = writes.acked.iter().find(|(t, _)| *t > killed_at).map(|(t, _)| *t) else {
            tally.unrecovered += 1;
            continue;
        };
        let gap = after - before.unwrap_or(killed_at);
        match (fault, w) {
            (Fault::ApiServer, Writer::Corral { first }) if *first != victim => out.spared_us.push(gap),
            _ => tally.gaps_us.push(gap),
        }
    }
    Ok(out)
}

/// Which server's manager a lease names (its identity is `HOSTNAME/ADDR`).
fn holder(plane: &Plane, lease: &Lease) -> Option<usize> {
    let h = lease.spec.holder_identity.as_deref()?;
    plane.servers.iter().position(|s| h.ends_with(&format!("/{}", s.addr)))
}

/// Part 4: `failovers` rounds; prints the figures, returns the summary line.
async fn manager_failovers(plane: &mut Plane, opts: &HaBenchOptions) -> anyhow::Result<String> {
    println!(
        "\ncontroller-manager failover: the server whose manager holds Lease {MANAGER_LEASE_NAMESPACE}/{MANAGER_LEASE} killed (SIGKILL), until the Lease, read through the other, names the other (rounds: {}; 15 s lease, renewed every 5 s, candidates retry every 2 s)",
        opts.failovers
    );
    let mut times = Vec::new();
    for round in 0..opts.failovers {
        let victim = lease_holder(plane, &plane.client(0)?, opts.timeout, |_| true)
            .await
            .with_context(|| format!("no server's manager held the lease within {:?}", opts.timeout))?;
        let survivor = 1 - victim;
        let through_survivor = plane.client_of(survivor)?;
        let killed = Instant::now();
        plane.servers[victim].kill();
        let took_over = lease_holder(plane, &through_survivor, opts.timeout, |h| h == survivor).await;
        let took = killed.elapsed();
        if took_over.is_none() {
            bail!("the surviving server's manager did not take the lease within {:?}", opts.timeout);
        }
        println!("  {:<44} {:>8.2} s", format!("round {}: controller-manager failover", round + 1), took.as_secs_f64());
        times.push(took.as_secs_f64());
        plane.servers[victim].restart().await?;
    }
    let m = median(times.clone());
    println!(
        "  {:<44} {m:>8.2} s   (bounded by the 15 s lease: about 10 to 17 s)",
        "controller-manager failover, median"
    );
    let max = times.iter().copied().fold(0.0, f64::max);
    Ok(format!("controller-manager failover: median {m:.2} s, max {max:.2} s (rounds: {}; 15 s lease)", times.len()))
}

/// Waits (bounded by `timeout`) until `cond` holds, looking every [`POLL`]; whether
/// it did.
async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The server whose manager holds the lease, read through `client`, once `want`
/// accepts it (bounded by `timeout`; `None` past it).
async fn lease_holder(
    plane: &Plane,
    client: &Client,
    timeout: Duration,
    want: impl Fn(usize) -> bool,
) -> Option<usize> {
    let leases = Api::<Lease>::namespaced(client.clone(), MANAGER_LEASE_NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(lease)) = leases.get_opt(MANAGER_LEASE).await
            && let Some(h) = holder(plane, &lease)
            && want(h)
        {
            return Some(h);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
