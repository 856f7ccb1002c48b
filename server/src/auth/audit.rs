//! The audit log: one JSON line per request — when, who, what, on which object, and
//! the answer — as Kubernetes' audit log at the `Metadata` level (bodies are never
//! written, so no secret reaches the log).
//!
//! Lines are written by a thread of their own through a bounded queue, so a slow
//! disk never delays a request; should the queue fill, records are dropped and
//! counted (`corral_audit_records_dropped_total`) rather than block the API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use super::{Attributes, Identity};

/// Records waiting to be written before new ones are dropped.
const QUEUE: usize = 65_536;

/// Where audit records go; disabled unless a file is given.
pub struct AuditLog {
    tx: std::sync::OnceLock<SyncSender<Record>>,
    dropped: Counter,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    time: String,
    user: Option<String>,
    groups: Vec<String>,
    verb: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    code: u16,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_by: Option<String>,
}

impl AuditLog {
    /// Records nothing.
    pub fn disabled() -> Self {
        AuditLog { tx: std::sync::OnceLock::new(), dropped: Counter::default() }
    }

    /// From now on, appends records to `path` (created readable by its owner only).
    ///
    /// # Errors
    /// The file cannot be opened, or the log was opened already.
    pub fn open(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let (tx, rx) = sync_channel::<Record>(QUEUE);
        let path: PathBuf = path.to_path_buf();
        std::thread::Builder::new().name("corral-audit".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter().take(4096));
                for r in batch {
                    if serde_json::to_writer(&mut out, &r).is_err() || out.write_all(b"\n").is_err() {
                        tracing::error!(path = %path.display(), "cannot write the audit log");
                    }
                }
                if let Err(e) = out.flush() {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
                }
            }
        })?;
        self.tx.set(tx).map_err(|_| std::io::Error::other("the audit log is open already"))
    }

    /// Records dropped because the writer fell behind, for `/metrics`.
    pub fn dropped_counter(&self) -> Counter {
        self.dropped.clone()
    }

    /// Records one answered request; `who` is `None` when it was not authenticated.
    pub fn record(&self, who: Option<&Identity>, attrs: &Option<Attributes>, code: u16, by: Option<&str>) {
        let Some(tx) = self.tx.get() else { return };
        let mut r = Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            user: who.map(|w| w.user.clone()),
            groups: who.map(|w| w.groups.clone()).unwrap_or_default(),
            verb: attrs.as_ref().map(|a| a.verb().to_string()),
            group: None,
            resource: attrs.as_ref().map(Attributes::what),
            namespace: None,
            name: None,
            code,
            decision: match (who, by) {
                (None, _) => "unauthenticated",
                (Some(_), None) => "forbidden",
                (Some(_), Some(_)) => "allowed",
            },
            authorized_by: by.map(str::to_string),
        };
        if let Some(Attributes::Resource { group, namespace, name, .. }) = attrs {
            r.group = Some(group.clone());
            r.namespace = namespace.clone();
            r.name = name.clone();
        }
        match tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}
