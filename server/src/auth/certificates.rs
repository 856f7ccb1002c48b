//! Client certificates for nodes: when the server speaks TLS, a joining node sends a
//! public key of its own and gets back a certificate for `system:node:NAME`, signed
//! by the server's node authority — so its private key never crosses the network
//! and the agent's credential is not a replayable secret. As kubelet's TLS
//! bootstrap, but with revocation: every certificate the authority signs is recorded
//! as a `Token` of purpose `Certificate` holding its SHA-256, and a certificate is
//! accepted only while that record exists (`corral token revoke ID` ends it; a node
//! joining again replaces it).
//!
//! The node authority is separate from the serving certificate's authority (whose
//! key `--tls-auto` does not keep): it signs only client certificates, and its key
//! stays in the data directory, readable by its owner only.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm,
};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// How long a node's certificate is valid; a node joining again gets a new one.
pub const NODE_CERTIFICATE_DAYS: i64 = 365;
/// The algorithm of nodes' keys: ECDSA over P-256, sent as an uncompressed point.
pub static NODE_KEY_ALGORITHM: &SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// The authority that signs nodes' client certificates.
pub struct NodeAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for NodeAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuthority").finish_non_exhaustive()
    }
}

/// A certificate signed for a node.
#[derive(Debug, Clone)]
pub struct Signed {
    /// PEM of the certificate.
    pub pem: String,
    /// SHA-256 of its DER encoding, as its `Token` record keeps it.
    pub sha256: [u8; 32],
    /// When it stops being valid (RFC 3339), the record's expiration too.
    pub not_after: String,
}

/// A public key a node sent: the raw uncompressed P-256 point.
struct NodeKey(Vec<u8>);

impl PublicKeyData for NodeKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        NODE_KEY_ALGORITHM
    }
}

/// The authority's own description; rebuilt identically at every start, so the
/// certificates it signs name the issuer its stored certificate has.
fn authority_params() -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Corral node authority");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("nodes-ca.crt"), dir.join("nodes-ca.key"))
}

impl NodeAuthority {
    /// The authority kept in `dir` (`nodes-ca.crt`, `nodes-ca.key`), made there the
    /// first time.
    ///
    /// # Errors
    /// A message naming the file that cannot be read, written or used.
    pub fn load_or_create(dir: &Path) -> Result<Self, String> {
        let (cert_path, key_path) = paths(dir);
        if cert_path.exists() && key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
            let ca_pem = std::fs::read_to_string(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
            return Ok(NodeAuthority { issuer: Issuer::new(authority_params()?, key), ca_pem });
        }
        let key = KeyPair::generate().map_err(|e| format!("cannot make the node authority's key: {e}"))?;
        let params = authority_params()?;
        let cert = params.self_signed(&key).map_err(|e| format!("cannot make the node authority: {e}"))?;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // The key first: a certificate without its key would be taken for a whole set.
        corral_client::credentials::write_private(&key_path, key.serialize_pem().as_bytes())
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        corral_client::credentials::write_private(&cert_path, cert.pem().as_bytes())
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        Ok(NodeAuthority { issuer: Issuer::new(params, key), ca_pem: cert.pem() })
    }

    /// PEM of the authority's certificate: what the server trusts client
    /// certificates by.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The authority's certificate, for the TLS client verifier.
    ///
    /// # Errors
    /// A message if the stored PEM holds no certificate.
    pub fn ca_der(&self) -> Result<CertificateDer<'static>, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).map_err(|e| format!("the node authority: {e}"))
    }

    /// Signs a client certificate for `user` in `group` for the raw P-256 public key
    /// `public_key` (65 bytes, `0x04 || X || Y`).
    ///
    /// # Errors
    /// A message if the key is not such a point, or signing fails.
    pub fn sign(&self, user: &str, group: &str, public_key: &[u8]) -> Result<Signed, String> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err("publicKey must be an uncompressed P-256 point (65 bytes, base64)".into());
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationName, group);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        use chrono::Datelike;
        // Whole days: a day of slack for clocks that disagree.
        let day = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
        let today = chrono::Utc::now().date_naive();
        let until = today + chrono::Duration::days(NODE_CERTIFICATE_DAYS);
        params.not_before = day(today - chrono::Duration::days(1));
        params.not_after = day(until);
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| format!("no randomness for a serial number: {e}"))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(&NodeKey(public_key.to_vec()), &self.issuer)
            .map_err(|e| format!("cannot sign the node's certificate: {e}"))?;
        Ok(Signed {
            pem: cert.pem(),
            sha256: Sha256::digest(cert.der()).into(),
            not_after: format!("{until}T00:00:00Z"),
        })
    }
}

/// The SHA-256 of a TLS client's certificate, taken once per connection; the guard
/// authenticates by it when no bearer token is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientCertificate(pub [u8; 32]);

impl ClientCertificate {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        ClientCertificate(Sha256::digest(der).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_is_made_once_and_signs_certificates_for_node_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ca = NodeAuthority::load_or_create(dir.path()).unwrap();
        let again = NodeAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.ca_pem(), again.ca_pem(), "kept, not made anew");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("nodes-ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let node_key = KeyPair::generate_for(NODE_KEY_ALGORITHM).unwrap();
        let signed = again.sign("system:node:n1", "system:nodes", node_key.public_key_raw()).unwrap();
        assert!(signed.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(chrono::DateTime::parse_from_rfc3339(&signed.not_after).is_ok());
        // rustls, as the server uses it, accepts the certificate as a client's.
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(ca.ca_der().unwrap()).unwrap();
        let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder(roots.into()).build().unwrap();
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(signed.pem.as_bytes()).unwrap();
        assert_eq!(ClientCertificate::of(&der).0, signed.sha256);
        let now = tokio_rustls::rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&der, &[], now).expect("a client certificate of the node authority");

        let other = NodeAuthority::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let stranger = other.sign("system:node:n1", "system:nodes", node_key.public_key_raw()).unwrap();
        let der = CertificateDer::from_pem_slice(stranger.pem.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&der, &[], now).is_err(), "another authority's is refused");

        assert!(ca.sign("system:node:n1", "system:nodes", &[4u8; 10]).unwrap_err().contains("P-256"));
    }
}
