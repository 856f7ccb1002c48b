//! Leader election on a `Lease` object, so that of several replicas of a controller
//! manager exactly one acts at a time.
//!
//! # Guarantees
//! - A replica leads only while its renewals succeed; a renewal is a compare-and-swap
//!   on the lease's `resourceVersion`, so two replicas can never both believe they
//!   renewed the same lease.
//! - A replica that stops renewing (crashed, partitioned) loses the lease: another
//!   takes over once the lease has gone unrenewed for `leaseDurationSeconds`.
//! - Expiry is judged on the candidate's own monotonic clock: it counts how long it has
//!   seen the *same* lease record unchanged, never by comparing wall clocks across
//!   machines.
//! - The leader gives up (and stops its work) if it cannot renew within the lease
//!   duration, before anyone else may take over.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use corral_api::KindInfo;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};

/// Settings of a [`LeaderElector`].
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the lease.
    pub namespace: String,
    /// Name of the lease (one per controller manager).
    pub name: String,
    /// This replica's identity, unique among the candidates.
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews (well under `lease_duration`).
    pub renew_every: Duration,
    /// How often a follower tries to acquire.
    pub retry_every: Duration,
}

impl LeaderConfig {
    /// Defaults like Kubernetes': a 15 s lease renewed every 5 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// Campaigns for a lease and runs work while holding it.
pub struct LeaderElector {
    client: Client,
    config: LeaderConfig,
    /// The lease record last seen (its resourceVersion) and when it was first seen.
    observed: Option<(String, Instant)>,
}

fn now_rfc3339() -> String {
    corral_api::meta::now_timestamp()
}

impl LeaderElector {
    /// A candidate for the lease described by `config`.
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        LeaderElector { client, config, observed: None }
    }

    async fn kind(&self) -> Result<Arc<KindInfo>> {
        self.client.kind("leases").await
    }

    /// One attempt to acquire or renew. `Ok(true)`: we hold the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let kind = self.kind().await?;
        let cfg = &self.config;
        let lease = self.client.get(&kind, Some(&cfg.namespace), &cfg.name).await?;
        let Some(mut lease) = lease else {
            let fresh = json!({
                "apiVersion": kind.api_version(), "kind": kind.kind,
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {"holderIdentity": cfg.identity,
                         "leaseDurationSeconds": cfg.lease_duration.as_secs().max(1),
                         "acquireTime": now_rfc3339(), "renewTime": now_rfc3339(), "leaseTransitions": 0},
            });
            return match self.client.create(&kind, &fresh).await {
                Ok(_) => Ok(true),
                Err(Error::Api { code: 409, .. }) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rv = lease.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let holder = lease.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_string);
        let duration = lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(cfg.lease_duration);
        let ours = holder.as_deref() == Some(cfg.identity.as_str());
        if !ours && holder.is_some() {
            // Someone else holds it: it expires only once we have watched this very
            // record stay unrenewed for the whole lease duration.
            let first_seen = match &self.observed {
                Some((seen_rv, at)) if *seen_rv == rv => *at,
                _ => {
                    self.observed = Some((rv.clone(), Instant::now()));
                    return Ok(false);
                }
            };
            if first_seen.elapsed() < duration {
                return Ok(false);
            }
        }
        let transitions = lease.pointer("/spec/leaseTransitions").and_then(Value::as_i64).unwrap_or(0);
        let spec = lease.get_mut("spec").and_then(Value::as_object_mut);
        let Some(spec) = spec else { return Err(Error::Decode("lease without spec".into())) };
        if !ours {
            spec.insert("holderIdentity".into(), json!(cfg.identity));
            spec.insert("acquireTime".into(), json!(now_rfc3339()));
            spec.insert("leaseTransitions".into(), json!(transitions + 1));
        }
        spec.insert("renewTime".into(), json!(now_rfc3339()));
        spec.insert("leaseDurationSeconds".into(), json!(cfg.lease_duration.as_secs().max(1)));
        match self.client.update(&kind, &lease).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_every).await;
        }
    }

    /// Acquires the lease, then runs `work` while renewing it. Returns `Ok` with the
    /// work's output if it finishes while leading, or `Err(Error::LostLease)` after
    /// dropping the work if the lease could not be renewed in time.
    pub async fn run<F: Future>(mut self, work: F) -> Result<F::Output> {
        self.acquire().await;
        let mut last_renewed = Instant::now();
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tokio::time::sleep(self.config.renew_every) => {
                    match self.try_acquire_or_renew().await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => {
                            tracing::warn!(lease = %self.config.name, "lease taken by another replica; stopping");
                            return Err(Error::LostLease);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "lease renewal failed");
                            // Step down before the lease can expire for the others.
                            if last_renewed.elapsed() + self.config.renew_every >= self.config.lease_duration {
                                return Err(Error::LostLease);
                            }
                        }
                    }
                }
            }
        }
    }
}
