use proptest::prelude::*;
use serde_json::json;

use super::*;
use corral_api::transaction::Verb;

const LABEL: &str = "team.site";

fn doc(source: &str, index: usize, value: Value) -> Document {
    Document { source: source.into(), index, item: None, value, file_no: 1 }
}

fn served(api_version: &str, kind: &str) -> Option<bool> {
    match (api_version, kind) {
        ("corral.dev/v1", "Namespace") => Some(false),
        ("corral.dev/v1", "CustomResourceDefinition") => Some(false),
        ("corral.dev/v1", "ConfigMap" | "Service" | "Job") => Some(true),
        _ => None,
    }
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name}, "spec": {"data": data}})
}

fn entry(kind: &str, ns: Option<&str>, name: &str) -> InventoryEntry {
    InventoryEntry {
        api_version: "corral.dev/v1".into(),
        kind: kind.into(),
        namespace: ns.map(str::to_string),
        name: name.into(),
    }
}

fn wanted(docs: &[Document]) -> Vec<Desired> {
    desired(docs, &[], &served, LABEL, "team").expect("valid")
}

#[test]
fn namespaces_and_definitions_come_first_then_waves_then_file_order() {
    let docs = vec![
        doc("a.yaml", 1, cm("late", json!({}))),
        doc("a.yaml", 2, {
            let mut v = cm("early", json!({}));
            v["metadata"]["annotations"] = json!({WAVE_ANNOTATION: "-1"});
            v
        }),
        doc("b.yaml", 1, json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "team"}})),
        doc("c.yaml", 1, cm("plain", json!({}))),
    ];
    let names: Vec<String> = wanted(&docs).iter().map(|d| d.entry.name.clone()).collect();
    assert_eq!(names, ["team", "early", "late", "plain"]);
}

#[test]
fn objects_get_the_label_and_the_default_namespace_and_cluster_objects_none() {
    let docs = vec![
        doc("a.yaml", 1, cm("x", json!({}))),
        doc(
            "a.yaml",
            2,
            json!({"apiVersion": "corral.dev/v1", "kind": "Namespace",
            "metadata": {"name": "n", "namespace": "ignored"}}),
        ),
    ];
    let d = wanted(&docs);
    assert_eq!(d[0].entry, entry("Namespace", None, "n"));
    assert!(d[0].object["metadata"].get("namespace").is_none());
    assert_eq!(d[1].entry, entry("ConfigMap", Some("team"), "x"));
    assert_eq!(d[1].object["metadata"]["namespace"], "team");
    assert_eq!(d[1].object["metadata"]["labels"][SYNC_LABEL], LABEL);
}

#[test]
fn every_bad_manifest_is_named_by_file_document_and_field() {
    let docs = vec![
        doc("a.yaml", 1, json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {}})),
        doc("a.yaml", 2, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})),
        doc("b.yaml", 3, cm("dup", json!({}))),
        doc("c.yaml", 1, cm("dup", json!({}))),
    ];
    let problems = vec![Problem {
        order: (9, 2, 0),
        place: "d.yaml: document 2".into(),
        object: None,
        field: None,
        message: "invalid YAML".into(),
    }];
    let errors = desired(&docs, &problems, &served, LABEL, "team").expect_err("invalid");
    let shown: Vec<(Option<&str>, Option<usize>, Option<&str>)> =
        errors.iter().map(|e| (e.file.as_deref(), e.document, e.field.as_deref())).collect();
    assert_eq!(
        shown,
        vec![
            (Some("d.yaml"), Some(2), None),
            (Some("a.yaml"), Some(1), Some("metadata.name")),
            (Some("a.yaml"), Some(2), Some("kind")),
            (Some("c.yaml"), Some(1), None),
        ]
    );
    assert!(errors[3].message.contains("b.yaml, document 3"), "{}", errors[3].message);
}

#[test]
fn a_kind_defined_in_the_same_revision_is_accepted() {
    let docs = vec![
        doc(
            "crd.yaml",
            1,
            json!({"apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets", "scope": "Namespaced"}}),
        ),
        doc("w.yaml", 1, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})),
    ];
    let d = wanted(&docs);
    assert_eq!(d[1].entry.namespace.as_deref(), Some("team"));
}

fn live_of(d: &[Desired]) -> HashMap<InventoryEntry, Value> {
    d.iter().map(|d| (d.entry.clone(), d.object.clone())).collect()
}

#[test]
fn a_new_revision_applies_everything_and_an_unchanged_one_nothing() {
    let d = wanted(&[doc("a.yaml", 1, cm("x", json!({"k": "v"}))), doc("a.yaml", 2, cm("y", json!({})))]);
    let spec = SyncSpec::default();
    let fresh = plan(&d, &HashMap::new(), &[], true, &spec, LABEL);
    assert_eq!(fresh.operations.len(), 2);
    assert!(fresh.operations.iter().all(|o| o.verb == Verb::Apply));
    assert_eq!(fresh.inventory, vec![entry("ConfigMap", Some("team"), "x"), entry("ConfigMap", Some("team"), "y")]);
    let same = plan(&d, &live_of(&d), &fresh.inventory, false, &spec, LABEL);
    assert!(same.operations.is_empty() && same.drift.is_empty());
    assert_eq!(same.inventory, fresh.inventory);
}

#[test]
fn a_hand_edit_is_drift_reported_and_healed_only_with_self_heal() {
    let d = wanted(&[doc("a.yaml", 1, cm("x", json!({"k": "v", "n": 1})))]);
    let inventory = vec![d[0].entry.clone()];
    let mut live = live_of(&d);
    let edited = live.get_mut(&d[0].entry).expect("live");
    edited["spec"]["data"]["k"] = json!("hand");
    // Server-side additions and number forms are not drift.
    edited["spec"]["data"]["n"] = json!(1.0);
    edited["metadata"]["uid"] = json!("u1");
    edited["status"] = json!({"x": 1});
    let report = plan(&d, &live, &inventory, false, &SyncSpec::default(), LABEL);
    assert!(report.operations.is_empty());
    assert_eq!(report.drift, vec![Drift { object: d[0].entry.clone(), fields: vec!["spec.data.k".into()] }]);
    let heal = plan(&d, &live, &inventory, false, &SyncSpec { self_heal: true, ..Default::default() }, LABEL);
    assert_eq!(heal.operations, vec![Operation::apply(d[0].object.clone())]);
    // Deleted by hand.
    let gone = plan(&d, &HashMap::new(), &inventory, false, &SyncSpec::default(), LABEL);
    assert_eq!(gone.drift[0].fields, vec!["(deleted)".to_string()]);
}

#[test]
fn pruning_deletes_only_what_the_inventory_held_and_still_carries_the_label() {
    let d = wanted(&[doc("a.yaml", 1, cm("kept", json!({})))]);
    let old = vec![entry("ConfigMap", Some("team"), "dropped"), entry("ConfigMap", Some("team"), "kept")];
    let mut live = live_of(&d);
    live.insert(old[0].clone(), cm("dropped", json!({})));
    let p = plan(&d, &live, &old, true, &SyncSpec { prune: true, ..Default::default() }, LABEL);
    let deletes: Vec<&Target> = p.operations.iter().filter_map(|o| o.target.as_ref()).collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].name, "dropped");
    assert_eq!(deletes[0].label.as_deref(), Some(&*format!("{SYNC_LABEL}={LABEL}")));
    assert_eq!(p.inventory, vec![old[1].clone()]);
    assert_eq!(p.sources.last(), Some(&None));
    // Without prune it stays, in the cluster and in the inventory.
    let keep = plan(&d, &live, &old, true, &SyncSpec::default(), LABEL);
    assert!(keep.operations.iter().all(|o| o.verb == Verb::Apply));
    assert_eq!(keep.inventory, old);
}

#[test]
fn health_follows_instances_deployments_and_failed_runs() {
    let svc = |running: u64, phase: &str| {
        json!({"metadata": {"generation": 2}, "spec": {"instances": 3},
            "status": {"observedGeneration": 2, "running": running, "deployment": {"phase": phase}}})
    };
    let s = entry("Service", Some("team"), "web");
    let j = entry("Job", Some("team"), "nightly");
    let inv = vec![j.clone(), s.clone()];
    let mut live = HashMap::new();
    live.insert(s.clone(), svc(3, "Complete"));
    live.insert(j.clone(), json!({"status": {"lastResult": "Succeeded"}}));
    assert!(health(&live, &inv).iter().all(|h| h.health == "Healthy"));
    live.insert(s.clone(), svc(2, "InProgress"));
    live.insert(j.clone(), json!({"status": {"lastResult": "Failed", "lastRun": "nightly-1"}}));
    let h = health(&live, &inv);
    assert_eq!(h[0].health, "Failed");
    assert_eq!(h[1].health, "Progressing");
    assert!(h[1].message.as_deref().unwrap_or_default().contains("2 of 3"), "{h:?}");
}

#[test]
fn next_syncs_on_interval_spec_change_and_request() {
    let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").with_timezone(&Utc);
    let spec = SyncSpec { interval_seconds: Some(60), ..Default::default() };
    let status =
        SyncStatus { observed_generation: Some(1), last_handled_request: Some("r1".into()), ..Default::default() };
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    assert_eq!(next(&spec, &status, 1, Some("r1"), Some(t0), false, at(10)), Next::WaitUntil(at(60)));
    assert_eq!(next(&spec, &status, 1, Some("r1"), Some(t0), false, at(60)), Next::Sync);
    assert_eq!(next(&spec, &status, 2, Some("r1"), Some(t0), false, at(10)), Next::Sync);
    assert_eq!(next(&spec, &status, 1, Some("r2"), Some(t0), false, at(10)), Next::Sync);
    assert_eq!(next(&spec, &status, 1, None, Some(t0), true, at(10)), Next::CheckHealth);
    assert_eq!(next(&spec, &status, 1, None, None, false, at(10)), Next::Sync);
    let suspended = SyncSpec { suspend: true, ..spec };
    assert_eq!(next(&suspended, &status, 2, Some("r9"), None, false, at(10)), Next::Suspended);
}

#[test]
fn the_interval_is_due_from_the_last_sync_and_never_before_a_first() {
    let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").with_timezone(&Utc);
    let spec = SyncSpec { interval_seconds: Some(10), ..Default::default() };
    assert_eq!(interval_due(&spec, Some(t0)), Some(t0 + chrono::Duration::seconds(10)));
    assert_eq!(interval_due(&spec, None), None);
    let zero = SyncSpec { interval_seconds: Some(0), ..Default::default() };
    assert_eq!(interval_due(&zero, Some(t0)), Some(t0 + chrono::Duration::seconds(1)), "an interval is 1 s at least");
}

fn arb_map() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        "[a-c]",
        prop_oneof![any::<u8>().prop_map(|n| json!(n)), "[xy]".prop_map(|s| json!(s))],
        0..4,
    )
    .prop_map(|m| json!(m))
}

proptest! {
    /// Whatever the manifests, the live objects and the inventory: after a new
    /// revision's plan is applied, an unchanged resync plans no write and sees no
    /// drift, and the inventory is exactly what the revision holds (with prune).
    #[test]
    fn a_plan_applied_leaves_nothing_to_do(
        datas in proptest::collection::vec(arb_map(), 0..6),
        old in proptest::collection::btree_set("[a-h]", 0..6),
        edits in proptest::collection::vec((0usize..6, arb_map()), 0..4),
    ) {
        let docs: Vec<Document> = datas.iter().enumerate()
            .map(|(i, d)| doc("a.yaml", i + 1, cm(&format!("o{i}"), d.clone()))).collect();
        let d = wanted(&docs);
        let inventory: Vec<InventoryEntry> = old.iter().map(|n| entry("ConfigMap", Some("team"), n)).collect();
        let mut live: HashMap<InventoryEntry, Value> = inventory.iter().map(|e| (e.clone(), cm(&e.name, json!({})))).collect();
        for (i, data) in &edits {
            if let Some(x) = d.get(*i) {
                live.insert(x.entry.clone(), cm(&x.entry.name, data.clone()));
            }
        }
        let spec = SyncSpec { prune: true, ..Default::default() };
        let p = plan(&d, &live, &inventory, true, &spec, LABEL);
        // Apply the plan to the model: applies replace, deletes remove.
        for o in &p.operations {
            match o.verb {
                Verb::Apply => {
                    let obj = o.object.clone().expect("object");
                    let e = d.iter().find(|x| x.object == obj).expect("desired").entry.clone();
                    live.insert(e, obj);
                }
                _ => {
                    let t = o.target.as_ref().expect("target");
                    live.retain(|e, _| e.name != t.name);
                }
            }
        }
        let again = plan(&d, &live, &p.inventory, false, &spec, LABEL);
        prop_assert!(again.operations.is_empty());
        prop_assert!(again.drift.is_empty());
        let mut names: Vec<String> = d.iter().map(|x| x.entry.name.clone()).collect();
        names.sort();
        prop_assert_eq!(p.inventory.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), names);
        prop_assert_eq!(live.len(), d.len());
    }
}
