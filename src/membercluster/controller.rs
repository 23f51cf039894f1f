//! The MemberCluster controller: for each registered member cluster, a task
//! that keeps it connected (`connection`), the finalizer that keeps it
//! registered while a CafeDeployment uses it (its users are read from the
//! CafeDeployment caches, not listed), and its status (the `Ready`
//! condition, the InPlaceSet versions it serves, its last contact).
//!
//! A reconcile runs when the MemberCluster changes, when what its status
//! shows changes (the member's task says so), and every
//! `CONTACT_WRITTEN_EVERY` to refresh `status.lastContact`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::connection::{self, holds_finalizer};
use crate::api::names::{MEMBER_IN_USE_FINALIZER, condition};
use crate::api::{
    MemberCluster, MemberClusterStatus, finalizer_added, finalizer_removed, observed_condition_as,
};
use crate::placement::members::{MEMBER_TIMEOUT, Member, Members};
use crate::runtime::cache::Shared;
use crate::runtime::health::Health;
use crate::runtime::run_until_stopped;
use crate::runtime::writes::status::{Change, StatusWriter, Wrote};

/// How often `status.lastContact` is refreshed while nothing else changes.
const CONTACT_WRITTEN_EVERY: Duration = Duration::from_secs(30);
/// How soon a MemberCluster whose deletion waits for its users looks again
/// (from the caches: no request).
const IN_USE_LOOK: Duration = Duration::from_secs(2);
const MANAGER: &str = "cafe-operator-members";

struct Context {
    client: Client,
    members: Members,
    status: StatusWriter,
    /// Each member's task, by name.
    tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// When each member's last contact was last written.
    contact_written: Mutex<HashMap<String, Instant>>,
    wake: UnboundedSender<ObjectRef<MemberCluster>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Error(#[from] kube::Error);

async fn reconcile(mc: Arc<MemberCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = mc.name_any();
    if mc.metadata.deletion_timestamp.is_some() && !holds_finalizer(&mc) {
        // Released: its task sees it gone and stops keeping it.
        return Ok(Action::await_change());
    }
    let member = keep(&ctx, &name);
    let in_use = match keep_while_used(&ctx, &member, &mc).await {
        Ok(in_use) => in_use,
        Err(e) => {
            warn!(member = %name, error = %e, "cannot write the MemberCluster's finalizer");
            None
        }
    };
    let stale = ctx
        .contact_written
        .lock()
        .ok()
        .and_then(|w| w.get(&name).copied())
        .is_none_or(|at| at.elapsed() >= CONTACT_WRITTEN_EVERY);
    if write_status(&ctx, &member, &mc, stale, in_use.as_deref()).await?
        && let Ok(mut written) = ctx.contact_written.lock()
    {
        written.insert(name, Instant::now());
    }
    Ok(Action::requeue(if in_use.is_some() {
        IN_USE_LOOK
    } else {
        CONTACT_WRITTEN_EVERY
    }))
}

/// The member `name` in the registry, with a task keeping it (started on
/// first sight, and again if it ended while the MemberCluster stays).
fn keep(ctx: &Context, name: &str) -> Arc<Member> {
    let mut tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
    tasks.retain(|_, t| !t.is_finished());
    if let Ok(mut written) = ctx.contact_written.lock() {
        written.retain(|member, _| tasks.contains_key(member) || member == name);
    }
    if let (Some(member), true) = (ctx.members.get(name), tasks.contains_key(name)) {
        return member;
    }
    let member = Arc::new(Member::new(name.to_string()));
    ctx.members.insert(member.clone());
    info!(member = %name, "member cluster registered");
    let task = connection::keep(
        ctx.client.clone(),
        ctx.members.clone(),
        member.clone(),
        ctx.wake.clone(),
    );
    tasks.insert(name.to_string(), tokio::spawn(task));
    member
}

/// The finalizer: put on a MemberCluster in service; taken off one being
/// deleted once no CafeDeployment uses the member. Returns why a
/// deletion waits (none: no deletion, or it goes now).
async fn keep_while_used(
    ctx: &Context,
    member: &Member,
    mc: &MemberCluster,
) -> Result<Option<String>, kube::Error> {
    let api: Api<MemberCluster> = Api::all(ctx.client.clone());
    if mc.metadata.deletion_timestamp.is_none() {
        if !holds_finalizer(mc) {
            let patch = finalizer_added(&mc.metadata, MEMBER_IN_USE_FINALIZER);
            patch_finalizers(&api, &mc.name_any(), patch).await?;
        }
        return Ok(None);
    }
    let users = match ctx.members.users(member) {
        Ok(users) => users,
        Err(e) => return Ok(Some(format!("cannot tell whether it is in use: {e}"))),
    };
    if !users.is_empty() {
        return Ok(Some(format!(
            "its deletion waits until no CafeDeployment uses it: {}. Remove those cells \
             from their topology.values (they drain there) or delete the CafeDeployments; \
             if the cluster is lost for good, remove the finalizer {MEMBER_IN_USE_FINALIZER} \
             by hand (their cells then wait until topology.clusters says where they run)",
            users.join(", ")
        )));
    }
    let Some(patch) = finalizer_removed(&mc.metadata, MEMBER_IN_USE_FINALIZER) else {
        return Ok(None);
    };
    patch_finalizers(&api, &mc.name_any(), patch).await?;
    info!(member = %member.name, "member cluster unregistered: no CafeDeployment uses it");
    Ok(None)
}

/// Writes the MemberCluster's status when it changed, or its last
/// contact when `refresh`. Returns whether it wrote.
async fn write_status(
    ctx: &Context,
    member: &Member,
    mc: &MemberCluster,
    refresh: bool,
    in_use: Option<&str>,
) -> Result<bool, kube::Error> {
    let previous = mc.status.clone().unwrap_or_default();
    let reach = member.reach();
    let (status, reason) = member.with(|s| match &s.problem {
        Some((reason, _)) => ("False", *reason),
        None if reach.reachable => ("True", "Reachable"),
        None => ("Unknown", "Unreachable"),
    });
    let versions = member.with(|s| s.versions.clone());
    let message = if reach.reachable {
        format!("answers; serves InPlaceSet {}", versions.join(", "))
    } else {
        reach.why.clone()
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let ready = observed_condition_as(
        &previous.conditions,
        condition::READY,
        status,
        reason,
        message,
        mc.metadata.generation,
        &now,
    );
    let next = MemberClusterStatus {
        observed_generation: mc.metadata.generation,
        last_contact: if refresh {
            reach.last_contact.clone()
        } else {
            previous.last_contact.clone()
        }
        .or(reach.last_contact.clone()),
        in_place_set_versions: versions,
        conditions: std::iter::once(ready)
            .chain(in_use.map(|why| {
                observed_condition_as(
                    &previous.conditions,
                    condition::DELETING,
                    "True",
                    "InUse",
                    why.to_string(),
                    mc.metadata.generation,
                    &now,
                )
            }))
            .collect(),
        // Signed by the status writer.
        writer: None,
    };
    let api: Api<MemberCluster> = Api::all(ctx.client.clone());
    let change = Change {
        previous: &previous,
        next: &next,
        urgent: true,
        over: None,
    };
    if !matches!(ctx.status.write(&api, mc, change).await?, Wrote::Written(_)) {
        return Ok(false);
    }
    Ok(refresh || previous.last_contact.is_none())
}

/// Patches a MemberCluster's finalizers (a JSON patch guarded by a test);
/// a conflict or a MemberCluster gone meanwhile is looked at next time.
async fn patch_finalizers(
    api: &Api<MemberCluster>,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match tokio::time::timeout(
        MEMBER_TIMEOUT,
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 || s.code == 422 => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(kube::Error::Service(
            format!("no answer within {MEMBER_TIMEOUT:?}").into(),
        )),
    }
}

fn error_policy(mc: Arc<MemberCluster>, error: &Error, _: Arc<Context>) -> Action {
    warn!(member = %mc.name_any(), error = %error, "cannot write the MemberCluster");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the MemberCluster controller over `clusters` until `shutdown`
/// resolves; `members` is the registry it keeps.
pub async fn run(
    client: Client,
    clusters: Shared<MemberCluster>,
    members: Members,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (wake, woken) = unbounded();
    let ctx = Arc::new(Context {
        client,
        members,
        status: StatusWriter::new(MANAGER, Duration::ZERO, health),
        tasks: Mutex::default(),
        contact_written: Mutex::default(),
        wake,
    });
    let shutdown = shutdown.shared();
    let run = Controller::for_shared_stream(clusters.subscribe(), clusters.store.clone())
        .reconcile_on(woken)
        .with_config(controller::Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    run_until_stopped(run, shutdown, std::slice::from_ref(&clusters.synced)).await;
    if let Ok(tasks) = ctx.tasks.lock() {
        tasks.values().for_each(|t| t.abort());
    }
}
