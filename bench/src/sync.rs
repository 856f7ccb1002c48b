//! `corral-bench sync`: GitOps at the size of a real repository. Everything is real:
//! a bare git repository (served over `file://`) with N manifests, pushed to from a
//! clone with the git CLI, and a `corral server` started by the bench whose built-in
//! sync controller fetches it and applies it.
//!
//! What it measures, in order, on one Sync (`prune: true`, `wait: false`, the given
//! interval, a webhook token):
//!
//! 1. **First sync**: from the Sync's create to its status saying the commit is
//!    applied (`lastAppliedRevision`, Ready True); the writes it took.
//! 2. **Resync with no change**, R times: the sync asked for (the admin's
//!    `Client::trigger_sync`) until the status says the request was handled
//!    (`lastHandledRequest`); the objects written meanwhile, counted three ways.
//!    Then the controller's own duration of the interval resyncs, from its histogram.
//! 3. **Commit → cluster by interval**, R times: one ConfigMap changed in one file,
//!    committed and pushed; from the push's end until the bench's watch of the
//!    ConfigMaps sees the new value.
//! 4. **Commit → cluster by webhook**, R times: the same, then `POST …/trigger` with
//!    the webhook's token, as a git host would.
//!
//! Times are taken when watch events reach the bench (a watch of the Sync, a watch of
//! the ConfigMaps), never by polling. The server's CPU (its own, and its children's:
//! the git commands of the controller) and its peak RSS come from `/proc`.
//!
//! The run stops by itself: every wait is bounded by `--timeout`, past which it prints
//! what it reached and fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_api::kinds::configmap::ConfigMap;
use corral_api::kinds::sync::{SYNC_LABEL, SyncObject};
use corral_api::kinds::{Namespace, NamespaceSpec};
use corral_client::{Api, Client, Config, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{Seen, watch};
use serde_json::json;
use tokio::sync::watch as channel;

use crate::procs::{Proc, median, start_corral_with};
use crate::services::{ProcStats, Sampler, child_pid_serving, mib};

/// Namespace of the Sync and of its objects.
const NAMESPACE: &str = "sync-bench";
/// Name of the Sync.
const SYNC_NAME: &str = "site";
/// Manifests (YAML documents) per file.
const DOCS_PER_FILE: usize = 5;
/// Files per directory.
const FILES_PER_DIR: usize = 100;
/// The webhook's token (its sha256 goes into the Sync; a git host would present it).
const WEBHOOK_TOKEN: &str = "corral-bench-sync-webhook-token";
/// The writes of one requested resync that are not the sync's own: the trigger's
/// annotation on the Sync and the status's `lastHandledRequest`.
const TRIGGER_WRITES: u64 = 2;

/// What `corral-bench sync` does.
#[derive(Clone, Debug)]
pub struct SyncBenchOptions {
    /// ConfigMaps in the repository.
    pub manifests: usize,
    /// The Sync's `intervalSeconds`.
    pub interval: u64,
    /// Repetitions of each latency measurement.
    pub rounds: usize,
    /// Bound on every wait (and on the first sync).
    pub timeout: Duration,
    /// Further arguments of `corral server`.
    pub server_args: Vec<String>,
}

/// Runs the four measurements and prints their figures.
///
/// # Errors
/// git or the server could not be started, a request failed, or a wait passed the
/// timeout (after printing what was measured until then).
pub async fn run_sync_bench(opts: SyncBenchOptions) -> anyhow::Result<()> {
    if opts.manifests == 0 || opts.rounds == 0 || opts.interval == 0 {
        bail!("nothing to measure: --manifests, --rounds and --interval must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    println!(
        "corral-bench sync: {} ConfigMaps in {} files of {DOCS_PER_FILE} documents, {} directories; git over file://; \
         interval {} s; {} rounds per latency",
        opts.manifests,
        opts.manifests.div_ceil(DOCS_PER_FILE),
        opts.manifests.div_ceil(DOCS_PER_FILE * FILES_PER_DIR),
        opts.interval,
        opts.rounds
    );
    let started = Instant::now();
    let repo = Repo::create(dir.path(), opts.manifests).await?;
    let commit = repo.push("all manifests").await?;
    println!(
        "  repository written, committed and pushed in {:.1} s: commit {}",
        started.elapsed().as_secs_f64(),
        &commit[..12]
    );

    let data = dir.path().join("data");
    let args: Vec<String> =
        ["--no-audit-log".to_string()].into_iter().chain(opts.server_args.iter().cloned()).collect();
    let proc = start_corral_with(&data, &args).await?;
    let bench = Bench::start(proc, &data).await?;
    let outcome = bench.measure(&opts, repo, commit).await;
    bench.stop.cancel();
    drop(bench);
    outcome
}

/// The server under test and the bench's views of it.
struct Bench {
    _proc: Proc,
    base: String,
    client: Client,
    http: reqwest::Client,
    stats: ProcStats,
    sampler: Sampler,
    syncs: channel::Receiver<SyncSeen>,
    maps: channel::Receiver<MapsSeen>,
    stop: CancellationToken,
}

/// The Sync as last seen by the watch, and when.
#[derive(Clone, Default)]
struct SyncSeen {
    sync: Option<SyncObject>,
    at: Option<Instant>,
}

/// What the watch of the namespace's ConfigMaps saw.
#[derive(Default)]
struct MapsSeen {
    /// `(name, value of its "value" key)` → when first seen.
    first: HashMap<(String, String), Instant>,
    /// Creates, changes and deletes seen (the list at the start excluded).
    events: u64,
    /// When the last of them arrived.
    last_event: Option<Instant>,
}

impl Bench {
    async fn start(proc: Proc, data: &Path) -> anyhow::Result<Self> {
        let base = format!("http://{}", proc.addr);
        let config =
            Config { server: base.clone(), token: crate::procs::admin_token(), ca_pem: None, client_identity: None };
        let client = Client::from_config(&config)?;
        let stats = ProcStats { pid: child_pid_serving(data).context("finding the started corral server's process")? };
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces.create(&Namespace::new(NAMESPACE, NamespaceSpec {})).await.context("creating the namespace")?;
        let stop = CancellationToken::new();
        let sampler = Sampler::start(stats, stop.clone());

        let (sync_tx, syncs) = channel::channel(SyncSeen::default());
        let api: Api<SyncObject> = Api::namespaced(client.clone(), NAMESPACE);
        tokio::spawn(watch(api, ListParams::default(), stop.clone(), None, move |seen| {
            let now = Instant::now();
            let latest = match seen {
                Seen::Listed { objects, .. } => objects.into_iter().find(|s| s.metadata.name == SYNC_NAME),
                Seen::Applied(s) if s.metadata.name == SYNC_NAME => Some(s),
                _ => None,
            };
            if let Some(s) = latest {
                sync_tx.send_replace(SyncSeen { sync: Some(s), at: Some(now) });
            }
            async {}
        }));

        let (maps_tx, maps) = channel::channel(MapsSeen::default());
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
        tokio::spawn(watch(api, ListParams::default(), stop.clone(), None, move |seen| {
            let now = Instant::now();
            maps_tx.send_modify(|m| {
                let mut saw = |c: &ConfigMap| {
                    let value = c.spec.data.get("value").cloned().unwrap_or_default();
                    m.first.entry((c.metadata.name.clone(), value)).or_insert(now);
                };
                match seen {
                    Seen::Listed { objects, .. } => objects.iter().for_each(saw),
                    Seen::Applied(c) => {
                        saw(&c);
                        m.events += 1;
                        m.last_event = Some(now);
                    }
                    Seen::Deleted(_) => {
                        m.events += 1;
                        m.last_event = Some(now);
                    }
                    Seen::Bookmark(_) => {}
                }
            });
            async {}
        }));

        let http = reqwest::Client::builder().no_proxy().build()?;
        println!("  control plane: corral server (pid {}) at {base}", stats.pid);
        Ok(Bench { _proc: proc, base, client, http, stats, sampler, syncs, maps, stop })
    }

    /// The server's CPU time so far: its own, and that of its children it waited for
    /// (the controller's git commands).
    fn cpu(&self) -> (Duration, Duration) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.stats.pid)).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
            .unwrap_or_default();
        // SAFETY: sysconf(3) reads a configuration value; no memory is involved.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|h| *h > 0).unwrap_or(100);
        let ticks = |range: std::ops::Range<usize>| fields.get(range).map_or(0, |f| f.iter().sum::<u64>());
        // After the command name: utime and stime are the 12th and 13th fields, cutime
        // and cstime the 14th and 15th, in clock ticks.
        let d = |t: u64| Duration::from_micros(t * 1_000_000 / hz);
        (d(ticks(11..13)), d(ticks(13..15)))
    }

    /// The store's revision.
    async fn revision(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/admin/revision", self.base))
            .headers(crate::procs::auth_headers())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        v["revision"].as_u64().context("no revision in /admin/revision")
    }

    /// The sync controller's figures from `/metrics`.
    async fn metrics(&self) -> anyhow::Result<SyncMetrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .headers(crate::procs::auth_headers())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(SyncMetrics::parse(&text))
    }

    /// Waits until the Sync as watched satisfies `pred`; when it was seen so.
    async fn wait_sync(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&SyncObject) -> bool,
    ) -> anyhow::Result<(Instant, SyncObject)> {
        let mut rx = self.syncs.clone();
        let seen = tokio::time::timeout(timeout, rx.wait_for(|s| s.sync.as_ref().is_some_and(&pred)))
            .await
            .with_context(|| format!("{what}: not within {} s (--timeout)", timeout.as_secs()))?
            .context("the watch of the Sync ended")?
            .clone();
        match (seen.at, seen.sync) {
            (Some(at), Some(sync)) => Ok((at, sync)),
            _ => bail!("{what}: the watch reported no Sync"),
        }
    }

    /// Waits until the watch of ConfigMaps has seen `name` with `value`; when it first did.
    async fn wait_value(&self, name: &str, value: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let key = (name.to_string(), value.to_string());
        let mut rx = self.maps.clone();
        let seen = tokio::time::timeout(timeout, rx.wait_for(|m| m.first.contains_key(&key)))
            .await
            .with_context(|| {
                format!("ConfigMap {name} = {value:?} not seen within {} s (--timeout)", timeout.as_secs())
            })?
            .context("the watch of ConfigMaps ended")?;
        Ok(seen.first[&key])
    }

    fn map_events(&self) -> u64 {
        self.maps.borrow().events
    }

    async fn measure(&self, opts: &SyncBenchOptions, mut repo: Repo, commit: String) -> anyhow::Result<()> {
        let syncs: Api<SyncObject> = Api::namespaced(self.client.clone(), NAMESPACE);
        let (cpu_start, git_start) = self.cpu();
        let run_started = Instant::now();

        // 1. First sync.
        println!("\n1. first sync of {} manifests", opts.manifests);
        let rev0 = self.revision().await?;
        let m0 = self.metrics().await?;
        let sync = sync_object(&repo.url(), opts.interval)?;
        let t0 = Instant::now();
        syncs.create(&sync).await.context("creating the Sync")?;
        let (at, applied) = self.wait_sync("the first sync", opts.timeout, |s| applied_with(s, &commit)).await?;
        let first = at - t0;
        // The ConfigMaps' events may trail the status's by a moment: wait for the
        // watch to have seen them all (bounded) before counting.
        let all_seen =
            tokio::time::timeout(opts.timeout, self.maps.clone().wait_for(|m| m.events >= opts.manifests as u64))
                .await
                .ok()
                .and_then(|r| r.ok().map(|m| m.last_event));
        let rev1 = self.revision().await?;
        let m1 = self.metrics().await?;
        let status = applied.status.clone().unwrap_or_default();
        let (cpu1, git1) = self.cpu();
        println!("  create → status applied (Ready True):  {:.2} s", first.as_secs_f64());
        if let Some(Some(last)) = all_seen {
            println!(
                "  create → last ConfigMap seen by a watch: {:.2} s",
                last.saturating_duration_since(t0).as_secs_f64()
            );
        }
        println!(
            "  writes: lastWrites {} · corral_sync_writes +{} · store revision +{} (the objects, the Sync's create, its \
             status and the Synced Event)",
            status.last_writes.unwrap_or(0),
            m1.writes - m0.writes,
            rev1 - rev0
        );
        println!(
            "  controller's own duration (fetch, read, plan, transaction, status): {:.2} s, of which the server \
             answering POSTs (the transaction, the Event) {:.2} s and GETs up to their response heads (a list's body streams after, uncounted) {:.2} s",
            m1.duration_sum - m0.duration_sum,
            m1.post_seconds - m0.post_seconds,
            m1.get_seconds - m0.get_seconds
        );
        println!(
            "  server CPU {:.1} s + its git commands {:.1} s",
            (cpu1 - cpu_start).as_secs_f64(),
            (git1 - git_start).as_secs_f64()
        );
        let first_writes = rev1 - rev0;

        // 2. Resync with no change.
        println!("\n2. resync with no change, {} times (requested through the trigger)", opts.rounds);
        let mut times = Vec::new();
        let mut object_writes = 0u64;
        let mut metric_writes = 0u64;
        let mut map_events = 0u64;
        let m_before = self.metrics().await?;
        for _ in 0..opts.rounds {
            let rev_a = self.revision().await?;
            let m_a = self.metrics().await?;
            let ev_a = self.map_events();
            let t = Instant::now();
            let requested = self.client.trigger_sync(NAMESPACE, SYNC_NAME).await.context("triggering a resync")?;
            let (at, _) = self
                .wait_sync("a requested resync", opts.timeout, |s| {
                    s.status.as_ref().and_then(|st| st.last_handled_request.as_deref()) == Some(requested.as_str())
                })
                .await?;
            times.push((at - t).as_secs_f64());
            // A write of an object would be in the store before the status that
            // follows it; give its watch event a moment to arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let rev_b = self.revision().await?;
            let m_b = self.metrics().await?;
            object_writes += (rev_b - rev_a).saturating_sub(TRIGGER_WRITES);
            metric_writes += m_b.writes - m_a.writes;
            map_events += self.map_events() - ev_a;
        }
        let m_after = self.metrics().await?;
        let resync_p50 = median(times.clone());
        let resync_max = times.iter().copied().fold(f64::NAN, f64::max);
        println!("  trigger → lastHandledRequest: p50 {resync_p50:.3} s · max {resync_max:.3} s   ({})", list(&times));
        println!(
            "  object writes over the {} resyncs: corral_sync_writes +{metric_writes} · ConfigMap events seen +{map_events} \
             · store revisions +{object_writes} beyond the {TRIGGER_WRITES} per resync that are the trigger's annotation \
             and the status's lastHandledRequest",
            opts.rounds
        );
        let syncs_run = m_after.runs - m_before.runs;
        let controller_resync = (m_after.duration_sum - m_before.duration_sum)
            / (m_after.duration_count - m_before.duration_count).max(1.0);
        println!(
            "  controller's own duration of these resyncs (corral_sync_duration_seconds): {controller_resync:.3} s mean over \
             {syncs_run} syncs, of which the server answering GETs up to their response heads (a list's body streams after, uncounted) {:.3} s",
            (m_after.get_seconds - m_before.get_seconds) / syncs_run.max(1.0)
        );
        // Where a resync's time goes: two of its steps done again from here, alike.
        let root = repo.work.clone();
        let t = Instant::now();
        let (docs, _) = tokio::task::spawn_blocking(move || corral_client::manifests::read_tree(&root)).await?;
        let read = t.elapsed();
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), NAMESPACE);
        let selector = format!("{SYNC_LABEL}={NAMESPACE}.{SYNC_NAME}");
        let t = Instant::now();
        let live = maps.list_all(&ListParams { label_selector: Some(selector), ..Default::default() }, 0).await?;
        let listed = t.elapsed();
        println!(
            "  two of a resync's steps timed from the bench: reading and parsing the {} manifests {:.3} s; listing the {} \
             live objects by the Sync's label {:.3} s",
            docs.len(),
            read.as_secs_f64(),
            live.items.len(),
            listed.as_secs_f64()
        );
        // Interval resyncs: nothing asked, nothing changed; the controller's histogram
        // over two intervals.
        let m_a = self.metrics().await?;
        let rev_a = self.revision().await?;
        let window = Duration::from_secs(opts.interval * 2) + Duration::from_millis(500);
        if window <= opts.timeout {
            tokio::time::sleep(window).await;
            let m_b = self.metrics().await?;
            let rev_b = self.revision().await?;
            let n = m_b.duration_count - m_a.duration_count;
            if n > 0.0 {
                println!(
                    "  interval resyncs over {:.1} s: {n} syncs, {:.3} s mean each (controller's histogram); writes: \
                     corral_sync_writes +{} · store revisions +{} (every writer of the store, the other controllers too)",
                    window.as_secs_f64(),
                    (m_b.duration_sum - m_a.duration_sum) / n,
                    m_b.writes - m_a.writes,
                    rev_b - rev_a
                );
            } else {
                println!("  interval resyncs: none ran in {:.1} s", window.as_secs_f64());
            }
        }

        // 3. Commit → cluster by interval.
        println!(
            "\n3. commit → cluster by interval ({} s), {} times: one ConfigMap changed per commit",
            opts.interval, opts.rounds
        );
        let mut by_interval = Vec::new();
        let mut pushes = Vec::new();
        for r in 0..opts.rounds {
            // Pushes spread evenly over the interval's phase: a push right after a sync
            // would always wait a whole interval.
            let offset = opts.interval as f64 * (r as f64 + 0.5) / opts.rounds as f64;
            tokio::time::sleep(Duration::from_secs_f64(offset)).await;
            let (name, value, commit, pushed, push_took) = repo.change_one(r, "interval").await?;
            pushes.push(push_took.as_secs_f64());
            let seen = self.wait_value(&name, &value, opts.timeout).await?;
            by_interval.push(seen.saturating_duration_since(pushed).as_secs_f64());
            // The next round's wait counts from the end of this sync (its status written).
            self.wait_sync("the interval's sync", opts.timeout, |s| applied_with(s, &commit)).await?;
        }
        let interval_p50 = median(by_interval.clone());
        let interval_max = by_interval.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "  push end → change seen by a watch: p50 {interval_p50:.3} s · max {interval_max:.3} s   ({})",
            list(&by_interval)
        );
        println!(
            "  (up to one interval of {} s waiting for the next sync, plus the sync itself; pushes spread over the \
             interval's phase; git commit + push took p50 {:.3} s)",
            opts.interval,
            median(pushes.clone())
        );

        // 4. Commit → cluster by webhook.
        println!("\n4. commit → cluster by webhook, {} times", opts.rounds);
        let mut by_webhook = Vec::new();
        let mut answers = Vec::new();
        let m_a = self.metrics().await?;
        let trigger = format!("{}/apis/corral.dev/v1/namespaces/{NAMESPACE}/syncs/{SYNC_NAME}/trigger", self.base);
        for r in 0..opts.rounds {
            let (name, value, commit, pushed, _) = repo.change_one(r, "webhook").await?;
            let resp = self
                .http
                .post(&trigger)
                .bearer_auth(WEBHOOK_TOKEN)
                .body("{\"ref\": \"refs/heads/main\"}")
                .send()
                .await
                .context("posting the webhook")?;
            answers.push(pushed.elapsed().as_secs_f64());
            if resp.status() != reqwest::StatusCode::ACCEPTED {
                bail!("the webhook was answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
            }
            let seen = self.wait_value(&name, &value, opts.timeout).await?;
            by_webhook.push(seen.saturating_duration_since(pushed).as_secs_f64());
            // Let the sync finish (its status written) before the next push, so each
            // round measures one webhook, not a queue of them.
            self.wait_sync("the webhook's sync", opts.timeout, |s| applied_with(s, &commit)).await?;
        }
        let webhook_p50 = median(by_webhook.clone());
        let webhook_max = by_webhook.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "  push end → change seen by a watch: p50 {webhook_p50:.3} s · max {webhook_max:.3} s   ({})",
            list(&by_webhook)
        );
        println!("  (the webhook's POST answered 202 after p50 {:.3} s)", median(answers));
        let m_b = self.metrics().await?;
        let runs = (m_b.runs - m_a.runs).max(1.0);
        println!(
            "  each of these syncs: {:.3} s in the controller (mean), of which the server answering POSTs (the \
             transaction of the revision's {} applies, the unchanged ones not written; the trigger; the Event) {:.3} s; \
             {} objects written in all",
            (m_b.duration_sum - m_a.duration_sum) / runs,
            opts.manifests,
            (m_b.post_seconds - m_a.post_seconds) / runs,
            m_b.writes - m_a.writes
        );

        let (cpu, git) = self.cpu();
        let cpu = (cpu - cpu_start).as_secs_f64();
        let git = (git - git_start).as_secs_f64();
        let peak = mib(self.sampler.peak.load(Ordering::Relaxed));
        let wall = run_started.elapsed().as_secs_f64();
        println!(
            "\ncontrol plane over {wall:.0} s: CPU {cpu:.1} s (server) + {git:.1} s (its git commands); peak RSS {peak:.0} MiB"
        );
        println!(
            "SUMMARY sync manifests={} first_sync_s={:.3} first_sync_writes={} resync_p50_s={resync_p50:.3} \
             resync_max_s={resync_max:.3} resync_writes={metric_writes} resync_extra_revisions={object_writes} interval_s={} interval_p50_s={interval_p50:.3} \
             interval_max_s={interval_max:.3} webhook_p50_s={webhook_p50:.3} webhook_max_s={webhook_max:.3} \
             cpu_s={cpu:.1} git_cpu_s={git:.1} peak_rss_mib={peak:.0}",
            opts.manifests,
            first.as_secs_f64(),
            first_writes,
            opts.interval,
        );
        Ok(())
    }
}

/// Whether the Sync's status says `commit` is applied and it is Ready.
fn applied_with(s: &SyncObject, commit: &str) -> bool {
    s.status.as_ref().is_some_and(|st| {
        st.last_applied_revision.as_deref() == Some(commit)
            && st.conditions.first().is_some_and(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// The Sync the bench creates.
fn sync_object(url: &str, interval: u64) -> anyhow::Result<SyncObject> {
    let sync = json!({
        "apiVersion": "corral.dev/v1", "kind": "Sync",
        "metadata": {"name": SYNC_NAME, "namespace": NAMESPACE},
        "spec": {
            "source": {"git": {"url": url, "branch": "main"}},
            "prune": true,
            "wait": false,
            "intervalSeconds": interval,
            "webhook": {"tokenSha256": corral_client::credentials::sha256_hex(WEBHOOK_TOKEN)},
        }
    });
    Ok(serde_json::from_value(sync)?)
}

/// `a, b, c` with three decimals.
fn list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
}

/// The sync controller's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct SyncMetrics {
    runs: f64,
    writes: u64,
    duration_sum: f64,
    duration_count: f64,
    /// Seconds the server spent answering POSTs (up to the response head): in a
    /// sync, the transaction's almost all of it.
    post_seconds: f64,
    /// The same for GETs: the lists of live objects and of kinds.
    get_seconds: f64,
}

impl SyncMetrics {
    fn parse(text: &str) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| sample_sum(text, n)).unwrap_or(0.0);
        SyncMetrics {
            runs: get(&["corral_sync_runs_total", "corral_sync_runs"]),
            writes: get(&["corral_sync_writes_total", "corral_sync_writes"]) as u64,
            duration_sum: get(&["corral_sync_duration_seconds_sum"]),
            duration_count: get(&["corral_sync_duration_seconds_count"]),
            post_seconds: labelled_sum(text, "corral_http_request_duration_seconds_sum", "method=\"POST\""),
            get_seconds: labelled_sum(text, "corral_http_request_duration_seconds_sum", "method=\"GET\""),
        }
    }
}

/// The sum of the samples of metric `name` (whatever their labels) in Prometheus or
/// OpenMetrics text; `None` when it has none.
fn sample_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labels) => &labels[labels.find('}')? + 1..],
                None => rest,
            };
            // A space must follow, or this is another metric named with `name` as a prefix.
            rest.strip_prefix(' ')?.split_whitespace().next()?.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The sum of the samples of metric `name` whose labels hold `label` (`k="v"`).
fn labelled_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let labels = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = labels.split_once('}')?;
            labels.split(',').any(|l| l == label).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A bare repository and the clone the bench commits from.
struct Repo {
    bare: PathBuf,
    work: PathBuf,
    /// The `value` key of each ConfigMap, as committed.
    values: Vec<String>,
}

impl Repo {
    /// The repositories under `dir`, the clone holding `n` ConfigMaps (not yet committed).
    async fn create(dir: &Path, n: usize) -> anyhow::Result<Repo> {
        let bare = dir.join("origin.git");
        let work = dir.join("work");
        for d in [&bare, &work] {
            tokio::fs::create_dir_all(d).await?;
        }
        git(&bare, &["init", "-q", "--bare", "-b", "main"]).await?;
        git(&work, &["init", "-q", "-b", "main"]).await?;
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]).await?;
        let repo = Repo { bare, work, values: vec!["v0".to_string(); n] };
        tokio::fs::write(repo.work.join("README.md"), "Manifests written by corral-bench sync.\n").await?;
        for f in 0..n.div_ceil(DOCS_PER_FILE) {
            repo.write_file(f).await?;
        }
        Ok(repo)
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes file `f` (ConfigMaps `f * DOCS_PER_FILE …`) from the values held.
    async fn write_file(&self, f: usize) -> anyhow::Result<()> {
        let group = f / FILES_PER_DIR;
        let path = self.work.join(format!("apps/group-{group:02}/maps-{f:04}.yaml"));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let end = ((f + 1) * DOCS_PER_FILE).min(self.values.len());
        let docs: Vec<String> = (f * DOCS_PER_FILE..end)
            .map(|i| {
                format!(
                    "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  labels:\n    \
                     bench.corral.dev/group: group-{group:02}\nspec:\n  data:\n    index: \"{i}\"\n    \
                     owner: team-{}\n    value: \"{}\"\n",
                    map_name(i),
                    i % 7,
                    self.values[i]
                )
            })
            .collect();
        tokio::fs::write(&path, docs.join("---\n")).await?;
        Ok(())
    }

    /// Commits everything and pushes; the commit id.
    async fn push(&self, message: &str) -> anyhow::Result<String> {
        git(&self.work, &["add", "-A"]).await?;
        git(&self.work, &["commit", "-q", "-m", message]).await?;
        git(&self.work, &["push", "-q", "origin", "main"]).await?;
        git(&self.work, &["rev-parse", "HEAD"]).await
    }

    /// Changes one ConfigMap's value (a different one each round), commits and
    /// pushes: its name, its new value, the commit, when the push ended and how long
    /// the commit and push took.
    async fn change_one(&mut self, round: usize, how: &str) -> anyhow::Result<Change> {
        // Spread over the repository: a prime stride.
        let i = (round * 997 + if how == "webhook" { 501 } else { 0 }) % self.values.len();
        let value = format!("{how}-{round}");
        self.values[i] = value.clone();
        self.write_file(i / DOCS_PER_FILE).await?;
        let t = Instant::now();
        let commit = self.push(&format!("{} = {value}", map_name(i))).await?;
        Ok((map_name(i), value, commit, Instant::now(), t.elapsed()))
    }
}

/// What [`Repo::change_one`] did: the ConfigMap, its new value, the commit, when the
/// push ended, how long the commit and push took.
type Change = (String, String, String, Instant, Duration);

fn map_name(i: usize) -> String {
    format!("cm-{i:05}")
}

/// Runs `git ARGS` in `dir`; its output, trimmed.
async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=corral-bench", "-c", "user.email=bench@corral.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .await
        .context("running git: is it installed?")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_whatever_their_labels_and_suffixes() {
        let text = "# TYPE corral_sync_writes counter\ncorral_sync_writes_total 5000\n\
                    corral_sync_runs_total{controller=\"sync\"} 3\n\
                    corral_sync_duration_seconds_sum 1.5\ncorral_sync_duration_seconds_count 3\n\
                    corral_sync_duration_seconds_bucket{le=\"0.005\"} 0\n";
        let m = SyncMetrics::parse(text);
        assert_eq!(
            m,
            SyncMetrics {
                runs: 3.0,
                writes: 5000,
                duration_sum: 1.5,
                duration_count: 3.0,
                post_seconds: 0.0,
                get_seconds: 0.0
            }
        );
        let http = "corral_http_request_duration_seconds_sum{method=\"POST\"} 2.5\n\
                    corral_http_request_duration_seconds_sum{method=\"GET\"} 0.5\n\
                    corral_http_request_duration_seconds_count{method=\"POST\"} 9\n";
        assert_eq!(labelled_sum(http, "corral_http_request_duration_seconds_sum", "method=\"POST\""), 2.5);
        assert_eq!(sample_sum("corral_sync_writes_totally 1\n", "corral_sync_writes_total"), None);
    }
}
