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
