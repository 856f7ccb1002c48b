//! Corral's cluster DNS: an in-memory zone whose records are each kept by the object
//! that produced them ([`zone`]), served authoritatively over UDP and TCP
//! ([`server`]).
//!
//! The DNS controller (`corral_controllers::dns`) turns tasks, services, nodes and
//! `DnsRecord`s into records and hands each object's set to [`Zone::apply`]; the
//! server answers from the zone as it is at that moment, so an answer changes as soon
//! as the controller has seen the change. Nothing here touches the store.

#![warn(missing_docs)]

pub mod error;
pub mod metrics;
pub mod server;
pub mod zone;

pub use error::{Error, Result};
pub use metrics::DnsMetrics;
pub use server::{DnsConfig, RunningDns, Upstream, start};
pub use zone::{Change, Lookup, Record, RecordData, RecordType, Source, Zone};
