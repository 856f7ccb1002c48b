//! `corral bench store`: the store through the real HTTP server, side by side with a
//! real etcd in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::json;

use super::load::{LoadResult, closed_loop, open_loop, percentile_ms};
use super::procs::{start_corral_with, start_etcd};

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct StoreBenchOptions {
    /// Seconds per throughput workload.
    pub seconds: u64,
    /// Objects held for the memory figure (and replayed to one watcher).
    pub objects: usize,
    /// Watchers of the many-watchers latency figure.
    pub watchers: usize,
    /// Concurrency levels of the write workloads.
    pub clients: Vec<usize>,
    /// Writes per second of the fixed-rate latency workload.
    pub rate: u64,
    /// Extra arguments for `corral server` (e.g. `--no-audit-log`).
    pub server_args: Vec<String>,
    /// Only these workloads (`writes`, `store`, `rate`, `reads`, `watch`, `mass`);
    /// empty: all.
    pub only: Vec<String>,
}

impl StoreBenchOptions {
    fn runs(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

impl Default for StoreBenchOptions {
    fn default() -> Self {
        StoreBenchOptions {
            seconds: 5,
            objects: 100_000,
            watchers: 1000,
            clients: vec![1, 16, 256],
            rate: 1000,
            only: Vec::new(),
            server_args: Vec::new(),
        }
    }
}

/// `clients` closed loops creating `prefix{seq}` in `ns` for `dur` or `max_ops` creates.
pub(crate) async fn creates(
    corral: &Arc<Corral>,
    clients: usize,
    dur: Duration,
    max_ops: u64,
    ns: &str,
    prefix: &str,
) -> LoadResult {
    let (cl, ns, prefix) = (corral.clone(), ns.to_string(), prefix.to_string());
    closed_loop(clients, dur, max_ops, move |i, seq| {
        let (cl, ns, name) = (cl.clone(), ns.clone(), format!("{prefix}{seq}"));
        async move { cl.create(i, &ns, &name, seq).await.map(|_| ()) }
    })
    .await
}

/// ~1 KiB payload, so objects and etcd values are of the size the targets name.
pub(crate) fn payload(seq: u64) -> String {
    sized_payload(seq, 1000)
}

/// A payload of `len` bytes (at least 17) that starts with `seq`, so that no two are
/// the same.
pub(crate) fn sized_payload(seq: u64, len: usize) -> String {
    let mut s = format!("{seq:016}-");
    while s.len() < len {
        s.push_str("0123456789abcdef");
    }
    s.truncate(len.max(17));
    s
}

fn configmap(ns: &str, name: &str, seq: u64) -> serde_json::Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"data": {"v": payload(seq)}}})
}

/// The same object as [`configmap`], serialized directly: a client need not build a
/// JSON tree to send one, and the bench should measure the server, not that.
fn configmap_body(ns: &str, name: &str, seq: u64) -> String {
    format!(
        r#"{{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{ns}"}},"spec":{{"data":{{"v":"{}"}}}}}}"#,
        payload(seq)
    )
}

/// Just the part of a response the bench reads.
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMeta,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMeta {
    resource_version: String,
}

/// HTTP/2 connections the bench spreads its clients over, as etcd's gRPC clients do.
const H2_CONNECTIONS: usize = 16;

pub(crate) struct Corral {
    /// HTTP/2 (prior knowledge, cleartext) clients, one connection each.
    h2: Vec<reqwest::Client>,
    /// An HTTP/1.1 client: one connection per concurrent request.
    http1: reqwest::Client,
    /// Whether the workloads use `http1` rather than `h2`.
    use_http1: bool,
    base: String,
}

impl Corral {
    pub(crate) fn new(base: String) -> anyhow::Result<Self> {
        let mut h2 = Vec::with_capacity(H2_CONNECTIONS);
        for _ in 0..H2_CONNECTIONS {
            h2.push(
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .default_headers(super::procs::auth_headers())
                    .build()?,
            );
        }
        let http1 = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1024)
            .default_headers(super::procs::auth_headers())
            .build()?;
        Ok(Corral { h2, http1, use_http1: false, base })
    }

    /// The client for workload client number `c`.
    fn http(&self, c: usize) -> &reqwest::Client {
        if self.use_http1 { &self.http1 } else { &self.h2[c % self.h2.len()] }
    }

    fn collection(&self, ns: &str) -> String {
        format!("{}/apis/corral.dev/v1/namespaces/{ns}/configmaps", self.base)
    }

    pub(crate) async fn create(&self, c: usize, ns: &str, name: &str, seq: u64) -> anyhow::Result<u64> {
        let r = self
            .http(c)
            .post(self.collection(ns))
            .header("content-type", "application/json")
            .body(configmap_body(ns, name, seq))
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("create {name}: HTTP {}", r.status());
        }
        let w: Written = serde_json::from_slice(&r.bytes().await?)?;
        Ok(w.metadata.resource_version.parse().unwrap_or(0))
    }

    /// Replaces `name` in `ns` with the payload of `seq`.
    pub(crate) async fn update(&self, c: usize, ns: &str, name: &str, seq: u64) -> anyhow::Result<()> {
        let r = self
            .http(c)
            .put(format!("{}/{name}", self.collection(ns)))
            .header("content-type", "application/json")
            .body(configmap_body(ns, name, seq))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("update {name}: HTTP {}", r.status());
        }
        Ok(())
    }

    /// Reads `name` in `ns`, body and all.
    pub(crate) async fn get(&self, c: usize, ns: &str, name: &str) -> anyhow::Result<()> {
        let r = self.http(c).get(format!("{}/{name}", self.collection(ns))).send().await?;
        if !r.status().is_success() {
            bail!("get {name}: HTTP {}", r.status());
        }
        r.bytes().await?;
        Ok(())
    }

    pub(crate) async fn namespace(&self, ns: &str) -> anyhow::Result<()> {
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": ns}});
        let r = self.http(0).post(format!("{}/apis/corral.dev/v1/namespaces", self.base)).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("create namespace {ns}: HTTP {}", r.status());
        }
        Ok(())
    }

    async fn revision(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value =
            self.http(0).get(format!("{}/admin/revision", self.base)).send().await?.json().await?;
        v["revision"].as_u64().context("no revision in /admin/revision")
    }
}

fn row(name: &str, r: &LoadResult) {
    row_in(name, r, "ops/s");
}

/// Prints one workload's figures on an aligned line, its throughput in `unit`.
pub(crate) fn row_in(name: &str, r: &LoadResult, unit: &str) {
    println!(
        "  {name:<44} {:>10.0} {unit}   p50 {:>7.2} ms   p99 {:>7.2} ms{}",
        r.per_sec,
        r.p50_ms,
        r.p99_ms,
        if r.errors > 0 { format!("   ({} errors)", r.errors) } else { String::new() }
    );
}

/// Runs every store workload and prints the figures.
pub async fn run_store_bench(opts: StoreBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let corral_dir = dir.path().join("corral");
    let etcd_dir = dir.path().join("etcd");
    let server = start_corral_with(&corral_dir, &opts.server_args).await?;
    let (etcd, etcd_version) = start_etcd(&etcd_dir).await?;
    let dur = Duration::from_secs(opts.seconds);
    let corral = Arc::new(Corral::new(format!("http://{}", server.addr))?);
    let corral_http1 = Arc::new(Corral { use_http1: true, ..Corral::new(format!("http://{}", server.addr))? });
    println!(
        "corral bench store: corral server (sled, flush before ack) vs {etcd_version} (default durability), both on loopback, {}s per workload",
        opts.seconds
    );

    let mut ratios = Vec::new();
    if opts.runs("writes") {
        // Durable writes, closed loop.
        println!("\ndurable writes (1 KiB objects / values)");
        for &c in &opts.clients {
            let ns = format!("create-{c}");
            corral.namespace(&ns).await?;
            let create = creates(&corral, c, dur, u64::MAX, &ns, "o").await;
            row(&format!("corral create, {c} clients (HTTP/2)"), &create);
            let create1 = creates(&corral_http1, c, dur, u64::MAX, &ns, "h").await;
            row(&format!("corral create, {c} clients (HTTP/1.1)"), &create1);
            // Updates rewrite the objects just created, each with a new payload.
            let existing = create.ops.max(1);
            let cl = corral.clone();
            let nsc = ns.clone();
            let update = closed_loop(c, dur, u64::MAX, move |i, seq| {
                let cl = cl.clone();
                let ns = nsc.clone();
                async move { cl.update(i, &ns, &format!("o{}", seq % existing), seq + 1_000_000_000).await }
            })
            .await;
            row(&format!("corral update, {c} clients (HTTP/2)"), &update);
            let etcd_put = etcd_puts(&[format!("http://{}", etcd.addr)], c, dur, &format!("c{c}"), 1000).await?;
            row(&format!("etcd put, {c} clients"), &etcd_put);
            let ratio = create.per_sec / etcd_put.per_sec.max(1e-9);
            println!(
                "  {:<44} {ratio:>10.2}x (create) {:>6.2}x (update) {:>6.2}x (create, HTTP/1.1)",
                format!("corral/etcd, {c} clients"),
                update.per_sec / etcd_put.per_sec.max(1e-9),
                create1.per_sec / etcd_put.per_sec.max(1e-9)
            );
            ratios.push((c, ratio));
        }
    }

    if opts.runs("store") {
        println!("\nthe store alone, in this process (no HTTP)");
        for &c in &opts.clients {
            let r = store_alone(Drive::Tasks(c), dur, dir.path()).await?;
            row(&format!("SledStore create, {c} tasks"), &r);
        }
        let r = store_alone(Drive::Rate(opts.rate), dur, dir.path()).await?;
        row(&format!("SledStore create at {}/s", opts.rate), &r);
    }

    let mut rates = None;
    if opts.runs("rate") {
        println!("\nfixed-rate writes, open loop");
        corral.namespace("rate").await?;
        let cl = corral.clone();
        let rate = open_loop(opts.rate, dur, move |seq| {
            let cl = cl.clone();
            async move { cl.create(seq as usize, "rate", &format!("r{seq}"), seq).await.map(|_| ()) }
        })
        .await;
        row(&format!("corral create at {}/s", opts.rate), &rate);
        let kv = etcd_client::Client::connect([format!("http://{}", etcd.addr)], None).await?.kv_client();
        let etcd_rate = open_loop(opts.rate, dur, move |seq| {
            let mut kv = kv.clone();
            async move { kv.put(format!("rate/{seq}"), payload(seq), None).await.map(|_| ()).map_err(Into::into) }
        })
        .await;
        row(&format!("etcd put at {}/s", opts.rate), &etcd_rate);
        rates = Some((rate.p99_ms, etcd_rate.p99_ms));
    }

    if opts.runs("reads") {
        println!("\nreads");
        corral.namespace("reads").await?;
        for i in 0..1000u64 {
            corral.create(0, "reads", &format!("o{i}"), i).await?;
        }
        let cpu_before = server.cpu_time()?;
        let cl = corral.clone();
        let gets = closed_loop(16, dur, u64::MAX, move |i, seq| {
            let cl = cl.clone();
            async move { cl.get(i, "reads", &format!("o{}", seq % 1000)).await }
        })
        .await;
        let cpu = server.cpu_time()?.saturating_sub(cpu_before);
        row("corral get, 16 clients", &gets);
        println!(
            "  {:<44} {:>10.1} µs   ({:.1} s of CPU for {} gets)",
            "corral server CPU per get",
            cpu.as_secs_f64() * 1e6 / gets.ops.max(1) as f64,
            cpu.as_secs_f64(),
            gets.ops
        );
        let cl = corral.clone();
        let lists = closed_loop(4, dur, u64::MAX, move |i, _| {
            let cl = cl.clone();
            async move {
                let r = cl.http(i).get(cl.collection("reads")).send().await?;
                if !r.status().is_success() {
                    bail!("list: HTTP {}", r.status());
                }
                r.bytes().await?;
                Ok(())
            }
        })
        .await;
        row("corral list of 1000 objects, 4 clients", &lists);
    }

    if opts.runs("watch") {
        println!("\nwatch delivery (from issuing the write to the event arriving; includes the durable commit)");
        for watchers in [1usize, opts.watchers] {
            let (p50, p99, delivered) = watch_latency(&corral, watchers, 200).await?;
            println!(
                "  {:<44} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   ({delivered} deliveries)",
                format!("{watchers} watchers")
            );
        }
    }

    let mut held = None;
    if opts.runs("mass") {
        // A fresh server, so that the memory figure is for exactly this many objects
        // (the first, idle meanwhile, is a process of its own).
        println!("\nholding {} objects (fresh server)", opts.objects);
        let server = start_corral_with(&dir.path().join("corral-mass"), &opts.server_args).await?;
        let corral = Arc::new(Corral::new(format!("http://{}", server.addr))?);
        let idle_rss = server.rss_bytes()?;
        corral.namespace("mass").await?;
        let before = corral.revision().await?;
        let cpu_before = server.cpu_time()?;
        let load = creates(&corral, 256, Duration::from_secs(3600), opts.objects as u64, "mass", "m").await;
        let cpu = server.cpu_time()?.saturating_sub(cpu_before);
        row(&format!("corral create of {} objects, 256 clients", opts.objects), &load);
        println!(
            "  {:<44} {:>10.1} µs   ({:.1} s of CPU for {} creates)",
            "corral server CPU per create",
            cpu.as_secs_f64() * 1e6 / load.ops.max(1) as f64,
            cpu.as_secs_f64(),
            load.ops
        );
        let rss = server.rss_bytes()?;
        println!(
            "  {:<44} {:>10.1} MB   (idle before: {:.1} MB)",
            "corral server RSS",
            rss as f64 / 1e6,
            idle_rss as f64 / 1e6
        );
        let (events, secs) = replay_rate(&corral, before, load.ops).await?;
        println!(
            "  {:<44} {:>10.0} events/s   ({events} events in {secs:.2} s)",
            "events to one watcher (replay from the log)",
            events as f64 / secs
        );
        held = Some(rss);
    }

    println!("\nsummary");
    for (c, r) in &ratios {
        println!("  durable create throughput corral/etcd at {c:>3} clients: {r:.2}x");
    }
    if let Some((corral_p99, etcd_p99)) = rates {
        println!("  write p99 at {}/s: {corral_p99:.2} ms (etcd {etcd_p99:.2} ms)", opts.rate);
    }
    if let Some(rss) = held {
        println!("  RSS with {} objects: {:.1} MB", opts.objects, rss as f64 / 1e6);
    }
    drop(etcd);
    drop(server);
    Ok(())
}

/// How the in-process store workloads are driven.
enum Drive {
    /// `n` tasks back to back.
    Tasks(usize),
    /// A fixed rate per second.
    Rate(u64),
}

/// The store's own cost: creates straight into a `SledStore`, no server in between.
async fn store_alone(drive: Drive, dur: Duration, dir: &std::path::Path) -> anyhow::Result<LoadResult> {
    use corral_store::{Key, Options, SledStore, Storage};
    let path = dir.join(match drive {
        Drive::Tasks(n) => format!("alone-{n}"),
        Drive::Rate(r) => format!("alone-rate-{r}"),
    });
    let store = Arc::new(SledStore::open(&path, Options::default())?);
    let s = store.clone();
    let create = move |seq: u64| {
        let s = s.clone();
        async move {
            let name = format!("o{seq}");
            s.create(Key::namespaced("corral.dev/configmaps", "default", &name), configmap("default", &name, seq))
                .await?;
            Ok(())
        }
    };
    let r = match drive {
        Drive::Tasks(n) => closed_loop(n, dur, u64::MAX, move |_, seq| create(seq)).await,
        Drive::Rate(rate) => open_loop(rate, dur, create).await,
    };
    match Arc::try_unwrap(store) {
        Ok(s) => s.shutdown().await,
        Err(s) => s.close(),
    }
    Ok(r)
}

/// gRPC connections (one `etcd_client::Client` each) the etcd workloads spread their
/// clients over: one per client up to this many.
pub(crate) const ETCD_CONNECTIONS: usize = 16;

/// `clients` closed loops putting distinct keys `{prefix}/o{seq}` with values of
/// `value_len` bytes into the etcd whose client URLs are `endpoints`, for `dur`.
pub(crate) async fn etcd_puts(
    endpoints: &[String],
    clients: usize,
    dur: Duration,
    prefix: &str,
    value_len: usize,
) -> anyhow::Result<LoadResult> {
    // One gRPC connection multiplexes many streams; several spread the load as a
    // fleet of clients would.
    let conns = clients.clamp(1, ETCD_CONNECTIONS);
    let mut kvs = Vec::with_capacity(conns);
    for _ in 0..conns {
        kvs.push(etcd_client::Client::connect(endpoints, None).await?.kv_client());
    }
    let kvs = Arc::new(kvs);
    let prefix = prefix.to_string();
    Ok(closed_loop(clients, dur, u64::MAX, move |c, seq| {
        let mut kv = kvs[c % kvs.len()].clone();
        let key = format!("{prefix}/o{seq}");
        async move { kv.put(key, sized_payload(seq, value_len), None).await.map(|_| ()).map_err(Into::into) }
    })
    .await)
}

#[derive(serde::Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    object: WireObject,
}

#[derive(serde::Deserialize)]
struct WireObject {
    metadata: WireMeta,
}

#[derive(serde::Deserialize)]
struct WireMeta {
    #[serde(default)]
    name: String,
}

/// Reads NDJSON events from a watch response, decoding each as `T` and calling `f`
/// for it until `f` returns false or the stream ends.
pub(crate) async fn read_events<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    mut f: impl FnMut(T) -> bool,
) -> anyhow::Result<()> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        // Only the new bytes are searched for a line end: a 1 MiB event comes in many
        // chunks, and searching its start again for each would be quadratic.
        let mut scanned = buf.len();
        buf.extend_from_slice(&chunk?);
        let mut start = 0;
        while let Some(pos) = buf[scanned..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..scanned + pos];
            start = scanned + pos + 1;
            scanned = start;
            if line.is_empty() {
                continue;
            }
            let ev: T = serde_json::from_slice(line)?;
            if !f(ev) {
                return Ok(());
            }
        }
        buf.drain(..start);
    }
    Ok(())
}

/// `watchers` watches of one namespace; `writes` creates at 100/s; latency from the
/// moment each write is issued to each watcher receiving its event.
async fn watch_latency(corral: &Arc<Corral>, watchers: usize, writes: u64) -> anyhow::Result<(f64, f64, usize)> {
    let ns = format!("watch-{watchers}");
    corral.namespace(&ns).await?;
    let rev = corral.revision().await?;
    let epoch = Instant::now();
    let issued: Arc<Vec<AtomicU64>> = Arc::new((0..writes).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::with_capacity(watchers);
    let url = format!("{}?watch=true&resourceVersion={rev}", corral.collection(&ns));
    for w in 0..watchers {
        let resp = corral.http(w).get(&url).send().await?;
        if !resp.status().is_success() {
            bail!("watch: HTTP {}", resp.status());
        }
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(writes as usize);
            let _ = read_events(resp, |ev: WireEvent| {
                if ev.kind == "ADDED"
                    && let Some(seq) = ev.object.metadata.name.strip_prefix('w').and_then(|s| s.parse::<usize>().ok())
                {
                    let now = epoch.elapsed().as_micros() as u64;
                    let t0 = issued.get(seq).map(|a| a.load(Ordering::Acquire)).unwrap_or(now);
                    lat.push(now.saturating_sub(t0));
                }
                (lat.len() as u64) < writes
            })
            .await;
            lat
        }));
    }
    let cl = corral.clone();
    let iss = issued.clone();
    let nsc = ns.clone();
    open_loop(100, Duration::from_secs(writes / 100), move |seq| {
        let cl = cl.clone();
        let iss = iss.clone();
        let ns = nsc.clone();
        async move {
            iss[seq as usize].store(epoch.elapsed().as_micros() as u64, Ordering::Release);
            cl.create(seq as usize, &ns, &format!("w{seq}"), seq).await.map(|_| ())
        }
    })
    .await;
    let mut all = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(lat)) => all.extend(lat),
            _ => bail!("a watcher did not receive every event within 60 s"),
        }
    }
    all.sort_unstable();
    Ok((percentile_ms(&all, 0.5), percentile_ms(&all, 0.99), all.len()))
}

/// One watcher replaying every event after `from`; returns events and seconds.
/// Replays the `created` ConfigMap creations made after revision `from`: the events a
/// watcher resuming from there receives. Other kinds' writes meanwhile (the controller
/// manager renews its lease) take revisions too, so the count is the creations, not the
/// revisions.
async fn replay_rate(corral: &Arc<Corral>, from: u64, created: u64) -> anyhow::Result<(u64, f64)> {
    let want = created;
    let t0 = Instant::now();
    let resp = corral
        .http(0)
        .get(format!("{}/apis/corral.dev/v1/configmaps?watch=true&resourceVersion={from}", corral.base))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("watch: HTTP {}", resp.status());
    }
    let mut n = 0u64;
    read_events(resp, |_: WireEvent| {
        n += 1;
        n < want
    })
    .await?;
    Ok((n, t0.elapsed().as_secs_f64()))
}
