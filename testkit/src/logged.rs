//! What a process under test said in its log: above all where it listens, when it
//! chose its own port (`127.0.0.1:0`) — a port picked beforehand could be taken by a
//! parallel test's process first, whose answers would then be taken for its own.

use std::path::Path;
use std::process::Child;

/// The first word after `marker` on a line of the log at `log`, once written there.
pub fn logged(log: &Path, marker: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    Some(text.lines().find_map(|l| l.split(marker).nth(1))?.split_whitespace().next()?.to_string())
}

/// Panics, showing its log, if `child` has exited: it should be serving (a process
/// whose address was taken exits at once).
pub fn assert_running(child: &mut Child, log: &Path) {
    if let Some(status) = child.try_wait().expect("wait for a child process") {
        panic!("{} exited with {status}:\n{}", log.display(), std::fs::read_to_string(log).unwrap_or_default());
    }
}

/// Waits, within [`crate::PATIENCE`], until `child` writes `marker` to its log `log`,
/// and gives the word after it (an address, a URL); fails at once, showing the log,
/// if the child exits first.
pub fn wait_logged(child: &mut Child, log: &Path, marker: &str) -> String {
    crate::eventually_blocking(&format!("{marker:?} in {}", log.display()), || {
        assert_running(child, log);
        logged(log, marker)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_after_the_marker_is_read_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.log");
        assert_eq!(logged(&log, "url="), None, "no log yet");
        std::fs::write(&log, "INFO starting\nINFO corral API server listening url=http://127.0.0.1:4242 data_dir=/x\n")
            .expect("write");
        assert_eq!(logged(&log, "listening url=").as_deref(), Some("http://127.0.0.1:4242"));
        assert_eq!(logged(&log, "cluster DNS: "), None);
    }

    #[test]
    #[should_panic(expected = "exited with")]
    fn a_process_that_exits_before_it_says_where_it_listens_fails_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.log");
        std::fs::write(&log, "Address already in use\n").expect("write");
        let mut child = std::process::Command::new("true").spawn().expect("true runs");
        let _ = child.wait();
        wait_logged(&mut child, &log, "listening url=");
    }
}
