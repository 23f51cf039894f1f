//! The person's session: the client made from their kubeconfig, the
//! namespace, the output format; how a verb fails (`Failure`, with the kind
//! that decides its exit code and the console's HTTP status); and the reads
//! every verb shares (a CafeDeployment, a snapshot of its tree).

use std::time::Duration;

use kube::api::{ListParams, Patch};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

use super::cli::{Cli, Output};
use super::view::Snapshot;
use crate::api::names::{CAFEDEPLOYMENT_UID_LABEL, CELL_LABEL};
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster};
use crate::runtime::patch_as;

/// The field manager of the plugin's writes (confirm, pause, resume,
/// rollback, set image, freeze, unfreeze).
pub(super) const MANAGER: &str = "kubectl-cafe";

/// A failure with a message that says what to do; its kind decides the exit
/// code and, in the console, the HTTP status.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

/// Why a verb failed, as the one who made the failure knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The API server refused the write: RBAC or an admission policy such
    /// as four-eyes (403 Forbidden). Exit 1.
    Forbidden,
    /// The API server refused the write as invalid (422 Invalid). Exit 1.
    Invalid,
    /// The plugin refused: the state found does not allow the verb (not
    /// found, nothing to confirm, nothing to roll back to, changed
    /// meanwhile, exists already). Exit 1.
    Conflict,
    /// The cluster could not be reached or did not answer. Exit 3.
    Unavailable,
    /// The command line is wrong. Exit 3.
    Usage,
}

impl Failure {
    /// The plugin's exit code: 1 refused, 3 cluster or usage error.
    pub fn code(&self) -> u8 {
        match self.kind {
            Kind::Forbidden | Kind::Invalid | Kind::Conflict => 1,
            Kind::Unavailable | Kind::Usage => 3,
        }
    }

    /// Printed as it is (the API server's refusal, as kubectl prints it),
    /// not after `error: `.
    pub fn verbatim(&self) -> bool {
        matches!(self.kind, Kind::Forbidden | Kind::Invalid)
    }
}

/// The plugin's refusal: exit 1.
pub(super) fn refused(message: impl Into<String>) -> Failure {
    Failure {
        kind: Kind::Conflict,
        message: message.into(),
    }
}

/// The cluster could not be reached, or answered with an error: exit 3.
pub(super) fn unreachable(e: impl std::fmt::Display) -> Failure {
    Failure {
        kind: Kind::Unavailable,
        message: format!("{e}"),
    }
}

/// The command line is wrong: exit 3.
pub(super) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        kind: Kind::Usage,
        message: message.into(),
    }
}

/// An error of a write: refused by the API server (403 Forbidden: RBAC or
/// an admission policy such as four-eyes; 422 Invalid) exits 1 with the
/// server's message as kubectl prints it; anything else is exit 3.
pub(super) fn api_failure(e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 422 => Failure {
            kind: if s.code == 403 {
                Kind::Forbidden
            } else {
                Kind::Invalid
            },
            message: from_server(&s.reason, &s.message),
        },
        e => unreachable(e),
    }
}

/// kubectl's line for an error status: `Error from server (Forbidden): ...`.
fn from_server(reason: &str, message: &str) -> String {
    if reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({reason}): {message}")
    }
}

pub(super) struct Session {
    pub(super) client: Client,
    pub(super) namespace: String,
    output: Option<Output>,
}

impl Session {
    pub(super) async fn connect(cli: &Cli) -> Result<Self, Failure> {
        let options = KubeConfigOptions {
            context: cli.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &cli.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| unreachable(format!("cannot read kubeconfig {path}: {e}")))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        };
        let config = match config {
            Ok(c) => c,
            Err(_) if cli.context.is_none() && cli.kubeconfig.is_none() => {
                Config::infer().await.map_err(|e| {
                    unreachable(format!(
                        "no cluster: {e}. Set KUBECONFIG or pass --kubeconfig/--context"
                    ))
                })?
            }
            Err(e) => return Err(unreachable(format!("kubeconfig: {e}"))),
        };
        let namespace = cli
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(unreachable)?;
        Ok(Self {
            client,
            namespace,
            output: cli.output,
        })
    }

    /// The same person's session in namespace `namespace`.
    pub(super) fn in_namespace(&self, namespace: &str) -> Session {
        Session {
            client: self.client.clone(),
            namespace: namespace.to_string(),
            output: None,
        }
    }

    pub(super) fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(super) async fn cd(&self, name: &str) -> Result<CafeDeployment, Failure> {
        match self.api::<CafeDeployment>().get_opt(name).await {
            Ok(Some(cd)) => Ok(cd),
            Ok(None) => Err(refused(format!(
                "CafeDeployment {name} not found in namespace {}: list them with `kubectl cafe list -A`",
                self.namespace
            ))),
            Err(e) => Err(unreachable(e)),
        }
    }

    pub(super) async fn patch(&self, name: &str, patch: serde_json::Value) -> Result<(), Failure> {
        self.api::<CafeDeployment>()
            .patch(name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_failure)
    }

    /// Prints `value` as -o asks; false without -o (the verb prints its text).
    pub(super) fn print<T: serde::Serialize>(&self, value: &T) -> bool {
        let text = match self.output {
            Some(Output::Json) => serde_json::to_string_pretty(value).unwrap_or_default(),
            Some(Output::Yaml) => serde_yaml::to_string(value).unwrap_or_default(),
            None => return false,
        };
        println!("{text}");
        true
    }

    /// `cd` with its sets and pods, here and in its member clusters.
    pub(super) async fn snapshot(&self, cd: CafeDeployment) -> Result<Snapshot, Failure> {
        let uid = cd.uid();
        let sets: Vec<InPlaceSet> = self
            .api::<InPlaceSet>()
            .list(&ListParams::default().labels(CELL_LABEL))
            .await
            .map_err(unreachable)?
            .items
            .into_iter()
            .filter(|s| owned_by(s, uid.as_ref()))
            .collect();
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector(&cd)))
            .await
            .map_err(unreachable)?
            .items;
        let (mut sets, mut pods) = (sets, pods);
        let mut unread = std::collections::BTreeMap::new();
        for cluster in member_clusters(&cd) {
            match self.member_objects(&cluster, &cd).await {
                Ok((s, p)) => {
                    sets.extend(s);
                    pods.extend(p);
                }
                Err(why) => {
                    unread.insert(cluster, why);
                }
            }
        }
        Ok(Snapshot {
            cd,
            sets,
            pods,
            unread,
            now: now(),
        })
    }

    /// `cd`'s sets and pods in member cluster `name`, read with the
    /// kubeconfig the host holds for it (if the user may read that Secret).
    async fn member_objects(
        &self,
        name: &str,
        cd: &CafeDeployment,
    ) -> Result<(Vec<InPlaceSet>, Vec<Pod>), String> {
        let read = async {
            let member = Api::<MemberCluster>::all(self.client.clone())
                .get(name)
                .await
                .map_err(|e| short(&e))?;
            let r = &member.spec.kubeconfig_secret_ref;
            let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
                self.client.clone(),
                &r.namespace,
            )
            .get(&r.name)
            .await
            .map_err(|e| {
                format!(
                    "its kubeconfig Secret {}/{}: {}",
                    r.namespace,
                    r.name,
                    short(&e)
                )
            })?;
            let text = crate::membercluster::connection::kubeconfig_in(&secret, &r.key)
                .ok_or_else(|| format!("no key {} in its Secret", r.key))?;
            let (client, _) = crate::membercluster::connection::build_client(&text).await?;
            let uid = cd.uid().unwrap_or_default();
            let sets = Api::<InPlaceSet>::namespaced(client.clone(), &self.namespace)
                .list(&ListParams::default().labels(&format!("{CAFEDEPLOYMENT_UID_LABEL}={uid}")))
                .await
                .map_err(|e| short(&e))?
                .items;
            // The host's identity there may write sets but not read pods
            // (least privilege): the sets alone, then.
            let pods = Api::<Pod>::namespaced(client, &self.namespace)
                .list(&ListParams::default().labels(&selector(cd)))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            Ok((sets, pods))
        };
        tokio::time::timeout(Duration::from_secs(4), read)
            .await
            .unwrap_or_else(|_| Err("no answer within 4s".to_string()))
    }
}

/// An error in a few words: the API server's message, not its whole status.
pub(super) fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Whether `set` is owned by the CafeDeployment of uid `uid`.
pub(super) fn owned_by(set: &InPlaceSet, uid: Option<&String>) -> bool {
    set.owner_references().iter().any(|o| Some(&o.uid) == uid)
}

/// The member clusters `cd`'s cells live in, as its status says.
fn member_clusters(cd: &CafeDeployment) -> Vec<String> {
    let mut out: Vec<String> = cd
        .status
        .iter()
        .flat_map(|s| &s.cells)
        .filter_map(|r| r.cluster.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(super) fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

pub(super) fn selector(cd: &CafeDeployment) -> String {
    crate::api::selector_string(&cd.spec.selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_by_the_api_server_reads_as_kubectl_prints_it() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "cafedeployments.cafe.sofastack.io \"demo\" is forbidden: \
                        ValidatingAdmissionPolicy 'cafe-signoff' denied request: four-eyes"
        }))
        .expect("status");
        let f = api_failure(kube::Error::Api(Box::new(status)));
        assert_eq!((f.kind, f.code(), f.verbatim()), (Kind::Forbidden, 1, true));
        assert_eq!(
            f.message,
            "Error from server (Forbidden): cafedeployments.cafe.sofastack.io \"demo\" is \
             forbidden: ValidatingAdmissionPolicy 'cafe-signoff' denied request: four-eyes"
        );
        assert_eq!(from_server("", "boom"), "Error from server: boom");
        let invalid: kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": 422, "reason": "Invalid", "message": "spec.replicas: must be >= 0"
        }))
        .expect("status");
        let f = api_failure(kube::Error::Api(Box::new(invalid)));
        assert_eq!((f.kind, f.code(), f.verbatim()), (Kind::Invalid, 1, true));
        let conflict: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": 500, "message": "etcd"}))
                .expect("status");
        assert_eq!(api_failure(kube::Error::Api(Box::new(conflict))).code(), 3);
    }
}
