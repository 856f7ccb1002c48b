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
use std::time::Duration;

use corral_api::kinds::lease::{Lease, LeaseSpec};
use corral_client::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    leases: Api<Lease>,
    config: LeaderConfig,
    /// The lease record last seen (its resourceVersion) and when it was first seen.
    observed: Option<(String, Instant)>,
}

fn now_rfc3339() -> String {
    corral_api::meta::now_micro_timestamp()
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl LeaderElector {
    /// A candidate for the lease described by `config`.
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        let leases = Api::namespaced(client, &config.namespace);
        LeaderElector { leases, config, observed: None }
    }

    /// This candidate's settings.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// One attempt to acquire or renew. `Ok(true)`: we hold the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let cfg = &self.config;
        let Some(mut lease) = self.leases.get_opt(&cfg.name).await? else {
            let now = now_rfc3339();
            let fresh = Lease::namespaced(
                &cfg.namespace,
                &cfg.name,
                LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds(cfg.lease_duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                },
            );
            return match self.leases.create(&fresh).await {
                Ok(_) => Ok(true),
                Err(e) if e.code() == Some(409) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let holder = lease.spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = lease
            .spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
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
        let spec = &mut lease.spec;
        if !ours {
            spec.holder_identity = Some(cfg.identity.clone());
            spec.acquire_time = Some(now_rfc3339());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now_rfc3339());
        spec.lease_duration_seconds = Some(seconds(cfg.lease_duration));
        match self.leases.update(&lease).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the lease; `false` if `shutdown` came first.
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_every) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }

    /// Gives the lease up, if this replica holds it, so that another candidate takes
    /// over at once instead of waiting for it to expire. Best effort.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.config.name).await else { return };
        if lease.spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        lease.spec.holder_identity = None;
        lease.spec.renew_time = Some(now_rfc3339());
        match self.leases.update(&lease).await {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the leader lease"),
            Err(e) => tracing::debug!(error = %e, "cannot release the leader lease; it will expire"),
        }
    }

    /// Renews the lease until `until` is cancelled (returns `Ok`) or the lease is lost
    /// (returns [`Error::LostLease`]); the leader steps down before the lease can
    /// expire for the others.
    pub async fn keep(&mut self, until: &CancellationToken) -> Result<()> {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                _ = until.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.config.renew_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = %self.config.name, "lease taken by another replica; stopping");
                    return Err(Error::LostLease);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if last_renewed.elapsed() + self.config.renew_every >= self.config.lease_duration {
                        return Err(Error::LostLease);
                    }
                }
            }
        }
    }

    /// Acquires the lease, then runs `work` while renewing it. Returns `Ok` with the
    /// work's output if it finishes while leading, or `Err(Error::LostLease)` after
    /// dropping the work if the lease could not be renewed in time.
    pub async fn run<F: Future>(mut self, work: F) -> Result<F::Output> {
        self.acquire(&CancellationToken::new()).await;
        let stop = CancellationToken::new();
        tokio::pin!(work);
        let keep = self.keep(&stop);
        tokio::pin!(keep);
        tokio::select! {
            out = &mut work => {
                stop.cancel();
                Ok(out)
            }
            lost = &mut keep => match lost {
                Err(e) => Err(e),
                Ok(()) => Ok(work.await),
            },
        }
    }
}
