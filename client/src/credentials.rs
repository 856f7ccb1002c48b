//! Credentials: bearer tokens (`<id>.<secret>`, stored by the server as the SHA-256 of
//! the secret) and the configuration file that carries the server's address and a
//! token — in kubeconfig format, so that `kubectl` reads the same file.
//!
//! [`Config::infer`] finds the file as the CLI does: `$CORRAL_CONFIG`, else
//! `~/.corral/config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Characters of a token's id and secret: lowercase letters and digits, as
/// Kubernetes' bootstrap tokens (so a token survives any shell or URL).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a token's public id.
pub const TOKEN_ID_LEN: usize = 8;
/// Length of a token's secret: 32 characters of 36, about 165 bits.
pub const TOKEN_SECRET_LEN: usize = 32;

/// A bearer token: a public id (the name of its `Token` object) and a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    /// The public id.
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").field("id", &self.id).finish_non_exhaustive()
    }
}

impl BearerToken {
    /// A new random token.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the operating system has no randomness to give.
    pub fn generate() -> Result<Self> {
        Ok(BearerToken { id: random(TOKEN_ID_LEN)?, secret: random(TOKEN_SECRET_LEN)? })
    }

    /// Reads `<id>.<secret>`; `None` when it does not have that shape.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, secret) = text.trim().split_once('.')?;
        let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
        (ok(id, TOKEN_ID_LEN) && ok(secret, TOKEN_SECRET_LEN))
            .then(|| BearerToken { id: id.to_string(), secret: secret.to_string() })
    }

    /// The lowercase hex SHA-256 of the secret: what the server stores.
    pub fn secret_hash(&self) -> String {
        hex(&Sha256::digest(self.secret.as_bytes()))
    }

    /// The SHA-256 of the secret, as bytes.
    pub fn secret_digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Whether `hash` (as stored) is this token's, compared in constant time.
    pub fn matches(&self, hash: &str) -> bool {
        constant_time_eq(self.secret_hash().as_bytes(), hash.as_bytes())
    }

    /// `<id>.<secret>`, as sent in `Authorization: Bearer`.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn random(len: usize) -> Result<String> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| Error::Invalid(format!("no randomness for a token: {e}")))?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if (b as usize) < 252 && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// Whether `a` and `b` are equal, in time that depends on their length only (so
/// that comparing secrets leaks nothing of where they differ).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The lowercase hex SHA-256 of `text`: how a webhook token is stored
/// (`spec.webhook.tokenSha256` of a Sync).
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// `bytes` as lowercase hex, as token hashes are stored.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Where a client connects and who it is.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Base URL of the API server, e.g. `http://127.0.0.1:7070`.
    pub server: String,
    /// Bearer token (`<id>.<secret>`), if any.
    pub token: Option<String>,
    /// PEM of the certificate authority the server's certificate must chain to, for
    /// `https` servers with their own CA.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate to present over TLS (a node's), with its key.
    pub client_identity: Option<ClientIdentity>,
}

/// A TLS client certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate (then its chain, if any).
    pub certificate_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("certificate_pem", &self.certificate_pem.len()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field("client_identity", &self.client_identity)
            .finish()
    }
}

/// The file the CLI reads by default: `$CORRAL_CONFIG`, else `~/.corral/config`
/// (inside a task with a service account, when there is no such file,
/// [`Config::in_task`]).
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CORRAL_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".corral").join("config"))
}

impl Config {
    /// The configuration at [`default_config_path`]; when there is no such file, the
    /// task's own ([`Config::in_task`]); else `None`.
    ///
    /// # Errors
    /// [`Error::Config`] if the file exists but cannot be read or understood.
    pub fn infer() -> Result<Option<Config>> {
        match default_config_path() {
            Some(p) if p.exists() => Config::from_kubeconfig(&p).map(Some),
            _ => Config::in_task(),
        }
    }

    /// The configuration of a task run with a service account (`spec.serviceAccount`):
    /// the API's URL from `$CORRAL_SERVER`, the token (and the authority, `ca.crt`,
    /// if any) from the directory `$CORRAL_SERVICE_ACCOUNT_DIR` names — as kube-rs
    /// reads its in-cluster configuration. `None` outside such a task.
    ///
    /// # Errors
    /// [`Error::Config`] if the directory is named but its token cannot be read.
    pub fn in_task() -> Result<Option<Config>> {
        let (Some(server), Some(dir)) = (
            std::env::var("CORRAL_SERVER").ok().filter(|s| !s.is_empty()),
            std::env::var_os("CORRAL_SERVICE_ACCOUNT_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
        ) else {
            return Ok(None);
        };
        let token_path = dir.join("token");
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| Error::Config { path: token_path.clone(), message: format!("cannot read it: {e}") })?;
        let ca_pem = std::fs::read(dir.join("ca.crt")).ok();
        Ok(Some(Config { server, token: Some(token.trim().to_string()), ca_pem, client_identity: None }))
    }

    /// Reads the current context of a kubeconfig file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file and what is wrong with it.
    pub fn from_kubeconfig(path: &Path) -> Result<Config> {
        let bad = |message: String| Error::Config { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let file: Kubeconfig = serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let context_name = file
            .current_context
            .clone()
            .or_else(|| file.contexts.first().map(|c| c.name.clone()))
            .ok_or_else(|| bad("no context: set current-context".into()))?;
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .ok_or_else(|| bad(format!("current-context {context_name:?} is not among contexts")))?;
        let cluster = file.clusters.iter().find(|c| c.name == context.context.cluster).ok_or_else(|| {
            bad(format!(
                "context {context_name:?} names cluster {:?}, which is not among clusters",
                context.context.cluster
            ))
        })?;
        let (token, client_identity) = match &context.context.user {
            Some(user) => {
                let u = file.users.iter().find(|u| u.name == *user).ok_or_else(|| {
                    bad(format!("context {context_name:?} names user {user:?}, which is not among users"))
                })?;
                let decode = |field: &str, b64: &Option<String>| -> Result<Option<Vec<u8>>> {
                    b64.as_deref()
                        .map(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()))
                        .transpose()
                        .map_err(|e| bad(format!("users[{user}].{field}: {e}")))
                };
                let cert = decode("client-certificate-data", &u.user.client_certificate_data)?;
                let key = decode("client-key-data", &u.user.client_key_data)?;
                let identity = match (cert, key) {
                    (Some(certificate_pem), Some(key_pem)) => Some(ClientIdentity { certificate_pem, key_pem }),
                    (None, None) => None,
                    _ => {
                        return Err(bad(format!(
                            "users[{user}] has one of client-certificate-data and client-key-data; it needs both"
                        )));
                    }
                };
                (u.user.token.clone(), identity)
            }
            None => (None, None),
        };
        let ca_pem = match &cluster.cluster.certificate_authority_data {
            Some(b64) => Some(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim())
                    .map_err(|e| bad(format!("clusters[{}].certificate-authority-data: {e}", cluster.name)))?,
            ),
            None => match &cluster.cluster.certificate_authority {
                Some(ca) => Some(std::fs::read(ca).map_err(|e| bad(format!("certificate-authority {ca}: {e}")))?),
                None => None,
            },
        };
        Ok(Config { server: cluster.cluster.server.clone(), token, ca_pem, client_identity })
    }

    /// Writes this configuration as a kubeconfig file readable only by its owner, with
    /// one context named `name`; replaces the file atomically.
    ///
    /// # Errors
    /// [`Error::Config`] if the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path, name: &str) -> Result<()> {
        let bad = |message: String| Error::Config { path: path.to_path_buf(), message };
        let file = Kubeconfig {
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            current_context: Some(name.into()),
            clusters: vec![NamedCluster {
                name: name.into(),
                cluster: Cluster {
                    server: self.server.clone(),
                    certificate_authority_data: self
                        .ca_pem
                        .as_ref()
                        .map(|p| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, p)),
                    certificate_authority: None,
                },
            }],
            users: vec![NamedUser {
                name: name.into(),
                user: User {
                    token: self.token.clone(),
                    client_certificate_data: self.client_identity.as_ref().map(|i| b64(&i.certificate_pem)),
                    client_key_data: self.client_identity.as_ref().map(|i| b64(&i.key_pem)),
                },
            }],
            contexts: vec![NamedContext {
                name: name.into(),
                context: Context { cluster: name.into(), user: Some(name.into()), namespace: None },
            }],
        };
        let text = serde_norway::to_string(&file).map_err(|e| bad(e.to_string()))?;
        write_private(path, text.as_bytes()).map_err(|e| bad(e.to_string()))
    }
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600), creating its
/// directory; atomically: the file is whole or as it was. For credentials.
///
/// # Errors
/// The file system's.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The parts of the kubeconfig format Corral reads and writes.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default, rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Serialize, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate_authority: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[derive(Serialize, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Serialize, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_and_matches_only_its_hash() {
        let t = BearerToken::generate().unwrap();
        let again = BearerToken::parse(&t.expose()).unwrap();
        assert_eq!(again, t);
        assert!(t.matches(&t.secret_hash()));
        let other = BearerToken::generate().unwrap();
        assert!(!t.matches(&other.secret_hash()));
        assert!(!format!("{t:?}").contains(&t.secret), "Debug must not print the secret");
        for bad in ["", "abc", "ABCDEFGH.0123456789abcdefghijklmnopqrstuv", "abcdefgh.short", "abcdefgh"] {
            assert!(BearerToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_written_kubeconfig_reads_back_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        let mut cfg = Config {
            server: "http://127.0.0.1:7070".into(),
            token: Some("x.y".into()),
            ca_pem: Some(b"PEM".to_vec()),
            client_identity: None,
        };
        cfg.write_kubeconfig(&path, "corral").unwrap();
        assert_eq!(Config::from_kubeconfig(&path).unwrap(), cfg);
        cfg.token = None;
        cfg.client_identity = Some(ClientIdentity { certificate_pem: b"CERT".to_vec(), key_pem: b"KEY".to_vec() });
        cfg.write_kubeconfig(&path, "corral").unwrap();
        assert_eq!(Config::from_kubeconfig(&path).unwrap(), cfg);
        assert!(!format!("{cfg:?}").contains("KEY"), "Debug must not print the key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_kubeconfig_naming_a_missing_user_is_refused_with_the_file_and_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "clusters: [{name: c, cluster: {server: 'http://x:1'}}]\ncontexts: [{name: k, context: {cluster: c, user: ghost}}]\ncurrent-context: k\n",
        )
        .unwrap();
        let e = Config::from_kubeconfig(&path).unwrap_err().to_string();
        assert!(e.contains("config") && e.contains("ghost"), "{e}");
    }
}
