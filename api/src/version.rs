//! The build a program was made from, in the shape of Kubernetes' `version.Info`
//! (`GET /version`), so that `kubectl version` and `corral version` read it alike.

use serde::{Deserialize, Serialize};

/// What `GET /version` answers and `corral version` prints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The major version, `"0"`.
    pub major: String,
    /// The minor version, `"1"`.
    pub minor: String,
    /// `v` and the full version: `v0.1.0`.
    pub git_version: String,
    /// The commit built, when the build was told it (`CORRAL_GIT_COMMIT`); else empty.
    #[serde(default)]
    pub git_commit: String,
    /// `clean` or `dirty` when known; else empty.
    #[serde(default)]
    pub git_tree_state: String,
    /// When the build was made, when known; else empty.
    #[serde(default)]
    pub build_date: String,
    /// Kubernetes names its compiler's version here; kept empty, the field is there
    /// because clients decode it.
    #[serde(default)]
    pub go_version: String,
    /// `rustc`, the compiler.
    #[serde(default)]
    pub compiler: String,
    /// `OS/ARCH` in Go's words: `linux/amd64`, `linux/arm64`.
    pub platform: String,
}

impl VersionInfo {
    /// The version of a crate (`env!("CARGO_PKG_VERSION")` of the caller, so that each
    /// binary reports its own), on the platform this was compiled for.
    pub fn of(package_version: &str) -> Self {
        let mut parts = package_version.split('.');
        let major = parts.next().unwrap_or_default().to_string();
        let minor = parts.next().unwrap_or_default().to_string();
        VersionInfo {
            major,
            minor,
            git_version: format!("v{package_version}"),
            git_commit: option_env!("CORRAL_GIT_COMMIT").unwrap_or_default().to_string(),
            git_tree_state: String::new(),
            build_date: String::new(),
            go_version: String::new(),
            compiler: "rustc".to_string(),
            platform: platform(),
        }
    }
}

/// `OS/ARCH` with Go's architecture names, which Kubernetes tools expect.
pub fn platform() -> String {
    format!("{}/{}", std::env::consts::OS, arch())
}

/// This machine's architecture by Go's names, as Kubernetes and OCI images use them
/// (`amd64`, `arm64`).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_info_splits_the_package_version_as_kubernetes_does() {
        let v = VersionInfo::of("0.1.0");
        assert_eq!((v.major.as_str(), v.minor.as_str(), v.git_version.as_str()), ("0", "1", "v0.1.0"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["gitVersion"], "v0.1.0");
        assert!(json["platform"].as_str().is_some_and(|p| p.contains('/')), "{json}");
    }
}
