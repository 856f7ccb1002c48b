use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("a test time").with_timezone(&Utc)
}

fn schedule(cron: &str, tz: &str) -> Compiled {
    let s = Schedule {
        id: "s".into(),
        cron: cron.into(),
        time_zone: tz.into(),
        starting_deadline_seconds: 900,
        concurrency_policy: Default::default(),
        enabled: true,
    };
    compile(&s).expect("a valid schedule")
}

/// Every time `s` fires in (from, to].
fn fires(s: &Compiled, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let (mut t, end) = (at(from), at(to));
    let mut out = Vec::new();
    while let Some(n) = s.next_after(t).filter(|n| *n <= end) {
        out.push(n);
        t = n;
    }
    out
}

#[test]
fn a_seconds_cron_fires_every_ten_seconds_strictly_after_the_time_given() {
    let s = schedule("*/10 * * * * *", "UTC");
    assert_eq!(s.next_after(at("2026-12-03T12:00:00Z")), Some(at("2026-12-03T12:00:10Z")));
    assert_eq!(s.next_after(at("2026-12-03T12:00:05Z")), Some(at("2026-12-03T12:00:10Z")));
    let five = schedule("30 2 * * *", "UTC");
    assert_eq!(five.next_after(at("2026-12-03T12:00:00Z")), Some(at("2026-12-04T02:30:00Z")));
}

#[test]
fn a_time_the_clock_skips_runs_once_when_the_clock_lands() {
    // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let s = schedule("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-28T00:00:00Z", "2026-03-30T12:00:00Z"),
        [at("2026-03-28T01:30:00Z"), at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
    );
    // Every minute of the skipped hour lands at once: one run, not sixty.
    let hourly_minutes = schedule("* 2 * * *", "Europe/Berlin");
    let that_night = fires(&hourly_minutes, "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z");
    assert_eq!(that_night, [at("2026-03-29T01:00:00Z")]);
}

#[test]
fn a_time_the_clock_passes_twice_runs_once_the_first_time() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens
    // at 00:30 and at 01:30 UTC.
    let s = schedule("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
        [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
    );
    // Asked from inside the second pass, it does not go back to the first.
    assert_eq!(s.next_after(at("2026-10-25T01:10:00Z")), Some(at("2026-10-26T01:30:00Z")));
    let quarters = schedule("*/15 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&quarters, "2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z"),
        [
            at("2026-10-25T00:00:00Z"),
            at("2026-10-25T00:15:00Z"),
            at("2026-10-25T00:30:00Z"),
            at("2026-10-25T00:45:00Z")
        ]
    );
}

#[test]
fn the_latest_due_time_runs_if_it_is_within_the_deadline_and_the_others_are_missed() {
    let s = schedule("*/10 * * * * *", "UTC");
    let p = pass(&s, at("2026-12-03T12:00:00Z"), at("2026-12-03T12:01:00Z"), Duration::from_secs(15));
    assert_eq!(
        p,
        Pass {
            run: Some(at("2026-12-03T12:01:00Z")),
            missed: 5,
            last: Some(at("2026-12-03T12:01:00Z")),
            next: Some(at("2026-12-03T12:01:10Z")),
        }
    );
    // Nothing due yet: nothing to run, the last time stays.
    let p = pass(&s, at("2026-12-03T12:00:00Z"), at("2026-12-03T12:00:09Z"), Duration::from_secs(15));
    assert_eq!((p.run, p.missed, p.last, p.next), (None, 0, None, Some(at("2026-12-03T12:00:10Z"))));
}

#[test]
fn after_a_time_staged_ahead_nothing_is_due_and_the_next_is_the_one_after_it() {
    let s = schedule("*/10 * * * * *", "UTC");
    // Acted on up to 12:00:20 (staged) at 12:00:16: nothing owed, nothing missed.
    let p = pass(&s, at("2026-12-03T12:00:20Z"), at("2026-12-03T12:00:16Z"), Duration::from_secs(15));
    assert_eq!((p.run, p.last, p.missed), (None, None, 0));
    assert_eq!(p.next, Some(at("2026-12-03T12:00:30Z")));
}

#[test]
fn a_time_missed_while_the_control_plane_was_down_runs_once_if_the_deadline_allows() {
    let hourly = schedule("0 * * * *", "UTC");
    let (since, now) = (at("2026-12-03T10:00:00Z"), at("2026-12-03T12:20:00Z"));
    let late = pass(&hourly, since, now, Duration::from_secs(900));
    assert_eq!((late.run, late.missed, late.last), (None, 2, Some(at("2026-12-03T12:00:00Z"))));
    assert_eq!(late.next, Some(at("2026-12-03T13:00:00Z")));
    let allowed = pass(&hourly, since, now, Duration::from_secs(3600));
    assert_eq!((allowed.run, allowed.missed), (Some(at("2026-12-03T12:00:00Z")), 1));
    // Acted on, it is not owed again.
    let again = pass(&hourly, allowed.last.expect("acted on"), now, Duration::from_secs(3600));
    assert_eq!((again.run, again.missed), (None, 0));
}

#[test]
fn a_day_of_missed_seconds_is_counted_short_and_the_latest_still_runs() {
    let s = schedule("* * * * * *", "UTC");
    let now = at("2026-12-03T12:00:00Z");
    let p = pass(&s, at("2026-12-02T12:00:00Z"), now, Duration::from_secs(60));
    assert_eq!(p.run, Some(now));
    assert!(p.missed > COUNT_LIMIT, "missed {}", p.missed);
    assert!(p.missed < 86_400, "the count was cut short: {}", p.missed);
}

#[test]
fn a_bad_expression_or_zone_is_refused_with_what_is_wrong() {
    let bad = |cron: &str, tz: &str| {
        compile(&Schedule {
            id: "s".into(),
            cron: cron.into(),
            time_zone: tz.into(),
            starting_deadline_seconds: 1,
            concurrency_policy: Default::default(),
            enabled: true,
        })
        .expect_err("refused")
    };
    assert!(bad("* * * *", "UTC").contains("4 fields"), "{}", bad("* * * *", "UTC"));
    assert!(bad("61 * * * *", "UTC").starts_with("cron \"61 * * * *\""));
    assert!(bad("* * * * *", "Mars/Olympus").contains("IANA"));
}
