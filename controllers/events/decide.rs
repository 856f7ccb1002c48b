//! When an event expires: a pure function of its timestamps, the clock and the
//! time to live.

use std::time::Duration;

use corral_api::table::parse_rfc3339;

/// What to do with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// It has outlived its time to live.
    Delete,
    /// It lives this much longer: look again then.
    KeepFor(Duration),
}

/// The step for an event last seen at `last` (its `lastTimestamp`, else its
/// `firstTimestamp`, else its creation; RFC 3339), at `now` (Unix seconds), when
/// events live `ttl` after they last occurred. An event with no readable time is
/// kept for a whole `ttl` from now: the next look finds it again, and it goes then at
/// the latest (its creation time is always set by the server).
pub fn decide(last: &[Option<&str>], now: i64, ttl: Duration) -> Step {
    let Some(seen) = last.iter().flatten().find_map(|t| parse_rfc3339(t)) else {
        return Step::KeepFor(ttl);
    };
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let expires = seen.saturating_add(ttl_secs);
    if now >= expires {
        Step::Delete
    } else {
        // One second late rather than early: the timestamps have whole seconds.
        Step::KeepFor(Duration::from_secs(u64::try_from(expires - now).unwrap_or(0) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    // 2026-01-01T00:00:00Z
    const NEW_YEAR: i64 = 1_767_225_600;

    #[test]
    fn an_event_goes_a_ttl_after_it_last_occurred() {
        let last = [Some("2026-01-01T00:00:00Z"), Some("2025-12-31T00:00:00Z")];
        assert_eq!(decide(&last, NEW_YEAR + 3599, HOUR), Step::KeepFor(Duration::from_secs(2)));
        assert_eq!(decide(&last, NEW_YEAR + 3600, HOUR), Step::Delete);
        assert_eq!(decide(&last, NEW_YEAR + 86_400, HOUR), Step::Delete);
    }

    #[test]
    fn a_repeat_keeps_it_and_missing_times_fall_back_in_order() {
        // lastTimestamp moved on (a repeat): judged by it, not by the first time.
        let repeated = [Some("2026-01-01T00:59:00Z"), Some("2026-01-01T00:00:00Z"), None];
        assert_eq!(decide(&repeated, NEW_YEAR + 3600, HOUR), Step::KeepFor(Duration::from_secs(3541)));
        let by_creation = [None, Some("not a time"), Some("2026-01-01T00:00:00Z")];
        assert_eq!(decide(&by_creation, NEW_YEAR + 7200, HOUR), Step::Delete);
        assert_eq!(decide(&[None, None, None], NEW_YEAR, HOUR), Step::KeepFor(HOUR));
    }
}
