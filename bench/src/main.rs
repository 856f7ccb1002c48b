//! `corral-bench`: the benchmarks of Corral, a binary of their own so that the
//! production `corral` stays lean (no etcd client, no load generators). They print
//! figures; they assert nothing.
//!
//! The processes under test are the real ones: `corral server` and `corral agent`
//! from the `corral` executable beside this one (or `$CORRAL_BIN`), and Debian's
//! `etcd` as the peer of the store benchmark.

use std::process::ExitCode;

// As in `corral`: the store measured in this process must allocate as it does there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};

/// Benchmarks of Corral.
#[derive(Parser, Debug)]
#[command(name = "corral-bench", version, about = "Run Corral's benchmarks and print their figures")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The store through the HTTP server, side by side with a real etcd: durable
    /// write throughput at several concurrencies, write latency at a fixed rate,
    /// reads, watch delivery latency, replay rate and memory at many objects.
    Store(BenchStoreArgs),
    /// The controller runtime: objects of a custom kind created, a trivial reconciler
    /// writing status on each; time to converge, reconciles/s, cache memory.
    Controller(BenchControllerArgs),
    /// The node agent: start latency of busybox tasks from binding to RUNNING, side
    /// by side with bare `runc run`; native start latency; agent memory with the tasks
    /// running. Needs root and runc.
    Agent(BenchAgentArgs),
    /// The control plane under a long mixed load: overwrites of 1 MiB and 1 KiB
    /// objects, thousands of watchers of which some never read, periodic full lists.
    /// Prints server RSS, data dir size and /healthz latency over time, then a summary
    /// against the targets. Arguments after `--` go to `corral server`.
    Soak(BenchSoakArgs),
    /// Hollow nodes, a SIMULATION for scale tests: registers N nodes through the API
    /// of a running server (the one `~/.corral/config` names, or `--kubeconfig`),
    /// renews their heartbeats, and reports tasks bound to them RUNNING without
    /// starting any process. Each is marked `simulated=true`. Runs until interrupted.
    Hollow(BenchHollowArgs),
    /// The scheduling benchmark: hollow nodes (SIMULATED, no process runs) join a
    /// control plane, S services × I instances are applied at once; prints the time to
    /// place (spec.nodeName) and to run every task, placements/s, a small service's
    /// apply → RUNNING latency (p50/p99) meanwhile, and the control plane's peak RSS
    /// and CPU. Starts `corral server` itself unless --server names one. Stops by
    /// itself: past --timeout it prints what it reached and exits 1.
    Services(BenchServicesArgs),
    /// The jobs benchmark, on hollow nodes (SIMULATED: each task "exits" a set time
    /// after it runs): J jobs with a seconds-cron — lag from each due time to its
    /// task RUNNING (p50/p99/max) and due times missed — then R manual runs created
    /// at once — time until all ended. Each phase on a `corral server` of its own,
    /// started by the bench. Stops by itself (--timeout per phase).
    Jobs(BenchJobsArgs),
    /// Cluster DNS propagation, on hollow nodes (SIMULATED): N nodes, T tasks
    /// churning; from a task's RUNNING (status write acknowledged) to the first DNS
    /// answer (UDP, asked directly) that includes it, and from its end to one without
    /// it: p50/p99/max. Starts `corral server` itself.
    DnsPropagation(BenchDnsPropagationArgs),
    /// The DNS server side by side with Knot DNS (`knotd`): both serve the same zone
    /// of N records (tasks' A, services' A and SRV, nodes' A); `dnsperf` loads each
    /// in alternating rounds with the same query file. Prints queries/s per round,
    /// medians, the ratio, CPU per query and the zone's memory. Needs knot and
    /// dnsperf (scripts/setup.sh).
    Dns(BenchDnsArgs),
    /// GitOps, all real (git CLI, bare repository over file://, `corral server`
    /// started by the bench): a repository of N manifests — time and writes of the
    /// first sync, of a resync with no change, and from a pushed commit changing one
    /// object to that change in the cluster, by interval and by webhook (p50, max).
    /// Stops by itself (--timeout bounds every wait).
    Sync(BenchSyncArgs),
    /// Corral highly available on etcd (issue 16): a 3-member etcd cluster on
    /// loopback and two `corral server`s on it. Prints ConfigMap creates/s through
    /// both servers against etcd puts/s straight into the cluster at each concurrency
    /// (alternating rounds, medians, the ratio); a client's write unavailability
    /// (p50/p99/max) when the etcd leader is killed and when an API server is killed,
    /// with the writes of unknown outcome and the acknowledged writes missing (must be
    /// 0); and the controller manager's failover time when the server holding its lease
    /// is killed (the 15 s lease bounds it). Needs etcd (scripts/setup.sh).
    Ha(BenchHaArgs),
}

/// Options of `corral-bench ha`.
#[derive(Args, Debug)]
struct BenchHaArgs {
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds of the throughput comparison (each runs etcd and Corral, alternating who
    /// goes first); the medians are reported.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent clients of the throughput comparison, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,256")]
    clients: Vec<usize>,
    /// Clients writing continuously through each failover.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Rounds of each failover (etcd leader, API server, controller manager).
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Seconds any one wait (recovery after a kill, settling, a lease holder) may take.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Only these parts, comma-separated: throughput, etcd-leader, api-server,
    /// controller-manager (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Options of `corral-bench sync`.
#[derive(Args, Debug)]
struct BenchSyncArgs {
    /// ConfigMaps in the repository (5 documents a file, 100 files a directory).
    #[arg(long, default_value_t = 5000)]
    manifests: usize,
    /// The Sync's intervalSeconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Repetitions of each latency measurement.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds any one wait (the first sync included) may take; past them the bench
    /// prints what it reached and exits 1.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// An extra argument for the `corral server` the bench starts (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// Options of `corral-bench dns-propagation`.
#[derive(Args, Debug)]
struct BenchDnsPropagationArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Tasks kept bound to them.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Tasks replaced per second while probing.
    #[arg(long, default_value_t = 200)]
    churn: u32,
    /// Probes (each an appearance and a disappearance).
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Seconds setting up may take.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// An extra argument for the `corral server` the bench starts (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// Options of `corral-bench dns`.
#[derive(Args, Debug)]
struct BenchDnsArgs {
    /// Records in the zone.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Rounds (each runs dnsperf against both servers, alternating who goes first).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// dnsperf clients (`-c`).
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// dnsperf queries outstanding (`-q`).
    #[arg(long, default_value_t = 200)]
    outstanding: u32,
    /// Lines of the query file (9 in 10 names that exist, 1 in 10 NXDOMAIN).
    #[arg(long, default_value_t = 100_000)]
    queries: usize,
    /// Query every task's name, not two per service (Corral's answer cache then
    /// mostly misses).
    #[arg(long)]
    all_names: bool,
}

/// Options of `corral-bench jobs`.
#[derive(Args, Debug)]
struct BenchJobsArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Jobs with a schedule (phase 1); 0 skips the phase.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Seconds between two due times of each job (`*/N * * * * *`; N divides 60).
    #[arg(long, default_value_t = 10)]
    every: u32,
    /// Due times measured per job.
    #[arg(long, default_value_t = 6)]
    firings: u32,
    /// Manual runs created at once (phase 2); 0 skips the phase.
    #[arg(long, default_value_t = 10_000)]
    manual_runs: usize,
    /// The jobs the manual runs are of (runs spread evenly).
    #[arg(long, default_value_t = 1000)]
    manual_jobs: usize,
    /// Seconds each task runs (on paper) before it exits 0.
    #[arg(long, default_value_t = 1.0)]
    task_seconds: f64,
    /// Seconds each phase may take; past them it prints what it reached and exits 1.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// An extra argument for the `corral server` the bench starts (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// Options of `corral-bench services`.
#[derive(Args, Debug)]
struct BenchServicesArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Services applied at once.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Instances of each service.
    #[arg(long, default_value_t = 100)]
    instances: u32,
    /// Cores of each task.
    #[arg(long, default_value_t = 0.01)]
    cpus: f64,
    /// Memory of each task, in MiB.
    #[arg(long, default_value_t = 16)]
    mem: u64,
    /// Cores of each hollow node.
    #[arg(long, default_value_t = 4.0)]
    node_cpus: f64,
    /// Memory of each hollow node, in MiB.
    #[arg(long, default_value_t = 8192)]
    node_mem: u64,
    /// The hollow nodes' names' prefix: PREFIX0, PREFIX1, …
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// Seconds between two heartbeats of a hollow node.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Small services applied one after another once the load is applied, each
    /// measured from apply to its tasks RUNNING.
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// Instances of each small service.
    #[arg(long, default_value_t = 3)]
    probe_instances: u32,
    /// Create the tasks already bound to the nodes (round-robin) instead of applying
    /// services: the path to RUNNING without the scheduler, as a baseline.
    #[arg(long)]
    bound: bool,
    /// Seconds the whole run may take; past them it prints what it reached and exits 1.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// URL of a running server to measure instead of starting one.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// With --server: configuration file (kubeconfig format) holding the credential;
    /// default: the CLI's, if there is one.
    #[arg(long, requires = "server")]
    kubeconfig: Option<std::path::PathBuf>,
    /// With --server: bearer token, instead of the configuration file's (ignored
    /// without --server).
    #[arg(long, env = "CORRAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --server: the server's process id on this machine, to report its memory
    /// and CPU.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// An extra argument for the `corral server` the bench starts (repeatable), e.g.
    /// `--server-arg=--history-max-age=60`.
    #[arg(long = "server-arg", allow_hyphen_values = true, conflicts_with = "server")]
    server_args: Vec<String>,
}

/// Options of `corral-bench hollow`.
#[derive(Args, Debug)]
struct BenchHollowArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Their names' prefix: PREFIX0, PREFIX1, …
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// Cores of each node.
    #[arg(long, default_value_t = 4.0)]
    cpus: f64,
    /// Memory of each node, in MiB.
    #[arg(long, default_value_t = 8192)]
    mem: u64,
    /// Seconds between two heartbeats of a node.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Configuration file (kubeconfig format) with the server and a credential.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
}

/// Options of `corral-bench soak`.
#[derive(Args, Debug)]
struct BenchSoakArgs {
    /// Length of the run, in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Watchers in all, each on its own connection.
    #[arg(long, default_value_t = 2000)]
    watchers: usize,
    /// Of the watchers, those that send their request and never read.
    #[arg(long, default_value_t = 1000)]
    idle_watchers: usize,
    /// Objects of 1 MiB, overwritten in turn.
    #[arg(long, default_value_t = 100)]
    big_objects: usize,
    /// Objects of 1 KiB, overwritten in turn.
    #[arg(long, default_value_t = 5000)]
    small_objects: usize,
    /// Overwrites of 1 MiB objects per second. The defaults are a load this 2-core
    /// machine sustains with the bench beside the server (~50,000 events/s to the
    /// reading watchers); at 5 and 200 it saturates both cores, which is a
    /// throughput figure, not a soak.
    #[arg(long, default_value_t = 1.0)]
    big_writes_per_sec: f64,
    /// Overwrites of 1 KiB objects per second.
    #[arg(long, default_value_t = 50.0)]
    small_writes_per_sec: f64,
    /// Percent of the watchers (reading and idle alike) watching the 1 MiB objects;
    /// the rest watch the 1 KiB ones. Each reading one receives 1 MiB/s at the
    /// default rates.
    #[arg(long, default_value_t = 5)]
    big_watchers_percent: u32,
    /// Seconds between full lists of each size (0: none).
    #[arg(long, default_value_t = 10)]
    list_every: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample_every: u64,
    /// Further arguments of `corral server`, after `--`.
    #[arg(last = true, value_name = "SERVER ARGS")]
    server_args: Vec<String>,
}

/// Options of `corral bench agent`.
#[derive(Args, Debug)]
struct BenchAgentArgs {
    /// Container tasks started one after another (and as many bare runc runs).
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Native tasks started one after another.
    #[arg(long, default_value_t = 50)]
    native: usize,
}

/// Options of `corral bench controller`.
#[derive(Args, Debug)]
struct BenchControllerArgs {
    /// Objects created.
    #[arg(long, default_value_t = 10_000)]
    objects: u64,
    /// Reconciles at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// Options of `corral bench store`.
#[derive(Args, Debug)]
struct BenchStoreArgs {
    /// Seconds per throughput workload.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Objects created for the memory and replay figures.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// Watchers of the many-watchers latency figure.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Writes per second of the fixed-rate latency workload.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Concurrent clients of the write workloads, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    clients: Vec<usize>,
    /// An extra argument for `corral server` (repeatable), e.g.
    /// `--server-arg=--no-audit-log`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Only these workloads, comma-separated: writes, store, rate, reads, watch, mass
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Instead of the workloads above, compare this build with another `corral`
    /// executable (e.g. one built from an earlier commit): both servers run at once
    /// and take create, update and get in alternating slices; prints the median
    /// ratio of throughput and each server's CPU per operation.
    #[arg(long, value_name = "CORRAL")]
    baseline: Option<std::path::PathBuf>,
    /// Rounds of the `--baseline` comparison.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

fn main() -> ExitCode {
    corral_telemetry::logging::init("warn");
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let run = async {
        match cli.command {
            BenchCommand::Store(a) => {
                let opts = corral_bench::StoreBenchOptions {
                    seconds: a.seconds,
                    objects: a.objects,
                    watchers: a.watchers,
                    clients: a.clients,
                    rate: a.rate,
                    server_args: a.server_args,
                    only: a.only,
                };
                match a.baseline {
                    Some(baseline) => corral_bench::run_versus(&opts, &baseline, a.rounds).await,
                    None => corral_bench::run_store_bench(opts).await,
                }
            }
            BenchCommand::Controller(a) => {
                corral_bench::run_controller_bench(corral_bench::ControllerBenchOptions {
                    objects: a.objects,
                    concurrency: a.concurrency,
                })
                .await
            }
            BenchCommand::Agent(a) => {
                corral_bench::run_agent_bench(corral_bench::AgentBenchOptions { tasks: a.tasks, native: a.native })
                    .await
            }
            BenchCommand::Hollow(a) => {
                let path = match a.kubeconfig {
                    Some(p) => p,
                    None => corral_client::credentials::default_config_path()
                        .ok_or_else(|| anyhow::anyhow!("no configuration file: pass --kubeconfig"))?,
                };
                let config = corral_client::Config::from_kubeconfig(&path)?;
                let client = corral_client::Client::from_config(&config)?;
                let opts = corral_bench::hollow::HollowOptions {
                    nodes: a.nodes,
                    prefix: a.prefix,
                    capacity: corral_api::kinds::node::Resources { cpus: a.cpus, mem: a.mem, disk: 65536 },
                    heartbeat: std::time::Duration::from_secs(a.heartbeat_seconds.max(1)),
                    ..Default::default()
                };
                let shutdown = corral_runtime::CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    stop.cancel();
                });
                println!(
                    "corral-bench hollow: {} SIMULATED nodes ({}0 …) on {}; Ctrl-C stops",
                    opts.nodes, opts.prefix, config.server
                );
                corral_bench::hollow::run_hollow(client, opts, shutdown).await
            }
            BenchCommand::Services(a) => {
                let control_plane = match a.server {
                    Some(url) => corral_bench::services::ControlPlane::Running {
                        config: corral_bench::services::server_config(&url, a.kubeconfig.as_deref(), a.token)?,
                        pid: a.server_pid,
                    },
                    None => corral_bench::services::ControlPlane::Start { server_args: a.server_args },
                };
                corral_bench::services::run_services_bench(corral_bench::services::ServicesBenchOptions {
                    nodes: a.nodes,
                    prefix: a.prefix,
                    node_capacity: corral_api::kinds::node::Resources {
                        cpus: a.node_cpus,
                        mem: a.node_mem,
                        disk: 65536,
                    },
                    heartbeat: std::time::Duration::from_secs(a.heartbeat_seconds.max(1)),
                    services: a.services,
                    instances: a.instances,
                    task_resources: corral_api::kinds::node::Resources { cpus: a.cpus, mem: a.mem, disk: 0 },
                    probes: a.probes,
                    probe_instances: a.probe_instances,
                    bound: a.bound,
                    timeout: std::time::Duration::from_secs(a.timeout),
                    control_plane,
                })
                .await
            }
            BenchCommand::Jobs(a) => {
                corral_bench::jobs::run_jobs_bench(corral_bench::jobs::JobsBenchOptions {
                    nodes: a.nodes,
                    jobs: a.jobs,
                    every: a.every,
                    firings: a.firings,
                    manual_runs: a.manual_runs,
                    manual_jobs: a.manual_jobs,
                    task_seconds: a.task_seconds,
                    timeout: std::time::Duration::from_secs(a.timeout),
                    server_args: a.server_args,
                    ..Default::default()
                })
                .await
            }
            BenchCommand::DnsPropagation(a) => {
                corral_bench::dns_propagation::run_dns_propagation(
                    corral_bench::dns_propagation::DnsPropagationOptions {
                        nodes: a.nodes,
                        tasks: a.tasks,
                        churn_per_sec: a.churn,
                        probes: a.probes,
                        server_args: a.server_args,
                        timeout: std::time::Duration::from_secs(a.timeout),
                    },
                )
                .await
            }
            BenchCommand::Dns(a) => {
                corral_bench::dns::run_dns_bench(corral_bench::dns::DnsBenchOptions {
                    records: a.records,
                    rounds: a.rounds,
                    seconds: a.seconds,
                    clients: a.clients,
                    outstanding: a.outstanding,
                    queries: a.queries,
                    all_names: a.all_names,
                })
                .await
            }
            BenchCommand::Sync(a) => {
                corral_bench::sync::run_sync_bench(corral_bench::sync::SyncBenchOptions {
                    manifests: a.manifests,
                    interval: a.interval,
                    rounds: a.rounds,
                    timeout: std::time::Duration::from_secs(a.timeout),
                    server_args: a.server_args,
                })
                .await
            }
            BenchCommand::Ha(a) => {
                corral_bench::run_ha_bench(corral_bench::HaBenchOptions {
                    seconds: a.seconds,
                    rounds: a.rounds,
                    clients: a.clients,
                    writers: a.writers,
                    failovers: a.failovers,
                    timeout: std::time::Duration::from_secs(a.timeout),
                    only: a.only,
                })
                .await
            }
            BenchCommand::Soak(a) => {
                corral_bench::run_soak(corral_bench::SoakOptions {
                    minutes: a.minutes,
                    watchers: a.watchers,
                    idle_watchers: a.idle_watchers,
                    big_objects: a.big_objects,
                    small_objects: a.small_objects,
                    big_writes_per_sec: a.big_writes_per_sec,
                    small_writes_per_sec: a.small_writes_per_sec,
                    big_watchers_percent: a.big_watchers_percent,
                    list_every: a.list_every,
                    sample_every: a.sample_every,
                    server_args: a.server_args,
                })
                .await
            }
        }
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
