//! fair-framework: a custom framework — a scheduler of the second level — written
//! against Corral's public API only (`corral-client`, `corral-api`, and the watcher of
//! `corral-runtime`), run as its own process.
//!
//! It shows everything a framework does:
//! - registers its `Framework` (name, weight, role), creating or updating it;
//! - stays connected by renewing its Lease `corral-frameworks/NAME` every few seconds;
//! - lists and watches the offers made to it (label `corral.dev/framework=NAME`),
//!   resuming after errors, and accepts each with as many identical tasks
//!   (`sleep 3600`, `--cpus` and `--mem` each) as fit; an offer that fits none it declines;
//! - with `--max-tasks`, suppresses offers once it has that many tasks, and revives them
//!   when some end;
//! - watches its tasks and prints a line whenever the count placed or running changes;
//! - stops on Ctrl-C. Its tasks keep running: the server kills them only if it stays away
//!   longer than its failover timeout (a week).
//!
//! Run two with weights 1 and 3: whatever comes free is offered to the one further
//! below its weighted share, so a cluster they fill together ends up shared 1:3
//! (weighted DRF). Nothing is preempted: one started alone first takes all that is free.
//!
//! ```sh
//! # Tasks without an image run natively, which only a privileged namespace allows
//! # (or give --image with an image the agents have).
//! printf 'kind: Namespace\napiVersion: corral.dev/v1\nmetadata: {name: batch, labels: {corral.dev/task-security: privileged}}\n' | corral apply -f -
//! cargo run --example fair-framework -- --name light --weight 1 --cpus 0.25 --mem 256 --namespace batch &
//! cargo run --example fair-framework -- --name heavy --weight 3 --cpus 0.25 --mem 256 --namespace batch &
//! corral get frameworks        # SHARE: about 0.25 and 0.75 once the cluster is full
//! ```
//!
//! `--server` and `--token` (or `CORRAL_SERVER`, `CORRAL_TOKEN`) override the CLI's
//! configuration file, as for `corral` itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use corral_api::kinds::framework::{FRAMEWORK_LEASE_NAMESPACE, OfferAccept, OfferDecline};
use corral_api::kinds::lease::LeaseSpec;
use corral_api::kinds::node::Resources;
use corral_api::kinds::task::{TaskPhase, TaskSpec};
use corral_api::kinds::{Framework, FrameworkSpec, Lease, Offer, Task};
use corral_client::{Api, Client, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{self, Seen};

/// The label the offers controller puts on every offer: the framework it is made to.
const FRAMEWORK_LABEL: &str = "corral.dev/framework";
/// How long the lease lasts without renewal: long enough to ride out a slow request
/// or two, short enough that a crashed framework is soon seen gone.
const LEASE_SECONDS: i64 = 10;
/// How often the lease is renewed: three renewals per lease, so one lost is harmless.
const RENEW: Duration = Duration::from_secs(3);
/// How long a declined node is refused (the server's default, as Mesos').
const REFUSE_SECONDS: u64 = 5;

/// A framework launching identical `sleep 3600` tasks on whatever it is offered.
#[derive(Parser, Debug, Clone)]
#[command(name = "fair-framework", about)]
struct Args {
    /// The framework's name (an RFC 1123 label); also the prefix of its tasks' names.
    #[arg(long)]
    name: String,
    /// Its weight: weight 3 is entitled to three times the share of weight 1.
    #[arg(long, default_value_t = 1.0)]
    weight: f64,
    /// The role whose resources it takes (`*`: the unreserved pool).
    #[arg(long, default_value = "*")]
    role: String,
    /// CPUs of each task, in cores.
    #[arg(long)]
    cpus: f64,
    /// Memory of each task, in MiB.
    #[arg(long)]
    mem: u64,
    /// The namespace its tasks are created in.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Image the tasks run in; without one they are native processes, which need a
    /// namespace labelled `corral.dev/task-security: privileged`.
    #[arg(long)]
    image: Option<String>,
    /// The API server; default: the CLI's configuration, else http://127.0.0.1:7070.
    #[arg(long, env = "CORRAL_SERVER")]
    server: Option<String>,
    /// Bearer token; default: the CLI's configuration.
    #[arg(long, env = "CORRAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stop asking for offers once it has this many live tasks.
    #[arg(long)]
    max_tasks: Option<u64>,
}

/// What the framework knows, shared by its offer and task loops.
#[derive(Default)]
struct State {
    /// Its live tasks as last seen by the watch: name → running.
    seen: HashMap<String, bool>,
    /// Tasks it launched that the watch has not shown yet: counted, so that a burst of
    /// offers never launches past `--max-tasks`.
    launched: HashSet<String>,
    /// Offers already accepted or declined (the watch shows them again as they go).
    answered: HashSet<String>,
    /// Whether it last asked for no offers.
    suppressed: bool,
    /// The last progress printed: (placed, running).
    printed: Option<(usize, usize)>,
    /// Task names: a prefix unique to this run, and a counter.
    next: u64,
}

impl State {
    /// Its live tasks: those seen, and those launched but not seen yet.
    fn live(&self) -> u64 {
        (self.seen.len() + self.launched.iter().filter(|n| !self.seen.contains_key(*n)).count()) as u64
    }

    /// Takes in task `t` as the watch shows it (`gone`: deleted).
    fn note(&mut self, t: &Task, gone: bool) {
        let phase = t.status.as_ref().map(|s| s.phase).unwrap_or_default();
        self.launched.remove(&t.metadata.name);
        if gone || phase.is_terminal() {
            self.seen.remove(&t.metadata.name);
        } else {
            self.seen.insert(t.metadata.name.clone(), phase == TaskPhase::Running);
        }
    }
}

/// The framework.
struct Fair {
    args: Args,
    client: Client,
    frameworks: Api<Framework>,
    tasks: Api<Task>,
    /// Makes this run's task names unique, so that a restart never collides with the
    /// tasks of the one before.
    run: String,
    state: Mutex<State>,
}

impl Fair {
    fn new(args: Args, client: Client) -> Self {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Fair {
            frameworks: Api::all(client.clone()),
            tasks: Api::namespaced(client.clone(), &args.namespace),
            run: radix36(started.as_millis() as u64),
            args,
            client,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere poisons the lock but leaves the counts usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the framework, or brings an existing one to these settings (its
    /// failover timeout is left as it is).
    async fn register(&self) -> anyhow::Result<()> {
        let name = &self.args.name;
        match self.frameworks.get_opt(name).await? {
            None => {
                let spec = FrameworkSpec {
                    roles: vec![self.args.role.clone()],
                    weight: self.args.weight,
                    ..Default::default()
                };
                self.frameworks.create(&Framework::new(name, spec)).await?;
            }
            Some(mut f) => {
                f.spec.roles = vec![self.args.role.clone()];
                f.spec.weight = self.args.weight;
                f.spec.suppressed = false;
                self.frameworks.update(&f).await?;
            }
        }
        Ok(())
    }

    /// Renews the lease that keeps the framework connected, until `shutdown`.
    async fn renew_lease(&self, shutdown: CancellationToken) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), FRAMEWORK_LEASE_NAMESPACE);
        let name = &self.args.name;
        loop {
            // Microseconds: every renewal is a change, which is what the offers
            // controller looks for.
            let now = corral_api::meta::now_micro_timestamp();
            let result = match leases.get_opt(name).await {
                Ok(Some(mut l)) => {
                    l.spec.holder_identity = Some(name.clone());
                    l.spec.renew_time = Some(now);
                    l.spec.lease_duration_seconds = Some(LEASE_SECONDS);
                    leases.update(&l).await.map(drop)
                }
                Ok(None) => {
                    let spec = LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(LEASE_SECONDS),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                    };
                    leases.create(&Lease::namespaced(FRAMEWORK_LEASE_NAMESPACE, name, spec)).await.map(drop)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                // The next renewal comes well before the lease runs out.
                tracing::warn!(error = %e, "cannot renew the framework's lease");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW) => {}
            }
        }
    }

    /// Answers every offer made to the framework, until `shutdown`.
    async fn follow_offers(self: &Arc<Self>, shutdown: CancellationToken) {
        let params = ListParams::default().labels(&format!("{FRAMEWORK_LABEL}={}", self.args.name));
        watcher::watch(Api::<Offer>::all(self.client.clone()), params, shutdown, None, |seen| {
            let me = self.clone();
            async move { me.on_offers(seen).await }
        })
        .await;
    }

    async fn on_offers(&self, seen: Seen<Offer>) {
        let offers = match seen {
            Seen::Listed { objects, .. } => {
                let present: HashSet<&str> = objects.iter().map(|o| o.metadata.name.as_str()).collect();
                self.state().answered.retain(|n| present.contains(n.as_str()));
                objects
            }
            Seen::Applied(o) => vec![o],
            Seen::Deleted(o) => {
                self.state().answered.remove(&o.metadata.name);
                return;
            }
            Seen::Bookmark(_) => return,
        };
        for offer in offers {
            self.answer(&offer).await;
        }
    }

    /// Accepts `offer` with as many tasks as fit in it (and under `--max-tasks`), or
    /// declines it.
    async fn answer(&self, offer: &Offer) {
        let name = offer.metadata.name.clone();
        let outstanding = offer.metadata.deletion_timestamp.is_none()
            && offer.status.as_ref().is_none_or(|s| s.declined_for_seconds.is_none());
        let (count, full) = {
            let mut st = self.state();
            if !outstanding || !st.answered.insert(name.clone()) {
                return;
            }
            let room = self.args.max_tasks.map_or(u64::MAX, |m| m.saturating_sub(st.live()));
            (fits(&offer.spec.resources, self.args.cpus, self.args.mem).min(room), room == 0)
        };
        let framework = self.args.name.clone();
        if count == 0 {
            if full {
                self.set_suppressed(true).await;
            }
            let decline = OfferDecline { framework, refuse_seconds: Some(REFUSE_SECONDS) };
            if let Err(e) = self.client.decline_offer(&name, &decline).await {
                // Gone already: rescinded or expired, nothing to turn down.
                tracing::debug!(error = %e, offer = %name, "cannot decline an offer");
            }
            return;
        }
        let tasks: Vec<Task> = (0..count).map(|_| self.task()).collect();
        let names: Vec<String> = tasks.iter().map(|t| t.metadata.name.clone()).collect();
        self.state().launched.extend(names.iter().cloned());
        match self.client.accept_offer(&name, &OfferAccept { framework, tasks }).await {
            Ok(created) => {
                tracing::info!(offer = %name, node = %offer.spec.node, tasks = created.len(), "accepted an offer")
            }
            Err(e) => {
                let mut st = self.state();
                for n in &names {
                    st.launched.remove(n);
                }
                drop(st);
                if e.is_conflict() {
                    // Rescinded, expired, or the node filled up since: the next offer will do.
                    tracing::info!(offer = %name, error = %e, "offer no longer stands");
                } else {
                    tracing::warn!(offer = %name, error = %e, "cannot accept an offer");
                }
            }
        }
    }

    /// A new task: `sleep 3600` with the configured resources, and a name unique to
    /// this run.
    fn task(&self) -> Task {
        let n = {
            let mut st = self.state();
            st.next += 1;
            st.next
        };
        let name = format!("{}-{}-{}", self.args.name, self.run, radix36(n));
        let spec = TaskSpec {
            image: self.args.image.clone(),
            command: vec!["sleep".into(), "3600".into()],
            resources: Resources { cpus: self.args.cpus, mem: self.args.mem, disk: 0 },
            ..Default::default()
        };
        let mut task = Task::namespaced(&self.args.namespace, name, spec);
        task.metadata.labels.insert(FRAMEWORK_LABEL.to_string(), self.args.name.clone());
        task
    }

    /// Follows the framework's tasks, printing progress and reviving offers when tasks
    /// end below `--max-tasks`, until `shutdown`.
    async fn follow_tasks(self: &Arc<Self>, shutdown: CancellationToken) {
        // The server stamps `spec.framework` on every task an accept creates.
        let params = ListParams::default().fields(&format!("spec.framework={}", self.args.name));
        watcher::watch(self.tasks.clone(), params, shutdown, None, |seen| {
            let me = self.clone();
            async move { me.on_tasks(seen).await }
        })
        .await;
    }

    async fn on_tasks(&self, seen: Seen<Task>) {
        let revive = {
            let mut st = self.state();
            match seen {
                Seen::Listed { objects, .. } => {
                    st.seen.clear();
                    for t in &objects {
                        st.note(t, false);
                    }
                }
                Seen::Applied(t) => st.note(&t, false),
                Seen::Deleted(t) => st.note(&t, true),
                Seen::Bookmark(_) => return,
            }
            let progress = (st.seen.len(), st.seen.values().filter(|running| **running).count());
            if st.printed != Some(progress) {
                st.printed = Some(progress);
                println!("{}: {} tasks placed, {} running", self.args.name, progress.0, progress.1);
            }
            st.suppressed && self.args.max_tasks.is_some_and(|m| st.live() < m)
        };
        if revive {
            self.set_suppressed(false).await;
        }
    }

    /// Asks for no offers (`true`) or for offers again.
    async fn set_suppressed(&self, suppressed: bool) {
        if self.state().suppressed == suppressed {
            return;
        }
        // Read, change, write; on a conflict (someone else changed it) once more.
        for _ in 0..3 {
            let result = match self.frameworks.get(&self.args.name).await {
                Ok(mut f) => {
                    f.spec.suppressed = suppressed;
                    self.frameworks.update(&f).await.map(drop)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    self.state().suppressed = suppressed;
                    tracing::info!(suppressed, "framework updated");
                    return;
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!(error = %e, suppressed, "cannot update the framework");
                    return;
                }
            }
        }
    }
}

/// How many tasks of `cpus` and `mem` each fit in `offered`.
fn fits(offered: &Resources, cpus: f64, mem: u64) -> u64 {
    // A hair of slack: 0.3 cores hold three tasks of 0.1 though 0.3 / 0.1 < 3 in floats.
    let by_cpu = if cpus > 0.0 { ((offered.cpus + 1e-9) / cpus).floor() as u64 } else { u64::MAX };
    let by_mem = offered.mem.checked_div(mem).unwrap_or(u64::MAX);
    by_cpu.min(by_mem)
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.cpus > 0.0 || args.mem > 0,
        "--cpus and --mem are both zero: give each task some resources, or every offer fits without end"
    );
    anyhow::ensure!(args.cpus >= 0.0 && args.weight >= 0.0, "--cpus and --weight cannot be negative");
    corral_telemetry::logging::init("info");
    // As the CLI: the configuration file (~/.corral/config), overridden by flags and
    // the environment.
    let mut config = corral_client::Config::infer()?.unwrap_or_default();
    if let Some(server) = &args.server {
        config.server = server.clone();
    }
    if config.server.is_empty() {
        config.server = "http://127.0.0.1:7070".to_string();
    }
    if let Some(token) = &args.token {
        config.token = Some(token.clone());
    }
    let client = Client::from_config(&config)?;
    let fair = Arc::new(Fair::new(args.clone(), client));
    fair.register().await.with_context(|| format!("cannot register framework {:?} at {}", args.name, config.server))?;
    println!("{}: registered with weight {} for role {:?}", args.name, args.weight, args.role);

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    tokio::join!(
        fair.renew_lease(shutdown.clone()),
        fair.follow_offers(shutdown.clone()),
        fair.follow_tasks(shutdown.clone()),
    );
    let live = fair.state().live();
    println!(
        "{}: stopped; its {live} tasks run on, and are killed if it stays away longer than its failover timeout",
        args.name
    );
    Ok(())
}
