//! What the controllers that work in rounds over the whole cluster (offers,
//! services) share: a wake-up from their reflectors, and short unique names.

use std::sync::Arc;

use corral_runtime::Change;
use tokio::sync::Notify;

/// A reflector callback that wakes a round loop.
pub(crate) fn poke<K>(wake: &Arc<Notify>) -> impl Fn(Change<K>) + Send + Sync + use<K> {
    let wake = wake.clone();
    move |_| wake.notify_one()
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
