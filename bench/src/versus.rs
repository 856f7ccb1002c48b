//! This build against another (`corral-bench store --baseline OTHER_CORRAL`): both
//! servers run at once and take the same workloads in alternating one-second slices
//! (A B B A, round after round), so that what drifts on a shared machine — CPU
//! frequency, neighbours, page cache — falls on both alike. Each round gives a ratio;
//! the median of the rounds is the figure, with the spread beside it. The server's CPU
//! per operation is reported too: it does not depend on how the client was scheduled.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use super::load::{LoadResult, closed_loop};
use super::procs::{Proc, corral_exe, median, start_corral_exe};
use super::store::{Corral, StoreBenchOptions, creates};

/// Objects each side holds for the update and get workloads.
const OBJECTS: u64 = 1000;
/// Length of one slice of one workload on one side.
const SLICE: Duration = Duration::from_secs(1);
const NS: &str = "versus";

/// One server under comparison.
struct Side {
    proc: Proc,
    client: Arc<Corral>,
    /// Throughput of each round, per workload.
    per_sec: [Vec<f64>; 3],
    /// Server CPU and operations, per workload.
    cpu: [Duration; 3],
    ops: [u64; 3],
}

const WORKLOADS: [&str; 3] = ["create", "update", "get"];

impl Side {
    async fn start(exe: &Path, dir: &Path, args: &[String]) -> anyhow::Result<Side> {
        let proc = start_corral_exe(exe, dir, args).await?;
        // The clients carry the token of the server just started.
        let client = Arc::new(Corral::new(format!("http://{}", proc.addr))?);
        client.namespace(NS).await?;
        for i in 0..OBJECTS {
            client.create(0, NS, &format!("o{i}"), i).await?;
        }
        Ok(Side { proc, client, per_sec: Default::default(), cpu: Default::default(), ops: Default::default() })
    }

    async fn slice(&mut self, workload: usize, clients: usize, round: usize) -> anyhow::Result<()> {
        let before = self.proc.cpu_time()?;
        let r = match workload {
            0 => creates(&self.client, clients, SLICE, u64::MAX, NS, &format!("r{round}-")).await,
            1 => updates(&self.client, clients, round).await,
            _ => gets(&self.client, clients).await,
        };
        if r.errors > 0 {
            bail!("{} errors in a {} slice", r.errors, WORKLOADS[workload]);
        }
        self.cpu[workload] += self.proc.cpu_time()?.saturating_sub(before);
        self.ops[workload] += r.ops;
        self.per_sec[workload].push(r.per_sec);
        Ok(())
    }
}

async fn updates(corral: &Arc<Corral>, clients: usize, round: usize) -> LoadResult {
    let cl = corral.clone();
    closed_loop(clients, SLICE, u64::MAX, move |i, seq| {
        let cl = cl.clone();
        async move { cl.update(i, NS, &format!("o{}", seq % OBJECTS), seq + (round as u64 + 1) * 1_000_000_000).await }
    })
    .await
}

async fn gets(corral: &Arc<Corral>, clients: usize) -> LoadResult {
    let cl = corral.clone();
    closed_loop(clients, SLICE, u64::MAX, move |i, seq| {
        let cl = cl.clone();
        async move { cl.get(i, NS, &format!("o{}", seq % OBJECTS)).await }
    })
    .await
}

/// Compares this build (`$CORRAL_BIN`, else the `corral` beside the bench) with
/// `baseline`, over `rounds` rounds at `clients` concurrent clients.
pub async fn run_versus(opts: &StoreBenchOptions, baseline: &Path, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clients = opts.clients.iter().copied().find(|&c| c > 1).unwrap_or(16);
    let this_exe = corral_exe()?;
    // The baseline first: an older build writes no credential, so its clients go
    // without one; this build's are made after it starts, with its token.
    let mut base = Side::start(baseline, &dir.path().join("baseline"), &opts.server_args).await?;
    let mut this = Side::start(&this_exe, &dir.path().join("this"), &opts.server_args).await?;
    println!(
        "corral bench store --baseline: {} against {}, {clients} clients (HTTP/2), {rounds} rounds of {}s slices per workload, alternating",
        this_exe.display(),
        baseline.display(),
        SLICE.as_secs()
    );
    for round in 0..rounds {
        for w in 0..WORKLOADS.len() {
            if round % 2 == 0 {
                this.slice(w, clients, round).await?;
                base.slice(w, clients, round).await?;
            } else {
                base.slice(w, clients, round).await?;
                this.slice(w, clients, round).await?;
            }
        }
    }
    println!(
        "\n  {:<8} {:>12} {:>12} {:>22} {:>16} {:>16}",
        "workload", "this ops/s", "base ops/s", "this/base (min–max)", "this CPU/op", "base CPU/op"
    );
    for (w, name) in WORKLOADS.iter().enumerate() {
        let ratios: Vec<f64> = this.per_sec[w].iter().zip(&base.per_sec[w]).map(|(a, b)| a / b.max(1e-9)).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let cpu_per_op = |s: &Side| s.cpu[w].as_secs_f64() * 1e6 / s.ops[w].max(1) as f64;
        println!(
            "  {name:<8} {:>12.0} {:>12.0} {:>10.3} ({lo:.2}–{hi:.2}) {:>13.1} µs {:>13.1} µs",
            median(this.per_sec[w].clone()),
            median(base.per_sec[w].clone()),
            median(ratios),
            cpu_per_op(&this),
            cpu_per_op(&base),
        );
    }
    Ok(())
}
