//! `corral-bench controller`: the controller runtime end to end against a real
//! `corral server` process — N objects of a custom kind with a Rust type (its
//! definition generated from the type), a trivial typed reconciler that writes status
//! on each, and the memory its cache takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use corral_api::{KindSpec, Object, Resource};
use corral_client::{Api, Client, ListParams};
use corral_runtime::{Action, CancellationToken, Controller, Reflector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::closed_loop;
use super::procs::start_corral;

/// What to run.
#[derive(Clone, Debug)]
pub struct ControllerBenchOptions {
    /// Objects created.
    pub objects: u64,
    /// Reconciles at once.
    pub concurrency: usize,
}

fn self_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .map(|kb: u64| kb * 1024)
        .unwrap_or(0)
}

/// Desired state of a [`BenchItem`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BenchItemSpec {
    /// A number.
    #[serde(default)]
    n: u64,
}

/// Observed state of a [`BenchItem`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BenchItemStatus {
    /// The generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
}

/// The benchmark's custom kind.
type BenchItem = Object<BenchItemSpec, BenchItemStatus>;

impl KindSpec for BenchItemSpec {
    type Status = BenchItemStatus;
    const GROUP: &'static str = "bench.corral.dev";
    const KIND: &'static str = "BenchItem";
    const PLURAL: &'static str = "benchitems";
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "An object of the controller benchmark.";
}

struct Ctx {
    items: Api<BenchItem>,
    written: AtomicU64,
}

async fn reconcile(item: Arc<BenchItem>, ctx: Arc<Ctx>) -> Result<Action, corral_client::Error> {
    let generation = item.metadata.generation;
    if item.status.as_ref().and_then(|s| s.observed_generation) != generation {
        let mut o = (*item).clone();
        o.status = Some(BenchItemStatus { observed_generation: generation });
        ctx.items.update_status(&o).await?;
        ctx.written.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Action::await_change())
}

/// Runs the benchmark and prints its figures.
pub async fn run_controller_bench(opts: ControllerBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_corral(&dir.path().join("corral")).await?;
    let url = format!("http://{}", server.addr);
    let client = Client::from_config(&corral_client::Config {
        server: url.clone(),
        token: super::procs::admin_token(),
        ca_pem: None,
        client_identity: None,
    })?;
    Api::all(client.clone()).create(&BenchItem::custom_resource_definition()).await?;
    let mut served = false;
    for _ in 0..200 {
        if client.kind(BenchItem::PLURAL).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(served, "the BenchItem kind never appeared");
    println!(
        "corral-bench controller: {} objects of a custom kind, trivial reconciler writing status, concurrency {}, against a corral server process",
        opts.objects, opts.concurrency
    );

    let items: Api<BenchItem> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx { items: items.clone(), written: AtomicU64::new(0) });
    let controller =
        Controller::new(Api::<BenchItem>::all(client.clone()), ListParams::default()).concurrency(opts.concurrency);
    let metrics = controller.metrics();
    let queue = controller.queue();
    let cache = controller.cache();
    if std::env::var_os("CORRAL_BENCH_TRACE").is_some() {
        let (q, c, w) = (queue.clone(), cache.clone(), ctx.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                eprintln!(
                    "queue {} in-flight {} cache {} written {}",
                    q.len(),
                    q.in_flight(),
                    c.len(),
                    w.written.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        reconcile,
        |_o: &Arc<BenchItem>, _e: &corral_client::Error, _c: &Arc<Ctx>| Action::requeue(Duration::from_millis(100)),
        ctx.clone(),
        stop.clone(),
    ));

    let started = Instant::now();
    let create = closed_loop(64, Duration::from_secs(3600), opts.objects, move |_, seq| {
        let items = items.clone();
        async move {
            let o = BenchItem::namespaced("default", format!("item-{seq}"), BenchItemSpec { n: seq });
            items.create(&o).await.map(|_| ()).map_err(Into::into)
        }
    })
    .await;
    let created_in = started.elapsed();
    for _ in 0..60_000 {
        if ctx.written.load(Ordering::Relaxed) >= opts.objects {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done_in = started.elapsed();
    let written = ctx.written.load(Ordering::Relaxed);
    let reconciles = metrics.reconciles.load(Ordering::Relaxed);
    let errors = metrics.errors.load(Ordering::Relaxed);
    if written < opts.objects {
        bail!("only {written} of {} statuses were written", opts.objects);
    }
    println!(
        "  created {} objects in {:.2} s ({:.0}/s, {} errors)",
        create.ops,
        created_in.as_secs_f64(),
        create.per_sec,
        create.errors
    );
    println!(
        "  status written on all {} in {:.2} s from the first create ({:.2} s after the last)",
        opts.objects,
        done_in.as_secs_f64(),
        (done_in - created_in).as_secs_f64()
    );
    println!(
        "  reconciles: {reconciles} ({errors} errors), {:.0} reconciles/s over the run, {:.2} ms per reconcile on average",
        reconciles as f64 / done_in.as_secs_f64(),
        metrics.reconcile_micros.load(Ordering::Relaxed) as f64 / 1000.0 / reconciles.max(1) as f64
    );
    stop.cancel();
    let _ = run.await;

    // Cache memory: a fresh reflector of all the objects, RSS before and after it syncs.
    let before = self_rss();
    let reflector = Reflector::new(Api::<BenchItem>::all(client.clone()), ListParams::default());
    let cache = reflector.cache();
    let stop = CancellationToken::new();
    let task = tokio::spawn(reflector.run(stop.clone(), |_| {}));
    cache.wait_synced().await;
    let after = self_rss();
    println!(
        "  cache of {} objects: {:.1} MB RSS growth ({:.0} bytes/object)",
        cache.len(),
        (after.saturating_sub(before)) as f64 / 1e6,
        after.saturating_sub(before) as f64 / cache.len().max(1) as f64
    );
    stop.cancel();
    let _ = task.await;
    drop(server);
    Ok(())
}
