//! Repository names, tags and digests, and what a `/v2/…` path asks for.

use super::error::{RegistryError, Result};

/// A `sha256:<64 hex>` digest, the only algorithm this registry stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    ///
    /// # Errors
    /// [`RegistryError::DigestInvalid`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                Ok(Digest { hex: hex.to_string() })
            }
            _ => Err(RegistryError::DigestInvalid(format!(
                "{text:?}: expected sha256:<64 lowercase hex digits> (the only algorithm supported)"
            ))),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest { hex: hex(&sha2::Sha256::digest(bytes)) }
    }

    /// From a finished hasher.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Digest { hex: hex(&hasher.finalize()) }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a repository name: `/`-separated components of lowercase letters and
/// digits, joined by single `.`, `_`, `__` or `-` runs, as the specification's
/// grammar (simplified: any run of separators between alphanumerics is allowed).
///
/// # Errors
/// [`RegistryError::NameInvalid`].
pub fn check_name(name: &str) -> Result<()> {
    let bad = || {
        RegistryError::NameInvalid(format!(
            "{name:?}: a repository name is '/'-separated parts of lowercase letters and digits joined by '.', '_' or '-'"
        ))
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    for part in name.split('/') {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = part.starts_with(alnum)
            && part.ends_with(alnum)
            && part.chars().all(|c| alnum(c) || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// Whether `tag` is a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(String),
    /// By digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a tag or `sha256:…`.
    ///
    /// # Errors
    /// [`RegistryError::DigestInvalid`] or [`RegistryError::NameInvalid`].
    pub fn parse(text: &str) -> Result<Self> {
        if text.contains(':') {
            Digest::parse(text).map(Reference::Digest)
        } else if is_tag(text) {
            Ok(Reference::Tag(text.to_string()))
        } else {
            Err(RegistryError::NameInvalid(format!("{text:?} is neither a tag nor a digest")))
        }
    }
}

/// What a path under `/v2/` addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/` itself: the version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(String, String),
    /// `/v2/<name>/blobs/uploads/` (a new upload).
    Uploads(String),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(String, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(String, String),
}

impl Route {
    /// The route of `path` (which starts `/v2`), or `None` when it addresses nothing.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v2")?;
        let rest = match rest {
            "" | "/" => return Some(Route::Base),
            r => r.strip_prefix('/')?,
        };
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Route::Tags(name.to_string()));
        }
        // The last marker wins: a repository may itself be named `x/manifests/y`.
        let markers = ["/blobs/uploads/", "/blobs/uploads", "/manifests/", "/blobs/"];
        let (at, marker) = markers.iter().filter_map(|m| rest.rfind(m).map(|i| (i, *m))).max_by_key(|(i, m)| {
            // At the same position, the longer marker is the meant one.
            (*i, m.len())
        })?;
        let name = rest[..at].to_string();
        let tail = &rest[at + marker.len()..];
        match marker {
            "/blobs/uploads/" if tail.is_empty() => Some(Route::Uploads(name)),
            "/blobs/uploads/" if !tail.contains('/') => Some(Route::Upload(name, tail.to_string())),
            "/blobs/uploads" if tail.is_empty() => Some(Route::Uploads(name)),
            "/manifests/" if !tail.is_empty() && !tail.contains('/') => Some(Route::Manifest(name, tail.to_string())),
            "/blobs/" if !tail.is_empty() && !tail.contains('/') => Some(Route::Blob(name, tail.to_string())),
            _ => None,
        }
    }

    /// The repository the route addresses, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n) | Route::Manifest(n, _) | Route::Uploads(n) | Route::Upload(n, _) | Route::Blob(n, _) => {
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_repository_and_target() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Route::parse("/v2/"), Some(Route::Base));
        assert_eq!(Route::parse("/v2"), Some(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(Route::parse("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(Route::parse("/v2/busybox/manifests/1"), Some(Route::Manifest("busybox".into(), "1".into())));
        assert_eq!(Route::parse(&format!("/v2/x/y/blobs/{d}")), Some(Route::Blob("x/y".into(), d.clone())));
        assert_eq!(Route::parse("/v2/x/blobs/uploads/"), Some(Route::Uploads("x".into())));
        assert_eq!(Route::parse("/v2/x/blobs/uploads/abc"), Some(Route::Upload("x".into(), "abc".into())));
        assert_eq!(Route::parse("/v2/x/elsewhere"), None);
        assert_eq!(Route::parse("/v3/x"), None);
    }

    #[test]
    fn names_and_references_follow_the_grammar() {
        assert!(check_name("busybox").is_ok());
        assert!(check_name("team/app-1.2_x").is_ok());
        for bad in ["", "Busybox", "a//b", "-a", "a-", "../a", "a/_x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(matches!(Reference::parse("1.36"), Ok(Reference::Tag(_))));
        assert!(matches!(Reference::parse(&format!("sha256:{}", "0".repeat(64))), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:00").is_err());
        assert!(Reference::parse("-x").is_err());
    }
}
