//! How often one service is decided again while its instances keep changing.
//!
//! A service's records are made from all of its instances: each round in which one of
//! them starts, stops or turns healthy decides the whole service again. While a large
//! load comes up, a thousand services of a hundred instances each had some instance
//! change in nearly every round, and deciding them again and again was about a sixth
//! of the control plane's CPU (`perf`, `corral-bench services`). So a service decided
//! less than [`SERVICE_EVERY`] ago is held back until that much time has passed, its
//! changes gathered meanwhile; the first change after a quiet spell is decided at once.
//! Tasks' own names (`TASK.NAMESPACE.task.corral.`) are never held back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::state::{Dirty, Key};

/// Least time between two decisions of one service, while its instances keep
/// changing. Mesos-DNS answered from a state read every 60 s; a service here lags its
/// instances by at most this much.
pub const SERVICE_EVERY: Duration = Duration::from_millis(500);

/// When each service was last decided, and the services held back.
#[derive(Debug, Default)]
pub struct Pacing {
    /// When each service was last handed to a round.
    last: HashMap<Key, Instant>,
    /// Services held back, each with when it is due.
    held: HashMap<Key, Instant>,
}

impl Pacing {
    /// Holds back the services of `dirty` decided less than `every` before `now`, and
    /// hands back those held whose time has come. Returns when the next one held is
    /// due, if any. A round of everything (`dirty.all`) holds nothing back.
    pub fn pace(&mut self, dirty: &mut Dirty, now: Instant, every: Duration) -> Option<Instant> {
        if dirty.all {
            self.held.clear();
            self.last.clear();
            return None;
        }
        let due: Vec<Key> = self.held.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            self.held.remove(&key);
            dirty.services.insert(key);
        }
        for key in std::mem::take(&mut dirty.services) {
            match self.last.get(&key) {
                Some(at) if now < *at + every => {
                    self.held.insert(key, *at + every);
                }
                _ => {
                    self.last.insert(key.clone(), now);
                    dirty.services.insert(key);
                }
            }
        }
        // What was decided long enough ago paces nothing: forgotten, now and then.
        if self.last.len() > 1024 + 2 * self.held.len() {
            self.last.retain(|_, at| now < *at + every);
        }
        self.held.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("default".to_string(), name.to_string())
    }

    fn marking(names: &[&str]) -> Dirty {
        Dirty { services: names.iter().map(|n| key(n)).collect(), ..Dirty::default() }
    }

    fn names(d: &Dirty) -> Vec<String> {
        let mut n: Vec<String> = d.services.iter().map(|(_, name)| name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn a_service_decided_lately_waits_for_its_time_and_changes_meanwhile_merge() {
        let every = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut p = Pacing::default();
        let mut d = marking(&["web", "db"]);
        assert_eq!(p.pace(&mut d, t0, every), None, "first changes are decided at once");
        assert_eq!(names(&d), ["db", "web"]);

        // 100 ms later web changes twice more: held until 500 ms after its decision.
        let mut d = marking(&["web"]);
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(100), every), Some(t0 + every));
        assert!(d.services.is_empty());
        let mut d = marking(&["web"]);
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(300), every), Some(t0 + every));
        assert!(d.services.is_empty());

        // A round before its time hands nothing; at its time it is decided, once.
        let mut d = Dirty::default();
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(499), every), Some(t0 + every));
        assert!(d.is_empty());
        let mut d = Dirty::default();
        assert_eq!(p.pace(&mut d, t0 + every, every), None);
        assert_eq!(names(&d), ["web"]);

        // db, quiet since t0, is decided at once when it changes after its time.
        let mut d = marking(&["db"]);
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(700), every), None);
        assert_eq!(names(&d), ["db"]);
    }

    #[test]
    fn tasks_nodes_and_everything_are_never_held_back() {
        let every = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut p = Pacing::default();
        p.pace(&mut marking(&["web"]), t0, every);
        let mut d = marking(&["web"]);
        d.tasks.insert(key("web-1"));
        d.nodes.insert("n1".into());
        assert!(p.pace(&mut d, t0 + Duration::from_millis(10), every).is_some());
        assert!(d.services.is_empty());
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(d.nodes.len(), 1);

        // A round of everything decides every service: nothing stays held.
        let mut d = Dirty { all: true, ..Dirty::default() };
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(20), every), None);
        let mut d = marking(&["web"]);
        assert_eq!(p.pace(&mut d, t0 + Duration::from_millis(30), every), None);
        assert_eq!(names(&d), ["web"]);
    }
}
