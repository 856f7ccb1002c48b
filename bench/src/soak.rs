//! `corral-bench soak`: the control plane under a long mixed load — overwrites of
//! 1 MiB and 1 KiB objects, thousands of watchers of which some never read, full
//! lists now and then — sampling the server's memory, its data dir on disk and
//! `/healthz` latency as it goes. The question is whether memory and disk stay flat
//! once warmed up, and health answers stay quick, however the clients behave.
//!
//! The load, against a real `corral server` on loopback with a temp data dir:
//! - writers overwrite the objects in turn at fixed rates (open loop, so a slow
//!   server shows as latency and skipped writes, not as a politely lower rate);
//! - reading watchers each hold an HTTP/1.1 watch and decode every event; the
//!   even-numbered ones start from the revision of a list taken before the load, the
//!   odd-numbered ones without a revision, so they first receive every current object
//!   (both ways a client starts are exercised). On `ERROR` 410 they re-list and watch
//!   from the list's revision; when a stream ends otherwise they resume after the
//!   last event seen;
//! - idle watchers send a watch request on a raw TCP connection and never read:
//!   what the server buffers for them is the point (it closes them once its writes
//!   have waited its write-stall timeout; the summary counts them);
//! - a lister reads a full list of each namespace to the end and discards it;
//! - a prober `GET`s `/healthz` every 100 ms on a connection, a thread and a runtime
//!   of its own.
//!
//! The watchers connect from several loopback addresses (127.0.0.2, 127.0.0.3, …),
//! a few hundred each, as a fleet of nodes would: the server's per-client caps then
//! limit what they are meant to (one client), not the benchmark.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::load::percentile_ms;
use super::procs::{Proc, own_cpu_time, start_corral_with};
use super::store::read_events;

/// What the soak runs and for how long.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Length of the run, in minutes.
    pub minutes: u64,
    /// Watchers in all, reading and idle.
    pub watchers: usize,
    /// Of the watchers, those that send their request and never read the answer.
    pub idle_watchers: usize,
    /// Objects of 1 MiB, overwritten in turn.
    pub big_objects: usize,
    /// Objects of 1 KiB, overwritten in turn.
    pub small_objects: usize,
    /// Overwrites of 1 MiB objects per second; 0 for none.
    pub big_writes_per_sec: f64,
    /// Overwrites of 1 KiB objects per second; 0 for none.
    pub small_writes_per_sec: f64,
    /// Percent of the watchers (reading and idle alike) that watch the 1 MiB objects;
    /// the others watch the 1 KiB ones.
    pub big_watchers_percent: u32,
    /// Seconds between full lists of each namespace; 0 for none.
    pub list_every: u64,
    /// Seconds between samples.
    pub sample_every: u64,
    /// Further arguments of `corral server`.
    pub server_args: Vec<String>,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            minutes: 30,
            watchers: 2000,
            idle_watchers: 1000,
            big_objects: 100,
            small_objects: 5000,
            big_writes_per_sec: 5.0,
            small_writes_per_sec: 200.0,
            big_watchers_percent: 5,
            list_every: 10,
            sample_every: 30,
            server_args: Vec::new(),
        }
    }
}

/// Targets of issue 9: server RSS after warm-up, data dir against live data, and
/// `/healthz` p99 throughout.
const RSS_TARGET_BYTES: u64 = 500_000_000;
const DISK_TARGET_RATIO: f64 = 3.0;
const HEALTHZ_TARGET_MS: f64 = 50.0;

const HEALTHZ_EVERY: Duration = Duration::from_millis(100);
/// A probe slower than this is a failure, not a latency.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous: a 1 MiB write waits for its flush, and a list of the big objects is
/// 100 MiB; only a wedged server takes this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes of one size outstanding at once; a tick finding them all taken is skipped
/// (and counted) rather than piling up tasks against a stalled server.
const MAX_WRITES_IN_FLIGHT: usize = 64;
/// Objects created at once while populating.
const POPULATE_CONCURRENCY: usize = 16;
/// Watchers sharing one source address.
const WATCHERS_PER_SOURCE: usize = 250;
/// How long an idle pooled connection is kept. The server closes an HTTP/1
/// connection that sends no request for 10 s (its header-read timeout); reusing one
/// it is closing fails the request, so ours are dropped well before.
const POOL_IDLE: Duration = Duration::from_secs(5);
/// Pause before a failed watch is tried again, so a refusing server is not spun on.
const WATCH_RETRY: Duration = Duration::from_secs(1);
/// Failures of one kind logged in full; the rest are only counted.
const LOGGED_FAILURES: u64 = 3;

/// The two sizes of object, each in a namespace of its own so that a list or a
/// watch of one size is a list or watch of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    Big,
    Small,
}

impl Size {
    fn namespace(self) -> &'static str {
        match self {
            Size::Big => "soak-big",
            Size::Small => "soak-small",
        }
    }

    /// Bytes of the one data value of an object.
    fn value_bytes(self) -> usize {
        match self {
            Size::Big => 1 << 20,
            Size::Small => 1 << 10,
        }
    }

    fn object_name(self, idx: usize) -> String {
        match self {
            Size::Big => format!("big-{idx}"),
            Size::Small => format!("small-{idx}"),
        }
    }
}

/// What watcher `i` of one group (reading or idle) watches: `big_percent` of them,
/// spread evenly through the group, watch the 1 MiB objects.
fn watched(i: usize, big_percent: u32) -> Size {
    let pct = big_percent as usize;
    if (i + 1) * pct / 100 > i * pct / 100 { Size::Big } else { Size::Small }
}

/// The loopback address watcher `i` connects from: 127.0.0.2 for the first
/// [`WATCHERS_PER_SOURCE`], then 127.0.0.3, … (Linux routes all of 127/8 to `lo`).
fn source_address(i: usize) -> IpAddr {
    let n = 2 + (i / WATCHERS_PER_SOURCE) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n))
}

/// Random-looking ASCII from which values are cut: neither sled nor the file system
/// can compress it away, so the data dir figure is for bytes really held.
struct Payloads {
    base: String,
}

impl Payloads {
    fn new() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let base = (0..Size::Big.value_bytes())
            .map(|_| {
                // xorshift64: cheap, and plenty for incompressible filler.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
            })
            .collect();
        Payloads { base }
    }

    /// The value of write `seq`, `len` bytes (at most 1 MiB): a rotation of the
    /// base starting at a place that depends on `seq`, so that every write changes
    /// the object.
    fn value(&self, seq: u64, len: usize) -> String {
        let n = self.base.len();
        let len = len.min(n);
        let start = (seq.wrapping_mul(7919) % n as u64) as usize;
        let first = (n - start).min(len);
        let mut s = String::with_capacity(len);
        s.push_str(&self.base[start..start + first]);
        s.push_str(&self.base[..len - first]);
        s
    }
}

fn configmap_body(size: Size, idx: usize, value: &str) -> String {
    format!(
        r#"{{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{{"name":"{}","namespace":"{}"}},"spec":{{"data":{{"v":"{value}"}}}}}}"#,
        size.object_name(idx),
        size.namespace()
    )
}

/// What the load has done so far, counted by every task.
#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    write_errors: AtomicU64,
    /// Write ticks skipped because [`MAX_WRITES_IN_FLIGHT`] writes were outstanding.
    writes_skipped: AtomicU64,
    /// Events received by the reading watchers, bookmarks and errors not counted.
    events: AtomicU64,
    /// Re-lists after a 410 (as an `ERROR` event or as the watch's answer).
    relists: AtomicU64,
    /// Watches resumed after their stream ended or broke without a 410.
    rewatches: AtomicU64,
    /// Watch requests refused or failed, and `ERROR` events other than 410.
    watch_errors: AtomicU64,
    /// Reading watchers whose first watch was answered.
    watching: AtomicU64,
    lists: AtomicU64,
    list_errors: AtomicU64,
    /// The slowest list since the last sample, in microseconds.
    list_max_us: AtomicU64,
    healthz_errors: AtomicU64,
    /// Scrapes of `/metrics` that failed (their sample shows no store figures).
    metrics_errors: AtomicU64,
    /// `/healthz` latencies since the last sample, in microseconds.
    healthz_us: Mutex<Vec<u64>>,
    /// Set when the run is over: requests failing after it were cut short.
    done: AtomicBool,
}

impl Counters {
    /// Counts a failure in `counter`, logging the first few of it. Once the run is
    /// over, requests cut short by the server's end are not failures.
    fn failed(&self, counter: &AtomicU64, what: &str, err: &dyn Display) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if n < LOGGED_FAILURES {
            tracing::warn!(error = %err, "soak: {what} failed");
        }
    }

    /// Failed requests of every kind so far.
    fn failures(&self) -> u64 {
        [&self.write_errors, &self.list_errors, &self.healthz_errors, &self.watch_errors, &self.metrics_errors]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn take_healthz(&self) -> Vec<u64> {
        std::mem::take(&mut *self.healthz_us.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A builder of the HTTP/1.1 clients of the run.
fn http1() -> reqwest::ClientBuilder {
    reqwest::Client::builder().http1_only().pool_idle_timeout(POOL_IDLE).default_headers(super::procs::auth_headers())
}

/// An HTTP/1.1 client of the server's API.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client connecting from `source` (loopback), or from the default address.
    fn new(base: &str, source: Option<IpAddr>) -> anyhow::Result<Self> {
        let http = http1().local_address(source).build()?;
        Ok(Api { http, base: base.to_string() })
    }

    fn collection(&self, ns: &str) -> String {
        format!("{}/apis/corral.dev/v1/namespaces/{ns}/configmaps", self.base)
    }

    async fn namespace(&self, ns: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": ns}});
        let r = self.http.post(format!("{}/apis/corral.dev/v1/namespaces", self.base)).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("create namespace {ns}: HTTP {}", r.status());
        }
        Ok(())
    }

    /// Creates (`create`) or overwrites object `idx` of `size` with `value`.
    async fn write(&self, size: Size, idx: usize, value: &str, create: bool) -> anyhow::Result<()> {
        let collection = self.collection(size.namespace());
        let req = if create {
            self.http.post(collection)
        } else {
            self.http.put(format!("{collection}/{}", size.object_name(idx)))
        };
        let r = req
            .header("content-type", "application/json")
            .body(configmap_body(size, idx, value))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?;
        let status = r.status();
        // Read the answer to the end so the connection goes back to the pool.
        let answer = r.bytes().await?;
        if !status.is_success() {
            bail!(
                "{} {}/{}: HTTP {status}: {}",
                if create { "create" } else { "update" },
                size.namespace(),
                size.object_name(idx),
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
        }
        Ok(())
    }

    /// Lists namespace `ns` in full, reading the answer to the end and discarding
    /// it as it streams; returns the list's revision and its size in bytes.
    async fn list(&self, ns: &str) -> anyhow::Result<(u64, u64)> {
        const HEAD_BYTES: usize = 4096;
        let r = self.http.get(self.collection(ns)).timeout(REQUEST_TIMEOUT).send().await?;
        if !r.status().is_success() {
            bail!("list {ns}: HTTP {}", r.status());
        }
        let mut head = Vec::new();
        let mut revision = None;
        let mut bytes = 0u64;
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            if revision.is_none() && head.len() < HEAD_BYTES {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD_BYTES - head.len())]);
                revision = list_revision(&head);
            }
        }
        let revision = revision.with_context(|| format!("list {ns}: no metadata.resourceVersion at its head"))?;
        Ok((revision, bytes))
    }
}

/// The `metadata.resourceVersion` at the head of a list. The server writes a list's
/// metadata before its items, so the first `resourceVersion` is the list's; reading
/// it there lets a 100 MiB list be discarded as it streams instead of held to parse.
/// `None` while the head is too short to tell.
fn list_revision(head: &[u8]) -> Option<u64> {
    const NEEDLE: &[u8] = br#""resourceVersion":""#;
    let at = head.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let digits = &head[at..];
    let end = digits.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Just the parts of a watch event a reading watcher looks at; the object's data
/// is skipped, not kept.
#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    object: FrameObject,
}

#[derive(serde::Deserialize)]
struct FrameObject {
    #[serde(default)]
    metadata: Option<FrameMeta>,
    /// The status code of an `ERROR` event.
    #[serde(default)]
    code: Option<u16>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameMeta {
    #[serde(default)]
    resource_version: Option<String>,
}

/// How one watch stream ended.
enum WatchEnd {
    /// 410: the revision is compacted away; re-list.
    Gone,
    /// The stream ended or broke (resume at once), or the request failed (resume
    /// after a pause, so a refusing server is not spun on).
    Resume { pause: bool },
}

/// A reading watcher of namespace `ns`, from revision `from` (or the current
/// objects), until aborted.
async fn read_watch(api: Api, ns: &'static str, mut from: Option<u64>, c: Arc<Counters>) {
    let collection = api.collection(ns);
    let mut opened = false;
    loop {
        let url = match from {
            Some(rv) => format!("{collection}?watch=true&resourceVersion={rv}"),
            None => format!("{collection}?watch=true"),
        };
        let end = match api.http.get(&url).send().await {
            Err(e) => {
                c.failed(&c.watch_errors, "watch request", &e);
                WatchEnd::Resume { pause: true }
            }
            Ok(r) if r.status() == reqwest::StatusCode::GONE => WatchEnd::Gone,
            Ok(r) if !r.status().is_success() => {
                c.failed(&c.watch_errors, "watch request", &format!("{ns}: HTTP {}", r.status()));
                WatchEnd::Resume { pause: true }
            }
            Ok(r) => {
                if !opened {
                    opened = true;
                    c.watching.fetch_add(1, Ordering::Relaxed);
                }
                let mut gone = false;
                let mut error = None;
                let read = read_events(r, |f: Frame| {
                    match f.kind.as_str() {
                        "ERROR" => {
                            gone = f.object.code == Some(410);
                            if !gone {
                                error = Some(format!("{ns}: ERROR event with code {:?}", f.object.code));
                            }
                            return false;
                        }
                        "BOOKMARK" => {}
                        _ => {
                            c.events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(rv) = f.object.metadata.and_then(|m| m.resource_version).and_then(|v| v.parse().ok()) {
                        from = Some(rv);
                    }
                    true
                })
                .await;
                if let Some(e) = error {
                    c.failed(&c.watch_errors, "watch", &e);
                }
                // A stream that broke (reset, undecodable) is resumed like one that
                // ended: the server may close watches it will not serve further.
                if let Err(e) = read {
                    tracing::debug!(error = %e, "soak: watch stream broke");
                }
                if gone { WatchEnd::Gone } else { WatchEnd::Resume { pause: false } }
            }
        };
        match end {
            WatchEnd::Gone => {
                c.relists.fetch_add(1, Ordering::Relaxed);
                match api.list(ns).await {
                    Ok((rv, _)) => from = Some(rv),
                    Err(e) => {
                        c.failed(&c.list_errors, "re-list after 410", &e);
                        // Without a list, start over from the current objects.
                        from = None;
                        tokio::time::sleep(WATCH_RETRY).await;
                    }
                }
            }
            WatchEnd::Resume { pause } => {
                if pause {
                    tokio::time::sleep(WATCH_RETRY).await;
                } else {
                    c.rewatches.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// An idle watcher: a raw TCP connection from `source` that sends a watch request
/// for `ns` and is never read from, held until dropped.
async fn open_idle_watch(server: SocketAddr, source: IpAddr, ns: &str) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding {source}"))?;
    let mut stream = socket.connect(server).await.with_context(|| format!("connecting to {server} from {source}"))?;
    let request = format!(
        "GET /apis/corral.dev/v1/namespaces/{ns}/configmaps?watch=true HTTP/1.1\r\nHost: {server}\r\nAccept: application/x-ndjson\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

/// Overwrites the objects of `size` in turn, `rate` per second, until aborted.
async fn write_loop(api: Api, size: Size, count: usize, rate: f64, payloads: Arc<Payloads>, c: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Catch up after a stall, as an open loop of clients would; the in-flight cap
    // bounds the catching up.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Held here so that aborting the loop aborts the writes in flight too.
    let mut in_flight = JoinSet::new();
    // Past the seqs used to populate, so the first overwrite changes each object.
    let mut seq = count as u64;
    loop {
        tick.tick().await;
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_WRITES_IN_FLIGHT {
            c.writes_skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (api, payloads, c) = (api.clone(), payloads.clone(), c.clone());
        let idx = (seq % count as u64) as usize;
        let this = seq;
        seq += 1;
        in_flight.spawn(async move {
            let value = payloads.value(this, size.value_bytes());
            match api.write(size, idx, &value, false).await {
                Ok(()) => c.writes.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    c.failed(&c.write_errors, "write", &e);
                    0
                }
            };
        });
    }
}

/// Lists both namespaces in full every `every`, until aborted.
async fn list_loop(api: Api, every: Duration, c: Arc<Counters>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; the first lists come one period into the load.
    tick.tick().await;
    loop {
        tick.tick().await;
        for size in [Size::Big, Size::Small] {
            let t0 = Instant::now();
            match api.list(size.namespace()).await {
                Ok(_) => {
                    c.lists.fetch_add(1, Ordering::Relaxed);
                    c.list_max_us.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                Err(e) => c.failed(&c.list_errors, "list", &e),
            }
        }
    }
}

/// `GET /healthz` every [`HEALTHZ_EVERY`] on a connection of its own, until the run is
/// done. The prober has a thread and a runtime of its own, as a load balancer or a
/// kubelet probing the server would be a process of its own: on the bench's runtime
/// its answers would wait behind the watchers' decoding, and the figure would be the
/// bench's latency, not the server's.
fn start_prober(url: String, c: Arc<Counters>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let http = http1().timeout(HEALTHZ_TIMEOUT).build()?;
    let thread = std::thread::Builder::new().name("healthz-prober".into()).spawn(move || {
        rt.block_on(async move {
            let mut tick = tokio::time::interval(HEALTHZ_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            while !c.done.load(Ordering::Relaxed) {
                tick.tick().await;
                let t0 = Instant::now();
                let outcome = match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(anyhow::Error::from),
                    Ok(r) => Err(anyhow::anyhow!("HTTP {}", r.status())),
                    Err(e) => Err(e.into()),
                };
                match outcome {
                    Ok(()) => {
                        let us = t0.elapsed().as_micros() as u64;
                        c.healthz_us.lock().unwrap_or_else(PoisonError::into_inner).push(us);
                    }
                    Err(e) => c.failed(&c.healthz_errors, "/healthz", &e),
                }
            }
        })
    })?;
    Ok(thread)
}

/// Tasks of the run, aborted when dropped: whether the run ends or fails, nothing
/// keeps loading a server that is about to be killed.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, f: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(f));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Space `dir` takes: on disk (allocated blocks) and apparent (file lengths).
/// Files sled removes during the walk are skipped.
fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let (mut disk, mut apparent) = (0u64, 0u64);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            }
            disk += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    (disk, apparent)
}

/// The store's figures from the server's `/metrics`; `None` where a metric is not
/// (yet) exported.
#[derive(Clone, Copy, Debug, Default)]
struct StoreGauges {
    live: Option<u64>,
    history: Option<u64>,
    db: Option<u64>,
    revision: Option<u64>,
    compacted: Option<u64>,
    watchers: Option<u64>,
    /// Connections the server closed because their client read nothing.
    stalled: Option<u64>,
}

impl StoreGauges {
    fn parse(text: &str) -> Self {
        let get = |name| metric(text, name).map(|v| v as u64);
        StoreGauges {
            live: get("corral_store_live_bytes"),
            history: get("corral_store_history_bytes"),
            db: get("corral_store_db_bytes"),
            revision: get("corral_store_revision"),
            compacted: get("corral_store_compacted_revision"),
            watchers: get("corral_store_watchers"),
            stalled: get("corral_http_connections_stalled_total"),
        }
    }
}

/// The value of metric `name` (its first sample, whatever its labels) in
/// Prometheus or OpenMetrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(labels) => &labels[labels.find('}')? + 1..],
            None => rest,
        };
        // A space must follow, or this is another metric named with `name` as a prefix.
        rest.strip_prefix(' ')?.split_whitespace().next()?.parse().ok()
    })
}

/// One sample of the run.
struct Sample {
    /// When it was due (multiples of the sample period, and the end): what warm-up
    /// is judged by, free of scheduling jitter.
    due: Duration,
    elapsed: Duration,
    rss: u64,
    disk: u64,
    apparent: u64,
    gauges: StoreGauges,
    /// Live data the ratio is taken against: the server's figure, else the bench's
    /// own estimate (the values it wrote).
    live: u64,
    /// `/healthz` p99 over the interval, in ms; `None` when no probe succeeded.
    healthz_p99: Option<f64>,
}

/// Takes the samples, with what it needs to compute intervals.
struct Sampler {
    data_dir: PathBuf,
    metrics_url: String,
    http: reqwest::Client,
    c: Arc<Counters>,
    /// Live data by the bench's count, used when the server does not say.
    live_estimate: u64,
    /// CPU time of the server and of this process at the previous sample.
    last_cpu: (Duration, Duration),
    last_at: Instant,
    /// Every `/healthz` latency of the run, in microseconds.
    healthz_all: Vec<u64>,
    /// Writes done and failed at the previous sample.
    last_writes: (u64, u64),
}

impl Sampler {
    fn header() {
        println!(
            "{:>7} {:>8} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>7} {:>9} {:>10} {:>6} {:>6} {:>8} {:>6}  {:>22}",
            "elapsed",
            "RSS MB",
            "CPU%",
            "bench",
            "disk MB",
            "appar MB",
            "live MB",
            "hist MB",
            "db MB",
            "d/live",
            "revision",
            "compacted",
            "watches",
            "writes",
            "events",
            "410s",
            "lists",
            "list ms",
            "errors",
            "healthz p50/p99/max ms"
        );
    }

    /// Samples the server and the counters, prints the line and returns the sample.
    async fn sample(&mut self, server: &Proc, due: Duration, elapsed: Duration) -> anyhow::Result<Sample> {
        let rss = server.rss_bytes()?;
        let cpu = (server.cpu_time()?, own_cpu_time()?);
        let now = Instant::now();
        let wall = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let pct = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() * 100.0 / wall;
        let (cpu_pct, bench_cpu_pct) = (pct(cpu.0, self.last_cpu.0), pct(cpu.1, self.last_cpu.1));
        (self.last_cpu, self.last_at) = (cpu, now);
        let (disk, apparent) = {
            let dir = self.data_dir.clone();
            tokio::task::spawn_blocking(move || dir_usage(&dir)).await?
        };
        let gauges = match self.scrape().await {
            Ok(text) => StoreGauges::parse(&text),
            Err(e) => {
                self.c.failed(&self.c.metrics_errors, "GET /metrics", &format!("{e:#}"));
                StoreGauges::default()
            }
        };
        let live = gauges.live.filter(|l| *l > 0).unwrap_or(self.live_estimate);
        let mut hz = self.c.take_healthz();
        hz.sort_unstable();
        self.healthz_all.extend_from_slice(&hz);
        let healthz_p99 = (!hz.is_empty()).then(|| percentile_ms(&hz, 0.99));
        let healthz = if hz.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}/{:.1}/{:.1}", percentile_ms(&hz, 0.5), percentile_ms(&hz, 0.99), percentile_ms(&hz, 1.0))
        };
        let c = &self.c;
        let mb = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
        let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        let list_ms = c.list_max_us.swap(0, Ordering::Relaxed);
        println!(
            "{:>6.0}s {:>8.1} {:>5.0} {:>5.0} {:>8.1} {:>8.1} {:>8} {:>8} {:>8} {:>5.2}{} {:>9} {:>9} {:>7} {:>9} {:>10} {:>6} {:>6} {:>8} {:>6}  {:>22}",
            elapsed.as_secs_f64(),
            rss as f64 / 1e6,
            cpu_pct,
            bench_cpu_pct,
            disk as f64 / 1e6,
            apparent as f64 / 1e6,
            mb(gauges.live),
            mb(gauges.history),
            mb(gauges.db),
            disk as f64 / live.max(1) as f64,
            if gauges.live.is_some_and(|l| l > 0) { " " } else { "~" },
            num(gauges.revision),
            num(gauges.compacted),
            num(gauges.watchers),
            c.writes.load(Ordering::Relaxed),
            c.events.load(Ordering::Relaxed),
            c.relists.load(Ordering::Relaxed),
            c.lists.load(Ordering::Relaxed),
            if list_ms == 0 { "-".to_string() } else { format!("{:.0}", list_ms as f64 / 1000.0) },
            c.failures(),
            healthz,
        );
        Ok(Sample { due, elapsed, rss, disk, apparent, gauges, live, healthz_p99 })
    }

    async fn scrape(&self) -> anyhow::Result<String> {
        let r = self.http.get(&self.metrics_url).timeout(REQUEST_TIMEOUT).send().await?;
        if !r.status().is_success() {
            bail!("HTTP {}", r.status());
        }
        Ok(r.text().await?)
    }

    /// Whether writes were attempted since the last call and none succeeded: the
    /// server has stopped serving, and going on would only count failures.
    fn writes_stalled(&mut self) -> bool {
        let now = (self.c.writes.load(Ordering::Relaxed), self.c.write_errors.load(Ordering::Relaxed));
        let (ok, failed) = (now.0 - self.last_writes.0, now.1 - self.last_writes.1);
        self.last_writes = now;
        ok == 0 && failed > 0
    }
}

/// Creates objects `0..count` of `size`.
async fn populate(api: &Api, payloads: &Payloads, size: Size, count: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..count)
        .map(|i| async move { api.write(size, i, &payloads.value(i as u64, size.value_bytes()), true).await })
        .buffer_unordered(POPULATE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .with_context(|| format!("populating {}", size.namespace()))?;
    Ok(())
}

fn check(opts: &SoakOptions) -> anyhow::Result<()> {
    if opts.minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    if opts.idle_watchers > opts.watchers {
        bail!("--idle-watchers ({}) cannot exceed --watchers ({})", opts.idle_watchers, opts.watchers);
    }
    if opts.sample_every == 0 {
        bail!("--sample-every must be at least 1 second");
    }
    if opts.big_watchers_percent > 100 {
        bail!("--big-watchers-percent is a percentage, 0 to 100");
    }
    for (flag, rate, objects) in [
        ("--big-writes-per-sec", opts.big_writes_per_sec, opts.big_objects),
        ("--small-writes-per-sec", opts.small_writes_per_sec, opts.small_objects),
    ] {
        if !rate.is_finite() || rate < 0.0 {
            bail!("{flag} must be a number of writes per second, 0 or more");
        }
        if rate > 0.0 && objects == 0 {
            bail!("{flag} is {rate} but there are no objects of that size to overwrite");
        }
    }
    Ok(())
}

/// Opens the watchers: the reading ones as tasks in `tasks`, counting into `c`, and
/// the idle ones, returned to be held open until the end. Returns once every
/// reading watcher's first watch is answered.
async fn open_watchers(
    opts: &SoakOptions,
    control: &Api,
    server: &mut Proc,
    c: &Arc<Counters>,
    tasks: &mut Tasks,
) -> anyhow::Result<Vec<TcpStream>> {
    let reading = opts.watchers - opts.idle_watchers;
    // Reading watchers. The even-numbered start from these revisions, as a client
    // that listed first does.
    let big_rev = control.list(Size::Big.namespace()).await?.0;
    let small_rev = control.list(Size::Small.namespace()).await?.0;
    let mut by_source: Vec<Api> = Vec::new();
    for i in 0..reading {
        let group = i / WATCHERS_PER_SOURCE;
        if group == by_source.len() {
            by_source.push(Api::new(&control.base, Some(source_address(i)))?);
        }
        let size = watched(i, opts.big_watchers_percent);
        let rev = match size {
            Size::Big => big_rev,
            Size::Small => small_rev,
        };
        let from = (i % 2 == 0).then_some(rev);
        tasks.spawn(read_watch(by_source[group].clone(), size.namespace(), from, c.clone()));
    }
    // Idle watchers, each on its own connection, from the addresses after the
    // reading watchers'.
    let idle: Vec<TcpStream> = futures::stream::iter(0..opts.idle_watchers)
        .map(|j| {
            open_idle_watch(server.addr, source_address(reading + j), watched(j, opts.big_watchers_percent).namespace())
        })
        .buffer_unordered(64)
        .try_collect()
        .await
        .context("opening the idle watchers")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.watching.load(Ordering::Relaxed) < reading as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {reading} reading watchers opened in 120 s", c.watching.load(Ordering::Relaxed));
        }
        if let Some(status) = server.exit_status() {
            bail!("corral server exited ({status}) while the watchers opened");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(idle)
}

/// Runs the soak and prints a line per sample, then a summary against the targets.
///
/// # Errors
/// On operational failure only: the server did not start or died, the set-up
/// failed, or requests failed during the run (after the summary is printed). Missed
/// targets are reported, not errors.
pub async fn run_soak(opts: SoakOptions) -> anyhow::Result<()> {
    check(&opts)?;
    let open_files = corral_server::raise_open_files_limit();
    let total = Duration::from_secs(opts.minutes * 60);
    let sample_every = Duration::from_secs(opts.sample_every);
    // Warm-up: the first 10% of the run or the first two sampling periods,
    // whichever is longer.
    let warmup = total.mul_f64(0.1).max(sample_every * 2);
    let reading = opts.watchers - opts.idle_watchers;

    // Declared before the server, so it is dropped after it: the directory goes once
    // the process using it is dead.
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("corral");
    let server_started = Instant::now();
    let mut server = start_corral_with(&data_dir, &opts.server_args).await?;
    let base = format!("http://{}", server.addr);
    let control = Api::new(&base, None)?;
    let payloads = Arc::new(Payloads::new());
    let live_estimate =
        (opts.big_objects * Size::Big.value_bytes() + opts.small_objects * Size::Small.value_bytes()) as u64;

    println!(
        "corral-bench soak: {} min against corral server {} (data dir {}){}",
        opts.minutes,
        server.addr,
        data_dir.display(),
        if opts.server_args.is_empty() { String::new() } else { format!(", server args: {:?}", opts.server_args) }
    );
    println!(
        "  writes: {}/s over {} objects of 1 MiB, {}/s over {} of 1 KiB ({:.1} MB of values live)",
        opts.big_writes_per_sec,
        opts.big_objects,
        opts.small_writes_per_sec,
        opts.small_objects,
        live_estimate as f64 / 1e6
    );
    println!(
        "  watchers: {} reading + {} never reading, {}% of each on the 1 MiB objects; full lists every {}; \
         sample every {} s; warm-up {} s; bench open files limit {open_files}",
        reading,
        opts.idle_watchers,
        opts.big_watchers_percent,
        if opts.list_every == 0 { "never".to_string() } else { format!("{} s", opts.list_every) },
        opts.sample_every,
        warmup.as_secs()
    );

    let t0 = Instant::now();
    for size in [Size::Big, Size::Small] {
        control.namespace(size.namespace()).await?;
    }
    populate(&control, &payloads, Size::Big, opts.big_objects).await?;
    populate(&control, &payloads, Size::Small, opts.small_objects).await?;
    println!("  populated in {:.1} s", t0.elapsed().as_secs_f64());

    let c = Arc::new(Counters::default());
    let mut tasks = Tasks::default();

    let t0 = Instant::now();
    let idle = open_watchers(&opts, &control, &mut server, &c, &mut tasks).await?;
    println!("  {} watchers open in {:.1} s", opts.watchers, t0.elapsed().as_secs_f64());

    println!(
        "\nd/live is the data dir on disk over live data; ~ marks live data estimated by the bench (the values \
         written), the server exporting no corral_store_live_bytes; errors are failed requests so far"
    );
    Sampler::header();
    let start = Instant::now();
    let mut sampler = Sampler {
        data_dir,
        metrics_url: format!("{base}/metrics"),
        http: http1().build()?,
        c: c.clone(),
        live_estimate,
        // The first sample's CPU figures cover the set-up (populating, the watchers'
        // first events): both processes started about when the server did.
        last_cpu: (Duration::ZERO, Duration::ZERO),
        last_at: server_started,
        healthz_all: Vec::new(),
        last_writes: (0, 0),
    };
    let mut samples = vec![sampler.sample(&server, Duration::ZERO, Duration::ZERO).await?];

    // The load.
    let prober = start_prober(format!("{base}/healthz"), c.clone())?;
    for (size, rate, count) in [
        (Size::Big, opts.big_writes_per_sec, opts.big_objects),
        (Size::Small, opts.small_writes_per_sec, opts.small_objects),
    ] {
        if rate > 0.0 {
            tasks.spawn(write_loop(Api::new(&base, None)?, size, count, rate, payloads.clone(), c.clone()));
        }
    }
    if opts.list_every > 0 {
        tasks.spawn(list_loop(Api::new(&base, None)?, Duration::from_secs(opts.list_every), c.clone()));
    }

    let mut due = sample_every;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Some(status) = server.exit_status() {
            bail!("corral server exited ({status}) {:.0} s into the run", start.elapsed().as_secs_f64());
        }
        let elapsed = start.elapsed();
        if elapsed < due.min(total) {
            continue;
        }
        let s = sampler.sample(&server, due.min(total), elapsed).await?;
        let last = s.due >= total;
        samples.push(s);
        if last {
            break;
        }
        if sampler.writes_stalled() {
            bail!("the server accepted no write in the last {} s", opts.sample_every);
        }
        while due <= start.elapsed() {
            due += sample_every;
        }
    }
    c.done.store(true, Ordering::Relaxed);
    drop(tasks);
    drop(idle);
    if prober.join().is_err() {
        bail!("the /healthz prober panicked");
    }

    summarize(&opts, &samples, &mut sampler.healthz_all, warmup, &c);
    drop(server);

    let failures = c.failures();
    if failures > 0 {
        bail!(
            "{failures} requests failed during the run (writes {}, lists {}, /healthz {}, watches {}, /metrics {}); \
             see the warnings above",
            c.write_errors.load(Ordering::Relaxed),
            c.list_errors.load(Ordering::Relaxed),
            c.healthz_errors.load(Ordering::Relaxed),
            c.watch_errors.load(Ordering::Relaxed),
            c.metrics_errors.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

/// Prints the summary: memory and disk after warm-up, health latency, and each
/// target held or missed.
fn summarize(opts: &SoakOptions, samples: &[Sample], healthz_all: &mut [u64], warmup: Duration, c: &Counters) {
    let mut after: Vec<&Sample> = samples.iter().filter(|s| s.due > warmup).collect();
    let note = if after.is_empty() {
        // Too short a run to have any: judge by the last sample, and say so.
        after.extend(samples.last());
        " (none after warm-up: the run is too short; the last sample stands in)"
    } else {
        ""
    };
    println!("\nsummary (warm-up: first {} s; {} samples after it{note})", warmup.as_secs(), after.len());
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        println!("  no samples");
        return;
    };
    let hours = (last.elapsed.saturating_sub(first.elapsed)).as_secs_f64() / 3600.0;
    let per_hour = |a: u64, b: u64| {
        if hours > 0.0 { format!("{:+.1} MB/h", (b as f64 - a as f64) / 1e6 / hours) } else { "-".into() }
    };
    let max_rss = after.iter().map(|s| s.rss).max().unwrap_or(0);
    println!(
        "  server RSS after warm-up:        max {:.1} MB; first {:.1} MB, last {:.1} MB ({})",
        max_rss as f64 / 1e6,
        first.rss as f64 / 1e6,
        last.rss as f64 / 1e6,
        per_hour(first.rss, last.rss)
    );
    let max_disk = after.iter().map(|s| s.disk).max().unwrap_or(0);
    println!(
        "  data dir after warm-up:          max {:.1} MB on disk; first {:.1} MB, last {:.1} MB ({}); apparent size last {:.1} MB",
        max_disk as f64 / 1e6,
        first.disk as f64 / 1e6,
        last.disk as f64 / 1e6,
        per_hour(first.disk, last.disk),
        last.apparent as f64 / 1e6
    );
    let from_server = after.iter().all(|s| s.gauges.live.is_some_and(|l| l > 0));
    let max_ratio = after.iter().map(|s| s.disk as f64 / s.live.max(1) as f64).fold(0.0, f64::max);
    println!(
        "  data dir / live data:            max {max_ratio:.2}x after warm-up (live data {})",
        if from_server {
            format!("from corral_store_live_bytes, last {:.1} MB", last.live as f64 / 1e6)
        } else {
            format!(
                "estimated as the values written, {:.1} MB: the server exports no corral_store_live_bytes",
                last.live as f64 / 1e6
            )
        }
    );
    healthz_all.sort_unstable();
    let worst_p99 = samples.iter().filter_map(|s| s.healthz_p99).fold(0.0, f64::max);
    let whole_p99 = percentile_ms(healthz_all, 0.99);
    println!(
        "  /healthz:                        p50 {:.2} ms, p99 {whole_p99:.2} ms over the run; worst interval p99 {worst_p99:.2} ms; max {:.2} ms ({} probes, {} failed)",
        percentile_ms(healthz_all, 0.5),
        percentile_ms(healthz_all, 1.0),
        healthz_all.len(),
        c.healthz_errors.load(Ordering::Relaxed)
    );
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "  load:                            {} writes ({} failed, {} skipped with {MAX_WRITES_IN_FLIGHT} in flight); {} events to {} reading watchers; \
         {} re-lists after 410, {} watches resumed, {} failed; {} full lists ({} failed)",
        load(&c.writes),
        load(&c.write_errors),
        load(&c.writes_skipped),
        load(&c.events),
        opts.watchers - opts.idle_watchers,
        load(&c.relists),
        load(&c.rewatches),
        load(&c.watch_errors),
        load(&c.lists),
        load(&c.list_errors)
    );
    if let Some(stalled) = last.gauges.stalled {
        println!(
            "  stalled clients:                 {stalled} connections closed by the server for reading nothing \
             (of {} watchers that never read)",
            opts.idle_watchers
        );
    }
    let target = |label: String, ok: bool, detail: String| {
        println!("  {:<46} {} ({detail})", format!("{label}:"), if ok { "holds" } else { "MISSED" });
    };
    println!("\ntargets");
    target(
        format!("server RSS < {} MB after warm-up", RSS_TARGET_BYTES / 1_000_000),
        max_rss < RSS_TARGET_BYTES,
        format!("max {:.1} MB", max_rss as f64 / 1e6),
    );
    target(
        format!("data dir < {DISK_TARGET_RATIO}x live data after warm-up"),
        max_ratio < DISK_TARGET_RATIO,
        format!("max {max_ratio:.2}x{}", if from_server { "" } else { ", against the bench's estimate of live data" }),
    );
    // "Throughout": every interval's p99, not only the run's.
    target(
        format!("/healthz p99 < {HEALTHZ_TARGET_MS} ms in every interval"),
        worst_p99 < HEALTHZ_TARGET_MS && whole_p99 < HEALTHZ_TARGET_MS,
        format!("worst {worst_p99:.2} ms"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_revision_is_read_from_the_head_once_complete() {
        let head = br#"{"apiVersion":"corral.dev/v1","kind":"ConfigMapList","metadata":{"resourceVersion":"4242"},"items":[{"metadata":{"resourceVersion":"7"}"#;
        assert_eq!(list_revision(head), Some(4242));
        assert_eq!(list_revision(&head[..70]), None);
    }

    #[test]
    fn metrics_are_found_by_exact_name_with_or_without_labels() {
        let text = "# HELP corral_store_revision Current store revision.\n\
                    # TYPE corral_store_revision gauge\n\
                    corral_store_revision_extra 9\n\
                    corral_store_revision 120\n\
                    corral_store_live_bytes{store=\"sled\"} 5.5e6\n";
        assert_eq!(metric(text, "corral_store_revision"), Some(120.0));
        assert_eq!(metric(text, "corral_store_live_bytes"), Some(5_500_000.0));
        assert_eq!(metric(text, "corral_store_history_bytes"), None);
        let g = StoreGauges::parse(text);
        assert_eq!((g.revision, g.live, g.db), (Some(120), Some(5_500_000), None));
    }

    #[test]
    fn payload_values_have_the_size_asked_and_differ_by_write() {
        let p = Payloads::new();
        for len in [1024, 1 << 20] {
            let (a, b) = (p.value(1, len), p.value(2, len));
            assert_eq!((a.len(), b.len()), (len, len));
            assert_ne!(a, b);
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        // A start near the end wraps around to the beginning.
        assert_eq!(p.value(u64::MAX, 1 << 20).len(), 1 << 20);
    }

    #[test]
    fn watchers_are_split_by_percent_and_spread_over_sources() {
        let big = (0..1000).filter(|i| watched(*i, 5) == Size::Big).count();
        assert_eq!(big, 50);
        let half: Vec<Size> = (0..4).map(|i| watched(i, 50)).collect();
        assert_eq!(half, [Size::Small, Size::Big, Size::Small, Size::Big]);
        assert!((0..10).all(|i| watched(i, 100) == Size::Big && watched(i, 0) == Size::Small));
        assert_eq!(source_address(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_address(WATCHERS_PER_SOURCE), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_address(WATCHERS_PER_SOURCE * 300), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 46)));
    }
}
