//! `get -w` and `status`: follow a release by watch and redraw or report on
//! every change until its verdict.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

use super::session::{Failure, Session, now, owned_by, selector};
use super::status::status_line;
use super::view::{self, Snapshot, Verdict};
use crate::api::names::CELL_LABEL;
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet};

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
pub(super) async fn watch_release(
    s: &Session,
    name: &str,
    timeout: Option<Duration>,
    success_on_wait: bool,
    draw: bool,
) -> Result<u8, Failure> {
    let cd = s.cd(name).await?;
    let mut watched = Watched::start(s, name, &cd);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut screen = Screen::new(draw);
    loop {
        if watched.next(deadline).await.is_none() {
            return Ok(ended(name, deadline));
        }
        let Some(cd) = watched.release(name) else {
            continue;
        };
        screen.show(&watched, cd.clone());
        if let Some(v) = view::verdict(&cd, success_on_wait) {
            if v == Verdict::Stalled {
                eprintln!("error: {name} is stalled: {}", view::next_action(&cd));
            }
            return Ok(v.exit_code());
        }
    }
}

/// The exit code when the watches end without a verdict: 2 when `deadline`
/// passed (said), else 3.
fn ended(name: &str, deadline: Option<tokio::time::Instant>) -> u8 {
    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
        eprintln!("error: {name}: timed out before the release completed");
        2
    } else {
        3
    }
}

/// The watches of one release: its CafeDeployment, the cells' sets, and
/// its pods, with the stream of their changes.
struct Watched {
    cds: reflector::Store<CafeDeployment>,
    sets: reflector::Store<InPlaceSet>,
    pods: reflector::Store<Pod>,
    events: futures::stream::SelectAll<futures::stream::BoxStream<'static, ()>>,
}

impl Watched {
    fn start(s: &Session, name: &str, cd: &CafeDeployment) -> Watched {
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
            watcher::Config::default().labels(&selector(cd)),
        );
        let events = futures::stream::select_all([cd_events, set_events, pod_events]);
        Watched {
            cds,
            sets,
            pods,
            events,
        }
    }

    /// Waits for the next change; `None` when the watches end or `deadline`
    /// passes.
    async fn next(&mut self, deadline: Option<tokio::time::Instant>) -> Option<()> {
        match deadline {
            Some(d) => tokio::time::timeout_at(d, self.events.next())
                .await
                .ok()
                .flatten(),
            None => self.events.next().await,
        }
    }

    /// The release `name` as last seen.
    fn release(&self, name: &str) -> Option<CafeDeployment> {
        self.cds
            .state()
            .into_iter()
            .find(|c| c.name_any() == name)
            .map(|c| (*c).clone())
    }

    /// Whether every store holds its first list: a frame drawn before would
    /// show the cells as last seen in the status, as if their sets could not
    /// be read.
    fn listed(&self) -> bool {
        is_listed(&self.sets) && is_listed(&self.pods)
    }

    /// What a frame shows of `cd`.
    fn snapshot(&self, cd: CafeDeployment) -> Snapshot {
        let uid = cd.uid();
        Snapshot {
            sets: self
                .sets
                .state()
                .into_iter()
                .filter(|s| owned_by(s, uid.as_ref()))
                .map(|s| (*s).clone())
                .collect(),
            pods: self
                .pods
                .state()
                .into_iter()
                .map(|p| (*p).clone())
                .collect(),
            cd,
            // Member cells are drawn from the status while watching.
            unread: Default::default(),
            now: now(),
        }
    }
}

/// What was shown last, so that only a change is shown again: the frame
/// (`get -w`) or the status line (`status`, and `get -w` until listed).
struct Screen {
    draw: bool,
    tty: bool,
    last_frame: Vec<String>,
    last_status: String,
}

impl Screen {
    fn new(draw: bool) -> Screen {
        let tty = std::io::stdout().is_terminal();
        if draw && tty {
            print!("\x1b[2J");
        }
        Screen {
            draw,
            tty,
            last_frame: Vec::new(),
            last_status: String::new(),
        }
    }

    fn show(&mut self, watched: &Watched, cd: CafeDeployment) {
        if self.draw && watched.listed() {
            let frame = view::frame(&watched.snapshot(cd));
            if frame != self.last_frame {
                redraw(&frame, self.tty);
                self.last_frame = frame;
            }
        } else {
            let line = status_line(&cd);
            if line != self.last_status {
                println!("{line}");
                self.last_status = line;
            }
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
