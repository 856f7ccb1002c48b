//! What the controllers that work in rounds over the whole cluster (offers,
//! services) share: a wake-up from their reflectors, killing a task, short unique
//! names, and times as the API writes them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_api::kinds::task::Task;
use corral_api::meta::ObjectMeta;
use corral_client::{Api, Patch, WriteParams};
use corral_runtime::Change;
use tokio::sync::Notify;

/// A reflector callback that wakes a round loop.
pub(crate) fn poke<K>(wake: &Arc<Notify>) -> impl Fn(Change<K>) + Send + Sync + use<K> {
    let wake = wake.clone();
    move |_| wake.notify_one()
}

/// Asks task `task` to die (`spec.kill`), with a patch: the caches hold summaries of
/// tasks, never to be written back whole.
pub(crate) async fn kill_task(tasks: &Api<Task>, task: &ObjectMeta) -> corral_client::Result<()> {
    let api = tasks.in_namespace(task.namespace.as_deref().unwrap_or_default());
    let kill = serde_json::json!({"spec": {"kill": true}});
    api.patch(&task.name, Patch::Merge(&kill), &WriteParams::default()).await.map(drop)
}

/// Hands offer `offer` back for `framework`, refusing its node for `refuse_seconds`.
pub(crate) async fn decline(client: &corral_client::Client, framework: &str, offer: &str, refuse_seconds: u64) {
    let decline = corral_api::kinds::framework::OfferDecline {
        framework: framework.to_string(),
        refuse_seconds: Some(refuse_seconds),
    };
    if let Err(e) = client.decline_offer(offer, &decline).await {
        tracing::debug!(error = %e, %offer, framework, "cannot decline an offer");
    }
}

/// `n` in base 36, lowercase: short name suffixes.
pub(crate) fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
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

/// `t` as RFC 3339 in UTC, to the second (times before 1970 read as 1970).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let at = chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses RFC 3339, dropping any fraction of a second; `None` if it is not that, or
/// before 1970.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
}
