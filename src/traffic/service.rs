//! The built-in `service` traffic component: registers a pod (adds finalizer
//! `traffic.cafe.sofastack.io/service`) once every Service selecting it lists
//! it ready in its EndpointSlices, and deregisters it (removes the finalizer)
//! once none does, after the gate closed or the pod started terminating.
//!
//! Decisions, documented in docs/traffic-protocol.md:
//! - endpoints are matched to pods by `targetRef.uid`, and by IP only when a
//!   slice has no targetRef, so a reused pod IP never stands for another pod;
//! - a pod selected by no Service is registered (nothing routes to it, so
//!   there is nothing to drain) and deregisters at once;
//! - a Service with `publishNotReadyAddresses: true` lists pods as ready
//!   whatever their gate says, so it can never drain: it is left out of the
//!   decision (waiting on it would deadlock) and reported as unsafe;
//! - a Service deleted during a drain takes its slices with it, so it stops
//!   holding the pod.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;

use crate::api::pod::Lookup;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One pod's endpoint as one Service's EndpointSlices show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointState {
    pub ready: bool,
    pub serving: bool,
}

impl EndpointState {
    /// Traffic may reach the endpoint: ready, or serving (kube-proxy falls
    /// back to serving terminating endpoints).
    pub fn routed(self) -> bool {
        self.ready || self.serving
    }
}

/// What the component needs to know about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// The pod declared the `service` component.
    pub declared: bool,
    /// Gate open, pod Ready and not terminating.
    pub in_traffic: bool,
    pub has_finalizer: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Register,
    Deregister,
    Nothing,
}

/// `states`: the pod's endpoint in each Service that selects it and can drain
/// (`None`: that Service does not list the pod).
pub fn decide(pod: &PodView, states: &[Option<EndpointState>]) -> Action {
    if !pod.declared {
        return Action::Nothing;
    }
    let everywhere_ready = states.iter().all(|s| s.is_some_and(|s| s.ready));
    let nowhere_routed = states.iter().all(|s| !s.is_some_and(|s| s.routed()));
    match (pod.has_finalizer, pod.in_traffic) {
        (false, true) if everywhere_ready => Action::Register,
        (true, false) if nowhere_routed => Action::Deregister,
        _ => Action::Nothing,
    }
}

/// Does the Service's selector select these labels? A Service without a
/// selector selects nothing (its endpoints are managed by hand).
pub fn selects(service: &Service, labels: &impl Lookup) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.lookup(k) == Some(v.as_str()))
}

pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// Which pod an endpoint is: its targetRef uid, or its first address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKey {
    Uid(String),
    Ip(String),
}

type SliceKey = (String, String); // (namespace, slice name)
type ServiceKey = (String, String); // (namespace, service name)

/// EndpointSlices indexed by the pods they list, kept current from the watch:
/// looking a pod up costs the number of Services that list it, not the number
/// of pods or slices in the namespace.
#[derive(Default)]
pub struct EndpointIndex {
    slices: HashMap<SliceKey, (ServiceKey, Vec<(EndpointKey, EndpointState)>)>,
    by_pod: HashMap<EndpointKey, BTreeSet<SliceKey>>,
    /// Slices seen since the current relist began (`None`: no relist running).
    relist: Option<BTreeSet<SliceKey>>,
}

impl EndpointIndex {
    pub fn apply(&mut self, slice: &EndpointSlice) {
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        let name = slice.metadata.name.clone().unwrap_or_default();
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned()
        else {
            return;
        };
        let key = (namespace.clone(), name);
        self.remove(&key);
        let endpoints: Vec<(EndpointKey, EndpointState)> = slice
            .endpoints
            .iter()
            .filter_map(|e| {
                let id = match e.target_ref.as_ref().and_then(|t| t.uid.clone()) {
                    Some(uid) => EndpointKey::Uid(uid),
                    None => EndpointKey::Ip(e.addresses.first()?.clone()),
                };
                let c = e.conditions.clone().unwrap_or_default();
                // Unset `ready` means ready (EndpointSlice API); `serving` follows it.
                let ready = c.ready.unwrap_or(true);
                Some((
                    id,
                    EndpointState {
                        ready,
                        serving: c.serving.unwrap_or(ready),
                    },
                ))
            })
            .collect();
        for (id, _) in &endpoints {
            self.by_pod
                .entry(id.clone())
                .or_default()
                .insert(key.clone());
        }
        if let Some(seen) = self.relist.as_mut() {
            seen.insert(key.clone());
        }
        self.slices.insert(key, ((namespace, service), endpoints));
    }

    pub fn delete(&mut self, slice: &EndpointSlice) {
        let key = (
            slice.metadata.namespace.clone().unwrap_or_default(),
            slice.metadata.name.clone().unwrap_or_default(),
        );
        self.remove(&key);
    }

    fn remove(&mut self, key: &SliceKey) {
        if let Some((_, endpoints)) = self.slices.remove(key) {
            for (id, _) in endpoints {
                if let Some(set) = self.by_pod.get_mut(&id) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_pod.remove(&id);
                    }
                }
            }
        }
    }

    /// A relist begins: slices not seen again before it ends are gone.
    pub fn relist_started(&mut self) {
        self.relist = Some(BTreeSet::new());
    }

    pub fn relist_done(&mut self) {
        if let Some(seen) = self.relist.take() {
            let stale: Vec<SliceKey> = self
                .slices
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for k in stale {
                self.remove(&k);
            }
        }
    }

    /// The pod's endpoint per Service, over all slices of each Service. An
    /// endpoint listed in two slices of one Service (during a slice move) is
    /// as routed as its most routed copy.
    pub fn states(&self, uid: &str, ip: Option<&str>) -> HashMap<ServiceKey, EndpointState> {
        let mut out: HashMap<ServiceKey, EndpointState> = HashMap::new();
        let keys = [
            Some(EndpointKey::Uid(uid.to_string())),
            ip.map(|i| EndpointKey::Ip(i.to_string())),
        ];
        for id in keys.iter().flatten() {
            for slice in self.by_pod.get(id).into_iter().flatten() {
                if let Some((service, endpoints)) = self.slices.get(slice) {
                    for (_, state) in endpoints.iter().filter(|(e, _)| e == id) {
                        let entry = out.entry(service.clone()).or_default();
                        entry.ready |= state.ready;
                        entry.serving |= state.serving;
                    }
                }
            }
        }
        out
    }

    /// The pods (by endpoint key) a slice lists, to know whom a slice event concerns.
    pub fn pods_of(slice: &EndpointSlice) -> Vec<EndpointKey> {
        slice
            .endpoints
            .iter()
            .filter_map(
                |e| match e.target_ref.as_ref().and_then(|t| t.uid.clone()) {
                    Some(uid) => Some(EndpointKey::Uid(uid)),
                    None => e.addresses.first().cloned().map(EndpointKey::Ip),
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const READY: Option<EndpointState> = Some(EndpointState {
        ready: true,
        serving: true,
    });
    const NOT_READY: Option<EndpointState> = Some(EndpointState {
        ready: false,
        serving: false,
    });
    const TERMINATING_SERVING: Option<EndpointState> = Some(EndpointState {
        ready: false,
        serving: true,
    });

    fn pod(in_traffic: bool, has_finalizer: bool) -> PodView {
        PodView {
            declared: true,
            in_traffic,
            has_finalizer,
        }
    }

    #[test]
    fn registers_once_every_service_lists_the_pod_ready() {
        assert_eq!(decide(&pod(true, false), &[READY, READY]), Action::Register);
        assert_eq!(decide(&pod(true, false), &[READY, None]), Action::Nothing);
        assert_eq!(
            decide(&pod(true, false), &[READY, NOT_READY]),
            Action::Nothing
        );
        assert_eq!(decide(&pod(true, true), &[READY]), Action::Nothing);
    }

    #[test]
    fn deregisters_once_no_service_routes_to_the_pod() {
        assert_eq!(
            decide(&pod(false, true), &[NOT_READY, None]),
            Action::Deregister
        );
        assert_eq!(
            decide(&pod(false, true), &[NOT_READY, READY]),
            Action::Nothing
        );
        assert_eq!(
            decide(&pod(false, true), &[TERMINATING_SERVING]),
            Action::Nothing,
            "a serving terminating endpoint still gets traffic"
        );
        assert_eq!(decide(&pod(true, true), &[NOT_READY]), Action::Nothing);
    }

    #[test]
    fn a_pod_selected_by_no_service_registers_and_deregisters_at_once() {
        assert_eq!(decide(&pod(true, false), &[]), Action::Register);
        assert_eq!(decide(&pod(false, true), &[]), Action::Deregister);
    }

    #[test]
    fn pods_that_do_not_declare_service_are_left_alone() {
        let p = PodView {
            declared: false,
            in_traffic: true,
            has_finalizer: false,
        };
        assert_eq!(decide(&p, &[READY]), Action::Nothing);
    }

    fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints
        }))
        .expect("slice")
    }

    #[test]
    fn the_index_matches_by_uid_so_a_reused_ip_is_another_pod() {
        let mut index = EndpointIndex::default();
        index.apply(&slice(
            "web-1",
            "web",
            json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": "old", "uid": "uid-old"}}]),
        ));
        assert!(
            index
                .states("uid-old", Some("10.244.1.5"))
                .values()
                .all(|s| s.ready)
        );
        assert!(
            index.states("uid-new", Some("10.244.1.5")).is_empty(),
            "the new pod with the old pod's IP is not listed"
        );
    }

    #[test]
    fn the_index_follows_updates_deletes_and_relists() {
        let mut index = EndpointIndex::default();
        let listed = |ready: bool| {
            json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": ready},
                    "targetRef": {"kind": "Pod", "name": "p", "uid": "u"}}])
        };
        index.apply(&slice("web-1", "web", listed(true)));
        index.apply(&slice("api-1", "api", listed(true)));
        assert_eq!(index.states("u", None).len(), 2);
        index.apply(&slice("web-1", "web", listed(false)));
        let key = ("ns".to_string(), "web".to_string());
        assert!(!index.states("u", None)[&key].ready);
        index.delete(&slice("api-1", "api", json!([])));
        assert_eq!(index.states("u", None).len(), 1);
        // A relist that no longer shows web-1 drops it.
        index.relist_started();
        index.relist_done();
        assert!(index.states("u", None).is_empty());
    }

    #[test]
    fn selectors_select_by_labels_and_no_selector_selects_nothing() {
        let svc: Service =
            serde_json::from_value(json!({"spec": {"selector": {"app": "web"}}})).expect("svc");
        let labels: std::collections::BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("x".to_string(), "y".to_string()),
        ]
        .into();
        assert!(selects(&svc, &labels));
        let manual: Service = serde_json::from_value(json!({"spec": {}})).expect("svc");
        assert!(!selects(&manual, &labels));
    }
}
