//! Kubernetes' self-reviews, so that `kubectl auth whoami` and `kubectl auth can-i`
//! answer from Corral's authentication and RBAC: `SelfSubjectReview`
//! (authentication.k8s.io/v1) says who the caller is, `SelfSubjectAccessReview`
//! (authorization.k8s.io/v1) whether the caller may do something. Every authenticated
//! user may ask both about themselves, as in Kubernetes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::rbac::Attributes;
use super::{Decision, Identity};
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Where `kubectl auth whoami` asks.
pub const WHOAMI_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
/// Where `kubectl auth can-i` asks.
pub const ACCESS_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// Kubernetes' protobuf media type.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// `POST …/selfsubjectreviews`: the caller's user name and groups.
pub async fn whoami(Extension(who): Extension<Arc<Identity>>) -> Json<Value> {
    Json(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {},
        "status": {"userInfo": {"username": who.user, "groups": who.groups}},
    }))
}

/// `POST …/selfsubjectaccessreviews`: the review with its `status` — allowed, and by
/// which binding, or not.
/// kubectl sends it as protobuf (its typed clients do), other clients as JSON.
pub async fn access(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut review = if content_type.starts_with(PROTOBUF) {
        protobuf::access_review(&body)
            .ok_or_else(|| ApiError::bad_request("the body is not a protobuf SelfSubjectAccessReview"))?
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    let text =
        |v: &Value, field: &str| v.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let attrs = if let Some(r) = spec.get("resourceAttributes") {
        let verb = text(r, "verb").ok_or_else(|| ApiError::bad_request("spec.resourceAttributes.verb is required"))?;
        let resource =
            text(r, "resource").ok_or_else(|| ApiError::bad_request("spec.resourceAttributes.resource is required"))?;
        Attributes::Resource {
            verb: verb.into(),
            // Kubernetes' core group is empty; Corral's kinds are all in named groups.
            group: text(r, "group").unwrap_or_else(|| corral_api::GROUP.to_string()).into(),
            resource: resource.into(),
            subresource: text(r, "subresource").map(Into::into),
            namespace: text(r, "namespace").map(Into::into),
            name: text(r, "name").map(Into::into),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        let verb =
            text(n, "verb").ok_or_else(|| ApiError::bad_request("spec.nonResourceAttributes.verb is required"))?;
        let path =
            text(n, "path").ok_or_else(|| ApiError::bad_request("spec.nonResourceAttributes.path is required"))?;
        Attributes::NonResource { verb: verb.into(), path: path.into() }
    } else {
        return Err(ApiError::bad_request("spec needs resourceAttributes or nonResourceAttributes"));
    };
    let status = match state.auth.policy.read().authorize(&who, &attrs) {
        Decision::Allow(by) => json!({"allowed": true, "reason": format!("allowed by {by}")}),
        Decision::Deny => {
            json!({"allowed": false, "reason": "no role bound to the user or its groups allows it"})
        }
    };
    review["status"] = status;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    Ok(Json(review))
}

/// Just enough of Kubernetes' protobuf encoding to read a `SelfSubjectAccessReview`:
/// the `k8s\0` envelope (`runtime.Unknown`: type meta, raw object), then the review's
/// spec, whose attributes are all strings.
mod protobuf {
    use super::*;

    /// The review as the JSON it stands for; `None` if the bytes are not one.
    pub(super) fn access_review(body: &[u8]) -> Option<Value> {
        let unknown = fields(body.strip_prefix(b"k8s\0")?)?;
        let raw = field(&unknown, 2)?;
        let spec = fields(field(&fields(raw)?, 2)?)?;
        let mut out = Map::new();
        // ResourceAttributes and NonResourceAttributes, by field number.
        let groups: [(u32, &str, Names); 2] = [
            (
                1,
                "resourceAttributes",
                &[
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ],
            ),
            (2, "nonResourceAttributes", &[(1, "path"), (2, "verb")]),
        ];
        for (number, name, names) in groups {
            let Some(bytes) = field(&spec, number) else { continue };
            let attrs = fields(bytes)?;
            let mut m = Map::new();
            for (n, key) in names {
                if let Some(v) = field(&attrs, *n) {
                    m.insert((*key).to_string(), Value::String(String::from_utf8(v.to_vec()).ok()?));
                }
            }
            out.insert(name.to_string(), Value::Object(m));
        }
        Some(json!({ "spec": out }))
    }

    /// A message's string fields: (field number, JSON name).
    type Names = &'static [(u32, &'static str)];

    fn field<'a>(fields: &[(u32, &'a [u8])], number: u32) -> Option<&'a [u8]> {
        fields.iter().find(|(n, _)| *n == number).map(|(_, v)| *v)
    }

    /// The length-delimited fields of a message (others are skipped); `None` if it
    /// is malformed.
    fn fields(mut buf: &[u8]) -> Option<Vec<(u32, &[u8])>> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let number = u32::try_from(key >> 3).ok()?;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                }
                1 => buf = buf.get(8..)?,
                5 => buf = buf.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    out.push((number, buf.get(..len)?));
                    buf = &buf[len..];
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn ld(number: u32, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![u8::try_from(number << 3 | 2).unwrap(), u8::try_from(bytes.len()).unwrap()];
            out.extend_from_slice(bytes);
            out
        }

        #[test]
        fn kubectl_s_protobuf_review_reads_as_its_json() {
            let attrs =
                [ld(1, b"demo"), ld(2, b"get"), ld(3, b"corral.dev"), ld(5, b"configmaps"), ld(7, b"foo")].concat();
            let spec = [ld(1, &attrs), vec![0x18, 0x01]].concat();
            let raw = ld(2, &spec);
            let body = [b"k8s\0".as_slice(), &ld(1, &ld(2, b"SelfSubjectAccessReview")), &ld(2, &raw)].concat();
            let review = access_review(&body).unwrap();
            assert_eq!(
                review["spec"]["resourceAttributes"],
                json!({"namespace": "demo", "verb": "get", "group": "corral.dev", "resource": "configmaps", "name": "foo"})
            );
            assert!(access_review(b"k8s\0\x0a\xff").is_none());
            assert!(access_review(b"{}").is_none());
        }
    }
}
