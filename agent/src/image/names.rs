//! Image names (`name:tag`) and ids.

use crate::error::{Error, Result};

/// `name` with its tag, `:latest` when it has none, after checking the grammar:
/// slash-separated components of `[A-Za-z0-9._-]` (the first may carry a registry
/// `:port`), and a tag of `[A-Za-z0-9_.-]`, at most 128 characters, not starting with
/// `.` or `-`.
pub(crate) fn normalize(name: &str) -> Result<String> {
    let bad = |why: &str| Error::Invalid(format!("image name {name:?}: {why}; expected name[:tag], e.g. busybox:1.36"));
    // The tag follows the last colon, unless that colon is a registry port's.
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    };
    if repo.is_empty() || repo.len() > 255 {
        return Err(bad("the name is empty or too long"));
    }
    for (i, part) in repo.split('/').enumerate() {
        let host_port = i == 0 && repo.contains('/');
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (host_port && c == ':');
        if !part.starts_with(|c: char| c.is_ascii_alphanumeric()) || !part.chars().all(ok_char) {
            return Err(bad(
                "names are '/'-separated parts of letters, digits, '.', '_' and '-', each starting with a letter or digit",
            ));
        }
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !tag_ok {
        return Err(bad("a tag is 1 to 128 letters, digits, '.', '_' or '-'"));
    }
    if repo.len() == 64 && is_hex(repo) {
        return Err(bad("a 64-digit hex name would be mistaken for an image id"));
    }
    Ok(format!("{repo}:{tag}"))
}

/// Whether `s` is made of lowercase hex digits only.
pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A full image or blob id: 64 lowercase hex digits, with or without `sha256:`.
pub(crate) fn full_id(s: &str) -> Result<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() == 64 && is_hex(hex) {
        Ok(hex)
    } else {
        Err(Error::Invalid(format!("{s:?} is not an image id (64 hex digits)")))
    }
}

/// The hex of a `sha256:<hex>` digest from an archive; other algorithms are refused.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && is_hex(hex) => Ok(hex),
        _ => Err(Error::Invalid(format!("unsupported digest {digest:?}: only sha256:<64 hex digits> is supported"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_latest_when_untagged() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(normalize("localhost:5000/team/app").unwrap(), "localhost:5000/team/app:latest");
        assert_eq!(normalize("localhost:5000/team/app:v2").unwrap(), "localhost:5000/team/app:v2");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", ":tag", "a b", "a:", "a:-x", "x/../y:1", "a//b", "a@sha256:00"] {
            assert!(normalize(name).is_err(), "{name}");
        }
        assert!(normalize(&"a".repeat(64)).is_err());
    }
}
