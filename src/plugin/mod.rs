//! `kubectl cafe`: watch a release live and operate it. Every verb speaks the
//! existing API only (the confirmation annotation, spec fields), so plain
//! `kubectl` keeps working beside it.
//!
//! Exit codes: 0 done (the verb succeeded; for `get -w` and `status`, the
//! release completed, or waits for a person with `--success-on-wait`);
//! 1 the release is stalled, or the verb was refused (nothing to confirm,
//! nothing to roll back to, not found, or the API server refused the write:
//! RBAC, an admission policy such as four-eyes, validation — its message is
//! printed as kubectl prints it); 2 `--timeout` passed; 3 the cluster could
//! not be reached or the command line is wrong.

mod console;
mod freeze;
pub(crate) mod history;
pub mod view;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures::{FutureExt, StreamExt};
use kube::api::{ListParams, Patch};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use crate::api::names::{CAFEDEPLOYMENT_UID_LABEL, CELL_LABEL, UPGRADE_CONFIRMED_ANNOTATION};
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster, Phase};
use crate::runtime::{members, patch_as};
use view::{Snapshot, Verdict};

/// The field manager of the plugin's writes (confirm, pause, resume, rollback).
const MANAGER: &str = "kubectl-cafe";

/// Watch and operate CafeDeployment releases.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl cafe",
    bin_name = "kubectl cafe",
    version,
    about = "Watch and operate CafeDeployment releases",
    after_help = "Exit codes: 0 done; 1 stalled or refused; 2 timed out; 3 cluster or usage error."
)]
pub struct Cli {
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// Output format, where a verb prints objects.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Show a release: phase, next action, group progress, and the tree of
    /// cells, InPlaceSets and pods.
    #[command(after_help = "Example:\n  kubectl cafe get demo -w --timeout 10m")]
    Get {
        name: String,
        /// Redraw on every change until the release completes (exit 0) or
        /// stalls (exit 1).
        #[arg(short = 'w', long)]
        watch: bool,
        /// Give up after this long (e.g. 30s, 5m, 1h); exit 2.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// One line per CafeDeployment: phase, group i/N, what it waits for.
    #[command(after_help = "Example:\n  kubectl cafe list -A")]
    List {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Confirm the group the release waits for.
    #[command(after_help = "Example:\n  kubectl cafe confirm demo")]
    Confirm { name: String },
    /// Pause the release (pods already moving finish; nothing new starts).
    #[command(after_help = "Example:\n  kubectl cafe pause demo")]
    Pause { name: String },
    /// Resume a paused release.
    #[command(after_help = "Example:\n  kubectl cafe resume demo")]
    Resume { name: String },
    /// Roll back to the previous revision, or to one from `history`.
    #[command(after_help = "Example:\n  kubectl cafe rollback demo --to-revision 3")]
    Rollback {
        name: String,
        #[arg(long)]
        to_revision: Option<i64>,
    },
    /// The revisions kept for rollback, their images, and who did each step
    /// of their releases (as the API server vouches for it).
    #[command(
        after_help = "Examples:\n  kubectl cafe history demo\n  kubectl cafe history demo -o json"
    )]
    History { name: String },
    /// Set container images: a new release.
    #[command(after_help = "Example:\n  kubectl cafe set image demo app=nginx:1.27")]
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Stop every release in progress, in every cluster (or those picked by
    /// --namespaces and -l), recorded with who and why: a ReleaseFreeze.
    #[command(
        after_help = "Examples:\n  kubectl cafe freeze --reason \"incident 4711: payments down\"\n  kubectl cafe freeze --reason \"bank holiday\" --namespaces payments,ledger -l tier=core"
    )]
    Freeze {
        /// Why (shown on every frozen release).
        #[arg(long)]
        reason: String,
        /// Only these namespaces (default: all of them).
        #[arg(long, value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Only CafeDeployments with these labels (key=value[,key=value]).
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// The ReleaseFreeze's name (default: freeze-<date>-<time>).
        #[arg(long)]
        name: Option<String>,
    },
    /// End freezes: the releases they held go on; the records stay.
    #[command(
        after_help = "Examples:\n  kubectl cafe unfreeze freeze-20261203-101500\n  kubectl cafe unfreeze --all"
    )]
    Unfreeze {
        names: Vec<String>,
        /// Every freeze still in force.
        #[arg(long)]
        all: bool,
    },
    /// A live web console of the releases: served on this machine only
    /// (127.0.0.1), every action made with your own credentials.
    #[command(
        after_help = "Examples:\n  kubectl cafe console -n shop --open\n  kubectl cafe console -A --read-only --port 9000"
    )]
    Console(console::Options),
    /// Wait for the release like `kubectl rollout status`.
    #[command(after_help = "Example:\n  kubectl cafe status demo --timeout 10m --success-on-wait")]
    Status {
        name: String,
        /// Give up after this long (e.g. 30s, 5m); exit 2.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Exit 0 when the release waits for a confirmation or is paused
        /// (CI that confirms elsewhere).
        #[arg(long)]
        success_on_wait: bool,
        /// Report once instead of waiting (same verdict, same exit codes).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SetWhat {
    /// `NAME CONTAINER=IMAGE...`
    Image {
        name: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// `30s`, `5m`, `1h30m`, `90` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 1h"))?;
        digits.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("{text:?}: unknown unit {c:?}; use s, m or h")),
        };
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(format!("{text:?} is not a duration like 30s, 5m or 1h"));
    }
    Ok(Duration::from_secs(total))
}

/// A failure with its exit code and a message that says what to do.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// Printed as it is (the API server's refusal, as kubectl prints it),
    /// not after `error: `.
    pub verbatim: bool,
}

fn refused(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
        verbatim: false,
    }
}

fn unreachable(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 3,
        message: format!("{e}"),
        verbatim: false,
    }
}

/// An error of a write: refused by the API server (403 Forbidden: RBAC or
/// an admission policy such as four-eyes; 422 Invalid) exits 1 with the
/// server's message as kubectl prints it; anything else is exit 3.
fn api_failure(e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 422 => Failure {
            code: 1,
            message: from_server(&s.reason, &s.message),
            verbatim: true,
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

struct Session {
    client: Client,
    namespace: String,
    output: Option<Output>,
}

impl Session {
    async fn connect(cli: &Cli) -> Result<Self, Failure> {
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
    fn in_namespace(&self, namespace: &str) -> Session {
        Session {
            client: self.client.clone(),
            namespace: namespace.to_string(),
            output: None,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn cd(&self, name: &str) -> Result<CafeDeployment, Failure> {
        match self.api::<CafeDeployment>().get_opt(name).await {
            Ok(Some(cd)) => Ok(cd),
            Ok(None) => Err(refused(format!(
                "CafeDeployment {name} not found in namespace {}: list them with `kubectl cafe list -A`",
                self.namespace
            ))),
            Err(e) => Err(unreachable(e)),
        }
    }

    async fn patch(&self, name: &str, patch: serde_json::Value) -> Result<(), Failure> {
        self.api::<CafeDeployment>()
            .patch(name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_failure)
    }

    fn print<T: serde::Serialize>(&self, value: &T) -> bool {
        let text = match self.output {
            Some(Output::Json) => serde_json::to_string_pretty(value).unwrap_or_default(),
            Some(Output::Yaml) => serde_yaml::to_string(value).unwrap_or_default(),
            None => return false,
        };
        println!("{text}");
        true
    }

    async fn snapshot(&self, cd: CafeDeployment) -> Result<Snapshot, Failure> {
        let uid = cd.uid();
        let sets: Vec<InPlaceSet> = self
            .api::<InPlaceSet>()
            .list(&ListParams::default().labels(CELL_LABEL))
            .await
            .map_err(unreachable)?
            .items
            .into_iter()
            .filter(|s| {
                s.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
            })
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
            let text = members::kubeconfig_in(&secret, &r.key)
                .ok_or_else(|| format!("no key {} in its Secret", r.key))?;
            let (client, _) = members::build_client(&text).await?;
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
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
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

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn selector(cd: &CafeDeployment) -> String {
    crate::api::selector_string(&cd.spec.selector)
}

/// Runs the command line; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    match dispatch(&cli).await {
        Ok(code) => code,
        Err(f) if f.verbatim => {
            eprintln!("{}", f.message);
            f.code
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<u8, Failure> {
    let s = Session::connect(cli).await?;
    match &cli.verb {
        Verb::Get {
            name,
            watch,
            timeout,
        } => {
            if *watch {
                return watch_release(&s, name, *timeout, false, true).await;
            }
            let cd = s.cd(name).await?;
            if s.print(&cd) {
                return Ok(0);
            }
            let snap = s.snapshot(cd).await?;
            for line in view::header(&snap)
                .into_iter()
                .chain([String::new()])
                .chain(view::tree(&snap))
            {
                println!("{line}");
            }
            Ok(0)
        }
        Verb::List { all_namespaces } => list(&s, *all_namespaces).await,
        Verb::Confirm { name } => say(confirm(&s, name).await?),
        Verb::Pause { name } => say(pause(&s, name, true).await?),
        Verb::Resume { name } => say(pause(&s, name, false).await?),
        Verb::Rollback { name, to_revision } => say(rollback(&s, name, *to_revision).await?),
        Verb::History { name } => history::history(&s, name).await,
        Verb::Set {
            what: SetWhat::Image { name, images },
        } => set_image(&s, name, images).await,
        Verb::Freeze {
            reason,
            namespaces,
            selector,
            name,
        } => freeze::freeze(&s, reason, namespaces, selector.as_deref(), name.as_deref()).await,
        Verb::Unfreeze { names, all } => freeze::unfreeze(&s, names, *all).await,
        Verb::Console(options) => console::serve(s, options).await,
        Verb::Status {
            name,
            timeout,
            success_on_wait,
            watch,
        } => {
            if *watch {
                return watch_release(&s, name, *timeout, *success_on_wait, false).await;
            }
            let cd = s.cd(name).await?;
            println!("{}", status_line(&cd));
            match view::verdict(&cd, *success_on_wait) {
                Some(v) => Ok(v.exit_code()),
                // Still moving: like `kubectl rollout status --watch=false`, not done.
                None => Ok(2),
            }
        }
    }
}

/// A verb's success, printed: exit 0.
fn say(message: String) -> Result<u8, Failure> {
    println!("{message}");
    Ok(0)
}

fn status_line(cd: &CafeDeployment) -> String {
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.unwrap_or_default();
    format!(
        "{} {}: {} (group {}/{}, {} of {} pods updated)",
        view::icon(status.phase),
        status.phase.map_or("Unknown".into(), |p| format!("{p:?}")),
        release.message,
        release.group,
        release.groups,
        status.updated_replicas,
        cd.spec.replicas
    )
}

async fn list(s: &Session, all: bool) -> Result<u8, Failure> {
    let api: Api<CafeDeployment> = if all {
        Api::all(s.client.clone())
    } else {
        s.api()
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(unreachable)?
        .items;
    items.sort_by_key(|c| (c.namespace(), c.name_any()));
    if s.print(&items) {
        return Ok(0);
    }
    if items.is_empty() {
        eprintln!(
            "no CafeDeployments{}",
            if all {
                ""
            } else {
                " in this namespace (try -A)"
            }
        );
        return Ok(0);
    }
    println!("{}", view::list_heading(all));
    for cd in &items {
        println!("{}", view::list_line(cd, all));
    }
    Ok(0)
}

/// Confirms the group `name` waits for; says what happened.
async fn confirm(s: &Session, name: &str) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    let status = cd.status.clone().unwrap_or_default();
    if status.phase != Some(Phase::WaitingForConfirm) {
        return Err(refused(format!(
            "{name} waits for no confirmation (phase {}); `kubectl cafe get {name}` shows what it does",
            status.phase.map_or("Unknown".into(), |p| format!("{p:?}"))
        )));
    }
    if cd
        .annotations()
        .get(UPGRADE_CONFIRMED_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Ok(format!("{name}: already confirmed; the next group starts"));
    }
    // Conditional on what was read: a confirmation lands on the wait it saw.
    // The operator writes the object's status meanwhile (counts catching up):
    // as long as the same wait is on record, confirm again on the new version.
    let wait = status
        .release
        .as_ref()
        .and_then(|r| r.awaiting_confirmation.clone());
    let mut seen = cd;
    for _ in 0..5 {
        let patch = json!({"metadata": {
            "resourceVersion": seen.resource_version(),
            "annotations": {UPGRADE_CONFIRMED_ANNOTATION: "true"}
        }});
        match s
            .api::<CafeDeployment>()
            .patch(name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let release = status.release.unwrap_or_default();
                return Ok(format!(
                    "{name}: confirmed group {} of {}",
                    release.group + 1,
                    release.groups
                ));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                seen = s.cd(name).await?;
                let still = seen.status.as_ref().and_then(|st| {
                    (st.phase == Some(Phase::WaitingForConfirm))
                        .then(|| st.release.as_ref()?.awaiting_confirmation.clone())
                        .flatten()
                });
                if still.is_none() || still != wait {
                    break;
                }
            }
            // Refused by the API server (four-eyes, RBAC): its words, exit 1.
            Err(e) => return Err(api_failure(e)),
        }
    }
    Err(refused(format!(
        "{name} changed while confirming; look again with `kubectl cafe get {name}` and confirm again"
    )))
}

/// Pauses (`on`) or resumes `name`; says what happened.
async fn pause(s: &Session, name: &str, on: bool) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    if cd.spec.strategy.pause == on {
        return Ok(format!(
            "{name}: already {}",
            if on { "paused" } else { "running" }
        ));
    }
    s.patch(name, json!({"spec": {"strategy": {"pause": on}}}))
        .await?;
    Ok(format!("{name}: {}", if on { "paused" } else { "resumed" }))
}

/// Rolls `name` back to revision `to` (default: the newest earlier one);
/// says to which.
async fn rollback(s: &Session, name: &str, to: Option<i64>) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    let history = history::revisions(s, &cd).await?;
    let update = cd.status.as_ref().and_then(|st| st.update_revision.clone());
    let target = match to {
        Some(n) => history.iter().find(|r| r.revision == n),
        None => history
            .iter()
            .filter(|r| Some(r.name_any()) != update)
            .max_by_key(|r| r.revision),
    };
    let Some(target) = target else {
        let kept: Vec<i64> = history.iter().map(|r| r.revision).collect();
        return Err(refused(match to {
            Some(n) => format!(
                "{name} has no revision {n} (kept: {kept:?}); see `kubectl cafe history {name}`"
            ),
            None => format!("{name} has no earlier revision to roll back to"),
        }));
    };
    s.patch(
        name,
        json!({"spec": {"rollbackTo": {"revision": target.revision}}}),
    )
    .await?;
    Ok(format!(
        "{name}: rolling back to revision {} ({})",
        target.revision,
        history::images(target).join(",")
    ))
}

async fn set_image(s: &Session, name: &str, pairs: &[String]) -> Result<u8, Failure> {
    let cd = s.cd(name).await?;
    let containers = cd
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut ops = Vec::new();
    for pair in pairs {
        let Some((container, image)) = pair.split_once('=') else {
            return Err(Failure {
                code: 3,
                message: format!("{pair:?}: write CONTAINER=IMAGE, e.g. app=nginx:1.27"),
                verbatim: false,
            });
        };
        let Some(i) = containers.iter().position(|c| c.name == container) else {
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            return Err(refused(format!(
                "{name} has no container {container:?}; its containers: {}",
                names.join(", ")
            )));
        };
        ops.push(json!({"op": "test", "path": format!("/spec/template/spec/containers/{i}/name"), "value": container}));
        ops.push(json!({"op": "replace", "path": format!("/spec/template/spec/containers/{i}/image"), "value": image}));
    }
    let patch: json_patch::Patch = serde_json::from_value(json!(ops)).map_err(unreachable)?;
    s.api::<CafeDeployment>()
        .patch(name, &patch_as(MANAGER), &Patch::Json::<()>(patch))
        .await
        .map_err(api_failure)?;
    println!("{name}: releasing {}", pairs.join(" "));
    Ok(0)
}

/// A store of `api`'s objects kept current by a watch, and the stream that
/// drives it (an item per change).
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (reflector::Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = reflector(writer, watcher(api, config))
        .default_backoff()
        .map(|_| ())
        .boxed();
    (store, events)
}

/// Whether `store` holds its first complete list (a watch's initial list is
/// applied at once when it ends, not object by object).
fn is_listed<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// `get -w` and `status`: follow the CafeDeployment, its sets and its pods by
/// watch (no polling), redraw or report on every change, and end with the
/// verdict — the same verdict with or without a watch.
async fn watch_release(
    s: &Session,
    name: &str,
    timeout: Option<Duration>,
    success_on_wait: bool,
    draw: bool,
) -> Result<u8, Failure> {
    let cd = s.cd(name).await?;
    let (cds, cd_events) = follow(
        s.api::<CafeDeployment>(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let (sets, set_events) = follow(
        s.api::<InPlaceSet>(),
        watcher::Config::default().labels(CELL_LABEL),
    );
    let (pods, pod_events) = follow(
        s.api::<Pod>(),
        watcher::Config::default().labels(&selector(&cd)),
    );
    let mut events = futures::stream::select_all([cd_events, set_events, pod_events]);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let tty = std::io::stdout().is_terminal();
    let mut last_frame = Vec::new();
    let mut last_status = String::new();
    if draw && tty {
        print!("\x1b[2J");
    }
    loop {
        let tick = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, events.next())
                    .await
                    .ok()
                    .flatten(),
                None => events.next().await,
            }
        };
        let more = tick.await;
        if more.is_none() {
            let code = if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                2
            } else {
                3
            };
            if code == 2 {
                eprintln!("error: {name}: timed out before the release completed");
            }
            return Ok(code);
        }
        let Some(cd) = cds
            .state()
            .into_iter()
            .find(|c: &std::sync::Arc<CafeDeployment>| c.name_any() == name)
        else {
            continue;
        };
        let cd = (*cd).clone();
        let uid = cd.uid();
        // A frame drawn before every store is listed would show the cells
        // as last seen in the status, as if their sets could not be read.
        let listed = is_listed(&sets) && is_listed(&pods);
        if draw && listed {
            let snap = Snapshot {
                sets: sets
                    .state()
                    .into_iter()
                    .filter(|s: &std::sync::Arc<InPlaceSet>| {
                        s.owner_references()
                            .iter()
                            .any(|o| Some(&o.uid) == uid.as_ref())
                    })
                    .map(|s| (*s).clone())
                    .collect(),
                pods: pods
                    .state()
                    .into_iter()
                    .map(|p: std::sync::Arc<Pod>| (*p).clone())
                    .collect(),
                cd: cd.clone(),
                // Member cells are drawn from the status while watching.
                unread: Default::default(),
                now: now(),
            };
            let frame: Vec<String> = view::header(&snap)
                .into_iter()
                .chain([String::new()])
                .chain(view::tree(&snap))
                .collect();
            if frame != last_frame {
                redraw(&frame, tty);
                last_frame = frame;
            }
        } else {
            let line = status_line(&cd);
            if line != last_status {
                println!("{line}");
                last_status = line;
            }
        }
        if let Some(v) = view::verdict(&cd, success_on_wait) {
            if v == Verdict::Stalled {
                eprintln!("error: {name} is stalled: {}", view::next_action(&cd));
            }
            return Ok(v.exit_code());
        }
    }
}

/// Redraws in place: cursor home, each line cleared to its end, the rest of
/// the screen cleared; no full clear, so nothing flickers.
fn redraw(frame: &[String], tty: bool) {
    let mut out = std::io::stdout().lock();
    if tty {
        let _ = write!(out, "\x1b[H");
        for line in frame {
            let _ = write!(out, "{line}\x1b[K\r\n");
        }
        let _ = write!(out, "\x1b[J");
    } else {
        for line in frame {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectls() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn every_verb_has_help_with_an_example() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for verb in cli.get_subcommands() {
            let help = verb
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("kubectl cafe"),
                "{} has no example",
                verb.get_name()
            );
        }
        Cli::command().debug_assert();
    }

    #[test]
    fn a_refusal_by_the_api_server_reads_as_kubectl_prints_it() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "cafedeployments.cafe.sofastack.io \"demo\" is forbidden: \
                        ValidatingAdmissionPolicy 'cafe-signoff' denied request: four-eyes"
        }))
        .expect("status");
        let f = api_failure(kube::Error::Api(Box::new(status)));
        assert_eq!((f.code, f.verbatim), (1, true));
        assert_eq!(
            f.message,
            "Error from server (Forbidden): cafedeployments.cafe.sofastack.io \"demo\" is \
             forbidden: ValidatingAdmissionPolicy 'cafe-signoff' denied request: four-eyes"
        );
        assert_eq!(from_server("", "boom"), "Error from server: boom");
        let conflict: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": 500, "message": "etcd"}))
                .expect("status");
        assert_eq!(api_failure(kube::Error::Api(Box::new(conflict))).code, 3);
    }
}
