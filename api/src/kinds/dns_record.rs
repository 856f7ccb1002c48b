//! `DnsRecord`: a record a user declares, served by the cluster DNS in the same zone
//! as the records Corral makes for services, tasks and nodes.
//!
//! `spec.name` is relative to the record's namespace (`www` in namespace `shop` is
//! `www.shop.corral.`; `@` is `shop.corral.` itself) or, ending in a dot, absolute
//! and then inside `corral.`. The DNS controller writes what it serves, or why it
//! serves nothing, to `status`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::service::Condition;
use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// The record types a `DnsRecord` may declare.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DnsRecordType {
    /// IPv4 addresses (`values`).
    #[default]
    A,
    /// IPv6 addresses (`values`).
    #[serde(rename = "AAAA")]
    Aaaa,
    /// An alias: one canonical name (`values`, exactly one).
    #[serde(rename = "CNAME")]
    Cname,
    /// Service locations (`srv`).
    #[serde(rename = "SRV")]
    Srv,
    /// Text: each value one character string of at most 255 bytes.
    #[serde(rename = "TXT")]
    Txt,
}

/// One target of an SRV record (RFC 2782).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SrvTarget {
    /// Lower is preferred (default 0).
    #[serde(default)]
    pub priority: u16,
    /// Share among targets of equal priority (default 0).
    #[serde(default)]
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The host: relative to the namespace's domain, or absolute when it ends in a dot.
    #[schemars(length(min = 1))]
    pub target: String,
}

/// Desired state of a [`DnsRecord`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsRecordSpec {
    /// The owner name: relative to `NAMESPACE.corral.` (`@` for that name itself), or
    /// absolute (ending in a dot) within `corral.`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `SRV` or `TXT`.
    #[serde(rename = "type")]
    pub type_: DnsRecordType,
    /// The data of A, AAAA, CNAME and TXT records: addresses, the canonical name, or
    /// text strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The targets of an SRV record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub srv: Vec<SrvTarget>,
    /// Seconds resolvers may cache the records; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// Observed state of a [`DnsRecord`], written by the DNS controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsRecordStatus {
    /// The absolute names served for it; empty when it cannot be served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served: Vec<String>,
    /// `Served`: `True`, or `False` with the reason (`InvalidName`, `InvalidValue`,
    /// `NameTaken`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A record served by the cluster DNS, namespaced.
pub type DnsRecord = Object<DnsRecordSpec, DnsRecordStatus>;

impl KindSpec for DnsRecordSpec {
    type Status = DnsRecordStatus;

    const KIND: &'static str = "DnsRecord";
    const PLURAL: &'static str = "dnsrecords";
    const SHORT_NAMES: &'static [&'static str] = &["dnsrec"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "A record served by the cluster DNS (A, AAAA, CNAME, SRV or TXT), named \
         relative to NAMESPACE.corral. or absolute within corral.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("RECORD", ".spec.name", ColumnType::String),
            PrinterColumn::new("TYPE", ".spec.type", ColumnType::String),
            PrinterColumn::new("SERVED", ".status.served", ColumnType::String),
        ]
    }
}
