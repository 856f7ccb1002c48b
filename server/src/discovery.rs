//! Discovery: which groups, versions and kinds are served, and their schemas.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use corral_api::KindInfo;
use serde_json::{Value, json};

use super::AppState;
use super::body;
use super::error::{ApiError, ApiResult};

/// Verbs every kind supports.
const VERBS: [&str; 7] = ["create", "delete", "get", "list", "patch", "update", "watch"];

/// The kinds `kubectl get all` lists: what runs, as Kubernetes' `all` holds pods,
/// deployments and jobs.
const CATEGORY_ALL: [&str; 4] = ["services", "tasks", "jobs", "jobruns"];

/// `GET /api`: the legacy core group, as Kubernetes clients ask for it first. Corral
/// serves every kind in a named group, so it has no versions.
pub async fn core() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "apiVersion": "v1", "versions": [], "serverAddressByClientCIDRs": []}))
}

/// `GET /apis`: every group with its versions, in registration order, as a Kubernetes
/// `APIGroupList` (so that kubectl and client libraries discover them).
pub async fn groups(State(state): State<AppState>) -> Json<Value> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for k in state.registry.kinds() {
        match groups.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) => {
                if !versions.contains(&k.version) {
                    versions.push(k.version.clone());
                }
            }
            None => groups.push((k.group.clone(), vec![k.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> =
                versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
            let preferred = versions.first().cloned().unwrap_or(Value::Null);
            json!({"name": name, "versions": versions, "preferredVersion": preferred})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// `GET /apis/{g}/{v}`: the resources of one group version.
pub(super) fn group_version(state: &AppState, group: &str, version: &str) -> ApiResult<Response> {
    let mut resources: Vec<Value> = state
        .registry
        .kinds()
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            let mut resource = json!({
                "name": k.plural,
                "singularName": k.singular,
                "kind": k.kind,
                "namespaced": k.namespaced,
                "shortNames": k.short_names,
                "verbs": VERBS,
            });
            if k.group == corral_api::GROUP && CATEGORY_ALL.contains(&k.plural.as_str()) {
                resource["categories"] = json!(["all"]);
            }
            resource
        })
        .collect();
    if resources.is_empty() {
        return Err(ApiError::not_found(format!("the server does not serve {group}/{version}")));
    }
    // Subresources are listed as Kubernetes does (`pods/log`), as each kind declares them.
    for k in state.registry.kinds().iter().filter(|k| k.group == group && k.version == version) {
        for sub in k.subresources.names() {
            let verbs: &[&str] = if sub == "log" { &["get"] } else { &["get", "patch", "update"] };
            let mut resource = json!({"name": format!("{}/{sub}", k.plural), "kind": k.kind, "namespaced": k.namespaced, "verbs": verbs});
            // Clients find the Scale's own kind here (kubectl scale does).
            if sub == "scale" {
                resource["group"] = json!("autoscaling");
                resource["version"] = json!("v1");
                resource["kind"] = json!("Scale");
            }
            resources.push(resource);
        }
    }
    Ok(body::json(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"),
            "resources": resources}),
    ))
}

/// `GET /kinds`: every served kind with its JSON Schema.
pub async fn kinds(State(state): State<AppState>) -> Json<Vec<KindInfo>> {
    Json(state.registry.kinds().iter().map(|k| (**k).clone()).collect())
}

/// `GET /schemas/{g}/{v}/{plural}`: the schema writes of that kind are validated
/// against.
pub async fn schema(
    State(state): State<AppState>,
    Path((group, version, plural)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .registry
        .by_plural(&group, &version, &plural)
        .map(|k| Json(k.schema.clone()))
        .ok_or_else(|| ApiError::not_found(format!("the server does not serve {plural:?} in {group}/{version}")))
}
