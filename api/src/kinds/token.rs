//! `Token`: a bearer credential, stored as a hash. The secret is shown once, when the
//! token is created; the server keeps only its SHA-256, so reading tokens (or the
//! store's files) reveals no credential.
//!
//! A bearer token reads `<id>.<secret>`: `id` is the Token object's name, `secret` 32
//! random characters. As Kubernetes' bootstrap tokens, the id is public and the secret
//! is compared by hash.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// What a token is good for.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Authenticates every request as `spec.user`.
    #[default]
    Authentication,
    /// Only joins a node (`POST /auth/join`), which returns the node's own credential.
    Join,
    /// Authenticates, as `spec.user`, TLS connections presenting the client
    /// certificate whose DER encoding has SHA-256 `secretHash` (a node's certificate,
    /// signed when it joined). Deleting the token revokes the certificate.
    Certificate,
}

/// Desired state of a [`Token`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSpec {
    /// The user the token authenticates as (`alice`, `node:n1`,
    /// `system:serviceaccount:NAMESPACE:NAME`).
    pub user: String,
    /// Groups the user is in, for bindings that name groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// What the token is good for.
    #[serde(default)]
    pub purpose: TokenPurpose,
    /// After this instant (RFC 3339) the token is refused; absent: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Lowercase hex SHA-256 of the secret part (of the certificate, for purpose
    /// `Certificate`).
    pub secret_hash: String,
    /// Why it exists, for people listing tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The object the token is bound to: the token is valid only while this object
    /// exists; the server deletes it with the object. As Kubernetes' bound
    /// service-account tokens, a task's token dies with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<BoundObject>,
}

/// The object a token is bound to (`spec.boundTo`), named down to its uid, so that a
/// new object of the same name is another object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BoundObject {
    /// The object's kind; `Task` is the only kind a token can be bound to so far.
    #[schemars(extend("enum" = ["Task"]))]
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The object's `metadata.uid`.
    pub uid: String,
}

/// Observed state of a [`Token`]; none.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenStatus {}

/// A bearer credential stored as the hash of its secret. Cluster-scoped.
pub type Token = Object<TokenSpec, TokenStatus>;

impl KindSpec for TokenSpec {
    type Status = TokenStatus;

    const KIND: &'static str = "Token";
    const PLURAL: &'static str = "tokens";
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "A bearer credential for a user, service account or node, stored as the \
        SHA-256 of its secret; named by the token's public id.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("USER", ".spec.user", ColumnType::String),
            PrinterColumn::new("PURPOSE", ".spec.purpose", ColumnType::String),
            PrinterColumn::new("EXPIRES", ".spec.expiration", ColumnType::String),
        ]
    }
}
