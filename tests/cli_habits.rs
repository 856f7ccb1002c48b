//! The habits a kubectl user brings, through the real binary against a real server:
//! `get -w` event types, `get all`, "did you mean", `version`, `describe KIND`,
//! `delete KIND --all`, `logs` of a task that never started, and task specs refused
//! at apply time with the field named.

mod cli_support;

use cli_support::{Env, configmap};
use serde_json::Value;

fn apply(env: &Env, file: &str, text: &str) {
    let path = env.write(file, text);
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn version_prints_client_and_server_in_kubernetes_shape() {
    let env = Env::start();
    let out = env.ok(&["version"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.starts_with(&format!("Client Version: v{version} (")), "{out}");
    assert!(out.contains(&format!("\nServer Version: v{version} (")), "{out}");

    let both: Value = serde_json::from_str(&env.ok(&["version", "-o", "json"])).unwrap();
    let major = version.split('.').next().unwrap();
    assert_eq!(both["serverVersion"]["major"], major, "{both}");
    assert_eq!(both["serverVersion"]["gitVersion"], format!("v{version}"), "{both}");
    assert!(both["clientVersion"]["platform"].as_str().is_some_and(|p| p.starts_with("linux/")), "{both}");

    // Public, as Kubernetes' /version: no token needed.
    let body: Value = reqwest::blocking::get(format!("{}/version", env.url)).unwrap().json().unwrap();
    assert_eq!(body["gitVersion"], format!("v{version}"), "{body}");

    // --client alone does not need a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &format!("http://127.0.0.1:{port}"), "version", "--client"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

