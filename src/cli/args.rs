//! Command-line arguments of `corral`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Corral: a small datacenter operating system.
#[derive(Parser, Debug)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// URL of the Corral API server, or several API servers on one store,
    /// comma-separated (requests fail over to the next one that can be reached);
    /// default: the configuration file's, else http://127.0.0.1:7070.
    #[arg(long, global = true, env = "CORRAL_SERVER")]
    pub server: Option<String>,

    /// Bearer token to authenticate with; default: the configuration file's. For
    /// `corral agent`, the join token (`corral token create --join`).
    #[arg(long, global = true, env = "CORRAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM file of the certificate authority an `https` server's certificate must
    /// chain to (`DATA_DIR/tls/ca.crt` of a server started with `--tls-auto`);
    /// default: the configuration file's.
    #[arg(long, global = true, env = "CORRAL_CERTIFICATE_AUTHORITY")]
    pub certificate_authority: Option<PathBuf>,

    /// Configuration file (kubeconfig format) with the server and a credential;
    /// `corral up` writes one. Default: $CORRAL_CONFIG, else ~/.corral/config (used
    /// when it exists).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole system in this process: the API server, the controller manager
    /// with every built-in controller, and a local node agent.
    Up(ServeArgs),
    /// Run the control plane: the API server and the controller manager
    /// (`--controllers none` for the API server alone).
    Server(ServeArgs),
    /// Run the controller manager on its own, against the API server at --server
    /// (with leader election, so several may run; one acts).
    Controllers(ControllersArgs),
    /// Create or update objects from manifest files, directories or stdin.
    Apply(ApplyArgs),
    /// List objects, or show some by name.
    Get(GetArgs),
    /// Show objects in detail, for people.
    Describe(DescribeArgs),
    /// Delete objects by name or by manifest.
    Delete(DeleteArgs),
    /// Edit an object in $EDITOR (YAML) and write it back when the editor exits.
    Edit(EditArgs),
    /// Show what `apply` would change. Exit code 0: no differences, 1: differences,
    /// 2: error.
    Diff(DiffArgs),
    /// Document a kind or one of its fields, from the schema the server validates
    /// against.
    Explain(ExplainArgs),
    /// List the kinds the server serves.
    #[command(name = "api-resources")]
    ApiResources,
    /// Run benchmarks and print their figures (runs `corral-bench`, built by `make
    /// bench`).
    #[command(disable_help_flag = true)]
    Bench {
        /// What to run: `store`, `controller` or `agent`, with their options (`corral
        /// bench --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a node agent: register this machine as a Node and run the tasks bound to it.
    Agent(AgentArgs),
    /// Manage the node's local image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Administer the control plane's store: backups.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print (and with -f, follow) a task's stdout or stderr.
    Logs(LogsArgs),
    /// Run a command inside a running task, on the task's node (as root, with its
    /// agent's work dir): `corral exec web -- ls /tmp`; `-it` for a shell.
    Exec(ExecArgs),
    /// Create, list and revoke bearer tokens (for people, service accounts, and
    /// nodes joining).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect authorization: who am I, may I.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Turn another system's definitions into Corral manifests, printed on stdout
    /// (nothing is sent to a server).
    #[command(subcommand)]
    Convert(ConvertCommand),
    /// Set how many instances a service keeps running: `corral scale service/web 5`.
    Scale(ScaleArgs),
    /// Roll every task of a service to a new revision of the same template:
    /// `corral restart service/web`.
    Restart(RestartArgs),
    /// Follow, list and undo a service's rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Start, list and kill the runs of a job.
    #[command(subcommand)]
    Job(JobCommand),
    /// Print the client's version and the server's (`GET /version`).
    Version(VersionArgs),
    /// The cluster DNS: what it serves.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// GitOps: `corral sync DIR` applies a directory (pruning what it dropped with
    /// `--prune`, again on every saved change with `--watch`); `status`, `now`, `diff`
    /// and `token` for Syncs of git repositories and directories.
    Sync(SyncArgs),
}

/// Options of `corral sync`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// A Sync's subcommand; without one, DIR is synced.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,

    /// The directory of manifests to apply (recursively: *.yaml, *.yml, *.json).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// The Sync recording what DIR applied [default: the directory's name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Delete the objects an earlier sync of DIR applied and DIR no longer has.
    #[arg(long)]
    pub prune: bool,

    /// Keep running: sync again on every saved change of DIR.
    #[arg(long)]
    pub watch: bool,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// `corral sync` subcommands.
#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// The Syncs (or one): ready, revision, objects, drift, last sync; with NAME, its
    /// errors, drift and health in full.
    Status(SyncNameArgs),
    /// Sync NAME now rather than at its next interval; `--wait` waits for the result.
    Now(SyncNowArgs),
    /// What the next sync of NAME would change: created, changed (field by field) and
    /// pruned objects. Exit code 0: no differences, 1: differences, 2: error.
    Diff(SyncNameArgs),
    /// Make a new webhook token for NAME (printed once; its hash is stored) and print
    /// the URL a git host's push notification calls.
    Token(SyncNameArgs),
}

/// A Sync's name, and its namespace.
#[derive(Args, Debug)]
pub struct SyncNameArgs {
    /// The Sync (`NAME` or `sync/NAME`); `status` without it lists every Sync.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Options of `corral sync now`.
#[derive(Args, Debug)]
pub struct SyncNowArgs {
    /// The Sync (`NAME` or `sync/NAME`).
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// Wait until the controller has synced, print the result; exit 1 if the revision
    /// was not applied.
    #[arg(long)]
    pub wait: bool,

    /// Seconds `--wait` waits.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

/// `corral dns` subcommands.
#[derive(Subcommand, Debug)]
pub enum DnsCommand {
    /// List every record the cluster DNS serves (name, type, TTL, data) and the
    /// object that produced it; with NAME, those of that DNS name or object name.
    Records(DnsRecordsArgs),
}

/// Options of `corral dns records`.
#[derive(Args, Debug)]
pub struct DnsRecordsArgs {
    /// A DNS name (`web.default.corral.`, or `web.default`) or an object's name.
    pub name: Option<String>,
    /// Output format: a table (default), `json` or `yaml`.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// Options of `corral version`.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// The client's version only; the server is not asked.
    #[arg(long)]
    pub client: bool,

    /// Output format: `Client Version: ...` lines, or the full records as YAML or
    /// JSON (`clientVersion`, `serverVersion`).
    #[arg(short = 'o', long, value_enum, default_value_t = VersionFormat::Text)]
    pub output: VersionFormat,
}

/// Output formats of `corral version`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VersionFormat {
    /// One line per side.
    #[default]
    Text,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// `corral token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (once: the server keeps only its hash).
    Create(TokenCreateArgs),
    /// List tokens (ids, users, expiry; never secrets).
    List,
    /// Revoke a token by id (the part before the dot).
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Options of `corral token create`.
#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// A join token: it only joins a node (`corral agent --token`), which then
    /// gets its own credential.
    #[arg(long, conflicts_with_all = ["user", "group", "service_account"])]
    pub join: bool,
    /// The user the token authenticates as.
    #[arg(long)]
    pub user: Option<String>,
    /// A group of the user (repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// A service account, `NAMESPACE/NAME`, instead of a user.
    #[arg(long, conflicts_with = "user")]
    pub service_account: Option<String>,
    /// How long the token is valid: `30m`, `24h`, `7d`, or `0` for ever.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// Why the token exists, shown by `corral token list`.
    #[arg(long)]
    pub description: Option<String>,
}

/// `corral auth` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Whether a verb on a resource is allowed; prints yes or no, exits 0 or 1.
    #[command(name = "can-i")]
    CanI(CanIArgs),
    /// Print the user and groups the credential authenticates as.
    Whoami,
}

/// Options of `corral auth can-i`.
#[derive(Args, Debug)]
pub struct CanIArgs {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*`.
    pub verb: String,
    /// The resource: a kind name (`tasks`, `Task`, `task`), optionally `KIND/NAME`,
    /// with a subresource as `tasks/status`; or a path such as `/metrics`.
    pub resource: String,
    /// Namespace (namespaced kinds); `default` when not given.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Ask for this user instead (needs cluster-admin).
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// A group of the --as user (repeatable).
    #[arg(long = "as-group")]
    pub as_group: Vec<String>,
}

/// Options of `corral agent` (and of the agent inside `corral up`).
#[derive(Parser, Debug, Clone)]
pub struct AgentArgs {
    /// Name of the Node this agent registers; default: the host name.
    #[arg(long, env = "CORRAL_NODE_NAME")]
    pub name: Option<String>,
    /// Work dir: image store, task sandboxes, logs, checkpoints.
    #[arg(long, env = "CORRAL_AGENT_DIR", default_value = "corral-data/agent")]
    pub work_dir: PathBuf,
    /// Custom attributes, `k=v,k2=v2`, added to hostname/zone/region.
    #[arg(long, default_value = "")]
    pub attributes: String,
    /// Resources offered instead of the detected ones, e.g. `cpus:4;mem:8192;disk:100000;ports:[31000-32000]`.
    #[arg(long)]
    pub resources: Option<String>,
    /// Static reservations per role, e.g. `cpus(ads):2;mem(ads):512`.
    #[arg(long, default_value = "")]
    pub reservations: String,
    /// Address of the agent's own API (logs), served to the API server.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seconds between heartbeats (lease renewals).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_interval: u64,
    /// Bytes per log file before it is rotated.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_bytes: u64,
    /// Rotated log files kept per stream.
    #[arg(long, default_value_t = 3)]
    pub log_max_files: usize,
    /// Seconds a finished task's sandbox and logs are kept after its end.
    #[arg(long, default_value_t = 3600)]
    pub sandbox_retention: u64,
    /// MiB the sandboxes and logs of finished tasks may take together; beyond it the
    /// oldest are collected before their retention ends.
    #[arg(long, default_value_t = 10240)]
    pub sandbox_disk_cap: u64,
    /// runc executable.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,

    /// A directory `file://` artifacts may be copied from (repeatable). None by
    /// default: the agent reads as root, so `file://` is refused until allowed.
    #[arg(long, value_name = "DIR")]
    pub artifact_dir: Vec<PathBuf>,

    /// An internal address range (`10.0.0.0/8`, `127.0.0.1`) http(s) artifacts may
    /// come from (repeatable). None by default: loopback, link-local (cloud metadata)
    /// and private addresses are refused, redirects and DNS answers included.
    #[arg(long, value_name = "CIDR")]
    pub artifact_allow_net: Vec<corral_agent::net_guard::Cidr>,

    /// Largest artifact downloaded, e.g. 512Mi. Default: 4Gi.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub artifact_max_bytes: Option<u64>,

    /// A host directory (with everything under it) host-path volumes may use
    /// (repeatable). None by default: host-path volumes are refused on this node.
    #[arg(long, value_name = "DIR")]
    pub host_path_allow: Vec<PathBuf>,

    /// Never back volumes with loop-mounted filesystem images: their sizes are then
    /// measured and reported, not enforced (as on hosts without loop devices).
    #[arg(long)]
    pub no_volume_images: bool,
    /// The cluster DNS, `IP[:PORT]` (port 53 by default): container tasks get a
    /// resolv.conf naming it with their namespace's search domains. A resolv.conf
    /// cannot carry a port: on another port it is skipped, with a warning.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_dns_addr)]
    pub cluster_dns: Option<SocketAddr>,
}

/// `corral admin` subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Backups of the store, consistent at one revision (as `etcdctl snapshot`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Copy every object of the sled store in --data-dir into an etcd cluster that
    /// holds none (offline: stop the server first, then start servers with
    /// --store etcd://...). Objects keep their uid, timestamps, status, finalizers and
    /// pending deletions; their revisions become etcd's, so clients re-list.
    Migrate {
        /// The store to copy: sled:DIR (the same as --data-dir DIR).
        #[arg(long, value_name = "sled:DIR", conflicts_with = "data_dir", required_unless_present = "data_dir")]
        from: Option<String>,
        /// Directory of the sled store to copy.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The etcd cluster to copy into: etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS).
        #[arg(long, value_name = "etcd://HOST:PORT,...")]
        to: String,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// How to reach etcd, for `--store etcd://...` and `corral admin migrate`.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// etcd user, when etcd has authentication on (with --etcd-password).
    #[arg(long, value_name = "NAME", requires = "etcd_password")]
    pub etcd_user: Option<String>,

    /// Password of --etcd-user; give it in the environment rather than on the
    /// command line, where other users of the machine can read it.
    #[arg(long, env = "CORRAL_ETCD_PASSWORD", hide_env_values = true, value_name = "PASSWORD", requires = "etcd_user")]
    pub etcd_password: Option<String>,

    /// The authority that signed etcd's server certificates (PEM), for etcds://.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,

    /// A client certificate to present to etcd (PEM), for etcd's
    /// --client-cert-auth; with --etcd-key.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,

    /// The private key of --etcd-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

/// `corral admin snapshot` subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save every object of the running server at one revision to FILE (checked,
    /// then moved into place: FILE is complete or absent).
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Create a new store in --data-dir from a snapshot (offline: then start the
    /// server on that directory). The directory must not hold a store.
    Restore {
        /// The snapshot to restore.
        file: PathBuf,
        /// Directory of the new store.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// `corral image` subcommands: `push` and `ls` work on the cluster's registry
/// (through the API server); `import`, `rm` and `ls --work-dir` on a node's image
/// store directly (air-gapped nodes).
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Push an OCI image-layout archive or a `docker save` archive to the cluster's
    /// registry, from which agents pull the images their tasks name.
    Push(ImagePushArgs),
    /// Import an OCI image-layout archive or a `docker save` archive into a node's
    /// image store (for nodes that cannot reach the control plane's registry).
    Import(ImageImportArgs),
    /// List the cluster's images; with --work-dir, a node's local image store.
    Ls(ImageLsArgs),
    /// Remove images by name or id from a node's image store.
    Rm(ImageRmArgs),
}

/// Options of `corral image push`.
#[derive(Args, Debug)]
pub struct ImagePushArgs {
    /// The archive (`.tar`, optionally gzip-compressed).
    pub file: PathBuf,
    /// `NAME:TAG` to push as (`:latest` when no tag); default: the name recorded in
    /// the archive.
    pub name: Option<String>,
}

/// Options of `corral image ls`.
#[derive(Args, Debug)]
pub struct ImageLsArgs {
    /// List this agent work dir's local image store instead of the cluster's images.
    #[arg(long, env = "CORRAL_AGENT_DIR")]
    pub work_dir: Option<PathBuf>,
}

/// The image store to act on.
#[derive(Args, Debug)]
pub struct ImageDirArgs {
    /// The agent's work dir (its image store is `images/` inside).
    #[arg(long, env = "CORRAL_AGENT_DIR", default_value = "corral-data/agent")]
    pub work_dir: PathBuf,
}

/// Options of `corral image import`.
#[derive(Args, Debug)]
pub struct ImageImportArgs {
    /// The archive (`.tar`, optionally gzip-compressed).
    pub file: PathBuf,
    /// Name to give the image (`name:tag`); default: the name recorded in the archive.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub dir: ImageDirArgs,
}

/// Options of `corral image rm`.
#[derive(Args, Debug)]
pub struct ImageRmArgs {
    /// Names (`name:tag`) or ids (or unique id prefixes).
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub dir: ImageDirArgs,
}

/// Options of `corral logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The task: `NAME` or `task/NAME`.
    pub task: String,
    /// Namespace of the task.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Keep streaming as lines are written, until the task ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
}

/// Options of `corral exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The task: `NAME` or `task/NAME`.
    pub task: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Namespace of the task.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Pass this terminal's input to the command.
    #[arg(short = 'i', long = "stdin")]
    pub stdin: bool,
    /// Give the command a terminal (containers; a native task uses this one).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The work dir of the agent on this node (the task's node).
    #[arg(long, env = "CORRAL_AGENT_DIR", default_value = "corral-data/agent")]
    pub work_dir: PathBuf,
    /// runc executable.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
}

/// Options of `corral up` and `corral server`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Directory holding the store; created if missing.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    pub data_dir: PathBuf,

    /// Address the API server listens on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Where objects are kept: `sled`, the embedded store in --data-dir (one
    /// machine), or `etcd://HOST:PORT[,HOST:PORT...]`, an etcd cluster that several
    /// servers can share (`etcds://` for TLS, with --etcd-ca). --data-dir still holds
    /// the administrator's credential, the image registry and the audit log.
    #[arg(long, env = "CORRAL_STORE", value_name = "sled|etcd://HOST:PORT,...", default_value = "sled")]
    pub store: String,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// How many revisions of the event log to keep before compacting; watches
    /// resuming from older revisions must re-list. Default: the server's.
    #[arg(long, value_name = "N")]
    pub compaction_retain: Option<u64>,

    /// Oldest history kept, in seconds (as etcd's periodic auto-compaction). Default:
    /// 3600.
    #[arg(long, value_name = "SECONDS")]
    pub history_max_age: Option<u64>,

    /// Most bytes of history kept, e.g. 512Mi. Default: four times the live data, at
    /// least 256Mi, so the data directory tracks the data, not the write rate.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub history_max_bytes: Option<u64>,

    /// Space kept free on the data directory's disk, e.g. 64Mi: writes that would
    /// leave less answer 507 and /healthz 503 until space is freed. Default: 64Mi.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub min_free_bytes: Option<u64>,

    /// How many watches one client address may hold open; more answer 429.
    /// Default: 4096.
    #[arg(long, value_name = "N")]
    pub max_watches_per_client: Option<usize>,

    /// Seconds a connection's writes may wait on a client that reads nothing before
    /// the server closes it (a watcher that stopped reading). Default: 30.
    #[arg(long, value_name = "SECONDS")]
    pub write_stall_timeout: Option<u64>,

    /// Where the administrator's credential (kubeconfig format) is kept. Default:
    /// admin.conf in the data directory. `corral up` also copies it to the CLI's
    /// configuration file (--kubeconfig, else ~/.corral/config).
    #[arg(long, value_name = "FILE")]
    pub admin_kubeconfig: Option<PathBuf>,

    /// Where the audit log (JSON lines: who, verb, object, result) is appended.
    /// Default: audit.log in the data directory.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Keep no audit log.
    #[arg(long, conflicts_with = "audit_log")]
    pub no_audit_log: bool,

    /// Audit every read as well (by default: every write, every refusal, and reads
    /// of tokens and RBAC objects).
    #[arg(long, conflicts_with = "no_audit_log")]
    pub audit_reads: bool,

    /// Serve HTTPS with this certificate (PEM, with its chain). Required, or
    /// --tls-auto, to listen beyond loopback.
    #[arg(long, value_name = "FILE", requires = "tls_key", conflicts_with = "tls_auto")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The authority clients should trust (PEM), written into the kubeconfig files;
    /// default: the last certificate of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Serve HTTPS with a certificate authority and server certificate made once in
    /// DATA_DIR/tls (for localhost, this host's name and the listen address, plus
    /// --tls-san); prints the authority's fingerprint.
    #[arg(long)]
    pub tls_auto: bool,

    /// A further name or address for the --tls-auto certificate (repeatable).
    #[arg(long, value_name = "HOST", requires = "tls_auto")]
    pub tls_san: Vec<String>,

    #[command(flatten)]
    pub controllers: ManagerArgs,

    /// `up` only: do not run the local agent.
    #[arg(long)]
    pub no_agent: bool,

    /// `up` only: as `corral agent --host-path-allow`, for the local agent (repeatable).
    #[arg(long, value_name = "DIR")]
    pub host_path_allow: Vec<PathBuf>,

    /// `up` only: as `corral agent --no-volume-images`, for the local agent.
    #[arg(long)]
    pub no_volume_images: bool,
    /// Address the cluster DNS answers on, UDP and TCP. Default: 127.0.0.153:53, or
    /// a free loopback port (with a warning) when that cannot be bound (not root, or
    /// the port is taken).
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,

    /// Where the cluster DNS sends names outside `corral.`: `forward` (to the
    /// nameservers of the host's /etc/resolv.conf), `refuse`, or `IP[:PORT],...`.
    #[arg(long, value_name = "forward|refuse|IP:PORT,...", default_value = "forward")]
    pub dns_upstream: String,

    /// Serve no cluster DNS.
    #[arg(long, conflicts_with = "dns_listen")]
    pub no_dns: bool,
}

/// `IP` (port 53) or `IP:PORT`.
fn parse_dns_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

/// A byte count: a number with an optional suffix Ki, Mi, Gi (or K, M, G).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 512Mi)"))?;
    let mult: u64 = match unit {
        "" => 1,
        "K" | "Ki" | "KiB" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        "G" | "Gi" | "GiB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use Ki, Mi or Gi")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Options of the controller manager, in `corral up`, `corral server` and `corral
/// controllers`.
#[derive(Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Built-in controllers to run: `all`, `none`, or a comma-separated list of
    /// garbage-collector, node-lifecycle, offers, services, jobs, event-expiry, volumes,
    /// sync.
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub controllers: String,

    /// Seconds a node may go without a heartbeat before it is unreachable and its
    /// tasks are LOST.
    #[arg(long, value_name = "SECONDS", default_value_t = 40)]
    pub node_grace_period: u64,

    /// Seconds an Event is kept after it last occurred (the event-expiry controller;
    /// Kubernetes' --event-ttl).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub event_ttl: u64,

    /// A directory under which Syncs may name a `directory` source (repeatable); a
    /// Sync naming a directory outside every one is refused. None by default: a
    /// directory source reads this machine's files.
    #[arg(long, value_name = "DIR")]
    pub sync_directory_allow: Vec<PathBuf>,
}

/// Options of `corral controllers`.
#[derive(Args, Debug)]
pub struct ControllersArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,

    /// This replica's identity among the managers campaigning for the lease;
    /// default: host name and process id.
    #[arg(long)]
    pub identity: Option<String>,

    /// Where to serve the manager's /metrics and /healthz (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub metrics_listen: SocketAddr,
}

/// Selection of namespaces for namespaced kinds.
#[derive(Args, Debug, Clone, Default)]
pub struct NamespaceArgs {
    /// Namespace of namespaced objects [default: default].
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

impl NamespaceArgs {
    /// The namespace to use when neither the command line nor a manifest says.
    pub fn or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Options of `corral apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest files or directories (read recursively: *.yaml, *.yml, *.json);
    /// `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Validate against the server and show what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Take over fields another field manager (kubectl, a GitOps tool) applied with
    /// other values, instead of refusing the apply.
    #[arg(long)]
    pub force_conflicts: bool,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Output formats of `corral get`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// Aligned columns with labels, generation and resource version.
    Wide,
    /// YAML: the object, or a List.
    Yaml,
    /// JSON: the object, or a List.
    Json,
    /// `kind/name`, one a line.
    Name,
}

/// Options of `corral get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind: plural, singular, short name or Kind, in any case (see
    /// `corral api-resources`).
    pub kind: String,

    /// Names of objects to show; all when omitted.
    pub names: Vec<String>,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Label selector, e.g. `app=web,tier!=db,env in (a,b)`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Field selector, e.g. `spec.nodeName=n1,status.phase!=FINISHED`.
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// After listing, stream changes until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,

    /// Read lists in chunks of this many objects rather than in one answer (the
    /// output is the same); 0 reads each list in one request.
    #[arg(long, value_name = "N", default_value_t = corral_client::DEFAULT_PAGE_SIZE)]
    pub chunk_size: u32,
}

/// Options of `corral describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// Kind: plural, singular, short name or Kind.
    pub kind: String,

    /// Names of objects to describe; every object of the kind (in the namespace)
    /// when omitted.
    pub names: Vec<String>,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Options of `corral delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kind, then names: `corral delete configmap a b`.
    #[arg(value_name = "KIND NAME", required_unless_present = "files")]
    pub target: Vec<String>,

    /// Delete the objects described by these manifests instead.
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., conflicts_with = "target")]
    pub files: Vec<PathBuf>,

    /// Delete every object of the kind (in the namespace): `corral delete tasks --all`.
    #[arg(long, conflicts_with = "files")]
    pub all: bool,

    /// Succeed for objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,

    /// What happens to the objects' dependents (objects whose ownerReferences name
    /// them): `background` deletes the object now and its dependents after,
    /// `foreground` deletes the dependents first, `orphan` keeps them.
    #[arg(long, value_enum, default_value_t = Cascade::Background)]
    pub cascade: Cascade,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Options of `corral edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// The object: `KIND/NAME`, or `KIND NAME`.
    #[arg(value_name = "KIND/NAME", required = true, num_args = 1..=2)]
    pub target: Vec<String>,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// `corral delete --cascade`: the propagation policy of a delete.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cascade {
    /// Delete the object at once; the garbage collector deletes its dependents.
    Background,
    /// Delete the dependents first; the object goes once the blocking ones are gone.
    Foreground,
    /// Delete only the object; its dependents lose their reference to it.
    Orphan,
}

impl Cascade {
    /// The API's `propagationPolicy`.
    pub fn policy(self) -> corral_api::delete::Propagation {
        use corral_api::delete::Propagation;
        match self {
            Cascade::Background => Propagation::Background,
            Cascade::Foreground => Propagation::Foreground,
            Cascade::Orphan => Propagation::Orphan,
        }
    }
}

/// Options of `corral diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Manifest files or directories; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Options of `corral explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// `KIND` or `KIND.field.path`, e.g. `configmap.spec.data`.
    pub path: String,
}

/// `corral convert` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConvertCommand {
    /// A Marathon app definition (`{"id": "/prod/web", ...}`), a group of them
    /// (`{"apps": [...]}`) or a list, as Service manifests. Each field that cannot be
    /// carried over is named on stderr; the exit code is 0 all the same.
    Marathon(ConvertMarathonArgs),
    /// A Metronome (DC/OS Jobs) job definition (`{"id": "nightly", "run": {...}}`),
    /// with its schedules (`"schedules": [...]` in the file, as `GET
    /// /v1/jobs/ID?embed=schedules` returns them), as a Job manifest. Each field
    /// that cannot be carried over is named on stderr; the exit code is 0 all the same.
    Metronome(ConvertMetronomeArgs),
}

/// Options of `corral convert metronome`.
#[derive(Args, Debug)]
pub struct ConvertMetronomeArgs {
    /// The job's JSON file; `-` reads stdin. A list of jobs converts each.
    pub file: PathBuf,

    /// Output format: one YAML document per job, or JSON (a `List` for several jobs).
    #[arg(short = 'o', long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub output: ManifestFormat,
}

/// Options of `corral convert marathon`.
#[derive(Args, Debug)]
pub struct ConvertMarathonArgs {
    /// The app's JSON file, as Marathon's `GET /v2/apps/ID` returns it (or as posted);
    /// `-` reads stdin.
    pub file: PathBuf,

    /// Output format: one YAML document per app, or JSON (a `List` for several apps).
    #[arg(short = 'o', long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub output: ManifestFormat,
}

/// How manifests are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// YAML, one document per object.
    #[default]
    Yaml,
    /// Indented JSON: the object, or a `List` of them.
    Json,
}

/// Options of `corral scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// The service, as `service/NAME`.
    #[arg(value_name = "service/NAME")]
    pub target: String,

    /// How many instances to keep running.
    #[arg(value_name = "N")]
    pub instances: u32,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Options of `corral restart`.
#[derive(Args, Debug)]
pub struct RestartArgs {
    /// The service, as `service/NAME`.
    #[arg(value_name = "service/NAME")]
    pub target: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// `corral rollout` subcommands.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Print a service's deployment progress as it changes, until it completes
    /// (exit 0), the service is deleted or --timeout passes (exit 1).
    Status(RolloutStatusArgs),
    /// List the template revisions a service keeps, the current one marked.
    History(RolloutHistoryArgs),
    /// Go back to an earlier template revision (by default the one before the
    /// current one): the service rolls out to it again.
    Undo(RolloutUndoArgs),
}

/// Options of `corral rollout status`.
#[derive(Args, Debug)]
pub struct RolloutStatusArgs {
    /// The service, as `service/NAME`.
    #[arg(value_name = "service/NAME")]
    pub target: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// Seconds to wait for the deployment to complete before giving up (exit 1); 0
    /// waits for ever.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,

    /// Follow the deployment; `--watch=false` prints where it is once and exits 0.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub watch: bool,
}

/// Options of `corral rollout history`.
#[derive(Args, Debug)]
pub struct RolloutHistoryArgs {
    /// The service, as `service/NAME`.
    #[arg(value_name = "service/NAME")]
    pub target: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// Output format: a table, or the kept revisions in full as YAML or JSON.
    #[arg(short = 'o', long, value_enum, default_value_t = HistoryFormat::Table)]
    pub output: HistoryFormat,
}

/// Output formats of `corral rollout history`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HistoryFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// The revisions, templates included, as YAML.
    Yaml,
    /// The revisions, templates included, as JSON.
    Json,
}

/// Options of `corral rollout undo`.
#[derive(Args, Debug)]
pub struct RolloutUndoArgs {
    /// The service, as `service/NAME`.
    #[arg(value_name = "service/NAME")]
    pub target: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// The revision to go back to (see `corral rollout history`); default: the one
    /// before the current revision.
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,
}

/// `corral job` subcommands.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Start a run of a job now and print its name (`FORBID` refuses it while
    /// another run is active).
    Run(JobRunArgs),
    /// List a job's runs, oldest first: what started each, when, for how long, and
    /// how it ended.
    History(JobHistoryArgs),
    /// Kill a run: its task is stopped and it ends `Killed`.
    Kill(JobKillArgs),
}

/// Options of `corral job run`.
#[derive(Args, Debug)]
pub struct JobRunArgs {
    /// The job (`NAME` or `job/NAME`).
    #[arg(value_name = "NAME")]
    pub job: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// Wait for the run to end, printing its phase as it changes; exit 0 when it
    /// succeeded, 1 otherwise.
    #[arg(long)]
    pub wait: bool,

    /// Seconds `--wait` waits before giving up (exit 1); 0 waits for ever.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: u64,
}

/// Options of `corral job history`.
#[derive(Args, Debug)]
pub struct JobHistoryArgs {
    /// The job (`NAME` or `job/NAME`).
    #[arg(value_name = "NAME")]
    pub job: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,

    /// Output format: a table, or the runs in full as YAML or JSON.
    #[arg(short = 'o', long, value_enum, default_value_t = HistoryFormat::Table)]
    pub output: HistoryFormat,
}

/// Options of `corral job kill`.
#[derive(Args, Debug)]
pub struct JobKillArgs {
    /// The run (`RUN` or `jobrun/RUN`), as `corral job run` and `corral job history`
    /// print it.
    #[arg(value_name = "RUN")]
    pub run: String,

    #[command(flatten)]
    pub ns: NamespaceArgs,
}
