//! Leader election through a coordination.k8s.io Lease, so that two replicas
//! are safe: only the holder runs the controllers (and so only it writes); a
//! standby takes over once the holder's lease expires, or at once when the
//! holder releases it on a graceful stop.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the Lease lives and who competes for it.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a holder's claim lasts without renewal: the longest a standby
    /// waits after the holder dies.
    pub duration: Duration,
}

/// Where the Lease lives by default: the namespace the operator runs in (its
/// service account's); outside a pod, the first namespace it watches (so
/// that operators watching different namespaces do not wait for each
/// other), else `default`.
pub fn lease_namespace(watched: &[String]) -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| watched.first().cloned())
        .unwrap_or_else(|| "default".to_string())
}

/// A name that tells replicas apart in the Lease: host name and process id.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "cafe-operator".to_string());
    format!("{host}_{}", std::process::id())
}

/// Renewal starts this long before the claim would expire: a third of it,
/// like controller-runtime's 15 s lease renewed within 10 s.
fn renew_grace(duration: Duration) -> u64 {
    (duration.as_secs() / 3).max(1)
}

/// How often a standby looks for a released Lease: the manager alone would
/// sleep until the claim it last saw expires, so a graceful handover would
/// take up to the whole lease duration.
const RELEASE_CHECK: Duration = Duration::from_secs(2);

/// Resolves once the Lease shows no holder (released by a stopping leader).
async fn released(leases: &Api<Lease>, name: &str) {
    loop {
        tokio::time::sleep(RELEASE_CHECK).await;
        if let Ok(Some(lease)) = leases.get_opt(name).await {
            let holder = lease.spec.and_then(|s| s.holder_identity);
            if holder.is_none_or(|h| h.is_empty()) {
                return;
            }
        }
    }
}

/// Waits until this replica holds the Lease. `Ok(None)` if `stop` resolves first.
pub async fn acquire(
    client: Client,
    config: &LeaseConfig,
    stop: impl Future<Output = ()>,
) -> Result<Option<Leadership>, LeaseManagerError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    tokio::pin!(stop);
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration.as_secs().max(2))
            .with_grace(renew_grace(config.duration))
            .with_field_manager("cafe-operator-leader-election")
            .build()
            .await?;
        let (mut held, task) = manager.watch().await;
        enum Next {
            Won,
            Stop,
            Retry,
        }
        let next = tokio::select! {
            changed = held.wait_for(|leader| *leader) => {
                if changed.is_ok() { Next::Won } else { Next::Stop }
            }
            () = &mut stop => Next::Stop,
            // A fresh manager claims a released Lease at once.
            () = released(&leases, &config.name) => Next::Retry,
        };
        match next {
            Next::Won => {
                return Ok(Some(Leadership {
                    held,
                    task,
                    leases,
                    config: config.clone(),
                }));
            }
            Next::Retry => {
                drop(held);
                let _ = task.await;
            }
            Next::Stop => {
                // Stopped first, or the manager ended (its error is the answer).
                drop(held);
                return match task.await {
                    Ok(Err(e)) => Err(e),
                    _ => Ok(None),
                };
            }
        }
    }
}

/// The lease, held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    leases: Api<Lease>,
    config: LeaseConfig,
}

/// Whether the claim still stands, from what the Lease shows at `now` (unix
/// seconds): held by us and renewed within its duration.
pub fn claim_stands(lease: &Lease, identity: &str, now: i64) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return false;
    };
    let ours = spec.holder_identity.as_deref() == Some(identity);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let renewed = spec.renew_time.as_ref().map_or(0, |t| t.0.as_second());
    ours && renewed + duration > now
}

impl Leadership {
    /// Resolves if the Lease is lost: the manager says so, the Lease shows
    /// another holder or an expired claim, or it cannot be read for longer
    /// than the claim lasts (a partitioned leader must stop before a standby
    /// may start).
    pub async fn lost(&mut self) {
        let period = (self.config.duration / 5).max(Duration::from_secs(1));
        let watchdog = async {
            let mut confirmed = Instant::now();
            loop {
                tokio::time::sleep(period).await;
                let now = k8s_openapi::jiff::Timestamp::now().as_second();
                match self.leases.get(&self.config.name).await {
                    Ok(lease) if claim_stands(&lease, &self.config.identity, now) => {
                        confirmed = Instant::now();
                    }
                    Ok(lease) => {
                        let holder = lease.spec.and_then(|s| s.holder_identity);
                        tracing::error!(?holder, "the leader Lease is no longer ours");
                        return;
                    }
                    Err(e) if confirmed.elapsed() + period >= self.config.duration => {
                        tracing::error!(error = %e, "cannot confirm the leader Lease before it expires");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease; retrying"),
                }
            }
        };
        let held = &mut self.held;
        tokio::select! {
            _ = held.wait_for(|leader| !*leader) => {}
            () = watchdog => {}
        }
    }

    /// Gives the Lease up so a standby can take over without waiting for it to expire.
    pub async fn release(self) {
        drop(self.held);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot release the leader Lease"),
            _ => tracing::warn!("the leader Lease was not released within 5s; it will expire"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_stands_while_ours_and_renewed_within_its_duration() {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let lease = |holder: &str, renewed: i64| Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renewed).unwrap(),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert!(claim_stands(&lease("a", 100), "a", 110));
        assert!(!claim_stands(&lease("a", 100), "a", 115), "expired");
        assert!(!claim_stands(&lease("b", 100), "a", 101), "taken over");
        assert!(!claim_stands(&Lease::default(), "a", 0));
    }

    #[test]
    fn renewal_starts_a_third_of_the_lease_before_expiry() {
        assert_eq!(renew_grace(Duration::from_secs(15)), 5);
        assert_eq!(renew_grace(Duration::from_secs(2)), 1);
    }
}
