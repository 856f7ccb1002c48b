//! Serving beyond loopback needs TLS (issue 10): `corral server` refuses a public
//! listen address without it, and with `--tls-auto` serves HTTPS only, with a
//! certificate authority of its own that the kubeconfig it writes carries, so the CLI
//! trusts exactly it.

use std::process::{Command, Stdio};

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn corral() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
    c.env("CORRAL_CONFIG", "/nonexistent").env_remove("CORRAL_SERVER").env_remove("CORRAL_TOKEN");
    c
}

#[test]
fn a_public_listen_address_without_tls_is_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before anything binds: the test listens on nothing beyond loopback.
    let out = corral()
        .args(["server", "--controllers", "none", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("without TLS") && stderr.contains("--tls-auto"), "{stderr}");
}

#[test]
fn with_tls_auto_the_server_speaks_https_only_and_the_cli_trusts_its_own_authority() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Proc(
        corral()
            .args(["server", "--controllers", "none", "--tls-auto", "--listen", &listen, "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let admin = data.join("admin.conf");
    let config = corral_testkit::eventually_blocking("the server writes admin.conf", || {
        corral_client::Config::from_kubeconfig(&admin).ok()
    });
    assert_eq!(config.server, format!("https://{listen}"));
    let ca = config.ca_pem.clone().expect("the kubeconfig carries the authority");
    assert_eq!(ca, std::fs::read(data.join("tls/ca.crt")).unwrap());
    let get = || corral().arg("--kubeconfig").arg(&admin).args(["get", "namespaces", "-o", "name"]).output().unwrap();
    let out = corral_testkit::eventually_blocking("the CLI lists namespaces over HTTPS", || {
        let out = get();
        out.status.success().then_some(out)
    });
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(names.contains("namespace/corral-system"), "{names}");

    // Plain HTTP to the same port gets no answer from the API.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plain = rt.block_on(async {
        reqwest::Client::new().get(format!("http://{listen}/healthz")).send().await.map(|r| r.status().as_u16())
    });
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that trusts another authority refuses the server.
    let other = tempfile::tempdir().unwrap();
    let stranger = corral_server::tls::generate(other.path(), &["localhost".to_string()]).unwrap();
    let foreign =
        corral_client::Config { ca_pem: Some(std::fs::read(stranger.ca.unwrap()).unwrap()), ..config.clone() };
    let refused = rt.block_on(async { corral_client::Client::from_config(&foreign).unwrap().kinds().await });
    assert!(refused.is_err(), "a server certificate from another authority was trusted");
    // Started again, the server keeps its authority: clients need nothing new.
    let fingerprint = corral_server::tls::fingerprint(&ca);
    let again = corral_server::tls::generate(&data.join("tls"), &[]).unwrap();
    assert_eq!(corral_server::tls::fingerprint(&corral_server::tls::trust_pem(&again).unwrap()), fingerprint);
}
