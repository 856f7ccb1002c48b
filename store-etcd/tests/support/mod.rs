#![allow(dead_code)]
//! A real etcd for the tests: one process per test, in a temp dir, on free loopback
//! ports; killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral_store_etcd::{EtcdStore, Options};

/// A running etcd (`/usr/bin/etcd`, installed by `scripts/setup.sh test`).
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client: SocketAddr,
    peer: SocketAddr,
    /// Serving clients over TLS: what a client needs to connect.
    tls: Option<corral_store_etcd::Tls>,
    /// The server's certificate, key and authority files.
    tls_files: Option<[PathBuf; 3]>,
    _tmp: Option<tempfile::TempDir>,
    /// Its member name, its own among the etcds of parallel tests.
    name: String,
    /// Whether it has started once (its data directory is bootstrapped).
    started: bool,
}

fn free_port() -> u16 {
    // The port is free when asked; etcd binds it right after.
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// A member name no other etcd of this test run has.
fn unique_name() -> String {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("test-{}-{}", std::process::id(), STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl Etcd {
    /// Starts an etcd in a new temp dir and waits until it answers.
    pub async fn start() -> Etcd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut e = Etcd {
            child: None,
            dir: tmp.path().join("etcd"),
            client: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
            tls: None,
            tls_files: None,
            _tmp: Some(tmp),
            name: unique_name(),
            started: false,
        };
        e.spawn().await;
        e
    }

    /// Starts an etcd that serves clients only over TLS, with a certificate for
    /// 127.0.0.1 from an authority made for it, and requires client certificates
    /// from that authority too.
    pub async fn start_tls() -> Etcd {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(names).unwrap();
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
        };
        let (server_cert, server_key) =
            leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(vec!["corral".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let files = [tmp.path().join("server.crt"), tmp.path().join("server.key"), tmp.path().join("ca.crt")];
        std::fs::write(&files[0], &server_cert).unwrap();
        std::fs::write(&files[1], &server_key).unwrap();
        std::fs::write(&files[2], ca_cert.pem()).unwrap();
        let mut e = Etcd {
            child: None,
            dir: tmp.path().join("etcd"),
            client: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
            tls: Some(corral_store_etcd::Tls {
                ca_pem: Some(ca_cert.pem().into_bytes()),
                identity_pem: Some((client_cert, client_key)),
                domain: None,
            }),
            tls_files: Some(files),
            _tmp: Some(tmp),
            name: unique_name(),
            started: false,
        };
        e.spawn().await;
        e
    }

    /// What a client needs to connect, when it serves over TLS.
    pub fn tls(&self) -> Option<corral_store_etcd::Tls> {
        self.tls.clone()
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A store connected to it.
    pub async fn store(&self) -> EtcdStore {
        self.store_with(Options { tls: self.tls.clone(), ..Options::default() }).await
    }

    /// A store connected to it with `options`.
    pub async fn store_with(&self, options: Options) -> EtcdStore {
        EtcdStore::connect(&[self.endpoint()], options).await.expect("connect to etcd")
    }

    /// Starts etcd and waits until *it* answers. A port free a moment ago may be taken
    /// by another etcd started at the same moment (tests run in parallel): then ours
    /// exits, and the other would answer on the port. So each etcd has a name of its
    /// own and ready is that member answering; a first start that lost its ports is
    /// tried again on fresh ones.
    async fn spawn(&mut self) {
        for _ in 0..5 {
            if self.try_spawn().await {
                self.started = true;
                return;
            }
            assert!(!self.started, "etcd restarted on {} lost its ports to another process", self.client);
            self.client = SocketAddr::from(([127, 0, 0, 1], free_port()));
            self.peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        panic!("etcd did not start on five pairs of free loopback ports");
    }

    /// One start: false when it lost its ports to another process.
    async fn try_spawn(&mut self) -> bool {
        let mut cmd = Command::new("etcd");
        if let Some([cert, key, ca]) = &self.tls_files {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
            cmd.arg("--trusted-ca-file").arg(ca).arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &format!("http://{}", self.peer)])
            .args(["--initial-advertise-peer-urls", &format!("http://{}", self.peer)])
            .args(["--initial-cluster", &format!("{}=http://{}", self.name, self.peer)])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd: is etcd-server installed? (scripts/setup.sh test installs it)");
        self.child = Some(child);
        // Bounded: a healthy etcd answers within a second or two.
        let options = Options { tls: self.tls.clone(), ..Options::default() };
        for _ in 0..400 {
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                self.child = None;
                return false;
            }
            if EtcdStore::connect(&[self.endpoint()], options.clone()).await.is_ok() {
                // Over TLS only ours has a certificate from the authority made for it.
                if self.tls.is_some() {
                    return true;
                }
                let ours = match etcd_client::Client::connect([self.endpoint()], None).await {
                    Ok(mut c) => c.member_list().await.is_ok_and(|m| m.members().iter().any(|m| m.name() == self.name)),
                    Err(_) => false,
                };
                if !ours {
                    self.kill();
                }
                return ours;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("etcd on {} did not become ready", self.client);
    }

    /// SIGKILL: no chance to flush anything not yet durable.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A store on etcd for the shared suites: "reopen" connects a new store to the same
/// etcd (the data lives in etcd, not in the store).
pub struct EtcdFixture {
    /// The etcd it owns, if it owns one (a proptest shares one etcd between cases).
    _etcd: Option<Etcd>,
    endpoint: String,
    options: Options,
    store: Option<std::sync::Arc<EtcdStore>>,
}

impl EtcdFixture {
    /// A store on a new etcd of its own.
    pub async fn new() -> Self {
        let etcd = Etcd::start().await;
        let mut f = EtcdFixture::on(&etcd, Options::default()).await;
        f._etcd = Some(etcd);
        f
    }

    /// A store on `etcd` with `options` (e.g. a prefix of its own).
    pub async fn on(etcd: &Etcd, options: Options) -> Self {
        let store = std::sync::Arc::new(etcd.store_with(options.clone()).await);
        EtcdFixture { _etcd: None, endpoint: etcd.endpoint(), options, store: Some(store) }
    }
}

impl crate::common::Fixture for EtcdFixture {
    fn store(&self) -> std::sync::Arc<dyn corral_store::Storage> {
        self.store.clone().expect("store connected")
    }

    async fn reopen(&mut self) {
        self.store = None;
        let store =
            EtcdStore::connect(std::slice::from_ref(&self.endpoint), self.options.clone()).await.expect("reconnect");
        self.store = Some(std::sync::Arc::new(store));
    }
}

/// A cluster of etcd members on loopback, in a temp dir; killed when dropped.
pub struct Cluster {
    members: Vec<Option<Child>>,
    clients: Vec<SocketAddr>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members and waits until the cluster answers.
    pub async fn start(n: usize) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let clients: Vec<SocketAddr> = (0..n).map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let peers: Vec<SocketAddr> = (0..n).map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let initial: Vec<String> = peers.iter().enumerate().map(|(i, p)| format!("m{i}=http://{p}")).collect();
        let mut members = Vec::new();
        for i in 0..n {
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(tmp.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &format!("http://{}", clients[i])])
                .args(["--advertise-client-urls", &format!("http://{}", clients[i])])
                .args(["--listen-peer-urls", &format!("http://{}", peers[i])])
                .args(["--initial-advertise-peer-urls", &format!("http://{}", peers[i])])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new", "--initial-cluster-token", "corral-test"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start etcd: is etcd-server installed? (scripts/setup.sh test installs it)");
            members.push(Some(child));
        }
        let c = Cluster { members, clients, _tmp: tmp };
        for _ in 0..400 {
            if EtcdStore::connect(&c.endpoints(), Options::default()).await.is_ok() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the etcd cluster on {:?} did not become ready", c.clients);
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.clients.iter().map(|c| format!("http://{c}")).collect()
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
