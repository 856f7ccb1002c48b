//! A highly available control plane on this machine, for the tests and benchmarks of
//! failures: a 3-member etcd cluster on loopback (each member a real `etcd` process
//! that can be killed with SIGKILL and started again on its data) and `corral server`s
//! on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::procs::free_port;

/// One etcd member: its process (while it runs) and where it listens.
pub struct Member {
    /// The member's name in the cluster (`m0`, `m1`, …).
    pub name: String,
    /// Where it serves clients.
    pub client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    child: Option<Child>,
    /// Its member id, once it has answered.
    id: Option<u64>,
}

impl Member {
    /// The member's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A local etcd cluster whose members are killed when it is dropped.
pub struct EtcdCluster {
    /// The members, in order.
    pub members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `n` members under `dir` (one data dir and one log file each) and waits
    /// until every one answers. Transactions may hold 4096 keys and 10 MiB, as in
    /// `scripts/etcd-cluster.sh`. Ports are taken free a moment before etcd binds
    /// them; another process may take one meanwhile, so a cluster that does not come
    /// up is started again on other ports (three attempts).
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        let mut last = None;
        for attempt in 0..3 {
            let dir = dir.join(format!("try{attempt}"));
            match Self::start_once(&dir, n).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "etcd cluster did not come up; trying other ports");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd cluster did not come up")))
    }

    async fn start_once(dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
                peer: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
                data_dir: dir.join(format!("m{i}")),
                child: None,
                id: None,
            });
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        // Dropped (members killed) if any does not come up.
        let mut cluster = EtcdCluster { members, initial_cluster };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// The `--store` value naming every member.
    pub fn store_url(&self) -> String {
        let clients: Vec<String> = self.members.iter().map(|m| m.client.to_string()).collect();
        format!("etcd://{}", clients.join(","))
    }

    /// The members' client URLs, for `etcd_client::Client::connect`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://{}", m.client)).collect()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let client = format!("http://{}", m.client);
        let peer = format!("http://{}", m.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.data_dir.with_extension("log"))
            .context("opening the member's log")?;
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "corral"])
            .args(["--max-txn-ops", "4096", "--max-request-bytes", "10485760"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd: is etcd-server installed? (scripts/setup.sh installs it)")?;
        m.child = Some(child);
        Ok(())
    }

    /// Waits (bounded) until member `i` answers, as itself: at its first start, the
    /// etcd answering on its client port knows a member of its name on its own peer
    /// address (another test's cluster, on a port taken meanwhile, would not), and that
    /// member's id is kept; after a restart, the answering member has that id. Fails at
    /// once if it exits.
    pub async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let url = format!("http://{}", self.members[i].client);
        let (name, peer) = (self.members[i].name.clone(), format!("http://{}", self.members[i].peer));
        for _ in 0..400 {
            if let Some(c) = self.members[i].child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("etcd member {name} on {url} exited ({status}) before it served: its ports taken meanwhile?");
            }
            if let Ok(mut c) = etcd_client::Client::connect([url.as_str()], None).await
                && let Ok(status) = c.status().await
            {
                let answering = status.header().map(|h| h.member_id());
                match self.members[i].id {
                    Some(id) if answering == Some(id) => return Ok(()),
                    Some(_) => bail!("another etcd answers on {url}, where member {name} was to serve"),
                    // The member list needs a quorum: the first start waits for it.
                    None => {
                        if let Ok(list) = c.member_list().await {
                            let ours =
                                list.members().iter().find(|m| m.name() == name && m.peer_urls().contains(&peer));
                            match ours {
                                Some(m) if answering == Some(m.id()) => {
                                    self.members[i].id = Some(m.id());
                                    return Ok(());
                                }
                                _ => bail!("another etcd answers on {url}, where member {name} was to serve"),
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = self.members[i].data_dir.with_extension("log");
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        bail!(
            "etcd member {} on {url} did not become ready; its log {} ends: {:?}",
            self.members[i].name,
            log.display(),
            tail
        )
    }

    /// The index of the member that is the Raft leader now, as the members report it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let url = format!("http://{}", m.client);
            let Ok(mut c) = etcd_client::Client::connect([url.as_str()], None).await else { continue };
            let Ok(status) = c.status().await else { continue };
            let Some(header) = status.header() else { continue };
            if status.leader() != 0 && status.leader() == header.member_id() {
                return Ok(i);
            }
        }
        bail!("no running etcd member says it leads")
    }

    /// Kills member `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it answers.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].child.is_none() {
            self.spawn(i)?;
        }
        self.wait_ready(i).await
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A `corral server` on a store: killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it serves the API.
    pub addr: SocketAddr,
    /// Its data directory (its credentials: `admin.conf`).
    pub data_dir: PathBuf,
    exe: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts `corral server --store STORE` with `extra` arguments on a free loopback
    /// port, and waits until it is healthy.
    /// The executable is [`crate::procs::corral_exe`]'s.
    pub async fn start(data_dir: &Path, store: &str, extra: &[&str]) -> anyhow::Result<Server> {
        Self::start_exe(&crate::procs::corral_exe()?, data_dir, store, extra).await
    }

    /// As [`Server::start`], running `exe` (a test's `CARGO_BIN_EXE_corral`).
    ///
    /// The port is picked before the server binds it, so another process (a parallel
    /// test's) may take it first: then this server exits, and is started again on
    /// another port; a server that answers there but is not this one is never taken
    /// for it (see [`Server::wait_healthy`]).
    pub async fn start_exe(exe: &Path, data_dir: &Path, store: &str, extra: &[&str]) -> anyhow::Result<Server> {
        let mut last = None;
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut args =
                vec!["server".to_string(), "--listen".into(), addr.to_string(), "--store".into(), store.into()];
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut server =
                Server { child: None, addr, data_dir: data_dir.to_path_buf(), exe: exe.to_path_buf(), args };
            server.spawn()?;
            match server.wait_healthy().await {
                Ok(()) => return Ok(server),
                Err(e) if server.exited() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("corral server did not start")))
    }

    /// Whether the process has ended (or was never started).
    fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let exe = &self.exe;
        let child = Command::new(exe)
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", std::env::var("CORRAL_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} server", exe.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until this server is healthy: its address answers `/healthz`, and accepts
    /// the administrator's token this server wrote (another process on the port would
    /// not know it). Fails at once if the process ends.
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if self.exited() {
                bail!("corral server on {} exited before it served (its port taken meanwhile?)", self.addr);
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.base_url())).send().await
                && r.status().is_success()
            {
                let Some(token) = self.admin_config("").ok().and_then(|c| c.token) else {
                    // A build that writes no credentials (an older one, side by side).
                    return Ok(());
                };
                let ours = http
                    .get(format!("{}/apis/corral.dev/v1/namespaces", self.base_url()))
                    .bearer_auth(token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ours {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("corral server on {} did not become healthy", self.addr)
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The administrator's connection this server wrote, pointed at `servers` (a
    /// comma-separated list, for failover).
    pub fn admin_config(&self, servers: &str) -> anyhow::Result<corral_client::Config> {
        let config = corral_client::Config::from_kubeconfig(&self.data_dir.join("admin.conf"))
            .with_context(|| format!("reading {}/admin.conf", self.data_dir.display()))?;
        Ok(corral_client::Config { server: servers.to_string(), ..config })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, on the same port and data dir, and waits until it is healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        self.wait_healthy().await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
