//! When a schedule is due: a cron expression read in an IANA time zone.
//!
//! The expression is matched against the wall clock of the zone, then each matching
//! wall-clock time is placed on the real time line. Two daylight-saving rules follow
//! (as Vixie cron and DC/OS Jobs users expect):
//! - a time the clock skips (02:30 on the night it jumps from 02:00 to 03:00) runs
//!   once, when the clock lands (03:00), and times that land together run once;
//! - a time the clock passes twice (01:30 on the night it falls back) runs once,
//!   the first time.
//!
//! Everything here is pure: the clock is an argument.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use corral_api::kinds::job::Schedule;

/// Wall-clock times looked at before a search gives up: a second-by-second
/// expression walks through at most one repeated hour (3,600) before it passes
/// `after`; anything longer is an expression that never matches.
const SEARCH_LIMIT: usize = 10_000;

/// Due times counted one by one before the count is cut short: a seconds cron
/// across a day of downtime would be 86,400.
const COUNT_LIMIT: u64 = 1_000;

/// A schedule ready to be asked when it fires.
#[derive(Clone, Debug)]
pub struct Compiled {
    cron: croner::Cron,
    tz: Tz,
}

/// Expressions kept compiled per thread, at most; past that the memo starts over.
const MEMO_LIMIT: usize = 4096;

thread_local! {
    /// `(cron, timeZone)` → what [`compile`] made of it: thousands of jobs share a
    /// few expressions, and a round asks for each job's every time.
    static MEMO: std::cell::RefCell<std::collections::HashMap<(String, String), Result<Compiled, String>>> =
        std::cell::RefCell::default();
}

/// Reads the schedule's expression and time zone; the error says which is wrong
/// and why, for the job's status. The same expression and zone are read once per
/// thread (the answer cannot change).
pub fn compile(s: &Schedule) -> Result<Compiled, String> {
    let key = (s.cron.clone(), s.time_zone.clone());
    if let Some(known) = MEMO.with_borrow(|m| m.get(&key).cloned()) {
        return known;
    }
    let compiled = compile_anew(s);
    MEMO.with_borrow_mut(|m| {
        if m.len() >= MEMO_LIMIT {
            m.clear();
        }
        m.insert(key, compiled.clone());
    });
    compiled
}

fn compile_anew(s: &Schedule) -> Result<Compiled, String> {
    let tz: Tz = s.time_zone.parse().map_err(|_| {
        format!("timeZone {:?} is not an IANA time zone name (such as Europe/Berlin or UTC)", s.time_zone)
    })?;
    let cron = parse_cron(&s.cron).map_err(|e| format!("cron {:?}: {e}", s.cron))?;
    Ok(Compiled { cron, tz })
}

/// Parses a five-field expression, or six with seconds first.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("{fields} fields; five (minute hour day month weekday) or six (seconds first)"));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

impl Compiled {
    /// The first time after `after` (strictly) that the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The wall clock at `after`; in a repeated hour, its second pass reads
        // like the first, and the times of the first are passed over below.
        let mut wall = after.with_timezone(&self.tz).naive_local();
        for _ in 0..SEARCH_LIMIT {
            let next = self.cron.find_next_occurrence(&wall.and_utc(), false).ok()?.naive_utc();
            let at = self.instant(next)?;
            if at > after {
                return Some(at);
            }
            wall = next;
        }
        None
    }

    /// The real time of wall-clock time `wall`: the first if the clock passes it
    /// twice, the moment the clock lands if it skips it.
    fn instant(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // Zones move their clocks on whole minutes: the first minute that
                // exists after `wall` is where the clock lands.
                let mut probe = wall.with_second(0)?.with_nanosecond(0)?;
                for _ in 0..(48 * 60) {
                    probe += chrono::Duration::minutes(1);
                    if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = self.tz.from_local_datetime(&probe) {
                        return Some(t.with_timezone(&Utc));
                    }
                }
                None
            }
        }
    }
}

/// What a schedule owes between the last time it acted on and now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pass {
    /// The time to start a run for: the latest due time, if it is within the
    /// starting deadline.
    pub run: Option<DateTime<Utc>>,
    /// Due times that will never run: all but the latest, and the latest too when
    /// it is past the deadline. At most `COUNT_LIMIT` plus one are counted.
    pub missed: u64,
    /// The latest due time, run or missed: the schedule's new `lastScheduleTime`.
    pub last: Option<DateTime<Utc>>,
    /// The next time it fires after now.
    pub next: Option<DateTime<Utc>>,
}

/// The times `schedule` came due after `since` (its last acted-on time, or when the
/// job was made) up to `now`, sorted into the one to run and those missed.
pub fn pass(schedule: &Compiled, since: DateTime<Utc>, now: DateTime<Utc>, deadline: Duration) -> Pass {
    let window_start = now - chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX);
    let mut p = Pass::default();
    let mut at = since;
    let mut counted = 0u64;
    while let Some(t) = schedule.next_after(at).filter(|t| *t <= now) {
        // A later due time exists: the one before will never run.
        if p.last.is_some() {
            p.missed += 1;
        }
        p.last = Some(t);
        at = t;
        counted += 1;
        if counted == COUNT_LIMIT && at < window_start {
            // Too many to count one by one: the rest before the deadline's window
            // are missed whatever their number; the search goes on from there.
            at = window_start;
        }
    }
    match p.last {
        Some(t) if t >= window_start => p.run = Some(t),
        Some(_) => p.missed += 1,
        None => {}
    }
    // After a time staged ahead (`since` beyond now), the next is the one after it.
    p.next = schedule.next_after(p.last.unwrap_or(since).max(now));
    p
}

#[cfg(test)]
mod tests;
