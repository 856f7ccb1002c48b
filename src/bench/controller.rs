//! `corral bench controller`: the controller runtime end to end against a real
//! `corral server` process — N objects of a custom kind, a trivial reconciler that
//! writes status on each, and the memory its cache takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_runtime::{Action, Client, Controller, Reflector};
use serde_json::{Value, json};

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

struct Ctx {
    client: Client,
    kind: Arc<corral_api::KindInfo>,
    written: AtomicU64,
}

async fn reconcile(obj: Arc<Value>, ctx: Arc<Ctx>) -> Result<Action, corral_runtime::Error> {
    let generation = obj["metadata"]["generation"].clone();
    if obj["status"]["observedGeneration"] != generation {
        let mut o = (*obj).clone();
        o["status"] = json!({"observedGeneration": generation});
        ctx.client.update_status(&ctx.kind, &o).await?;
        ctx.written.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Action::await_change())
}

/// Runs the benchmark and prints its figures.
pub async fn run_controller_bench(opts: ControllerBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_corral(&dir.path().join("corral")).await?;
    let url = format!("http://{}", server.addr);
    let client = Client::http(&url)?;
    let crds = client.kind("customresourcedefinitions").await?;
    let crd = json!({"apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "benchitems.bench.corral.dev"},
        "spec": {"group": "bench.corral.dev", "version": "v1", "kind": "BenchItem", "plural": "benchitems",
                 "scope": "Namespaced",
                 "schema": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}},
                            "status": {"type": "object", "properties": {"observedGeneration": {"type": "integer"}}}}}});
    client.create(&crds, &crd).await?;
    let mut kind = None;
    for _ in 0..200 {
        if let Ok(k) = client.kind("benchitems").await {
            kind = Some(k);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let kind = kind.context("the BenchItem kind never appeared")?;
    println!(
        "corral bench controller: {} objects of a custom kind, trivial reconciler writing status, concurrency {}, against a corral server process",
        opts.objects, opts.concurrency
    );

    let ctx = Arc::new(Ctx { client: client.clone(), kind: kind.clone(), written: AtomicU64::new(0) });
    let controller = Controller::new(client.clone(), kind.clone(), None).concurrency(opts.concurrency);
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
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(controller.run(
        reconcile,
        |_o: &Arc<Value>, _e: &corral_runtime::Error, _c: &Arc<Ctx>| Action::requeue(Duration::from_millis(100)),
        ctx.clone(),
        async move {
            let mut s = stopped;
            let _ = s.wait_for(|s| *s).await;
        },
    ));

    let started = Instant::now();
    let (c, k) = (client.clone(), kind.clone());
    let create = closed_loop(64, Duration::from_secs(3600), opts.objects, move |_, seq| {
        let (c, k) = (c.clone(), k.clone());
        async move {
            let o = json!({"apiVersion": "bench.corral.dev/v1", "kind": "BenchItem",
                "metadata": {"name": format!("item-{seq}"), "namespace": "default"}, "spec": {"n": seq}});
            c.create(&k, &o).await.map(|_| ()).map_err(Into::into)
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
    let _ = stop.send(true);
    let _ = run.await;

    // Cache memory: a fresh reflector of all the objects, RSS before and after it syncs.
    let before = self_rss();
    let reflector = Reflector::new(client.clone(), kind.clone(), None, "");
    let cache = reflector.cache();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(reflector.run(stopped, |_| {}));
    cache.wait_synced().await;
    let after = self_rss();
    println!(
        "  cache of {} objects: {:.1} MB RSS growth ({:.0} bytes/object)",
        cache.len(),
        (after.saturating_sub(before)) as f64 / 1e6,
        after.saturating_sub(before) as f64 / cache.len().max(1) as f64
    );
    let _ = stop.send(true);
    let _ = task.await;
    drop(server);
    Ok(())
}
