//! The audit log: one JSON line per request worth keeping — when, who, what, on which
//! object, and the answer — as Kubernetes' audit log at the `Metadata` level (bodies
//! are never written, so no secret reaches the log).
//!
//! Kept by default: every write, every refusal (401, 403), and every read of tokens
//! and RBAC objects; other reads too with `--audit-reads` (as a Kubernetes audit
//! policy that drops the high-volume reads).
//!
//! The request path only hands a small record to a bounded queue; a thread of its own
//! formats and writes the lines, so a slow disk never delays a request. Should the
//! queue fill, records are dropped and counted (`corral_audit_records_dropped_total`)
//! rather than block the API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use super::rbac::{AllowedBy, SENSITIVE};
use super::{Attributes, Identity};

/// Records waiting to be written before new ones are dropped.
const QUEUE: usize = 65_536;
/// Longest a written line waits in the buffer before it reaches the file.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);
/// Buffered bytes that are written out at once.
const FLUSH_BYTES: usize = 256 << 10;

/// Where audit records go; disabled unless a file is given.
pub struct AuditLog {
    tx: std::sync::OnceLock<SyncSender<Entry>>,
    reads: std::sync::atomic::AtomicBool,
    dropped: Counter,
}

/// What the request path hands over: formatting happens on the writer's thread.
struct Entry {
    time: SystemTime,
    who: Option<Arc<Identity>>,
    /// Whom `who` acted as, when impersonating.
    impersonated: Option<Arc<Identity>>,
    attrs: Option<Attributes<'static>>,
    code: u16,
    by: Option<AllowedBy>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    user: Option<&'a str>,
    groups: &'a [String],
    verb: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    code: u16,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<Impersonated<'a>>,
}

/// As Kubernetes' audit `impersonatedUser`.
#[derive(Serialize)]
struct Impersonated<'a> {
    username: &'a str,
    groups: &'a [String],
}

impl Entry {
    fn line(&self) -> Line<'_> {
        let (group, namespace, name) = match &self.attrs {
            Some(Attributes::Resource { group, namespace, name, .. }) => {
                (Some(group.as_ref()), namespace.as_deref(), name.as_deref())
            }
            _ => (None, None, None),
        };
        Line {
            time: chrono::DateTime::<chrono::Utc>::from(self.time).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            user: self.who.as_ref().map(|w| w.user.as_str()),
            groups: self.who.as_ref().map(|w| w.groups.as_slice()).unwrap_or_default(),
            verb: self.attrs.as_ref().map(Attributes::verb),
            group,
            resource: self.attrs.as_ref().map(Attributes::what),
            namespace,
            name,
            code: self.code,
            decision: match (&self.who, &self.by) {
                (None, _) => "unauthenticated",
                (Some(_), None) => "forbidden",
                (Some(_), Some(_)) => "allowed",
            },
            authorized_by: self.by.as_ref().map(ToString::to_string),
            impersonated_user: self
                .impersonated
                .as_ref()
                .map(|i| Impersonated { username: i.user.as_str(), groups: i.groups.as_slice() }),
        }
    }
}

impl AuditLog {
    /// Records nothing.
    pub fn disabled() -> Self {
        AuditLog { tx: std::sync::OnceLock::new(), reads: Default::default(), dropped: Counter::default() }
    }

    /// From now on, appends records to `path` (created readable by its owner only);
    /// with `reads`, every read as well.
    ///
    /// # Errors
    /// The file cannot be opened, or the log was opened already.
    pub fn open(&self, path: &Path, reads: bool) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let (tx, rx) = sync_channel::<Entry>(QUEUE);
        let path: PathBuf = path.to_path_buf();
        std::thread::Builder::new().name("corral-audit".into()).spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(FLUSH_BYTES, file);
            let write = |out: &mut std::io::BufWriter<std::fs::File>, e: Entry| {
                if serde_json::to_writer(&mut *out, &e.line()).is_err() || out.write_all(b"\n").is_err() {
                    tracing::error!(path = %path.display(), "cannot write the audit log");
                }
            };
            // Idle, the thread sleeps until a record comes. Then it lets FLUSH_AFTER
            // of company gather without waiting on the queue — a receiver asleep in
            // `recv` would make every request wake it, a context switch per write —
            // and writes the batch at once (as Kubernetes' batching audit backend).
            while let Ok(first) = rx.recv() {
                std::thread::sleep(FLUSH_AFTER);
                write(&mut out, first);
                let mut open = true;
                loop {
                    match rx.try_recv() {
                        Ok(e) => write(&mut out, e),
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if let Err(e) = out.flush() {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
                }
                if !open {
                    break;
                }
            }
        })?;
        self.reads.store(reads, std::sync::atomic::Ordering::Relaxed);
        self.tx.set(tx).map_err(|_| std::io::Error::other("the audit log is open already"))
    }

    /// Records dropped because the writer fell behind, for `/metrics`.
    pub fn dropped_counter(&self) -> Counter {
        self.dropped.clone()
    }

    /// Whether a request is kept: writes, refusals, reads of credentials and
    /// permissions, and other reads when asked for.
    pub fn keeps(&self, attrs: Option<&Attributes<'_>>, code: u16) -> bool {
        if code == 401 || code == 403 || self.reads.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        match attrs {
            Some(Attributes::Resource { verb, resource, .. }) => {
                !matches!(verb.as_ref(), "get" | "list" | "watch") || SENSITIVE.contains(&resource.as_ref())
            }
            Some(Attributes::NonResource { verb, .. }) => verb != "get" && verb != "head",
            None => true,
        }
    }

    /// Whether records are kept at all.
    pub fn enabled(&self) -> bool {
        self.tx.get().is_some()
    }

    /// Records one answered request; `who` is `None` when it was not authenticated.
    pub fn record(&self, who: Option<Arc<Identity>>, attrs: Option<Attributes<'_>>, code: u16, by: Option<AllowedBy>) {
        self.record_as(who, None, attrs, code, by);
    }

    /// Records one answered request that `who` sent acting as `impersonated`.
    pub fn record_as(
        &self,
        who: Option<Arc<Identity>>,
        impersonated: Option<Arc<Identity>>,
        attrs: Option<Attributes<'_>>,
        code: u16,
        by: Option<AllowedBy>,
    ) {
        let Some(tx) = self.tx.get() else { return };
        if !self.keeps(attrs.as_ref(), code) {
            return;
        }
        let attrs = attrs.map(Attributes::into_owned);
        let entry = Entry { time: SystemTime::now(), who, impersonated, attrs, code, by };
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}
