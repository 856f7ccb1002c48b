//! `corral bench agent`: how fast the agent starts tasks, side by side with bare runc,
//! and what it costs in memory.
//!
//! A `corral server` and a `corral agent` run as their own processes on a fresh temp
//! dir, with a busybox image imported. Then, alternating so that both see the same
//! machine: one bare `runc run --detach` of a bundle equivalent to the agent's (the
//! same config.json, its own fresh overlay over the same image, mounted before the
//! clock starts), timed until runc
//! returns with the container running; and one busybox Task created already bound to
//! the node, timed from the create request to the RUNNING status arriving on a watch.
//! Every container keeps running (`sleep`), so the agent's memory is then measured
//! with that many tasks. Native tasks follow.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use super::load::percentile_ms;
use super::procs::{start_agent, start_corral};

/// Options of `corral bench agent`.
#[derive(Clone, Debug)]
pub struct AgentBenchOptions {
    /// Containers started (and bare runc runs), sequentially.
    pub tasks: usize,
    /// Native processes started, sequentially.
    pub native: usize,
}

/// Runs the benchmark and prints its figures.
pub async fn run_agent_bench(opts: AgentBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let work = dir.path().join("agent");
    let store = corral_agent::image::ImageStore::open(work.join("images"))?;
    let archive = dir.path().join("busybox.tar");
    corral_testkit::busybox::busybox_oci_archive(&archive, "busybox:latest")?;
    let image = store.import(&archive, None)?;
    let rootfs = store.resolve("busybox")?.rootfs;

    let _leftovers = Leftovers { work: work.clone(), bare: dir.path().join("bare") };
    let server = start_corral(&dir.path().join("data")).await?;
    let url = format!("http://{}", server.addr);
    let agent = start_agent(&url, &work)?;
    let http = reqwest::Client::builder().default_headers(super::procs::auth_headers()).build()?;
    wait_node(&http, &url).await?;
    // The native tasks run on the host: their namespace must allow it.
    use corral_api::kinds::namespace::{TASK_SECURITY_LABEL, TASK_SECURITY_PRIVILEGED};
    let privileged = serde_json::json!({"metadata": {"labels": {TASK_SECURITY_LABEL: TASK_SECURITY_PRIVILEGED}}});
    let r = http
        .patch(format!("{url}/apis/corral.dev/v1/namespaces/default"))
        .header("content-type", "application/merge-patch+json")
        .body(privileged.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "labelling namespace default privileged: {}", r.status());
    println!(
        "corral bench agent: {} busybox tasks (image {}) and {} native tasks, one at a time; {} cores",
        opts.tasks,
        &image.id[..12],
        opts.native,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let mut running = watch_running(&http, &url).await?;
    let bare = Bare::new(dir.path(), &rootfs)?;
    let mut ours_us = Vec::new();
    let mut bare_us = Vec::new();
    for i in 0..opts.tasks {
        let took = start_task(
            &http,
            &url,
            &format!("c{i}"),
            json!({"image": "busybox", "command": ["sleep", "100000"]}),
            &mut running,
        )
        .await?;
        ours_us.push(took.as_micros() as u64);
        if i == 0 {
            bare.take_config(&work)?;
        }
        bare_us.push(bare.run(i)?.as_micros() as u64);
        if (i + 1) % 25 == 0 {
            eprintln!("  {} / {} started", i + 1, opts.tasks);
        }
    }
    let agent_rss = agent.rss_bytes()?;
    let (shims, shim_rss, shim_pss) = shim_memory(&work);

    let mut native_us = Vec::new();
    for i in 0..opts.native {
        let took =
            start_task(&http, &url, &format!("n{i}"), json!({"command": ["/bin/sleep", "100000"]}), &mut running)
                .await?;
        native_us.push(took.as_micros() as u64);
    }
    ours_us.sort_unstable();
    bare_us.sort_unstable();
    native_us.sort_unstable();
    let (b50, b99) = (percentile_ms(&bare_us, 0.5), percentile_ms(&bare_us, 0.99));
    let (o50, o99) = (percentile_ms(&ours_us, 0.5), percentile_ms(&ours_us, 0.99));
    println!("  {:<40} p50 {b50:>7.1} ms   p99 {b99:>7.1} ms", "bare `runc run --detach`");
    println!(
        "  {:<40} p50 {o50:>7.1} ms   p99 {o99:>7.1} ms   ({:.2}× / {:.2}× bare runc; target ≤ 1.25×)",
        "corral task, binding → RUNNING (runc)",
        o50 / b50.max(0.001),
        o99 / b99.max(0.001)
    );
    println!(
        "  {:<40} p50 {:>7.1} ms   p99 {:>7.1} ms",
        "corral task, binding → RUNNING (native)",
        percentile_ms(&native_us, 0.5),
        percentile_ms(&native_us, 0.99)
    );
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("  {:<40} {:>7.1} MB RSS", format!("agent with {} running tasks", opts.tasks), mb(agent_rss));
    println!(
        "  {:<40} {:>7.1} MB RSS, {:.1} MB PSS in all ({:.2} MB PSS per task)",
        format!("{shims} shims (one per task)"),
        mb(shim_rss),
        mb(shim_pss),
        mb(shim_pss) / shims.max(1) as f64
    );

    eprintln!("  cleaning up…");
    bare.stop(opts.tasks);
    let names = (0..opts.tasks).map(|i| format!("c{i}")).chain((0..opts.native).map(|i| format!("n{i}")));
    for name in names {
        let _ = http.delete(format!("{url}/apis/corral.dev/v1/namespaces/default/tasks/{name}")).send().await;
    }
    for _ in 0..600 {
        let list: Value =
            http.get(format!("{url}/apis/corral.dev/v1/namespaces/default/tasks")).send().await?.json().await?;
        if list["items"].as_array().is_none_or(|i| i.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(agent);
    drop(server);
    Ok(())
}

async fn wait_node(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        let r = http.get(format!("{url}/apis/corral.dev/v1/nodes/bench")).send().await?;
        if r.status().is_success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the agent never registered its node")
}

/// Names of tasks as they are seen RUNNING (or failing) on a watch.
type Seen = tokio::sync::mpsc::UnboundedReceiver<(String, String, Instant)>;

async fn watch_running(http: &reqwest::Client, url: &str) -> anyhow::Result<Seen> {
    // The watch starts at a listed revision: the server answers a watch only once it
    // has an event, so the request is made in the background and misses nothing.
    let list: Value =
        http.get(format!("{url}/apis/corral.dev/v1/namespaces/default/tasks")).send().await?.json().await?;
    let rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_string();
    let req = http.get(format!("{url}/apis/corral.dev/v1/namespaces/default/tasks?watch=true&resourceVersion={rv}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok(resp) = req.send().await else { return };
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else { continue };
                let name = ev.pointer("/object/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let phase = ev.pointer("/object/status/phase").and_then(Value::as_str).unwrap_or_default();
                if matches!(phase, "RUNNING" | "FAILED" | "FINISHED" | "KILLED" | "LOST")
                    && tx.send((name.to_string(), phase.to_string(), at)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Creates a bound task and waits for its RUNNING on the watch.
async fn start_task(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    spec: Value,
    seen: &mut Seen,
) -> anyhow::Result<Duration> {
    let mut spec = spec;
    spec["nodeName"] = json!("bench");
    spec["killGracePeriodSeconds"] = json!(1);
    let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name}, "spec": spec});
    let t0 = Instant::now();
    let r = http.post(format!("{url}/apis/corral.dev/v1/namespaces/default/tasks")).json(&task).send().await?;
    if !r.status().is_success() {
        bail!("creating task {name}: {}", r.text().await.unwrap_or_default());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (n, phase, at) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .with_context(|| format!("task {name} did not run within 60 s"))?
            .context("the watch ended")?;
        // Other tasks' ends (an earlier one failing) are not this start's business.
        if n != name {
            continue;
        }
        if phase != "RUNNING" {
            bail!("task {name} ended {phase} instead of running");
        }
        return Ok(at.duration_since(t0));
    }
}

/// Bare runc containers of the same bundle: the agent's config.json, and a fresh
/// overlay over the same image rootfs for each container (mounted before the clock
/// starts, as any runtime must give each container a writable root of its own).
struct Bare {
    dir: PathBuf,
    root: PathBuf,
    lower: PathBuf,
}

impl Bare {
    fn new(base: &Path, image_rootfs: &Path) -> anyhow::Result<Self> {
        let dir = base.join("bare");
        std::fs::create_dir_all(&dir)?;
        Ok(Bare { root: dir.join("runc"), dir, lower: image_rootfs.to_path_buf() })
    }

    /// Copies the agent's config.json of its first task; each run points it at its own
    /// overlay.
    fn take_config(&self, work: &Path) -> anyhow::Result<()> {
        let tasks = std::fs::read_dir(work.join("tasks"))?;
        for t in tasks.flatten() {
            let cfg = t.path().join("bundle/config.json");
            if let Ok(text) = std::fs::read_to_string(&cfg) {
                let mut v: Value = serde_json::from_str(&text)?;
                let sandbox = self.dir.join("sandbox");
                std::fs::create_dir_all(&sandbox)?;
                if let Some(mounts) = v["mounts"].as_array_mut() {
                    for m in mounts.iter_mut() {
                        if m["destination"] == json!("/mnt/sandbox") {
                            m["source"] = json!(sandbox);
                        }
                    }
                }
                std::fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(&v)?)?;
                return Ok(());
            }
        }
        bail!("no task bundle to copy the configuration from")
    }

    fn run(&self, i: usize) -> anyhow::Result<Duration> {
        let bundle = self.dir.join(format!("b{i}"));
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(bundle.join(d))?;
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(bundle.join("rootfs"))
            .status()?;
        if !st.success() {
            bail!("cannot mount the overlay for bare runc");
        }
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(self.dir.join("config.json"))?)?;
        cfg["root"] = json!({"path": bundle.join("rootfs")});
        cfg["linux"]["cgroupsPath"] = json!(format!("/corral-bench/bare-{i}"));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&cfg)?)?;
        // The container inherits runc's stdio: a pipe would stay open as long as it
        // runs, so stderr goes to a file.
        let err_path = bundle.join("stderr");
        let err = std::fs::File::create(&err_path)?;
        let t0 = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(format!("bare-{i}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()?;
        let took = t0.elapsed();
        if !status.success() {
            bail!("bare runc run failed: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        Ok(took)
    }

    fn stop(&self, n: usize) {
        for i in 0..n {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &format!("bare-{i}")])
                .output();
            let _ = Command::new("umount").arg(self.dir.join(format!("b{i}/rootfs"))).output();
        }
    }
}

/// Whatever a run leaves, removed even when it fails half-way: shims and their tasks,
/// runc containers (the agent's and the bare ones), overlay mounts.
struct Leftovers {
    work: PathBuf,
    bare: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let work = self.work.display().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains("shim") && cmd.contains(&work) {
                    let _ = Command::new("kill").args(["-KILL", &p.file_name().to_string_lossy()]).output();
                }
            }
        }
        for root in [self.work.join("runc"), self.bare.join("runc")] {
            if let Ok(out) = Command::new("runc").arg("--root").arg(&root).args(["list", "-q"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                    let _ = Command::new("runc").arg("--root").arg(&root).args(["delete", "--force", id]).output();
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&work) || m.starts_with(&self.bare.display().to_string()) {
                let _ = Command::new("umount").args(["-l", m]).output();
            }
        }
    }
}

/// Shims of this agent: how many, their RSS and PSS in bytes.
fn shim_memory(work: &Path) -> (usize, u64, u64) {
    let work = work.display().to_string();
    let (mut n, mut rss, mut pss) = (0, 0, 0);
    let Ok(procs) = std::fs::read_dir("/proc") else { return (0, 0, 0) };
    for p in procs.flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !(cmd.contains("__shim") && cmd.contains(&work)) {
            continue;
        }
        n += 1;
        let kb = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(p.path().join(file))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
                })
                .unwrap_or(0)
                * 1024
        };
        rss += kb("status", "VmRSS:");
        pss += kb("smaps_rollup", "Pss:");
    }
    (n, rss, pss)
}
