//! Naming rules. Names become DNS labels, so they follow RFC 1123.

/// Longest allowed name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an RFC 1123 label: lowercase alphanumerics and `-`, starting and ending
/// with an alphanumeric, at most 63 characters. Returns why it is not one.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters (has {})", name.len()));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = name.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "{name:?} is not an RFC 1123 label: {bad:?} is not allowed (use lowercase letters, digits and '-')"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{name:?} is not an RFC 1123 label: it must start and end with a letter or digit"));
    }
    Ok(())
}

/// Checks a label or annotation key: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters of alphanumerics, `-`, `_` and `.`.
pub fn check_qualified_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 {
            return Err(format!("prefix of {key:?} must be 1 to 253 characters"));
        }
        for label in p.split('.') {
            check_dns_label(label).map_err(|e| format!("prefix of {key:?}: {e}"))?;
        }
    }
    check_label_value(name).map_err(|e| format!("key {key:?}: {e}"))?;
    if name.is_empty() {
        return Err(format!("key {key:?} has an empty name"));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of alphanumerics, `-`, `_`
/// and `.`, starting and ending with an alphanumeric.
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 63 {
        return Err(format!("{v:?} is longer than 63 characters"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !v.chars().all(ok) {
        return Err(format!("{v:?} may contain only letters, digits, '-', '_' and '.'"));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(v.chars().next()) || !edge_ok(v.chars().last()) {
        return Err(format!("{v:?} must start and end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_follow_rfc1123() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("1web").is_ok());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("-web").is_err());
        assert!(check_dns_label("web-").is_err());
        assert!(check_dns_label("we_b").is_err());
        assert!(check_dns_label("").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn qualified_keys_allow_a_dns_prefix() {
        assert!(check_qualified_key("app").is_ok());
        assert!(check_qualified_key("corral.dev/role").is_ok());
        assert!(check_qualified_key("Corral.dev/role").is_err());
        assert!(check_qualified_key("corral.dev/").is_err());
        assert!(check_qualified_key("a b").is_err());
    }
}
