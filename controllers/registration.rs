//! How a built-in framework (services, jobs) makes itself known: its `Framework`
//! object, kept suppressed while it has nothing to launch, and its lease in
//! `corral-frameworks`, renewed while it runs (the offers controller fails it over
//! when the lease runs out).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use corral_api::kinds::Lease;
use corral_api::kinds::framework::{FRAMEWORK_LEASE_NAMESPACE, Framework, FrameworkSpec};
use corral_api::kinds::lease::LeaseSpec;
use corral_client::{Api, Client};

/// How long a framework's lease lasts without renewal.
const LEASE_SECONDS: i64 = 15;
/// How often the lease is renewed.
const RENEW: Duration = Duration::from_secs(5);
/// How often the registration is read back, in case someone deleted or changed it.
const RECHECK: Duration = Duration::from_secs(10);

/// What a framework was last registered with (suppressed, and its roles), and when.
#[derive(Default)]
pub(crate) struct Registration {
    registered: Option<((bool, Vec<String>), Instant)>,
}

impl Registration {
    /// Registers framework `name`, or updates its roles and whether it wants offers;
    /// a no-op while nothing changed and the last check is recent.
    pub(crate) async fn ensure(
        &mut self,
        frameworks: &Api<Framework>,
        name: &str,
        wants_offers: bool,
        roles: &BTreeSet<String>,
    ) {
        let suppressed = !wants_offers;
        let roles: Vec<String> = roles.iter().cloned().collect();
        let wanted = (suppressed, roles.clone());
        if self.registered.as_ref().is_some_and(|(r, at)| *r == wanted && at.elapsed() < RECHECK) {
            return;
        }
        let current = match frameworks.get_opt(name).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, framework = name, "cannot read the framework");
                return;
            }
        };
        let result = match current {
            None => {
                let spec = FrameworkSpec { roles, suppressed, ..Default::default() };
                frameworks.create(&Framework::new(name, spec)).await.map(drop)
            }
            Some(mut f) if f.spec.suppressed != suppressed || f.spec.roles != roles => {
                f.spec.suppressed = suppressed;
                f.spec.roles = roles;
                frameworks.update(&f).await.map(drop)
            }
            Some(_) => Ok(()),
        };
        match result {
            Ok(()) => self.registered = Some((wanted, Instant::now())),
            Err(e) => tracing::debug!(error = %e, framework = name, "cannot register the framework"),
        }
    }

    /// Asks for offers now if the framework is suppressed (or not yet registered),
    /// with the roles it was last registered with — `default_role` when it had none.
    pub(crate) async fn unsuppress(&mut self, frameworks: &Api<Framework>, name: &str, default_role: &str) {
        let roles = match &self.registered {
            Some(((false, _), _)) => return,
            Some(((true, roles), _)) if !roles.is_empty() => roles.iter().cloned().collect(),
            _ => BTreeSet::from([default_role.to_string()]),
        };
        self.ensure(frameworks, name, true, &roles).await;
    }
}

/// Renews framework `name`'s lease for as long as the caller runs.
pub(crate) async fn renew_lease(client: Client, name: &str) {
    let leases: Api<Lease> = Api::namespaced(client, FRAMEWORK_LEASE_NAMESPACE);
    loop {
        let now = corral_api::meta::now_timestamp();
        let result = match leases.get_opt(name).await {
            Ok(Some(mut l)) => {
                l.spec.renew_time = Some(now);
                l.spec.lease_duration_seconds = Some(LEASE_SECONDS);
                leases.update(&l).await.map(drop)
            }
            Ok(None) => {
                let spec = LeaseSpec {
                    holder_identity: Some(name.to_string()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                };
                leases.create(&Lease::namespaced(FRAMEWORK_LEASE_NAMESPACE, name, spec)).await.map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, framework = name, "cannot renew the framework's lease");
        }
        tokio::time::sleep(RENEW).await;
    }
}
