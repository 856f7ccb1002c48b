//! The writes of a round that no due time should wait for: runs' statuses, old runs
//! pruned and jobs' statuses.
//!
//! A round hands them to one [`Writer`] and goes on; the next round, due perhaps a
//! moment later, launches its runs without waiting for them. While the writer is
//! busy, rounds hand it nothing: what they decide meanwhile is remembered, and the
//! first round that finds the writer idle writes it, as it then decides it. So the
//! writes in flight are bounded by one round's, and none is sent twice at once.
//!
//! Until the cache shows a status written, the rounds decide from the status last
//! decided ([`Statuses`]), handed over or still waiting for the writer: a job whose
//! `lastScheduleTime` is not stored yet does not start the same due time again, and
//! a run whose end is not stored yet no longer counts as active.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use corral_api::kinds::job::{JobRun, JobRunStatus, JobStatus};
use corral_client::DeleteParams;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Apis, Later, UNSEEN, key_of};

/// The writer's writes in flight at once: few, so that the writes a due time waits
/// for (its runs, their tasks, the tasks' reports) go first at the server.
const WRITER_IN_FLIGHT: usize = 16;

/// How long before a staged due time the writer stops sending: its writes in flight
/// land before the time's runs start.
const QUIET_BEFORE: Duration = Duration::from_millis(250);
/// How long after a staged due time the writer waits: the nodes report that time's
/// runs started, ten thousand of them in about a second on a busy control plane, and
/// the runs' bookkeeping must not compete with those reports (the start lag of every
/// run is measured by them).
const QUIET_AFTER: Duration = Duration::from_millis(1500);

/// Fewest runs staged for one due time that make it a burst worth keeping quiet
/// around: a few runs' starts are nothing to make way for.
const QUIET_MIN_RUNS: usize = 1000;
/// Shortest time between two due times kept quiet around: the writer writes at least
/// half the time, however often bursts come (a schedule every second or two).
const QUIET_SPACING: Duration = Duration::from_millis(2 * (QUIET_BEFORE.as_millis() + QUIET_AFTER.as_millis()) as u64);

/// The staged due times the writer keeps quiet around (see [`QUIET_BEFORE`] and
/// [`QUIET_AFTER`]). Shared between the rounds, which stage runs, and the writer.
#[derive(Clone, Default)]
pub(super) struct Quiet(Arc<Mutex<BTreeSet<DateTime<Utc>>>>);

impl Quiet {
    /// Keeps the writer quiet around `at`, a due time for which `runs` runs are
    /// staged, if they are a burst ([`QUIET_MIN_RUNS`]) and no other time kept is
    /// nearer than [`QUIET_SPACING`].
    pub(super) fn around(&self, at: DateTime<Utc>, runs: usize) {
        let mut times = self.lock();
        if keeps_quiet(&times, at, runs) {
            times.insert(at);
        }
    }

    /// The end of the quiet window `now` falls in, if any; windows past are dropped.
    pub(super) fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut times = self.lock();
        times.retain(|t| *t + QUIET_AFTER > now);
        quiet_until(&times, now)
    }

    /// The end of the quiet window `at` falls in, if any (past or future alike).
    pub(super) fn end_of_window_at(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        quiet_until(&self.lock(), at)
    }

    /// `wait` from `now`, made longer if a round starting then and `lasting` that long
    /// would meet a quiet window: until the window's end.
    pub(super) fn past_windows(&self, now: DateTime<Utc>, wait: Duration, lasting: Duration) -> Duration {
        let start = now + chrono::Duration::from_std(wait).unwrap_or_default();
        let end = start + chrono::Duration::from_std(lasting).unwrap_or_default();
        match window_met(&self.lock(), start, end) {
            Some(window_end) => (window_end - now).to_std().unwrap_or(wait),
            None => wait,
        }
    }

    /// Waits until `now` is in no quiet window.
    async fn wait(&self) {
        // Bounded: each wait ends a window, and windows are staged seconds apart.
        for _ in 0..16 {
            let now = Utc::now();
            let Some(until) = self.until(now) else { return };
            tokio::time::sleep((until - now).to_std().unwrap_or_default()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<DateTime<Utc>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a due time `at` with `runs` runs staged is kept quiet around, beside the
/// `times` already kept.
pub(super) fn keeps_quiet(times: &BTreeSet<DateTime<Utc>>, at: DateTime<Utc>, runs: usize) -> bool {
    let near = |t: &DateTime<Utc>| (*t - at).abs().to_std().is_ok_and(|d| d < QUIET_SPACING);
    times.contains(&at) || (runs >= QUIET_MIN_RUNS && !times.iter().any(near))
}

/// The end of the quiet window around one of `times` that `now` falls in: from
/// [`QUIET_BEFORE`] before a time to [`QUIET_AFTER`] after it.
pub(super) fn quiet_until(times: &BTreeSet<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    times.iter().find(|t| **t - QUIET_BEFORE <= now && now < **t + QUIET_AFTER).map(|t| *t + QUIET_AFTER)
}

/// The end of the first quiet window around one of `times` that a round from `start`
/// to `end` meets.
fn window_met(times: &BTreeSet<DateTime<Utc>>, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
    times.iter().find(|t| **t - QUIET_BEFORE <= end && start < **t + QUIET_AFTER).map(|t| *t + QUIET_AFTER)
}

// The next time's staging starts after the window in which this time's starts are reported.
const _: () = assert!(QUIET_AFTER.as_millis() < super::decide::AFTER_PREVIOUS.as_millis());

/// A status decided, and the object it was decided for.
struct Pending<S> {
    uid: String,
    status: S,
    /// The hand-over it went to the writer in (else it waits for the writer to be
    /// idle).
    handed: Option<u64>,
    since: Instant,
}

/// Statuses decided but not yet seen stored, by `NAMESPACE/NAME`, until the cache
/// shows them (or their write failed, or the object was deleted and made again, or
/// [`UNSEEN`] passed since it was decided — for one handed over, since the writer
/// finished: a writer busy longer than that must not bring back older statuses).
///
/// Not until the object's revision moves: the writer's previous hand-over, landing,
/// moves it too, and would bring back the status before this one.
pub(super) struct Statuses<S> {
    pending: HashMap<String, Pending<S>>,
    /// The writer is writing the ones handed over.
    writing: bool,
    /// Hand-overs finished.
    hand_overs: u64,
}

impl<S> Default for Statuses<S> {
    fn default() -> Self {
        Statuses { pending: HashMap::new(), writing: false, hand_overs: 0 }
    }
}

impl<S: Clone + PartialEq> Statuses<S> {
    /// The status last decided for `key` (object `uid`, which stores `stored`), until
    /// the cache shows it; then the cache is the truth again.
    pub(super) fn current(&mut self, key: &str, uid: &str, stored: Option<&S>) -> Option<&S> {
        let p = self.pending.get(key)?;
        let fresh = (p.handed.is_some() && self.writing) || p.since.elapsed() < UNSEEN;
        if !(p.uid == uid && stored != Some(&p.status) && fresh) {
            self.pending.remove(key);
            return None;
        }
        self.pending.get(key).map(|p| &p.status)
    }

    /// Records `status`, decided for object `uid`, which stores `stored`. Returns
    /// whether to write it now: it differs from what is stored, the writer is
    /// `idle`, and it was not already written (a cache lagging behind the writer
    /// still shows the old one).
    pub(super) fn decided(&mut self, key: String, uid: &str, status: &S, stored: Option<&S>, idle: bool) -> bool {
        if stored == Some(status) {
            self.pending.remove(&key);
            return false;
        }
        if let Some(p) = self.pending.get(&key)
            && p.uid == uid
            && p.handed.is_some()
            && p.status == *status
        {
            return false;
        }
        let uid = uid.to_string();
        let handed = idle.then_some(self.hand_overs);
        self.pending.insert(key, Pending { uid, status: status.clone(), handed, since: Instant::now() });
        idle
    }

    fn handed_over(&mut self) {
        self.writing = true;
    }

    /// The writer finished: what it wrote has [`UNSEEN`] from now to show in the
    /// cache, and what it could not write (`failed`) is decided again. Entries no
    /// round asked about for that long (their objects deleted) are dropped.
    fn written(&mut self, failed: &[String]) {
        self.writing = false;
        let (now, this) = (Instant::now(), Some(self.hand_overs));
        self.pending.values_mut().filter(|p| p.handed == this).for_each(|p| p.since = now);
        self.pending.retain(|_, p| p.since.elapsed() < UNSEEN);
        for k in failed {
            self.pending.remove(k);
        }
        self.hand_overs += 1;
    }
}

/// What a hand-over's writes could not do, by key: those statuses are decided again.
#[derive(Default)]
struct Failed {
    runs: Vec<String>,
    jobs: Vec<String>,
}

/// The one writer of the rounds' bookkeeping, and the statuses it is writing.
#[derive(Default)]
pub(super) struct Writer {
    busy: Option<JoinHandle<Failed>>,
    /// The due times it keeps quiet around.
    pub(super) quiet: Quiet,
    /// Runs' statuses handed over.
    pub(super) runs: Statuses<JobRunStatus>,
    /// Jobs' statuses handed over.
    pub(super) jobs: Statuses<JobStatus>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The controller stopped: what was not written is decided again by the next
        // one to run.
        if let Some(busy) = self.busy.take() {
            busy.abort();
        }
    }
}

impl Writer {
    /// Whether the last hand-over is written (its failures are forgotten, so that
    /// the next round decides them again) and the writer may take another: not in a
    /// quiet window, where a round would only prepare writes that wait.
    pub(super) async fn idle(&mut self) -> bool {
        let done = match &self.busy {
            Some(busy) if !busy.is_finished() => false,
            Some(_) => {
                if let Some(busy) = self.busy.take() {
                    let failed = busy.await.unwrap_or_default();
                    self.runs.written(&failed.runs);
                    self.jobs.written(&failed.jobs);
                }
                true
            }
            None => true,
        };
        done && self.quiet.until(Utc::now()).is_none()
    }

    /// Starts writing `runs` (each with its new status) and then `later`: what
    /// [`Statuses::decided`] said to write. Call only when [`Writer::idle`].
    pub(super) fn hand_over(&mut self, apis: &Arc<Apis>, runs: Vec<JobRun>, later: Vec<Later>) {
        let later: Vec<Later> = later.into_iter().filter(|l| l.status.is_some() || !l.delete.is_empty()).collect();
        self.runs.handed_over();
        self.jobs.handed_over();
        let (apis, quiet) = (apis.clone(), self.quiet.clone());
        self.busy = Some(tokio::spawn(async move { write(&apis, &quiet, runs, later).await }));
    }
}

// The statuses are written without a resourceVersion precondition: this controller
// is their only writer, and one hand-over is written at a time, each decided from the
// one before (see [`Statuses`]). A precondition would only make a hand-over decided
// while the cache lagged behind the previous one's writes conflict, and the due times
// of a job whose `lastScheduleTime` was lost be counted missed.
async fn write(apis: &Apis, quiet: &Quiet, runs: Vec<JobRun>, later: Vec<Later>) -> Failed {
    let runs_failed: Vec<String> = futures::stream::iter(runs)
        .map(|mut run| async move {
            quiet.wait().await;
            run.metadata.resource_version = None;
            let api = apis.runs.in_namespace(run.metadata.namespace.as_deref().unwrap_or_default());
            match api.update_status(&run).await {
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(error = %e, run = %run.metadata.name, "cannot write a run's status");
                    Some(key_of(&run))
                }
            }
        })
        .buffer_unordered(WRITER_IN_FLIGHT)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    let jobs_failed: Vec<String> = futures::stream::iter(later)
        .map(|l| async move {
            quiet.wait().await;
            apply_later(apis, l).await
        })
        .buffer_unordered(WRITER_IN_FLIGHT)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    Failed { runs: runs_failed, jobs: jobs_failed }
}

/// Prunes a job's old runs and writes its status. Returns the job's key if its
/// status could not be written.
async fn apply_later(apis: &Apis, later: Later) -> Option<String> {
    let ns = later.job.metadata.namespace.clone().unwrap_or_default();
    let runs_api = apis.runs.in_namespace(&ns);
    for name in &later.delete {
        match runs_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::debug!(error = %e, run = %name, "cannot prune an old run"),
        }
    }
    let status = later.status?;
    let mut updated = (*later.job).clone();
    updated.status = Some(status);
    updated.metadata.resource_version = None;
    match apis.jobs.in_namespace(&ns).update_status(&updated).await {
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, job = %later.job.metadata.name, "cannot write a job's status");
            Some(key_of(&*later.job))
        }
    }
}

/// A run's status as the rounds should see it: the one last decided, if the cache
/// does not show it yet.
pub(super) fn status_of<'a>(statuses: &'a mut Statuses<JobRunStatus>, run: &'a JobRun) -> Option<&'a JobRunStatus> {
    // Every run of every job is asked each round: no key is made while none waits,
    // and no status copied.
    if statuses.pending.is_empty() {
        return run.status.as_ref();
    }
    statuses.current(&key_of(run), uid_of(run), run.status.as_ref()).or(run.status.as_ref())
}

/// An object's uid ("" before it is stored).
pub(super) fn uid_of(o: &impl corral_api::ApiObject) -> &str {
    o.meta().uid.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_would_meet_a_quiet_window_waits_until_its_end() {
        let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).expect("a time");
        let quiet = Quiet::default();
        let (wait, lasting) = (Duration::from_millis(300), Duration::from_millis(500));
        assert_eq!(quiet.past_windows(t(0), wait, lasting), wait, "no window");
        // A burst due at 200 ms: quiet from -50 ms until 1,700 ms.
        quiet.around(t(200), QUIET_MIN_RUNS);
        assert_eq!(quiet.past_windows(t(0), wait, lasting), Duration::from_millis(1_700), "starting in it");
        assert_eq!(quiet.past_windows(t(-300), wait, lasting), Duration::from_millis(2_000), "waiting into it");
        assert_eq!(quiet.past_windows(t(-800), wait, lasting), Duration::from_millis(2_500), "running into it");
        // A round that ends before the window, or starts after it, is left alone.
        assert_eq!(quiet.past_windows(t(-1_000), wait, Duration::from_millis(100)), wait);
        assert_eq!(quiet.past_windows(t(-1_000), wait, lasting), wait, "ends at -200 ms");
        let long = Duration::from_secs(3);
        assert_eq!(quiet.past_windows(t(0), long, lasting), long);
    }

    #[test]
    fn the_writer_is_quiet_from_just_before_a_staged_due_time_until_its_starts_are_reported() {
        let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).expect("a time");
        let times: BTreeSet<_> = [t(0), t(10_000)].into_iter().collect();
        let cases = [
            (t(-1_000), None, "well before"),
            (t(-250), Some(t(1_500)), "just before"),
            (t(0), Some(t(1_500)), "at the time"),
            (t(1_499), Some(t(1_500)), "while its starts are reported"),
            (t(1_500), None, "after"),
            (t(9_800), Some(t(11_500)), "just before the next"),
        ];
        for (now, want, what) in cases {
            assert_eq!(quiet_until(&times, now), want, "{what}");
        }
        assert_eq!(quiet_until(&BTreeSet::new(), t(0)), None, "nothing staged: never quiet");
    }

    #[test]
    fn only_bursts_are_kept_quiet_around_and_never_more_than_half_the_time() {
        let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).expect("a time");
        let kept: BTreeSet<_> = [t(0)].into_iter().collect();
        assert!(!keeps_quiet(&BTreeSet::new(), t(0), 1), "a run due: nothing to make way for");
        assert!(keeps_quiet(&BTreeSet::new(), t(0), 10_000), "ten thousand due at once");
        assert!(keeps_quiet(&kept, t(0), 931), "a time kept stays kept as its last runs are staged");
        assert!(!keeps_quiet(&kept, t(2_000), 10_000), "a schedule every two seconds: every other time");
        assert!(keeps_quiet(&kept, t(4_000), 10_000));
        assert!(keeps_quiet(&kept, t(10_000), 10_000), "every ten seconds: each time");
    }

    #[test]
    fn windows_past_are_dropped() {
        let quiet = Quiet::default();
        let now = Utc::now();
        quiet.around(now - chrono::Duration::seconds(10), QUIET_MIN_RUNS);
        quiet.around(now + chrono::Duration::seconds(10), QUIET_MIN_RUNS);
        assert_eq!(quiet.until(now), None);
        assert_eq!(quiet.lock().len(), 1, "the past window is gone, the coming one kept");
    }

    #[test]
    fn a_status_decided_stands_until_the_cache_shows_it() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(statuses.decided("ns/a".into(), "u1", &"succeeded", Some(&"running"), true), "idle: written now");
        assert_eq!(statuses.current("ns/a", "u1", Some(&"running")).copied(), Some("succeeded"), "the cache lags");
        assert_eq!(
            statuses.current("ns/a", "u1", Some(&"running")).copied(),
            Some("succeeded"),
            "asking does not use it up"
        );
        assert_eq!(statuses.current("ns/b", "u1", None), None, "another object has nothing decided");
        assert_eq!(
            statuses.current("ns/a", "u1", Some(&"succeeded")).copied(),
            None,
            "the cache shows it: the truth again"
        );
        assert_eq!(statuses.current("ns/a", "u1", Some(&"running")).copied(), None, "and stays so");
    }

    #[test]
    fn an_earlier_write_landing_does_not_bring_back_the_status_before_the_last_decided() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(statuses.decided("ns/a".into(), "u1", &"last=:40", Some(&"last=:30"), true));
        // The writer is still busy with it when the next due time is decided.
        assert!(!statuses.decided("ns/a".into(), "u1", &"last=:50", Some(&"last=:30"), false));
        // The first write lands: the cache shows :40, not yet :50.
        assert_eq!(statuses.current("ns/a", "u1", Some(&"last=:40")).copied(), Some("last=:50"));
    }

    #[test]
    fn a_status_handed_over_does_not_expire_while_the_writer_is_still_busy_with_it() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(statuses.decided("ns/a".into(), "u1", &"last=:40", Some(&"last=:30"), true));
        statuses.handed_over();
        statuses.pending.values_mut().for_each(|p| p.since -= UNSEEN);
        assert_eq!(statuses.current("ns/a", "u1", Some(&"last=:30")).copied(), Some("last=:40"), "still being written");
        statuses.written(&[]);
        assert_eq!(
            statuses.current("ns/a", "u1", Some(&"last=:30")).copied(),
            Some("last=:40"),
            "the cache has a moment"
        );
        statuses.pending.values_mut().for_each(|p| p.since -= UNSEEN);
        assert_eq!(
            statuses.current("ns/a", "u1", Some(&"last=:30")).copied(),
            None,
            "never seen: the cache is the truth"
        );
    }

    #[test]
    fn what_no_round_asks_about_any_more_is_dropped_when_a_later_hand_over_finishes() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(statuses.decided("ns/pruned".into(), "u1", &"succeeded", Some(&"running"), true));
        statuses.handed_over();
        statuses.written(&[]);
        statuses.pending.values_mut().for_each(|p| p.since -= UNSEEN);
        assert!(statuses.decided("ns/other".into(), "u2", &"running", None, true));
        statuses.handed_over();
        statuses.written(&[]);
        assert!(!statuses.pending.contains_key("ns/pruned"), "its run was deleted: nothing asks for it");
        assert_eq!(statuses.current("ns/other", "u2", None).copied(), Some("running"), "written just now: kept");
    }

    #[test]
    fn a_status_is_written_once_even_while_the_cache_lags_and_waits_while_the_writer_is_busy() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(!statuses.decided("ns/a".into(), "u1", &"running", Some(&"running"), true), "stored already");
        assert!(!statuses.decided("ns/a".into(), "u1", &"succeeded", Some(&"running"), false), "the writer is busy");
        assert_eq!(
            statuses.current("ns/a", "u1", Some(&"running")).copied(),
            Some("succeeded"),
            "yet the rounds decide from it"
        );
        assert!(statuses.decided("ns/a".into(), "u1", &"succeeded", Some(&"running"), true), "idle: written now");
        assert!(
            !statuses.decided("ns/a".into(), "u1", &"succeeded", Some(&"running"), true),
            "written: not again while the cache still shows the old one"
        );
        assert!(
            statuses.decided("ns/a".into(), "u1", &"failed", Some(&"running"), true),
            "a newer decision is written"
        );
    }

    #[test]
    fn a_status_decided_for_an_object_since_made_again_or_whose_write_failed_is_forgotten() {
        let mut statuses: Statuses<&str> = Statuses::default();
        assert!(statuses.decided("ns/a".into(), "u1", &"succeeded", None, true));
        assert!(statuses.decided("ns/b".into(), "u2", &"running", None, true));
        assert!(statuses.decided("ns/c".into(), "u3", &"running", None, true));
        statuses.handed_over();
        statuses.written(&["ns/a".to_string()]);
        assert_eq!(statuses.current("ns/a", "u1", None), None, "its write failed");
        assert_eq!(statuses.current("ns/b", "u2", None).copied(), Some("running"));
        assert_eq!(statuses.current("ns/c", "u4", None), None, "deleted and made again");
        assert!(statuses.decided("ns/a".into(), "u1", &"succeeded", None, true), "written again");
    }
}
