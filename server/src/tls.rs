//! TLS for the API: bearer tokens must not cross a network in clear text, so a server
//! listening beyond loopback serves HTTPS only. Certificates come from files
//! (`--tls-cert`, `--tls-key`), or the server makes a certificate authority and a
//! server certificate of its own once (`--tls-auto`), whose CA goes into the
//! kubeconfig files it writes, so that clients trust exactly it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server's certificate and key are.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    /// PEM: the server's certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the certificate's private key.
    pub key: PathBuf,
    /// PEM: the authority clients should trust; when absent, the last certificate of
    /// `cert` (a self-signed one, or the chain's root).
    pub ca: Option<PathBuf>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Accepts TLS connections with `cfg`'s certificate, offering HTTP/2 and HTTP/1.1.
/// With `client_ca`, a client may present a certificate, which must chain to it
/// (nodes do; others send bearer tokens and no certificate).
///
/// # Errors
/// A message naming the file that cannot be read or used.
pub fn acceptor(cfg: &TlsConfig, client_ca: Option<CertificateDer<'static>>) -> Result<TlsAcceptor, String> {
    let chain = certs(&cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| format!("{}: {e}", cfg.key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).map_err(|e| format!("the node authority: {e}"))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("the node authority: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", cfg.cert.display(), cfg.key.display()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// PEM of the authority clients of this server should trust.
///
/// # Errors
/// A message naming the file that cannot be read.
pub fn trust_pem(cfg: &TlsConfig) -> Result<Vec<u8>, String> {
    match &cfg.ca {
        Some(ca) => std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display())),
        None => {
            let last = certs(&cfg.cert)?.pop().ok_or_else(|| format!("{}: empty", cfg.cert.display()))?;
            Ok(pem("CERTIFICATE", &last))
        }
    }
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// The SHA-256 fingerprint of the first certificate in `pem`, as `AB:CD:…`, for
/// people to compare out of band.
pub fn fingerprint(pem: &[u8]) -> String {
    match CertificateDer::pem_slice_iter(pem).next() {
        Some(Ok(der)) => Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"),
        _ => "unreadable".into(),
    }
}

/// Makes a certificate authority and a server certificate for `hosts` (names and
/// addresses) in `dir`, unless they are there already; returns where they are. The
/// authority's key is not kept: nothing can sign another certificate in its name.
///
/// # Errors
/// A message saying what could not be made or written.
pub fn generate(dir: &Path, hosts: &[String]) -> Result<TlsConfig, String> {
    let cfg = TlsConfig { cert: dir.join("server.crt"), key: dir.join("server.key"), ca: Some(dir.join("ca.crt")) };
    if cfg.cert.exists() && cfg.key.exists() && dir.join("ca.crt").exists() {
        return Ok(cfg);
    }
    let fail = |e: rcgen::Error| format!("cannot make a certificate: {e}");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Corral CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().map_err(fail)?).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(fail)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "corral server");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The key first: certificates without it would be taken for a finished set.
    let ca_path = dir.join("ca.crt");
    corral_client::credentials::write_private(&cfg.key, key.serialize_pem().as_bytes())
        .and_then(|()| std::fs::write(&cfg.cert, format!("{}{}", cert.pem(), ca.pem())))
        .and_then(|()| std::fs::write(&ca_path, ca.pem()))
        .map_err(|e| format!("cannot write the certificates in {}: {e}", dir.display()))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_authority_signs_a_certificate_the_server_can_use_and_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cfg = generate(dir.path(), &hosts).unwrap();
        acceptor(&cfg, None).expect("the server takes its certificate");
        let ca = trust_pem(&cfg).unwrap();
        let first = fingerprint(&ca);
        assert_eq!(first.len(), 32 * 3 - 1, "{first}");
        let again = generate(dir.path(), &hosts).unwrap();
        assert_eq!(fingerprint(&trust_pem(&again).unwrap()), first, "kept, not made anew");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cfg.key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("ca.key").exists());
    }
}
