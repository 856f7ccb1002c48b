//! `Quota`: what a role is guaranteed of the cluster and what it may never exceed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::node::Resources;
use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Desired state of a [`Quota`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSpec {
    /// Offered to the role before any role that has reached its own guarantee.
    #[serde(default)]
    pub guarantee: Resources,
    /// Never offered to the role beyond; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Resources>,
}

/// Observed state of a [`Quota`]; the spec says everything.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaStatus {}

/// The quota of the role it is named after (`*` cannot be named; the unreserved
/// pool has no quota). Cluster-scoped; read by the offers controller.
pub type Quota = Object<QuotaSpec, QuotaStatus>;

impl KindSpec for QuotaSpec {
    type Status = QuotaStatus;

    const KIND: &'static str = "Quota";
    const PLURAL: &'static str = "quotas";
    const SHORT_NAMES: &'static [&'static str] = &["quota"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "The guarantee and limit of the role it is named after: the allocator offers a \
         role below its guarantee first and never beyond its limit.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("GUARANTEE-CPUS", ".spec.guarantee.cpus", ColumnType::Number),
            PrinterColumn::new("LIMIT-CPUS", ".spec.limit.cpus", ColumnType::Number),
        ]
    }
}
