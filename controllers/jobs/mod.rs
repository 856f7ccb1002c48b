//! Jobs: one-off and scheduled runs, as DC/OS Jobs (Metronome), on the offers.
//!
//! [`schedule`] reads cron expressions in a time zone; [`decide`] turns a job, its
//! runs and the clock into the runs to start, admit, refuse, kill and prune, and a
//! run, its tasks and the clock into its next attempt and status. Both are pure and
//! tested without I/O.
//!
//! Not yet here (issue 12 is open): the reconcile loop that applies these plans
//! through the client and launches attempts on offers as the `jobs` framework.

pub mod decide;
pub mod schedule;
