//! Shared by the tests that need a server speaking HTTPS (`corral server --tls-auto`)
//! as a separate process: the CLI's tests and the real kubectl's.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// A child process, killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `corral` binary, with no configuration of the user's.
pub fn corral() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
    c.env("CORRAL_CONFIG", "/nonexistent").env_remove("CORRAL_SERVER").env_remove("CORRAL_TOKEN");
    c
}

/// A `corral server --tls-auto` on a loopback port of its own choosing (one picked
/// beforehand could be taken by a parallel test's process first), logging to
/// `DIR/server.log`: (process, listen address, data dir). Its admin kubeconfig is
/// `DATA/admin.conf` once it is up.
pub fn tls_server(dir: &std::path::Path) -> (Proc, String, std::path::PathBuf) {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut server = Proc(
        corral()
            .args(["server", "--controllers", "none", "--tls-auto", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn,corral_server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap(),
    );
    let listen = corral_testkit::wait_logged(&mut server.0, &log, "listening url=https://");
    let admin = data.join("admin.conf");
    corral_testkit::eventually_blocking("the server writes admin.conf", || {
        corral_client::Config::from_kubeconfig(&admin).ok()
    });
    (server, listen, data)
}
