//! Load generators: closed loops of N clients, and an open loop at a fixed rate.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Throughput and latency of one workload.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Operations completed.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Completed operations per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// Percentile of sorted latencies in microseconds, as milliseconds.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[idx.min(sorted_us.len() - 1)] as f64 / 1000.0
}

fn summarize(mut lat: Vec<u64>, errors: u64, elapsed: Duration) -> LoadResult {
    lat.sort_unstable();
    LoadResult {
        ops: lat.len() as u64,
        errors,
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&lat, 0.50),
        p99_ms: percentile_ms(&lat, 0.99),
    }
}

/// Runs `clients` loops, each calling `op(client, seq)` back to back until `duration`
/// has passed (or `max_ops` operations were started in total).
pub async fn closed_loop<F, Fut>(clients: usize, duration: Duration, max_ops: u64, op: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let deadline = begin + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let op = op.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let seq = started.fetch_add(1, Ordering::Relaxed);
                if seq >= max_ops {
                    break;
                }
                let t0 = Instant::now();
                match op(c, seq).await {
                    Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            tracing::warn!(error = %e, "bench operation failed");
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    summarize(all, errors, begin.elapsed())
}

/// Issues `op(seq)` at a fixed `rate` per second for `duration`, whatever the latency
/// (an open loop, so slow responses do not hide queueing).
pub async fn open_loop<F, Fut>(rate: u64, duration: Duration, op: F) -> LoadResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let total = rate * duration.as_secs().max(1);
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let begin = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for seq in 0..total {
        tick.tick().await;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            op(seq).await.map(|()| t0.elapsed().as_micros() as u64)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(us)) => lat.push(us),
            _ => errors += 1,
        }
    }
    summarize(lat, errors, begin.elapsed())
}
