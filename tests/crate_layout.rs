//! The crates keep one job each and depend on each other one way. Read from `cargo
//! metadata` (normal and build dependencies; tests may use anything, such as the real
//! server), so that a forbidden edge fails here before it spreads.

use std::collections::BTreeSet;
use std::process::Command;

/// `(crate, dependency)` pairs that must never exist, with why.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("corral-server", "corral-agent", "the server never runs tasks; log wire types live in corral-api"),
    ("corral-server", "corral-runtime", "the server is the API only; controllers run in a manager"),
    ("corral-server", "corral-controllers", "the server is the API only; controllers run in a manager"),
    ("corral-runtime", "corral-controllers", "the runtime is the library controllers are built on, not one of them"),
    ("corral-runtime", "corral-store", "controllers reach objects through the client, never the store"),
    ("corral-runtime", "corral-server", "controllers reach the server through the client"),
    ("corral-agent", "corral-controllers", "the agent is a controller of its own node, not a manager"),
    ("corral-agent", "corral-server", "the agent reaches the server through the client"),
    ("corral-agent", "corral-store", "the agent reaches objects through the client"),
    ("corral-controllers", "corral-store", "controllers reach objects through the client, never the store"),
    ("corral-controllers", "corral-server", "controllers reach the server through the client"),
    ("corral-client", "corral-store", "the client speaks the API"),
    ("corral-client", "corral-server", "the client speaks the API; the server implements its transport"),
    ("corral-server", "corral-ui", "the server is the API; the binary serves the web interface beside it"),
];

/// Crates that depend on no other Corral crate.
const LEAVES: &[&str] = &["corral-api", "corral-telemetry", "corral-ui"];

/// Crates only tests and benchmarks may use.
const DEV_ONLY: &[&str] = &["corral-testkit", "corral-bench"];

/// The internal dependency edges `(crate, dependency)` of the workspace, normal and
/// build dependencies only.
fn edges() -> BTreeSet<(String, String)> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = BTreeSet::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            let dev = d["kind"].as_str() == Some("dev");
            if ours.contains(dep) && !dev {
                edges.insert((name.to_string(), dep.to_string()));
            }
        }
    }
    edges
}

/// Every rule `edges` breaks, in words.
fn violations(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, to) in edges {
        for (f, t, why) in FORBIDDEN {
            if from == f && to == t {
                out.push(format!("{from} depends on {to}: {why}"));
            }
        }
        if LEAVES.contains(&from.as_str()) {
            out.push(format!("{from} depends on {to}: it depends on no other Corral crate"));
        }
        if DEV_ONLY.contains(&to.as_str()) && !DEV_ONLY.contains(&from.as_str()) {
            out.push(format!("{from} depends on {to}, which only tests and benchmarks may use"));
        }
    }
    out
}

#[test]
fn crates_depend_on_each_other_one_way() {
    let edges = edges();
    assert!(edges.contains(&("corral-server".into(), "corral-store".into())), "the graph was read: {edges:?}");
    let broken = violations(&edges);
    assert!(broken.is_empty(), "forbidden dependencies:\n{}", broken.join("\n"));
}

#[test]
fn a_forbidden_edge_is_caught() {
    for (from, to, _) in FORBIDDEN {
        let mut edges = edges();
        edges.insert((from.to_string(), to.to_string()));
        let broken = violations(&edges);
        assert!(
            broken.iter().any(|v| v.starts_with(&format!("{from} depends on {to}"))),
            "{from} → {to} went unnoticed"
        );
    }
    let mut edges = edges();
    edges.insert(("corral-api".into(), "corral-client".into()));
    edges.insert(("corral-agent".into(), "corral-testkit".into()));
    assert_eq!(violations(&edges).len(), 2, "{:?}", violations(&edges));
}
