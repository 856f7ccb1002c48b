//! The work queue of a controller: keys, not objects.
//!
//! # Guarantees
//! - **De-duplication**: a key scheduled twice is handed out once; when both schedules
//!   have a time, the earliest wins.
//! - **No concurrent processing of a key**: a key handed out by [`WorkQueue::next`] is
//!   not handed out again until [`WorkQueue::done`] (or [`WorkQueue::retry`]). Adding it
//!   meanwhile parks it; it becomes due again when processing ends.
//! - **Backoff**: [`WorkQueue::retry`] reschedules a key after an exponentially growing
//!   delay (per key, capped); [`WorkQueue::forget`] resets it after a success.
//! - **Rate limit**: keys are handed out at most `qps` per second (with a burst), which
//!   protects the API server from a thundering herd after a restart.
//! - **Shutdown**: after [`WorkQueue::shutdown`], `next` returns `None`; keys in flight
//!   may still be completed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The delay before retry number `failures` (1-based): `base` doubling up to `max`.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(failures.saturating_sub(1) as usize)
        // backon computes in floating point; whole milliseconds are what timers keep.
        .map(|d| Duration::from_millis(d.as_millis() as u64))
        .unwrap_or(max)
}

/// Tuning of a [`WorkQueue`].
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Delay of the first retry of a failing key; each further failure doubles it.
    pub base_delay: Duration,
    /// Longest delay between retries of a failing key.
    pub max_delay: Duration,
    /// Keys handed out per second, on average.
    pub qps: f64,
    /// Keys that may be handed out at once after a quiet period.
    pub burst: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(300),
            // Generous: enough to converge 10,000 objects in seconds, low enough that a
            // reconcile loop gone wrong cannot flood the API server.
            qps: 5000.0,
            burst: 5000,
        }
    }
}

struct State<K> {
    /// Scheduled keys by due time (the counter keeps equal times apart, in order).
    order: BTreeMap<(Instant, u64), K>,
    /// Where each scheduled key sits in `order`.
    due: HashMap<K, (Instant, u64)>,
    /// Keys handed out and not yet done.
    processing: HashSet<K>,
    /// Keys scheduled while being processed, with their earliest due time.
    parked: HashMap<K, Instant>,
    /// Consecutive failures per key.
    failures: HashMap<K, u32>,
    seq: u64,
    tokens: f64,
    refilled: Instant,
    shut_down: bool,
}

/// A de-duplicating, rate-limited delay queue of keys. Share it behind an `Arc`.
pub struct WorkQueue<K> {
    state: parking_lot::Mutex<State<K>>,
    changed: Notify,
    config: QueueConfig,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        WorkQueue {
            state: parking_lot::Mutex::new(State {
                order: BTreeMap::new(),
                due: HashMap::new(),
                processing: HashSet::new(),
                parked: HashMap::new(),
                failures: HashMap::new(),
                seq: 0,
                tokens: f64::from(config.burst.max(1)),
                refilled: Instant::now(),
                shut_down: false,
            }),
            changed: Notify::new(),
            config,
        }
    }

    /// Schedules `key` now.
    pub fn add(&self, key: K) {
        self.add_at(key, Instant::now());
    }

    /// Schedules `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    /// Schedules `key` at `at`, unless it is already scheduled earlier.
    pub fn add_at(&self, key: K, at: Instant) {
        let mut st = self.state.lock();
        if st.shut_down {
            return;
        }
        if st.processing.contains(&key) {
            let parked = st.parked.entry(key).or_insert(at);
            *parked = (*parked).min(at);
            return;
        }
        if let Some(&(t, s)) = st.due.get(&key) {
            if t <= at {
                return;
            }
            st.order.remove(&(t, s));
        }
        st.seq += 1;
        let slot = (at, st.seq);
        st.order.insert(slot, key.clone());
        st.due.insert(key, slot);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Waits for the next due key and marks it as being processed. `None` once the
    /// queue is shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change made after the look wakes us.
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.state.lock();
                if st.shut_down {
                    return None;
                }
                let now = Instant::now();
                match st.order.first_key_value().map(|(slot, _)| *slot) {
                    Some((t, s)) if t <= now => {
                        self.refill(&mut st, now);
                        if st.tokens >= 1.0 {
                            st.tokens -= 1.0;
                            let key = st.order.remove(&(t, s));
                            if let Some(key) = key {
                                st.due.remove(&key);
                                st.processing.insert(key.clone());
                                return Some(key);
                            }
                            continue;
                        }
                        // Out of tokens: wait until one has accrued.
                        Some(now + Duration::from_secs_f64((1.0 - st.tokens) / self.config.qps.max(f64::MIN_POSITIVE)))
                    }
                    Some((t, _)) => Some(t),
                    None => None,
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn refill(&self, st: &mut State<K>, now: Instant) {
        let elapsed = now.saturating_duration_since(st.refilled).as_secs_f64();
        st.tokens = (st.tokens + elapsed * self.config.qps).min(f64::from(self.config.burst.max(1)));
        st.refilled = now;
    }

    /// Marks `key` as processed. If it was scheduled meanwhile it becomes due again.
    pub fn done(&self, key: &K) {
        let parked = {
            let mut st = self.state.lock();
            st.processing.remove(key);
            st.parked.remove(key)
        };
        if let Some(at) = parked {
            self.add_at(key.clone(), at);
        } else {
            self.changed.notify_waiters();
        }
    }

    /// Marks `key` as failed: it is processed again after its backoff delay (sooner if
    /// it was scheduled meanwhile). Returns the delay.
    pub fn retry(&self, key: &K) -> Duration {
        self.retry_at_least(key, Duration::ZERO)
    }

    /// Like [`WorkQueue::retry`], but waits at least `floor` (an error policy may know
    /// that nothing will change sooner).
    pub fn retry_at_least(&self, key: &K, floor: Duration) -> Duration {
        let failures = {
            let mut st = self.state.lock();
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let delay = self.backoff(failures).max(floor);
        {
            let mut st = self.state.lock();
            let at = Instant::now() + delay;
            let parked = st.parked.entry(key.clone()).or_insert(at);
            *parked = (*parked).min(at);
        }
        self.done(key);
        delay
    }

    fn backoff(&self, failures: u32) -> Duration {
        backoff_delay(self.config.base_delay, self.config.max_delay, failures)
    }

    /// Forgets the failures of `key`, so its next retry starts from the base delay.
    pub fn forget(&self, key: &K) {
        self.state.lock().failures.remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.state.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys scheduled and not being processed.
    pub fn len(&self) -> usize {
        self.state.lock().due.len()
    }

    /// Whether no key is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys being processed now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().processing.len()
    }

    /// Stops handing out keys; every waiting `next` returns `None`.
    pub fn shutdown(&self) {
        self.state.lock().shut_down = true;
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(QueueConfig { qps: 1e9, burst: 1_000_000, ..QueueConfig::default() })
    }

    /// Whether `next` hands out a key before `within` of virtual time passes.
    async fn ready_within(q: &WorkQueue<&'static str>, within: Duration) -> Option<&'static str> {
        tokio::time::timeout(within, q.next()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn queue_merges_duplicate_keys() {
        let q = queue();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let first = q.next().await;
        let second = q.next().await;
        assert_eq!((first, second), (Some("a"), Some("b")));
        assert_eq!(ready_within(&q, Duration::from_secs(60)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_schedule_wins() {
        let q = queue();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(1));
        q.add_after("a", Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(ready_within(&q, Duration::from_secs(60)).await, None, "merged into one");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_never_handed_out_twice_at_once() {
        let q = Arc::new(queue());
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        q.add("a"); // changed while being reconciled
        assert_eq!(ready_within(&q, Duration::from_secs(60)).await, None, "parked while in flight");
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"), "due again once done");
        // Many workers racing for one key: exactly one gets it.
        q.done(&"a");
        q.add("a");
        let mut workers = Vec::new();
        for _ in 0..8 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(1), q.next()).await.ok().flatten()
            }));
        }
        let mut got = 0;
        for w in workers {
            got += usize::from(w.await.unwrap().is_some());
        }
        assert_eq!(got, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_exponentially_up_to_the_cap() {
        let q = WorkQueue::new(QueueConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            qps: 1e9,
            burst: 1_000_000,
        });
        q.add("a");
        let mut delays = Vec::new();
        for _ in 0..5 {
            assert_eq!(q.next().await, Some("a"));
            let start = Instant::now();
            let delay = q.retry(&"a");
            assert_eq!(ready_within(&q, delay - Duration::from_millis(1)).await, None, "not before its delay");
            assert_eq!(q.next().await, Some("a"));
            assert_eq!(start.elapsed(), delay);
            q.done(&"a");
            q.add("a");
            delays.push(delay.as_millis());
        }
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        q.forget(&"a");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.retry(&"a"), Duration::from_millis(100), "forget resets the backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_at_least_its_floor() {
        let q = queue();
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        let start = Instant::now();
        assert_eq!(q.retry_at_least(&"a", Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_backoff_is_reconciled_at_once() {
        let q = queue();
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        q.add("a"); // a new change arrived while the failing reconcile ran
        let delay = q.retry(&"a");
        assert!(delay > Duration::ZERO);
        let start = Instant::now();
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_keys_after_the_burst() {
        let q = WorkQueue::new(QueueConfig { qps: 10.0, burst: 2, ..QueueConfig::default() });
        for k in ["a", "b", "c", "d"] {
            q.add(k);
        }
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..4 {
            q.next().await;
            times.push(start.elapsed().as_millis());
        }
        assert_eq!(times, [0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_handing_out_keys() {
        let q = Arc::new(queue());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.shutdown();
        assert_eq!(waiter.await.unwrap(), None);
        q.add("a");
        assert_eq!(q.next().await, None);
    }
}
