//! The lossless checker: records every version of the namespace's pods and of
//! a Service's EndpointSlices from watches (ordered by resourceVersion, which
//! pods and slices share), then proves from the event order that
//! - every pod whose containers changed had left every EndpointSlice of the
//!   Service (endpoint not ready) and every declared traffic component (no
//!   traffic finalizer) before the change;
//! - every pod the operator deleted had left them before its deletion;
//! - the Service never had zero ready endpoints once it had one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::task::JoinHandle;

use crate::support::namespace::TestNs;

const GATE: &str = "cafe.sofastack.io/traffic-ready";
const TRAFFIC_PREFIX: &str = "traffic.cafe.sofastack.io/";

/// The checker's watches retry every 250 ms, however often they failed: an
/// instrument must be back as soon as the API server is. kube's default
/// backoff doubles up to 30 s between attempts while the API server is down
/// or not yet serving watches, and once outlived the chaos story's 60 s wait
/// for the checker to list again after an API server restart.
struct Prompt;

impl Iterator for Prompt {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(250))
    }
}

impl kube::runtime::utils::Backoff for Prompt {
    fn reset(&mut self) {}
}

/// A recorded object version.
#[derive(Clone, Debug)]
pub enum Version {
    Pod {
        rv: u64,
        uid: String,
        name: String,
        images: Vec<String>,
        gate: Option<String>,
        finalizers: Vec<String>,
        deleting: bool,
    },
    Slice {
        rv: u64,
        name: String,
        /// (pod uid, ready) per endpoint.
        endpoints: Vec<(String, bool)>,
    },
}

impl Version {
    pub fn rv(&self) -> u64 {
        match self {
            Version::Pod { rv, .. } | Version::Slice { rv, .. } => *rv,
        }
    }
}

fn rv_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the checker found, for the test to print or assert on.
#[derive(Debug, Default)]
pub struct Summary {
    /// Pods whose containers changed in place.
    pub changed: usize,
    /// Pods deleted.
    pub deleted: usize,
    /// The fewest ready endpoints the Service had once it had one.
    pub min_ready: usize,
}

pub struct Lossless {
    log: Arc<Mutex<Vec<Version>>>,
    /// Lists completed by the pod and the slice watch (a restart of the API
    /// server makes both list again).
    lists: Arc<[AtomicUsize; 2]>,
    tasks: Vec<JoinHandle<()>>,
    service: String,
    /// Pods the test itself deleted: their loss is the test's doing.
    excused: Vec<String>,
}

impl Lossless {
    /// Starts recording `service`'s EndpointSlices and the namespace's pods.
    pub async fn start(ns: &TestNs, service: &str) -> Self {
        Self::start_in(&ns.client, &ns.name, service).await
    }

    /// `start` in namespace `ns` of the cluster `client` talks to (a member).
    pub async fn start_in(client: &kube::Client, ns: &str, service: &str) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let lists = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod_log = log.clone();
        let pod_lists = lists.clone();
        let pod_task = tokio::spawn(async move {
            let mut s = watcher(pods, watcher::Config::default())
                .backoff(Prompt)
                .boxed();
            while let Some(event) = s.next().await {
                let p = match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    Ok(watcher::Event::InitDone) => {
                        pod_lists[0].fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    _ => continue,
                };
                let v = Version::Pod {
                    rv: rv_of(&p.metadata),
                    uid: p.uid().unwrap_or_default(),
                    name: p.name_any(),
                    images: p
                        .spec
                        .as_ref()
                        .map(|s| {
                            s.containers
                                .iter()
                                .filter_map(|c| c.image.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    gate: crate::support::pods::pod_condition(&p, GATE),
                    finalizers: p.finalizers().to_vec(),
                    deleting: p.metadata.deletion_timestamp.is_some(),
                };
                if let Ok(mut l) = pod_log.lock() {
                    l.push(v);
                }
            }
        });
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
        let config =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        let slice_log = log.clone();
        let slice_lists = lists.clone();
        let slice_task = tokio::spawn(async move {
            let mut s = watcher(slices, config).backoff(Prompt).boxed();
            while let Some(event) = s.next().await {
                let slice = match event {
                    Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                    Ok(watcher::Event::InitDone) => {
                        slice_lists[1].fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    _ => continue,
                };
                let endpoints = slice
                    .endpoints
                    .iter()
                    .map(|e| {
                        (
                            e.target_ref
                                .as_ref()
                                .and_then(|t| t.uid.clone())
                                .unwrap_or_default(),
                            e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                        )
                    })
                    .collect();
                if let Ok(mut l) = slice_log.lock() {
                    l.push(Version::Slice {
                        rv: rv_of(&slice.metadata),
                        name: slice.name_any(),
                        endpoints,
                    });
                }
            }
        });
        // Let both watches list before the story acts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Self {
            log,
            lists,
            tasks: vec![pod_task, slice_task],
            service: service.to_string(),
            excused: Vec::new(),
        }
    }

    /// How many lists each watch (pods, slices) completed.
    pub fn lists(&self) -> [usize; 2] {
        [
            self.lists[0].load(Ordering::SeqCst),
            self.lists[1].load(Ordering::SeqCst),
        ]
    }

    /// The test deletes this pod itself: its deletion is not checked.
    pub fn excuse(&mut self, pod: &str) {
        self.excused.push(pod.to_string());
    }

    /// The versions recorded so far, in resourceVersion order.
    pub fn versions(&self) -> Vec<Version> {
        let mut v = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        v.sort_by_key(Version::rv);
        v
    }

    /// Checks the whole recording; panics naming the pod and what it did.
    pub async fn verify(&self) -> Summary {
        // The last events need a moment to arrive.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let versions = self.versions();
        let mut summary = Summary {
            min_ready: usize::MAX,
            ..Summary::default()
        };
        // Per pod: its previous version, to see each change.
        let mut last: BTreeMap<String, &Version> = BTreeMap::new();
        // Per slice: its latest endpoints; per pod uid: ready in the Service.
        let mut slices: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        let mut seen_ready = false;
        for v in &versions {
            match v {
                Version::Slice {
                    name, endpoints, ..
                } => {
                    slices.insert(name.clone(), endpoints.clone());
                    let ready: usize = slices
                        .values()
                        .map(|e| e.iter().filter(|(_, r)| *r).count())
                        .sum();
                    if ready > 0 {
                        seen_ready = true;
                    }
                    if seen_ready {
                        summary.min_ready = summary.min_ready.min(ready);
                        assert!(
                            ready > 0,
                            "Service {} had zero ready endpoints at resourceVersion {}",
                            self.service,
                            v.rv()
                        );
                    }
                }
                Version::Pod {
                    uid,
                    name,
                    images,
                    deleting,
                    rv,
                    ..
                } => {
                    if let Some(Version::Pod {
                        images: before_images,
                        finalizers: before_finalizers,
                        gate: before_gate,
                        deleting: was_deleting,
                        ..
                    }) = last.get(uid).copied()
                    {
                        let changed = before_images != images;
                        let deleted = *deleting && !was_deleting && !self.excused.contains(name);
                        if changed || deleted {
                            let what = if changed { "changed" } else { "was deleted" };
                            if changed {
                                summary.changed += 1;
                            } else {
                                summary.deleted += 1;
                            }
                            let held: Vec<&String> = before_finalizers
                                .iter()
                                .filter(|f| f.starts_with(TRAFFIC_PREFIX))
                                .collect();
                            assert!(
                                held.is_empty(),
                                "pod {name} {what} at resourceVersion {rv} while {held:?} still routed to it"
                            );
                            assert_ne!(
                                before_gate.as_deref(),
                                Some("True"),
                                "pod {name} {what} at resourceVersion {rv} with its traffic gate open"
                            );
                            let endpoint_ready = slices
                                .values()
                                .flatten()
                                .any(|(u, ready)| u == uid && *ready);
                            assert!(
                                !endpoint_ready,
                                "pod {name} {what} at resourceVersion {rv} while still a ready endpoint of Service {}",
                                self.service
                            );
                        }
                    }
                    last.insert(uid.clone(), v);
                }
            }
        }
        if summary.min_ready == usize::MAX {
            summary.min_ready = 0;
        }
        println!(
            "lossless: {} pods changed in place, {} deleted, fewest ready endpoints of {}: {}",
            summary.changed, summary.deleted, self.service, summary.min_ready
        );
        summary
    }
}

impl Drop for Lossless {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
