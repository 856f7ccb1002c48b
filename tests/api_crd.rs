//! Custom resource definitions against a real server: a kind is served as soon as its
//! definition is created, validated against its schema, listed by discovery, kept
//! across restarts, and gone with its objects when the definition is deleted.

mod api_support;

use api_support::{TestServer, causes};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CRDS: &str = "/apis/corral.dev/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

fn widget_crd() -> Value {
    json!({
        "apiVersion": "corral.dev/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets",
            "shortNames": ["wd"], "scope": "Namespaced",
            "schema": {
                "spec": {"type": "object", "additionalProperties": false, "required": ["size"],
                    "properties": {"size": {"type": "integer", "minimum": 1}, "colour": {"type": "string"}}}
            }
        }
    })
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

async fn create_crd(s: &TestServer) -> Value {
    let (code, body) = s.post(CRDS, &widget_crd()).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn kind_is_served_validated_and_watchable_at_once() {
    // No controller: they write in the background (a framework's lease), and this
    // test counts revisions.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    create_crd(&s).await;

    let (code, list) = s.get(WIDGETS).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list["kind"], "WidgetList");
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watch = s.watch(&format!("{WIDGETS}?watch=true&resourceVersion={from}")).await;

    let (code, created) = s.post(WIDGETS, &widget("w1", json!({"size": 3, "colour": "red"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("w1")));

    // Bad fields are named and nothing is written.
    let rev = s.revision().await;
    let (code, body) = s.post(WIDGETS, &widget("w2", json!({"size": 0, "shape": "round"}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = causes(&body);
    assert!(fields.contains(&"spec.shape".to_string()), "{body}");
    assert!(fields.contains(&"spec.size".to_string()), "{body}");
    let (code, body) = s.post(WIDGETS, &widget("w3", json!({"colour": "red"}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).contains(&"spec.size".to_string()), "{body}");
    let (code, _) = s
        .post(
            WIDGETS,
            &json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w4", "namespace": "default"}, "spec": {"size": 1}, "extra": 1}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "the envelope is closed");
    assert_eq!(s.revision().await, rev, "rejected writes wrote nothing");

    let (code, list) = s.get("/apis/example.com/v1/widgets").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // The definition reports that it is served and carries the cleanup finalizer.
    let (_, crd) = s.get(&format!("{CRDS}/widgets.example.com")).await;
    assert_eq!(crd["status"]["accepted"], true, "{crd}");
    assert_eq!(crd["metadata"]["finalizers"], json!(["corral.dev/custom-resource-cleanup"]), "{crd}");
    s.stop().await;
}

#[tokio::test]
async fn invalid_and_conflicting_definitions_are_rejected_with_the_field() {
    // No controller: they write in the background (a framework's lease), and this
    // test counts revisions.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    create_crd(&s).await;
    let rev = s.revision().await;

    let mut same_kind = widget_crd();
    same_kind["metadata"]["name"] = json!("gadgets.example.com");
    same_kind["spec"]["plural"] = json!("gadgets");
    same_kind["spec"]["shortNames"] = json!([]);
    let (code, body) = s.post(CRDS, &same_kind).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(causes(&body), vec!["spec.kind"], "{body}");

    let mut builtin = widget_crd();
    builtin["metadata"]["name"] = json!("configmaps.corral.dev");
    builtin["spec"]["group"] = json!("corral.dev");
    builtin["spec"]["plural"] = json!("configmaps");
    builtin["spec"]["kind"] = json!("ConfigMap");
    builtin["spec"]["shortNames"] = json!(["cm"]);
    let (code, body) = s.post(CRDS, &builtin).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = causes(&body);
    for f in ["spec.kind", "spec.plural", "spec.shortNames[0]"] {
        assert!(fields.contains(&f.to_string()), "{f}: {body}");
    }

    let mut bad_schema = widget_crd();
    bad_schema["metadata"]["name"] = json!("things.example.com");
    bad_schema["spec"]["plural"] = json!("things");
    bad_schema["spec"]["kind"] = json!("Thing");
    bad_schema["spec"]["shortNames"] = json!([]);
    bad_schema["spec"]["schema"]["spec"] = json!({"type": 12});
    let (code, body) = s.post(CRDS, &bad_schema).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(causes(&body), vec!["spec.schema.spec"], "{body}");

    let mut misnamed = widget_crd();
    misnamed["metadata"]["name"] = json!("widgets");
    let (code, body) = s.post(CRDS, &misnamed).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).contains(&"metadata.name".to_string()), "{body}");

    assert_eq!(s.revision().await, rev, "rejected definitions wrote nothing");
    let (code, _) = s.get("/apis/example.com/v1/gadgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Updating the definition itself is no conflict with its own kind.
    let mut updated = widget_crd();
    updated["spec"]["shortNames"] = json!(["wd", "wdg"]);
    let (code, body) = s.put(&format!("{CRDS}/widgets.example.com"), &updated).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut rescoped = updated.clone();
    rescoped["spec"]["scope"] = json!("Cluster");
    rescoped["spec"]["version"] = json!("v2");
    let (code, body) = s.put(&format!("{CRDS}/widgets.example.com"), &rescoped).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(causes(&body), vec!["spec.scope", "spec.version"], "{body}");
    let (_, kinds) = s.get("/kinds").await;
    let widget = kinds.as_array().unwrap().iter().find(|k| k["kind"] == "Widget").cloned().unwrap();
    assert_eq!(widget["shortNames"], json!(["wd", "wdg"]));
    s.stop().await;
}

#[tokio::test]
async fn discovery_lists_custom_kinds() {
    let s = TestServer::start().await;
    create_crd(&s).await;

    let (_, groups) = s.get("/apis").await;
    assert!(
        groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "example.com"
            && g["versions"] == json!([{"groupVersion": "example.com/v1", "version": "v1"}])),
        "{groups}"
    );
    let (code, gv) = s.get("/apis/example.com/v1").await;
    assert_eq!(code, StatusCode::OK);
    let r = &gv["resources"][0];
    assert_eq!(
        (r["name"].as_str(), r["kind"].as_str(), r["namespaced"].as_bool()),
        (Some("widgets"), Some("Widget"), Some(true))
    );
    assert_eq!(r["shortNames"], json!(["wd"]));
    let (_, kinds) = s.get("/kinds").await;
    assert!(kinds.as_array().unwrap().iter().any(|k| k["kind"] == "Widget" && k["group"] == "example.com"));
    let (code, schema) = s.get("/schemas/example.com/v1/widgets").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["spec"]["properties"]["size"]["type"], "integer");
    assert!(schema["properties"]["metadata"]["properties"]["name"].is_object(), "{schema}");
    s.stop().await;
}

#[tokio::test]
async fn definition_and_objects_survive_a_restart() {
    let s = TestServer::start().await;
    create_crd(&s).await;
    let (code, _) = s.post(WIDGETS, &widget("w1", json!({"size": 2}))).await;
    assert_eq!(code, StatusCode::CREATED);

    let s = s.restart().await;
    let (code, w) = s.get(&format!("{WIDGETS}/w1")).await;
    assert_eq!(code, StatusCode::OK, "{w}");
    assert_eq!(w["spec"]["size"], 2);
    let (code, body) = s.post(WIDGETS, &widget("w2", json!({"size": -1}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "still validated after a restart: {body}");
    s.stop().await;
}

#[tokio::test]
async fn deleting_the_definition_deletes_its_objects_and_the_kind() {
    let s = TestServer::start().await;
    create_crd(&s).await;
    s.call(
        reqwest::Method::POST,
        "/apis/corral.dev/v1/namespaces",
        Some(&json!({
        "apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "other"}})),
    )
    .await;
    for (ns, name) in [("default", "a"), ("default", "b"), ("other", "c")] {
        let mut w = widget(name, json!({"size": 1}));
        w["metadata"]["namespace"] = json!(ns);
        let (code, body) = s.post(&format!("/apis/example.com/v1/namespaces/{ns}/widgets"), &w).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let (_, list) = s.get(CRDS).await;
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watch = s.watch(&format!("{CRDS}?watch=true&resourceVersion={from}")).await;

    let (code, body) = s.delete(&format!("{CRDS}/widgets.example.com")).await;
    assert!(code == StatusCode::OK || code == StatusCode::ACCEPTED, "{code}: {body}");
    // Bounded wait: the definition is gone once its objects are.
    loop {
        let ev = watch.next_change().await;
        if ev["type"] == "DELETED" {
            assert_eq!(ev["object"]["metadata"]["name"], "widgets.example.com");
            break;
        }
    }
    let (code, body) = s.get("/apis/example.com/v1/widgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let (code, _) = s.get("/apis/example.com/v1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Defined again, the kind starts empty: the old objects were deleted, not hidden.
    create_crd(&s).await;
    let (code, list) = s.get("/apis/example.com/v1/widgets").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"], json!([]), "{list}");
    s.stop().await;
}
