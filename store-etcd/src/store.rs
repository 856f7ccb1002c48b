//! [`EtcdStore`]: the [`Storage`] contract on an etcd cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use corral_api::Selector;
use corral_store::decide::{self, Write};
use corral_store::{
    DeleteOutcome, Error, Key, ListPage, ListRequest, ListResult, Result, RevisionPin, Storage, StoreStats,
    StoredObject, TxnOp, TxnOutcome, UpdateOutcome, WatchRequest, WatchStream,
};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOpResponse};
use parking_lot::Mutex;
use serde_json::Value;

use crate::codec::{self, PENDING};

/// How a [`EtcdStore`] reaches etcd and behaves.
#[derive(Clone, PartialEq)]
pub struct Options {
    /// Every key of the store starts with it, so that one etcd can hold other data
    /// (or several Corral clusters) beside it.
    pub prefix: String,
    /// etcd user and password, when etcd has authentication enabled.
    pub user: Option<(String, String)>,
    /// TLS to etcd (endpoints must then be `https://`).
    pub tls: Option<Tls>,
    /// How long connecting to an endpoint may take.
    pub connect_timeout: Duration,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How often the counters of [`Storage::stats`] (object count, revision) and the
    /// health are refreshed from etcd.
    pub refresh_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: "/corral/".into(),
            user: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            bookmark_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(5),
        }
    }
}

// By hand: the password and the private key stay out of logs.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("refresh_interval", &self.refresh_interval)
            .finish()
    }
}

/// TLS settings for the connection to etcd, as PEM.
#[derive(Clone, Default, PartialEq)]
pub struct Tls {
    /// The certificate authority that signed etcd's server certificates; the
    /// system's roots are not consulted.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its private key, for etcd's `--client-cert-auth`.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check etcd's certificate against, when it is not the endpoint's host.
    pub domain: Option<String>,
}

impl Tls {
    fn config(&self) -> etcd_client::TlsOptions {
        let mut c = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            c = c.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity_pem {
            c = c.identity(etcd_client::Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        c
    }
}

/// The endpoints of a `--store` value `etcd://host:port,host:port` (or
/// `etcds://…` for TLS), as URLs etcd's client takes.
///
/// # Errors
/// `Invalid` when it is not such a URL or names no endpoint.
pub fn parse_store_url(spec: &str) -> Result<Vec<String>> {
    let (scheme, rest) = if let Some(rest) = spec.strip_prefix("etcd://") {
        ("http", rest)
    } else if let Some(rest) = spec.strip_prefix("etcds://") {
        ("https", rest)
    } else {
        return Err(Error::Invalid(format!("{spec:?} is not an etcd URL: expected etcd://host:port[,host:port…]")));
    };
    let endpoints: Vec<String> = rest
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{h}"))
        .collect();
    if endpoints.is_empty() {
        return Err(Error::Invalid(format!("{spec:?} names no etcd endpoint: expected etcd://host:port[,host:port…]")));
    }
    Ok(endpoints)
}

/// Attempts at a write whose keys keep changing between its read and its commit.
const MAX_ATTEMPTS: usize = 100;
/// Keys read from etcd per request of a list.
const CHUNK: i64 = 256;

/// Attempts at a request while the etcd member it went to cannot be reached: the
/// client spreads requests over every endpoint, so another attempt usually reaches a
/// live member. About two seconds in all.
const REACH_ATTEMPTS: u32 = 20;

/// Whether a request never reached etcd (no connection to the member chosen): it
/// certainly did nothing, so it may be sent again, write or not.
pub(crate) fn unsent(e: &etcd_client::Error) -> bool {
    let msg = e.to_string();
    msg.contains("tcp connect error") || msg.contains("Connection refused")
}

/// Whether etcd was unavailable, the request sent or not: a read may be sent again.
/// A member that dies mid-request leaves a broken transport (closed connection,
/// broken pipe, reset) rather than a clean status: the next attempt goes to another.
pub(crate) fn unavailable(e: &etcd_client::Error) -> bool {
    if unsent(e) || matches!(e, etcd_client::Error::TransportError(_)) {
        return true;
    }
    let msg = e.to_string();
    ["currently unavailable", "transport error", "connection closed", "operation was canceled", "broken pipe"]
        .iter()
        .any(|m| msg.contains(m))
}

/// Runs `call` until it succeeds, fails in a way another attempt cannot help, or the
/// attempts run out. `read`: the call changes nothing, so it is sent again even when
/// etcd failed after receiving it; a write is sent again only if it never left.
pub(crate) async fn reaching<T, Fut>(
    read: bool,
    mut call: impl FnMut() -> Fut,
) -> std::result::Result<T, etcd_client::Error>
where
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if attempt + 1 < REACH_ATTEMPTS && (unsent(&e) || (read && unavailable(&e))) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "etcd member unreachable; trying again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            r => return r,
        }
    }
}

/// What the store and its watches share.
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) prefix: Vec<u8>,
    /// The newest revision any etcd answer carried.
    revision: AtomicU64,
    /// The newest compaction this store knows of (its own, or found on connecting).
    compacted: AtomicU64,
    objects: AtomicU64,
    pub(crate) watchers: AtomicU64,
    /// Transactions committed by this store: each is one revision, durable in etcd.
    commits: AtomicU64,
    /// Bumped by each progress request; watches with bookmarks answer it.
    pub(crate) progress: tokio::sync::watch::Sender<u64>,
    /// Revisions held from compaction, and by how many pins.
    pins: Mutex<BTreeMap<u64, usize>>,
    /// Why the last refresh from etcd failed, if it did.
    unhealthy: Mutex<Option<String>>,
    pub(crate) options: Options,
}

/// The store on etcd. Dropping it stops its background refresh; watches already
/// opened keep their own streams until dropped.
pub struct EtcdStore {
    inner: Arc<Inner>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// An etcd failure as the store reports it.
pub(crate) fn backend(e: etcd_client::Error) -> Error {
    if unavailable(&e) { Error::Unavailable(format!("etcd: {e}")) } else { Error::Backend(format!("etcd: {e}")) }
}

/// How etcd refuses a read at a revision it no longer (or not yet) has.
enum Refusal {
    Compacted,
    Future,
}

fn refusal(e: &etcd_client::Error) -> Option<Refusal> {
    let msg = e.to_string();
    if msg.contains("required revision has been compacted") {
        Some(Refusal::Compacted)
    } else if msg.contains("required revision is a future revision") {
        Some(Refusal::Future)
    } else {
        None
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map(|h| h.revision()).unwrap_or_default().max(0) as u64
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`, or
    /// `https://` with [`Options::tls`]) and checks that it answers.
    ///
    /// # Errors
    /// `Backend` when no endpoint can be reached or the credentials are refused.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], options: Options) -> Result<Self> {
        let mut co = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Notices a dead member well before TCP would, so requests go to another.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some((user, password)) = &options.user {
            co = co.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &options.tls {
            co = co.with_tls(tls.config());
        }
        let names = endpoints.iter().map(|e| e.as_ref().to_string()).collect::<Vec<_>>().join(",");
        let client = Client::connect(endpoints, Some(co))
            .await
            .map_err(|e| Error::Backend(format!("cannot connect to etcd at {names}: {e}")))?;
        let (progress, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            client,
            prefix: options.prefix.clone().into_bytes(),
            revision: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            watchers: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            progress,
            pins: Mutex::new(BTreeMap::new()),
            unhealthy: Mutex::new(None),
            options,
        });
        inner.refresh().await.map_err(|e| Error::Backend(format!("etcd at {names} does not answer: {e}")))?;
        let compacted = inner.find_compacted().await?;
        inner.compacted.fetch_max(compacted, Ordering::AcqRel);
        tracing::info!(
            endpoints = %names,
            revision = inner.revision.load(Ordering::Relaxed),
            compacted,
            objects = inner.objects.load(Ordering::Relaxed),
            "store on etcd connected"
        );
        let weak = Arc::downgrade(&inner);
        let every = inner.options.refresh_interval;
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let r = inner.refresh().await;
                *inner.unhealthy.lock() = r.err().map(|e| e.to_string());
            }
        });
        Ok(EtcdStore { inner, refresher })
    }

    /// The newest revision seen.
    pub fn revision(&self) -> u64 {
        self.inner.revision.load(Ordering::Acquire)
    }

    /// Writes `objects` as they are into a store that holds none: uid, timestamps,
    /// generation, status, finalizers and pending deletions are kept; revisions are
    /// etcd's (the objects of one batch share one). What moving a cluster from another
    /// store takes (`corral admin migrate`); call it with batches of a list.
    ///
    /// # Errors
    /// `AlreadyExists` when one of the keys is taken (nothing of that batch is
    /// written), `Backend` when etcd fails. Earlier batches stay written.
    pub async fn import(&self, objects: &[Arc<StoredObject>]) -> Result<()> {
        // etcd's default bound on the operations of one transaction is 128.
        for batch in objects.chunks(IMPORT_BATCH) {
            let mut compares = Vec::with_capacity(batch.len());
            let mut puts = Vec::with_capacity(batch.len());
            for o in batch {
                let k = self.inner.key_bytes(&o.key);
                compares.push(Compare::create_revision(k.clone(), CompareOp::Equal, 0));
                puts.push(etcd_client::TxnOp::put(k, codec::encode(o)?, None));
            }
            let resp = self.inner.txn(Txn::new().when(compares).and_then(puts), false).await.map_err(backend)?;
            self.inner.note(resp.header());
            if !resp.succeeded() {
                let taken = batch.first().map(|o| o.key.clone()).ok_or(Error::Closed)?;
                return Err(Error::AlreadyExists(taken));
            }
            self.inner.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the store holds no object.
    ///
    /// # Errors
    /// `Backend` when etcd cannot be read.
    pub async fn is_empty(&self) -> Result<bool> {
        let opts = GetOptions::new().with_prefix().with_count_only();
        let resp = self.inner.get(self.inner.prefix.clone(), Some(opts)).await.map_err(backend)?;
        self.inner.note(resp.header());
        Ok(resp.count() == 0)
    }
}

/// Objects written per transaction by [`EtcdStore::import`].
const IMPORT_BATCH: usize = 100;

impl Inner {
    pub(crate) fn key_bytes(&self, key: &Key) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&key.encode());
        k
    }

    pub(crate) fn decode_key(&self, k: &[u8]) -> Option<Key> {
        Key::decode(k.strip_prefix(self.prefix.as_slice())?)
    }

    /// Records the revision of an answer.
    pub(crate) fn note(&self, h: Option<&etcd_client::ResponseHeader>) -> u64 {
        let rev = header_revision(h);
        self.revision.fetch_max(rev, Ordering::AcqRel);
        rev
    }

    /// A range read, sent again while the member it went to cannot be reached.
    async fn get(
        &self,
        key: Vec<u8>,
        opts: Option<GetOptions>,
    ) -> std::result::Result<etcd_client::GetResponse, etcd_client::Error> {
        reaching(true, || {
            let (mut kv, key, opts) = (self.client.kv_client(), key.clone(), opts.clone());
            async move { kv.get(key, opts).await }
        })
        .await
    }

    /// A transaction, sent again while the member it went to cannot be reached (a
    /// write only while it has certainly not been received).
    async fn txn(&self, txn: Txn, read: bool) -> std::result::Result<etcd_client::TxnResponse, etcd_client::Error> {
        reaching(read, || {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// Counts the objects and learns the current revision.
    async fn refresh(&self) -> Result<()> {
        let resp = self
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .map_err(backend)?;
        self.note(resp.header());
        self.objects.store(resp.count().max(0) as u64, Ordering::Release);
        Ok(())
    }

    /// The current revision, asked of etcd (a read of one key that never exists).
    pub(crate) async fn current_revision(&self) -> Result<u64> {
        let resp = self.get(self.prefix.clone(), None).await.map_err(backend)?;
        Ok(self.note(resp.header()))
    }

    /// Whether a read at `revision` is refused because it is compacted.
    async fn is_compacted(&self, revision: u64) -> Result<bool> {
        let opts = GetOptions::new().with_revision(revision.max(1) as i64).with_count_only();
        match self.get(self.prefix.clone(), Some(opts)).await {
            Ok(r) => {
                self.note(r.header());
                Ok(false)
            }
            Err(e) => match refusal(&e) {
                Some(Refusal::Compacted) => Ok(true),
                // Nothing beyond the current revision was compacted.
                Some(Refusal::Future) => Ok(false),
                None => Err(backend(e)),
            },
        }
    }

    /// etcd's compaction revision: the oldest revision still readable (0 when that is
    /// etcd's first, 1). etcd says only whether a revision is compacted, not where
    /// compaction stands, so it is found by bisection: a few dozen small reads.
    async fn find_compacted(&self) -> Result<u64> {
        let (mut lo, mut hi) = (1u64, self.current_revision().await?.max(1));
        if !self.is_compacted(lo).await? {
            return Ok(0);
        }
        // Invariant: `lo` is compacted, `hi` is not (the current revision never is).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.is_compacted(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }

    /// The compaction floor to report for a read refused as compacted.
    pub(crate) async fn gone(&self, requested: u64) -> Error {
        let known = self.compacted.load(Ordering::Acquire);
        let compacted = if known > requested {
            known
        } else {
            match self.find_compacted().await {
                Ok(c) => {
                    self.compacted.fetch_max(c, Ordering::AcqRel);
                    c
                }
                Err(e) => return e,
            }
        };
        Error::Gone { requested, compacted }
    }

    /// Fails with `Gone` when a watch from `from` can no longer replay every event
    /// after it.
    pub(crate) async fn check_watchable(&self, from: u64) -> Result<()> {
        let known = self.compacted.load(Ordering::Acquire);
        if from < known || self.is_compacted(from).await? {
            return Err(self.gone(from).await);
        }
        Ok(())
    }

    /// The objects at `keys`, read together at one revision.
    async fn read(&self, keys: &[Key]) -> Result<Vec<Option<Arc<StoredObject>>>> {
        let ops: Vec<etcd_client::TxnOp> =
            keys.iter().map(|k| etcd_client::TxnOp::get(self.key_bytes(k), None)).collect();
        let resp = self.txn(Txn::new().and_then(ops), true).await.map_err(backend)?;
        self.note(resp.header());
        let mut out = Vec::with_capacity(keys.len());
        for (key, r) in keys.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(g) = r else {
                return Err(Error::Backend("etcd answered a read with something else".into()));
            };
            out.push(match g.kvs().first() {
                Some(kv) => Some(Arc::new(codec::decode(key.clone(), kv.mod_revision() as u64, kv.value())?)),
                None => None,
            });
        }
        Ok(out)
    }

    /// Decides `writes` against the current state of their keys and commits them in one
    /// etcd transaction that holds only if none of those keys changed since read;
    /// when one did, reads and decides again.
    async fn apply(&self, writes: Vec<Write>) -> Result<Vec<TxnOutcome>> {
        let mut keys: Vec<Key> = Vec::new();
        for w in &writes {
            if !keys.contains(w.key()) {
                keys.push(w.key().clone());
            }
        }
        let Some(first) = keys.first().cloned() else { return Ok(Vec::new()) };
        // Creates expect their keys absent: decided on that guess, the transaction's
        // compares check it, and a round trip is saved. Only when a key exists after
        // all is it read, and the writes decided again on what is there.
        let mut guess_absent = writes.iter().all(|w| matches!(w, Write::Create { .. }));
        for _ in 0..MAX_ATTEMPTS {
            let read =
                if std::mem::take(&mut guess_absent) { vec![None; keys.len()] } else { self.read(&keys).await? };
            let original: HashMap<Key, Option<Arc<StoredObject>>> = keys.iter().cloned().zip(read).collect();
            let mut state = original.clone();
            let now = corral_api::meta::now_timestamp();
            let mut outcomes = Vec::with_capacity(writes.len());
            let mut changed = false;
            for w in writes.iter().cloned() {
                let current = state.get(w.key()).cloned().flatten();
                let (outcome, change) = decide::decide(w, current, PENDING, &now)?;
                if let Some(c) = change {
                    state.insert(c.key.clone(), c.new.clone());
                    changed = true;
                }
                outcomes.push(outcome);
            }
            if !changed {
                return Ok(outcomes);
            }
            let mut compares = Vec::with_capacity(keys.len());
            let mut ops = Vec::new();
            for k in &keys {
                let kb = self.key_bytes(k);
                let (before, after) = (&original[k], &state[k]);
                compares.push(match before {
                    None => Compare::create_revision(kb.clone(), CompareOp::Equal, 0),
                    Some(o) => Compare::mod_revision(kb.clone(), CompareOp::Equal, o.revision as i64),
                });
                match (before, after) {
                    (Some(b), Some(a)) if Arc::ptr_eq(b, a) => {}
                    (_, Some(a)) => ops.push(etcd_client::TxnOp::put(kb, codec::encode(a)?, None)),
                    (Some(_), None) => ops.push(etcd_client::TxnOp::delete(kb, None)),
                    (None, None) => {}
                }
            }
            let resp = self.txn(Txn::new().when(compares).and_then(ops), false).await.map_err(backend)?;
            let rev = self.note(resp.header());
            if !resp.succeeded() {
                // A key changed since it was read: decide again on its new state.
                continue;
            }
            self.commits.fetch_add(1, Ordering::Relaxed);
            return outcomes.into_iter().map(|o| stamp_outcome(o, rev)).collect();
        }
        Err(Error::Backend(format!("{first} kept changing while being written ({MAX_ATTEMPTS} attempts); retry")))
    }

    pub(crate) async fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        let mut base = self.prefix.clone();
        if !req.resource.is_empty() {
            base.extend_from_slice(req.resource.as_bytes());
            base.push(0);
            if let Some(ns) = &req.namespace {
                base.extend_from_slice(ns.as_bytes());
                base.push(0);
            }
        }
        let end = codec::prefix_end(&base);
        let mut start = match &req.after {
            Some(k) => {
                let mut s = self.key_bytes(k);
                // The first key after it.
                s.push(0);
                s
            }
            None => base.clone(),
        };
        let limit = req.limit.unwrap_or(usize::MAX).max(1);
        let max_bytes = req.max_bytes.unwrap_or(u64::MAX);
        let mut at = req.at;
        let mut items: Vec<Arc<StoredObject>> = Vec::new();
        let (mut bytes, mut remaining, mut full) = (0u64, 0u64, false);
        'chunks: loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(CHUNK);
            if let Some(a) = at {
                opts = opts.with_revision(a.max(1) as i64);
            }
            let resp = match self.get(start.clone(), Some(opts)).await {
                Ok(r) => r,
                Err(e) => {
                    let requested = at.unwrap_or_default();
                    return Err(match refusal(&e) {
                        Some(Refusal::Compacted) => self.gone(requested).await,
                        Some(Refusal::Future) => {
                            Error::Ahead { requested, current: self.revision.load(Ordering::Acquire) }
                        }
                        None => backend(e),
                    });
                }
            };
            let rev = self.note(resp.header());
            // Every later chunk is read at the revision of the first.
            let at_rev = *at.get_or_insert(rev);
            for kv in resp.kvs() {
                let Some(key) = self.decode_key(kv.key()) else { continue };
                if req.namespace.as_ref().is_some_and(|ns| *ns != key.namespace) {
                    continue;
                }
                let o = codec::decode(key, kv.mod_revision() as u64, kv.value())?;
                debug_assert!(o.revision <= at_rev);
                if !req.selector.matches(&o.labels) {
                    continue;
                }
                let size = o.json.len() as u64;
                full = full || items.len() == limit || (!items.is_empty() && bytes + size > max_bytes);
                if full {
                    remaining += 1;
                    if !req.count_remaining {
                        break 'chunks;
                    }
                } else {
                    bytes += size;
                    items.push(Arc::new(o));
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        let next = if remaining > 0 { items.last().map(|o| o.key.clone()) } else { None };
        Ok(ListPage { items, revision: at.unwrap_or_default(), next, remaining })
    }
}

/// The outcome with the objects decided before the commit given its revision (those
/// read from etcd keep theirs).
fn stamp_outcome(o: TxnOutcome, rev: u64) -> Result<TxnOutcome> {
    Ok(match o {
        TxnOutcome::Created(o) => TxnOutcome::Created(codec::stamp(o, rev)?),
        TxnOutcome::Updated(UpdateOutcome::Updated(o)) => {
            TxnOutcome::Updated(UpdateOutcome::Updated(codec::stamp(o, rev)?))
        }
        TxnOutcome::Updated(UpdateOutcome::Deleted(o)) => {
            TxnOutcome::Updated(UpdateOutcome::Deleted(codec::stamp(o, rev)?))
        }
        // Unchanged by this write, but possibly created earlier in the transaction.
        TxnOutcome::Updated(UpdateOutcome::Unchanged(o)) => {
            TxnOutcome::Updated(UpdateOutcome::Unchanged(codec::stamp(o, rev)?))
        }
        TxnOutcome::Deleted(DeleteOutcome::Deleted(o)) => {
            TxnOutcome::Deleted(DeleteOutcome::Deleted(codec::stamp(o, rev)?))
        }
        TxnOutcome::Deleted(DeleteOutcome::Finalizing(o)) => {
            TxnOutcome::Deleted(DeleteOutcome::Finalizing(codec::stamp(o, rev)?))
        }
    })
}

fn unexpected(o: TxnOutcome) -> Error {
    Error::Corrupt(format!("a write was answered with an unexpected outcome {o:?}"))
}

impl EtcdStore {
    async fn one(&self, w: Write) -> Result<TxnOutcome> {
        self.inner.apply(vec![w]).await?.pop().ok_or_else(|| Error::Corrupt("a write was not answered".into()))
    }
}

#[async_trait]
impl Storage for EtcdStore {
    async fn create(&self, key: Key, object: Value) -> Result<Arc<StoredObject>> {
        match self.one(Write::Create { key, object }).await? {
            TxnOutcome::Created(o) => Ok(o),
            o => Err(unexpected(o)),
        }
    }

    async fn update(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.one(Write::Update { key, object, expected, status_only: false }).await? {
            TxnOutcome::Updated(u) => Ok(u),
            o => Err(unexpected(o)),
        }
    }

    async fn update_status(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.one(Write::Update { key, object, expected, status_only: true }).await? {
            TxnOutcome::Updated(u) => Ok(u),
            o => Err(unexpected(o)),
        }
    }

    async fn delete(&self, key: Key, expected: Option<u64>) -> Result<DeleteOutcome> {
        match self.one(Write::Delete { key, expected }).await? {
            TxnOutcome::Deleted(d) => Ok(d),
            o => Err(unexpected(o)),
        }
    }

    /// As [`Storage::transact`], with one difference: the writes are one etcd
    /// transaction, so they all take the **same** revision, and a key written twice
    /// in it makes one event (its final state). A write after another of the same
    /// key sees that one's result, but its `expected` cannot name that revision
    /// (unknown until the commit).
    async fn transact(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>> {
        self.inner.apply(ops.into_iter().map(Write::from).collect()).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Arc<StoredObject>>> {
        let resp = self.inner.get(self.inner.key_bytes(key), None).await.map_err(backend)?;
        self.inner.note(resp.header());
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Arc::new(codec::decode(key.clone(), kv.mod_revision() as u64, kv.value())?))),
            None => Ok(None),
        }
    }

    async fn list(&self, resource: &str, namespace: Option<&str>, selector: &Selector) -> Result<ListResult> {
        let page = self.inner.list_page(&ListRequest::new(resource, namespace, selector)).await?;
        Ok(ListResult { items: page.items, revision: page.revision })
    }

    async fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        self.inner.list_page(req).await
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        crate::watch::start(self.inner.clone(), request).await
    }

    fn request_progress(&self) {
        self.inner.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Compacts etcd's history up to `revision` (capped at the current revision and
    /// at the oldest pin). etcd's own automatic compaction (`--auto-compaction-*`)
    /// knows nothing of pins.
    async fn compact(&self, revision: u64) -> Result<()> {
        let pinned = self.inner.pins.lock().keys().next().copied().unwrap_or(u64::MAX);
        let current = self.inner.current_revision().await?;
        let revision = revision.min(current).min(pinned);
        if revision == 0 || revision <= self.inner.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        // Compacting to a revision twice is harmless: sent again like a read.
        let compacted = reaching(true, || {
            let mut kv = self.inner.client.kv_client();
            async move { kv.compact(revision as i64, None).await }
        })
        .await;
        match compacted {
            Ok(r) => {
                self.inner.note(r.header());
            }
            // Someone compacted further already.
            Err(e) if matches!(refusal(&e), Some(Refusal::Compacted)) => {}
            Err(e) => return Err(backend(e)),
        }
        self.inner.compacted.fetch_max(revision, Ordering::AcqRel);
        tracing::debug!(revision, "etcd history compacted");
        Ok(())
    }

    fn pin(&self, revision: u64) -> Result<RevisionPin> {
        let current = self.inner.revision.load(Ordering::Acquire);
        if revision > current {
            return Err(Error::Ahead { requested: revision, current });
        }
        let compacted = self.inner.compacted.load(Ordering::Acquire);
        if revision < compacted {
            return Err(Error::Gone { requested: revision, compacted });
        }
        *self.inner.pins.lock().entry(revision).or_default() += 1;
        let inner = self.inner.clone();
        Ok(RevisionPin::new(move || {
            let mut pins = inner.pins.lock();
            if let Some(n) = pins.get_mut(&revision) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(&revision);
                }
            }
        }))
    }

    /// What this store knows without asking etcd: the newest revision any answer
    /// carried, the compaction it made or found, the object count of the last refresh.
    fn stats(&self) -> StoreStats {
        let i = &self.inner;
        let commits = i.commits.load(Ordering::Relaxed);
        StoreStats {
            revision: i.revision.load(Ordering::Acquire),
            compacted: i.compacted.load(Ordering::Acquire),
            objects: i.objects.load(Ordering::Relaxed),
            watchers: i.watchers.load(Ordering::Relaxed),
            // etcd makes each committed transaction durable on its own.
            flushes: commits,
            writes: commits,
            ..StoreStats::default()
        }
    }

    fn health(&self) -> std::result::Result<(), String> {
        match &*self.inner.unhealthy.lock() {
            Some(why) => Err(format!("etcd does not answer: {why}")),
            None => Ok(()),
        }
    }
}
