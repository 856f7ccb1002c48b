//! Multi-object writes (`POST /transactions`) and a Sync's trigger.

use corral_api::transaction::{TRANSACTIONS_PATH, Transaction, TransactionResult};
use http::Method;
use serde::Deserialize;

use crate::client::{PathQuery, json_body};
use crate::{Client, Result, WriteParams};

/// How a transaction is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactParams {
    /// Compute and answer everything, write nothing (`dryRun=All`).
    pub dry_run: bool,
    /// The field manager of its applies (`fieldManager`).
    pub field_manager: Option<String>,
    /// Its applies take over fields other managers applied (`force=true`).
    pub force: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Triggered {
    requested_at: String,
}

impl Client {
    /// Sends `transaction`: every operation is authorized and validated as its own
    /// request would be, then all writes are committed in one store transaction, in
    /// order, or none is.
    ///
    /// # Errors
    /// When any operation fails, nothing is written and one error lists every
    /// problem: each [`Cause`](crate::Cause)'s field names the operation
    /// (`operations[3].spec.instances`, see
    /// [`corral_api::transaction::split_cause`]) and its message the object. The
    /// code is 403 if any operation is forbidden, else 409 if every problem is a
    /// conflict (re-read and retry), else 422. 413 past
    /// [`corral_api::transaction::MAX_OPERATIONS`] operations or 64 MiB.
    pub async fn transact(&self, transaction: &Transaction, params: &TransactParams) -> Result<TransactionResult> {
        let write =
            WriteParams { dry_run: params.dry_run, field_manager: params.field_manager.clone(), force: params.force };
        let path = PathQuery::new(TRANSACTIONS_PATH.to_string()).write(&write).into_text();
        let body = json_body(transaction)?;
        Ok(self.call(Method::POST, path, Some(("application/json", body)), "a transaction's result").await?.1)
    }

    /// Asks the controller to sync the Sync `name` in `namespace` now (sets its
    /// `corral.dev/sync-requested-at` annotation). Returns the time recorded
    /// (RFC 3339 with nanoseconds).
    ///
    /// # Errors
    /// 404 when there is no such Sync, 403 when this client may not trigger it
    /// (RBAC verb `update` on `syncs/trigger`).
    pub async fn trigger_sync(&self, namespace: &str, name: &str) -> Result<String> {
        let path = trigger_path(namespace, name);
        let answer: Triggered = self.call(Method::POST, path.clone(), None, &path).await?.1;
        Ok(answer.requested_at)
    }
}

/// `POST` here triggers a Sync.
pub(crate) fn trigger_path(namespace: &str, name: &str) -> String {
    format!("/apis/{}/namespaces/{namespace}/syncs/{name}/trigger", corral_api::API_VERSION)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::StreamExt;
    use parking_lot::Mutex;

    use super::*;
    use crate::{Response, Transport};

    /// Answers every request with `answer`, keeping the requests' heads.
    struct Recorder {
        seen: Mutex<Vec<(String, http::HeaderMap)>>,
        answer: &'static str,
    }

    #[async_trait::async_trait]
    impl Transport for Recorder {
        async fn send(&self, request: http::Request<Bytes>) -> Result<Response> {
            self.seen.lock().push((request.uri().to_string(), request.headers().clone()));
            let body = futures::stream::iter([Ok(Bytes::from_static(self.answer.as_bytes()))]).boxed();
            Ok(Response { status: http::StatusCode::OK, headers: Default::default(), body })
        }
        fn server(&self) -> String {
            "recorder".into()
        }
    }

    #[tokio::test]
    async fn an_impersonating_clone_sends_the_headers_and_the_original_does_not() {
        let recorder = Arc::new(Recorder { seen: Mutex::default(), answer: r#"{"requestedAt":"t"}"# });
        let client = Client::new(recorder.clone());
        let as_sa = client.impersonating("system:serviceaccount:ns:sa", &["g1", "g2"]);
        assert_eq!(as_sa.trigger_sync("ns", "s").await.ok().as_deref(), Some("t"));
        assert_eq!(client.trigger_sync("ns", "s").await.ok().as_deref(), Some("t"));
        let seen = recorder.seen.lock();
        let (path, headers) = &seen[0];
        assert_eq!(path, "/apis/corral.dev/v1/namespaces/ns/syncs/s/trigger");
        assert_eq!(
            headers.get(crate::IMPERSONATE_USER).and_then(|v| v.to_str().ok()),
            Some("system:serviceaccount:ns:sa")
        );
        let groups: Vec<&str> =
            headers.get_all(crate::IMPERSONATE_GROUP).iter().filter_map(|v| v.to_str().ok()).collect();
        assert_eq!(groups, ["g1", "g2"]);
        assert!(seen[1].1.get(crate::IMPERSONATE_USER).is_none());
    }

    #[tokio::test]
    async fn transact_sends_the_parameters_as_patch_does() {
        let answer = r#"{"revision":3,"writes":0,"results":[]}"#;
        let recorder = Arc::new(Recorder { seen: Mutex::default(), answer });
        let client = Client::new(recorder.clone());
        let params = TransactParams { dry_run: true, field_manager: Some("sync".into()), force: true };
        let result = client.transact(&Transaction::default(), &params).await.ok();
        assert_eq!(result.map(|r| r.revision), Some(3));
        assert_eq!(recorder.seen.lock()[0].0, "/transactions?dryRun=All&force=true&fieldManager=sync");
    }
}
