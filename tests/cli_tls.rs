//! Serving beyond loopback needs TLS (issue 10): `corral server` refuses a public
//! listen address without it, and with `--tls-auto` serves HTTPS only, with a
//! certificate authority of its own that the kubeconfig it writes carries, so the CLI
//! trusts exactly it. A node joining over HTTPS gets a client certificate for a key
//! of its own, which the server accepts until it is revoked.

mod agent_support;
mod tls_support;

use std::process::Stdio;

use tls_support::{Proc, corral, tls_server};

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
    let (_server, listen, data) = tls_server(dir.path());
    let admin = data.join("admin.conf");
    let config = corral_client::Config::from_kubeconfig(&admin).unwrap();
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

#[test]
fn a_node_joining_over_https_gets_a_client_certificate_for_its_own_key_until_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, listen, data) = tls_server(dir.path());
    let admin = data.join("admin.conf");
    let as_admin = |args: &[&str]| {
        let out = corral().arg("--kubeconfig").arg(&admin).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let made = corral_testkit::eventually_blocking("a join token is made", || {
        let out = corral().arg("--kubeconfig").arg(&admin).args(["token", "create", "--join"]).output().unwrap();
        out.status.success().then_some(out)
    });
    let join = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert!(String::from_utf8_lossy(&made.stderr).contains("--certificate-authority"), "the hint names the CA");

    let work = dir.path().join("agent");
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let agent = Proc(
        corral()
            .args(["--server", &format!("https://{listen}"), "--certificate-authority"])
            .arg(data.join("tls/ca.crt"))
            .args(["--token", &join, "agent", "--name", "n1", "--heartbeat-interval", "1", "--work-dir"])
            .arg(&work)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let agent_log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    // The node registers: everything it does, it does with its certificate.
    corral_testkit::eventually_blocking("the node registers over HTTPS", || {
        let out = corral().arg("--kubeconfig").arg(&admin).args(["get", "nodes", "n1", "-o", "json"]).output().ok()?;
        let node: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        node.pointer("/status/agentEndpoint").map(|_| ())
    });
    let saved = corral_client::Config::from_kubeconfig(&work.join("credential"))
        .unwrap_or_else(|e| panic!("the node's credential is a kubeconfig file: {e}\n{}", agent_log()));
    assert_eq!(saved.token, None, "a certificate, not a bearer token");
    let identity = saved.client_identity.clone().expect("a client certificate and its key");
    assert!(String::from_utf8_lossy(&identity.key_pem).contains("PRIVATE KEY"));

    // The server recorded the certificate (not its key) as the node's credential.
    let out = as_admin(&["get", "tokens", "-o", "json"]);
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records: Vec<&serde_json::Value> =
        tokens["items"].as_array().unwrap().iter().filter(|t| t["spec"]["user"] == "system:node:n1").collect();
    assert_eq!(records.len(), 1, "one credential per node: {records:?}");
    assert_eq!(records[0]["spec"]["purpose"], "Certificate");
    use sha2::Digest;
    let der = pem_body(&identity.certificate_pem);
    let hash = corral_client::credentials::hex(&sha2::Sha256::digest(&der));
    assert_eq!(records[0]["spec"]["secretHash"], hash.as_str());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let whoami = |cfg: &corral_client::Config| {
        rt.block_on(async {
            let v: serde_json::Value =
                corral_client::Client::from_config(cfg).unwrap().call_json("/auth/whoami", None).await?;
            Ok::<_, corral_client::Error>(v["user"].as_str().unwrap_or_default().to_string())
        })
    };
    assert_eq!(whoami(&saved).unwrap(), "system:node:n1");
    // A certificate of another authority does not get past the handshake.
    let other = tempfile::tempdir().unwrap();
    let authority = corral_server::auth::certificates::NodeAuthority::load_or_create(other.path()).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = authority.sign("system:node:n1", "system:nodes", key.public_key_raw()).unwrap();
    let forger = corral_client::Config {
        client_identity: Some(corral_client::ClientIdentity {
            certificate_pem: forged.pem.into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }),
        ..saved.clone()
    };
    assert!(whoami(&forger).is_err(), "a certificate the server's node authority did not sign was accepted");

    // Revoked, the certificate authenticates nobody.
    let id = records[0]["metadata"]["name"].as_str().unwrap().to_string();
    as_admin(&["token", "revoke", &id]);
    let refused = whoami(&saved).unwrap_err();
    assert!(refused.to_string().contains("401") || refused.to_string().contains("not valid"), "{refused}");
    drop(agent);
    agent_support::cleanup_work_dir(&work);
}

/// The DER bytes of the first PEM block in `pem`.
fn pem_body(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()
}
