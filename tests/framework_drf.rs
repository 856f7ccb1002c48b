//! Frameworks on the offers controller, inside the real server, over nodes the test
//! registers itself (no agent runs on them, so tasks stay STAGING; what is tested is
//! who is offered what, and what happens to a framework that goes away).
//!
//! The first test runs the example framework (examples/fair-framework) as real child
//! processes, built by cargo with the test's own profile; the others play the framework
//! themselves through the client, to control each step.

mod api_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use api_support::TestServer;
use corral_api::ApiObject;
use corral_api::kinds::framework::{FRAMEWORK_LEASE_NAMESPACE, FrameworkPhase, OfferAccept, OfferDecline};
use corral_api::kinds::lease::LeaseSpec;
use corral_api::kinds::node::Resources;
use corral_api::kinds::task::TaskSpec;
use corral_api::kinds::{Framework, FrameworkSpec, Lease, Offer, Task};
use corral_client::{Api, Client, ListParams, ObjectType};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{self, Seen};
use corral_testkit::{PATIENCE, eventually};
use tokio::sync::mpsc;

const FRAMEWORK_LABEL: &str = "corral.dev/framework";

/// The control plane with every controller but node-lifecycle, which would mark the
/// test's nodes (no agent, no heartbeats) unreachable.
async fn server() -> TestServer {
    TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await
}

/// The example framework's binary, built (or found up to date) by cargo once per run,
/// beside the test's own binaries: `cargo test --test framework_drf` alone builds no
/// examples, and an old binary would test old code.
fn fair_framework() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/corral: the profile's directory and the target directory.
        let profile_dir = PathBuf::from(env!("CARGO_BIN_EXE_corral")).parent().expect("a directory").to_path_buf();
        let target_dir = profile_dir.parent().expect("the target directory").to_path_buf();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "--example", "fair-framework", "--profile", &profile, "--manifest-path"])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --example fair-framework failed");
        let exe = profile_dir.join("examples/fair-framework");
        assert!(exe.exists(), "{} missing after the build", exe.display());
        exe
    })
}

/// The example framework running as a child process, killed when the test ends,
/// passed or not.
struct FairFramework {
    child: Child,
    /// The lines it prints, as it prints them.
    lines: mpsc::UnboundedReceiver<String>,
    printed: Vec<String>,
}

impl FairFramework {
    /// Runs framework `name` with `weight`, launching tasks of 0.25 cpu and 256 MiB in
    /// `default`.
    fn start(s: &TestServer, name: &str, weight: f64) -> Self {
        let mut child = Command::new(fair_framework())
            .args(["--name", name, "--weight", &weight.to_string(), "--cpus", "0.25", "--mem", "256"])
            .args(["--server", &s.base, "--token", s.token()])
            .env("CORRAL_CONFIG", "/nonexistent")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example framework starts");
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        FairFramework { child, lines, printed: Vec::new() }
    }

    /// Waits until it prints `want`.
    async fn prints(&mut self, want: &str) {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                self.printed.push(line.clone());
                if line == want {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "waited in vain for {want:?}; printed: {:#?}", self.printed);
    }

    /// Stops it as Ctrl-C does; it must exit cleanly.
    async fn interrupt(&mut self) {
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = eventually("the framework to exit on SIGINT", async || self.child.try_wait().ok().flatten()).await;
        assert!(status.success(), "exited with {status}; printed: {:#?}", self.printed);
    }
}

impl Drop for FairFramework {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every change a watch sees, in order, until dropped.
struct Recording<K> {
    seen: mpsc::UnboundedReceiver<Seen<K>>,
    stop: CancellationToken,
}

impl<K: ObjectType> Recording<K> {
    /// Starts watching what `api` and `params` select: a list first, then each change.
    fn start(api: Api<K>, params: ListParams) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(watcher::watch(api, params, stop.clone(), None, move |s| {
            let _ = tx.send(s);
            std::future::ready(())
        }));
        Recording { seen, stop }
    }

    /// The next thing seen; panics, naming `what` it waited for, after [`PATIENCE`].
    async fn next(&mut self, what: &str) -> Seen<K> {
        match tokio::time::timeout(PATIENCE, self.seen.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => panic!("the watch ended while waiting for {what}"),
            Err(_) => panic!("waited in vain for {what}"),
        }
    }
}

impl<K> Drop for Recording<K> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Renews the lease of framework `name` (lasting `seconds`) every few hundred
/// milliseconds until dropped: the test playing a connected framework.
struct Renewing(tokio::task::JoinHandle<()>);

impl Renewing {
    fn start(client: Client, name: &str, seconds: i64) -> Self {
        let leases: Api<Lease> = Api::namespaced(client, FRAMEWORK_LEASE_NAMESPACE);
        let name = name.to_string();
        Renewing(tokio::spawn(async move {
            loop {
                let now = corral_api::meta::now_micro_timestamp();
                let result = match leases.get_opt(&name).await {
                    Ok(Some(mut l)) => {
                        l.spec.renew_time = Some(now);
                        leases.update(&l).await.map(drop)
                    }
                    Ok(None) => {
                        let spec = LeaseSpec {
                            holder_identity: Some(name.clone()),
                            lease_duration_seconds: Some(seconds),
                            renew_time: Some(now),
                            ..Default::default()
                        };
                        leases.create(&Lease::namespaced(FRAMEWORK_LEASE_NAMESPACE, &name, spec)).await.map(drop)
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    // The next renewal comes well within the lease.
                    eprintln!("renewing the lease of {name}: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }))
    }

    /// Stops renewing: the framework goes silent.
    fn stop(self) {
        self.0.abort();
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The offers made to one framework, as a watch sees them.
struct OfferLog {
    watch: Recording<Offer>,
    /// Its outstanding offers (not declined), by node.
    holds: BTreeMap<String, String>,
    /// Every offer it was ever made, in order: (revision first seen, node, name). The
    /// watch misses no change, so the revision first seen is the offer's creation.
    made: Vec<(u64, String, String)>,
    names: BTreeSet<String>,
}

impl OfferLog {
    fn start(client: &Client, framework: &str) -> Self {
        let watch = Recording::start(Api::<Offer>::all(client.clone()), offers_of(framework));
        OfferLog { watch, holds: BTreeMap::new(), made: Vec::new(), names: BTreeSet::new() }
    }

    /// Takes in the next thing the watch sees; `what` names what the test waits for.
    async fn step(&mut self, what: &str) {
        let (applied, deleted) = match self.watch.next(what).await {
            Seen::Listed { objects, .. } => {
                self.holds.clear();
                (objects, vec![])
            }
            Seen::Applied(o) => (vec![o], vec![]),
            Seen::Deleted(o) => (vec![], vec![o]),
            Seen::Bookmark(_) => (vec![], vec![]),
        };
        for o in applied {
            if self.names.insert(o.metadata.name.clone()) {
                self.made.push((o.revision(), o.spec.node.clone(), o.metadata.name.clone()));
            }
            if o.status.as_ref().is_none_or(|st| st.declined_for_seconds.is_none()) {
                self.holds.insert(o.spec.node.clone(), o.metadata.name.clone());
            }
        }
        for o in deleted {
            if self.holds.get(&o.spec.node) == Some(&o.metadata.name) {
                self.holds.remove(&o.spec.node);
            }
        }
    }
}

async fn register(client: &Client, name: &str, spec: FrameworkSpec) -> Framework {
    Api::<Framework>::all(client.clone()).create(&Framework::new(name, spec)).await.expect("framework registered")
}

/// Sets `suppressed` on framework `name`; returns the revision of the write. The
/// controller writes the status meanwhile, hence read, change, write, and again on a
/// conflict.
async fn set_suppressed(frameworks: &Api<Framework>, name: &str, suppressed: bool) -> u64 {
    for _ in 0..10 {
        let mut f = frameworks.get(name).await.expect("the framework");
        f.spec.suppressed = suppressed;
        match frameworks.update(&f).await {
            Ok(f) => return f.revision(),
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("cannot update framework {name}: {e}"),
        }
    }
    panic!("framework {name} changed under every one of ten updates");
}

fn offers_of(framework: &str) -> ListParams {
    ListParams::default().labels(&format!("{FRAMEWORK_LABEL}={framework}"))
}

fn task(name: &str) -> Task {
    let spec = TaskSpec {
        command: vec!["sleep".into(), "3600".into()],
        resources: Resources { cpus: 0.25, mem: 256, disk: 0 },
        ..Default::default()
    };
    Task::namespaced("default", name, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frameworks_weighted_one_and_three_converge_to_their_drf_shares() {
    let s = server().await;
    let client = s.api();
    let frameworks: Api<Framework> = Api::all(client.clone());
    // Named so that the lighter one comes first by name, and so wins the allocator's
    // ties: the 1:3 split must come from the weights, not from the tie-break.
    let mut light = FairFramework::start(&s, "fair-a", 1.0);
    let mut heavy = FairFramework::start(&s, "fair-b", 3.0);
    // Nodes only once both are connected: without preemption, whichever connected
    // first would be offered a whole idle cluster and keep it (as in Mesos).
    eventually("both frameworks connected", async || {
        let list = frameworks.list(&ListParams::default()).await.ok()?;
        let connected = list
            .items
            .iter()
            .filter(|f| f.metadata.name.starts_with("fair-"))
            .filter(|f| f.status.as_ref().is_some_and(|st| st.phase == FrameworkPhase::Connected))
            .count();
        (connected == 2).then_some(())
    })
    .await;
    // Why DRF converges here: each free node is offered to the framework with the
    // lowest dominant share divided by its weight, and resources offered count as
    // allocated until accepted, so a framework's share includes offers it has not
    // answered yet. Each framework fills each node it is offered (four tasks of 0.25
    // cpu / 256 MiB in 1 cpu / 1024 MiB), so shares move in steps of one node, 0.05.
    // Whoever took the last node had the lower weighted share just before: with a
    // nodes for weight 1 and b for weight 3, a - 1 <= b / 3 and b - 1 <= 3a, which for
    // a + b = 20 leaves a = 5, b = 15. Nodes come one at a time, each once the one
    // before is taken, so each is offered with the shares of all tasks placed so far,
    // however the controller batches changes into rounds. Once the cluster is full
    // the shares cannot move: no task ends (there is no agent) and nothing is preempted.
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let mut by_framework: BTreeMap<String, f64> = BTreeMap::new();
    for i in 0..20 {
        s.register_node(&format!("n{i:02}"), 1.0, 1024).await;
        let full = f64::from(i + 1);
        by_framework = eventually(&format!("{full} cpus taken by tasks"), async || {
            let list = tasks.list(&ListParams::default()).await.ok()?;
            let mut cpus: BTreeMap<String, f64> = BTreeMap::new();
            for t in &list.items {
                if let Some(f) = &t.spec.framework {
                    *cpus.entry(f.clone()).or_default() += t.spec.resources.cpus;
                }
            }
            ((cpus.values().sum::<f64>() - full).abs() < 1e-6).then_some(cpus)
        })
        .await;
    }
    // Each says how far it got, and stops cleanly on Ctrl-C.
    for (fw, name) in [(&mut light, "fair-a"), (&mut heavy, "fair-b")] {
        let placed = (by_framework.get(name).copied().unwrap_or_default() / 0.25).round();
        fw.prints(&format!("{name}: {placed} tasks placed, 0 running")).await;
        fw.interrupt().await;
    }

    let share = |name: &str| by_framework.get(name).copied().unwrap_or_default() / 20.0;
    let within = |got: f64, want: f64| (got - want).abs() <= 0.05 + 1e-9;
    for (name, want) in [("fair-a", 0.25), ("fair-b", 0.75)] {
        assert!(
            within(share(name), want),
            "{name} holds {:.0}% of the cpus, not {:.0}% ± 5: cpus by framework {by_framework:?}",
            share(name) * 100.0,
            want * 100.0
        );
    }

    // The controller reports the same shares in the frameworks' status (written at
    // most once a second, hence the wait).
    eventually("the frameworks' status to report the shares of their tasks", async || {
        let a = frameworks.get("fair-a").await.ok()?.status?;
        let b = frameworks.get("fair-b").await.ok()?.status?;
        let same =
            (a.dominant_share - share("fair-a")).abs() < 1e-3 && (b.dominant_share - share("fair-b")).abs() < 1e-3;
        same.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_framework_gone_past_its_failover_timeout_has_its_tasks_killed() {
    let s = server().await;
    let client = s.api();
    s.register_node("n1", 1.0, 1024).await;
    let spec = FrameworkSpec { failover_timeout_seconds: 2, ..Default::default() };
    register(&client, "flaky", spec).await;
    let lease = Renewing::start(client.clone(), "flaky", 2);
    let mut phases =
        Recording::start(Api::<Framework>::all(client.clone()), ListParams::default().fields("metadata.name=flaky"));

    let mut offers = Recording::start(Api::<Offer>::all(client.clone()), offers_of("flaky"));
    let offer = loop {
        match offers.next("an offer to flaky").await {
            Seen::Listed { objects, .. } if !objects.is_empty() => break objects[0].clone(),
            Seen::Applied(o) => break o,
            _ => {}
        }
    };
    let accept = OfferAccept { framework: "flaky".into(), tasks: vec![task("flaky-1"), task("flaky-2")] };
    let launched = client.accept_offer(&offer.metadata.name, &accept).await.expect("the offer is accepted");
    assert_eq!(launched.len(), 2);

    lease.stop();
    // Every status write is one event of the watch, so no phase can slip by unseen.
    let mut seen: Vec<FrameworkPhase> = Vec::new();
    while seen.last() != Some(&FrameworkPhase::TornDown) {
        let fws = match phases.next("flaky to be torn down").await {
            Seen::Listed { objects, .. } => objects,
            Seen::Applied(f) => vec![f],
            _ => continue,
        };
        for f in fws {
            let phase = f.status.map(|st| st.phase).unwrap_or_default();
            if seen.last() != Some(&phase) {
                seen.push(phase);
            }
        }
    }
    let disconnected = seen.iter().position(|p| *p == FrameworkPhase::Disconnected);
    let connected = seen.iter().position(|p| *p == FrameworkPhase::Connected);
    assert!(
        connected.is_some() && disconnected.is_some() && connected < disconnected,
        "Connected, then Disconnected, then TornDown: {seen:?}"
    );

    // Without an agent the tasks stay STAGING: asking them to die is what the
    // controller does.
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    eventually("both tasks of flaky asked to die", async || {
        let list = tasks.list(&ListParams::default().fields("spec.framework=flaky")).await.ok()?;
        (list.items.len() == 2 && list.items.iter().all(|t| t.spec.kill)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_suppressed_framework_gets_no_offers_and_a_declined_node_is_refused_for_a_while() {
    let s = server().await;
    let client = s.api();
    for n in ["n1", "n2", "n3"] {
        s.register_node(n, 1.0, 1024).await;
    }
    register(&client, "picky", FrameworkSpec::default()).await;
    let _lease = Renewing::start(client.clone(), "picky", 5);
    let frameworks: Api<Framework> = Api::all(client.clone());

    let mut log = OfferLog::start(&client, "picky");
    while log.holds.len() < 3 {
        log.step("offers of all three nodes").await;
    }

    // Suppressed: its offers are taken back, and the round that takes them back finds
    // their nodes free and still offers picky nothing, nor does any round after it.
    let suppressed_at = set_suppressed(&frameworks, "picky", true).await;
    while !log.holds.is_empty() {
        log.step("picky's offers rescinded").await;
    }
    let revived_at = set_suppressed(&frameworks, "picky", false).await;
    while log.holds.len() < 3 {
        log.step("offers of all three nodes again").await;
    }
    let while_suppressed: Vec<_> = log.made.iter().filter(|(rv, ..)| *rv > suppressed_at && *rv < revived_at).collect();
    assert!(while_suppressed.is_empty(), "offers made while suppressed: {while_suppressed:?}");

    // n1 declined for 30 s, n2 for 1 s: n2 is offered again once its second is up,
    // and n1, free all along, is not.
    let decline = |secs| OfferDecline { framework: "picky".into(), refuse_seconds: Some(secs) };
    client.decline_offer(&log.holds["n1"], &decline(30)).await.expect("n1 declined");
    client.decline_offer(&log.holds["n2"], &decline(1)).await.expect("n2 declined");
    let before = log.made.len();
    let n3 = log.holds["n3"].clone();
    loop {
        log.step("n2 offered again").await;
        if log.made[before..].iter().any(|(_, node, _)| node == "n2") {
            break;
        }
    }
    let n1_again: Vec<_> = log.made[before..].iter().filter(|(_, node, _)| node == "n1").collect();
    assert!(n1_again.is_empty(), "n1 offered again within its 30 s: {n1_again:?}");
    assert_eq!(log.holds.get("n3"), Some(&n3), "n3's offer stands: {:?}", log.holds);
    assert!(!log.holds.contains_key("n1"), "the declined offer of n1 is gone: {:?}", log.holds);
}
