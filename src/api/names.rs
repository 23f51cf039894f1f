//! Every label, annotation, finalizer and condition name the operator reads or
//! writes. Other components (RPC registries, DNS, users' scripts) rely on these
//! strings, so they live in one place and never change silently.

/// The API group of both custom resources.
pub const GROUP: &str = "cafe.sofastack.io";
/// The API version of both custom resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every custom resource (`GROUP/VERSION`).
pub const API_VERSION: &str = "cafe.sofastack.io/v1alpha1";

/// Node label naming a node's cell, used when `topology.unitType` is `Cell`.
pub const CELL_NODE_LABEL: &str = "cafe.sofastack.io/cell";
/// Node label naming a node's zone, used when `topology.unitType` is `Zone`.
pub const ZONE_NODE_LABEL: &str = "topology.kubernetes.io/zone";

/// Pod and InPlaceSet label: the cell (deployment unit) a pod belongs to.
pub const CELL_LABEL: &str = "cafe.sofastack.io/cell";
/// Pod label: the hash of the pod template revision the pod runs.
/// Only the hash, never `<name>-<hash>`, so it always fits a label value.
pub const REVISION_LABEL: &str = "cafe.sofastack.io/revision";

/// ControllerRevisions of a CafeDeployment carry its uid (names may be too long for a label).
pub const CAFEDEPLOYMENT_UID_LABEL: &str = "cafe.sofastack.io/cafedeployment-uid";
/// InPlaceSets a host writes into a member cluster carry the CafeDeployment's
/// uid (label, above) and name (this annotation): no ownerReference crosses
/// clusters.
pub const CAFEDEPLOYMENT_NAME_ANNOTATION: &str = "cafe.sofastack.io/cafedeployment";
/// The finalizer on a CafeDeployment with cells in member clusters: its
/// InPlaceSets there are deleted before it goes.
pub const MEMBER_SETS_FINALIZER: &str = "cafe.sofastack.io/member-sets";
/// The finalizer on a MemberCluster: it is not unregistered while a
/// CafeDeployment still runs cells or has InPlaceSets in it.
pub const MEMBER_IN_USE_FINALIZER: &str = "cafe.sofastack.io/member-in-use";

/// The label every image pre-download pod carries: the uid of its
/// InPlaceSet (a set's name may be longer than a label value).
pub const PULL_LABEL: &str = "cafe.sofastack.io/pre-download-for";
/// The annotation naming the revision a pre-download pod pulls the images of.
pub const PULL_REVISION_ANNOTATION: &str = "cafe.sofastack.io/pre-download-revision";

/// The readiness gate injected into every pod at creation. The operator owns
/// this condition and only this one; kubelet derives `Ready` from it.
pub const TRAFFIC_GATE: &str = "cafe.sofastack.io/traffic-ready";
/// Pod annotation, written at creation: the traffic components that must
/// register the pod before it counts as released (comma separated).
pub const TRAFFIC_COMPONENTS_ANNOTATION: &str = "cafe.sofastack.io/traffic-components";
/// CafeDeployment annotation of CAFE's confirmation protocol: the controller
/// writes "false" when a group ends; the user writes "true" to go on.
pub const UPGRADE_CONFIRMED_ANNOTATION: &str = "cafe.sofastack.io/upgrade-confirmed";

/// Every traffic component X owns the pod finalizer `traffic.cafe.sofastack.io/X`.
pub const TRAFFIC_FINALIZER_PREFIX: &str = "traffic.cafe.sofastack.io/";

/// The finalizer a traffic component owns on the pods that declare it.
pub fn traffic_finalizer(component: &str) -> String {
    format!("{TRAFFIC_FINALIZER_PREFIX}{component}")
}

/// Pod annotation written by the in-place spec patch itself: the revision the
/// pod moved to and how its changed containers ran before (to prove a restart).
pub const IN_PLACE_RECORD_ANNOTATION: &str = "cafe.sofastack.io/in-place-update";
/// Pod annotation written at creation: the shape of the pod's template (what an
/// in-place update cannot change). Equal shapes mean a change can be in place.
pub const SHAPE_ANNOTATION: &str = "cafe.sofastack.io/template-shape";
/// Pod annotation written at creation and by each in-place patch: the label
/// and annotation keys the pod got from its template, so that a key the next
/// template drops is removed from the pod (and keys others added are kept).
pub const TEMPLATE_KEYS_ANNOTATION: &str = "cafe.sofastack.io/template-keys";

/// kubectl's copy of the whole object (`kubectl apply`): never read, so
/// never cached.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reasons of the traffic gate condition. They record where a pod is in its
/// lifecycle, so that the state survives an operator restart without extra writes.
pub mod gate_reason {
    /// Gate True: the pod may receive traffic.
    pub const SERVING: &str = "Serving";
    /// Gate False: draining before an in-place update.
    pub const DRAINING_FOR_UPDATE: &str = "DrainingForUpdate";
    /// Gate False: draining before deletion (scale-in or re-create).
    pub const DRAINING_FOR_DELETE: &str = "DrainingForDelete";
}

/// kstatus and Deployment-style condition types written on both resources.
pub mod condition {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    /// Set when the spec cannot be acted on (an error the CRD rules cannot see).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// On a MemberCluster whose deletion waits for the CafeDeployments that
    /// use it.
    pub const DELETING: &str = "Deleting";
    /// On a CafeDeployment: whether the sign-off admission policies vouch
    /// for who did each step (reasons `PoliciesInForce`, `PoliciesNotInForce`).
    pub const SIGNOFF_VERIFIED: &str = "SignoffVerified";
    /// Set when a Service selecting the pods defeats draining.
    pub const TRAFFIC_UNSAFE: &str = "TrafficUnsafe";
    /// ReplicaSet's: True while the API server refuses to create pods
    /// (reason `FailedCreate`, the API server's message).
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// Reasons for a set that cannot write what it must.
    pub const FAILED_CREATE: &str = "FailedCreate";
    /// A CafeDeployment whose InPlaceSet write the API server refuses.
    pub const FAILED_UPDATE: &str = "FailedUpdate";
    /// Progressing reason while a PodDisruptionBudget allows no disruption.
    pub const WAITING_FOR_DISRUPTION_BUDGET: &str = "WaitingForDisruptionBudget";
    /// Stalled reason: a group waits past its deadline for a cell whose
    /// member cluster does not answer.
    pub const MEMBER_UNREACHABLE: &str = "MemberUnreachable";
    /// On a CafeDeployment, only while a cell runs in another cluster than
    /// the registrations or `topology.clusters` say (status False, reason
    /// `NotMoved`): the message says where it runs and what to do.
    pub const PLACEMENT: &str = "Placement";
    pub const NOT_MOVED: &str = "NotMoved";
    /// On a CafeDeployment: True while `topology.failover` lists a cell
    /// whose decision was spent on an outage before (reason `DecisionSpent`).
    pub const FAILOVER_SPENT: &str = "FailoverSpent";
    /// On a CafeDeployment with `strategy.preDownload`: whether the release's
    /// images are on the nodes of the pods not yet updated (reasons
    /// `Pulled`, `Pulling`, `PullFailed` naming the node and kubelet's error).
    pub const IMAGES_PRE_DOWNLOADED: &str = "ImagesPreDownloaded";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_is_prefix_plus_component() {
        assert_eq!(traffic_finalizer("rpc"), "traffic.cafe.sofastack.io/rpc");
    }
}
