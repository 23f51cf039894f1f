//! `status.release.group` (the GROUP column) as `kubectl get -w`, kstatus,
//! Argo CD or a script sees it: sampled every 50 ms through a release.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cafe_operator::api::{CafeDeployment, Phase};
use kube::Api;

/// One reading of the release record.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Milliseconds since the watch started.
    pub at_ms: u128,
    pub revision: String,
    pub group: i32,
    pub groups: i32,
    pub phase: Option<Phase>,
}

/// A task reading one CafeDeployment's status every 50 ms until finished
/// (at most `LONGEST`, so that a story that fails never leaves it running).
pub struct GroupWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

const LONGEST: Duration = Duration::from_secs(900);

impl GroupWatch {
    pub fn start(cds: Api<CafeDeployment>, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let name = name.to_string();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < LONGEST {
                tick.tick().await;
                let Ok(cd) = cds.get(&name).await else {
                    continue;
                };
                let Some(status) = cd.status else { continue };
                let Some(release) = status.release else {
                    continue;
                };
                samples.push(Sample {
                    at_ms: started.elapsed().as_millis(),
                    revision: release.revision,
                    group: release.group,
                    groups: release.groups,
                    phase: status.phase,
                });
            }
            samples
        });
        Self { stop, task }
    }

    /// Stops the watch; returns every sample.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the group watch")
    }
}

/// Every step back of the counter within one release (the same revision
/// over the same number of groups): the reading before and the one after.
pub fn steps_back(samples: &[Sample]) -> Vec<(Sample, Sample)> {
    samples
        .windows(2)
        .filter(|w| {
            w[0].revision == w[1].revision && w[0].groups == w[1].groups && w[1].group < w[0].group
        })
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

/// Asserts the watch saw the counter through a whole release of
/// `revision` (from below `groups` up to `groups`), often enough to see a
/// half-second dip, and never going back; prints what it saw.
pub fn assert_never_back(samples: &[Sample], revision: &str, story: &str) {
    let of_release: Vec<&Sample> = samples.iter().filter(|s| s.revision == revision).collect();
    let groups = of_release.last().map_or(0, |s| s.groups);
    let seen: Vec<i32> = of_release
        .iter()
        .map(|s| s.group)
        .fold(Vec::new(), |mut v, g| {
            if v.last() != Some(&g) {
                v.push(g);
            }
            v
        });
    let back = steps_back(samples);
    println!(
        "{story}: {} samples, {} of {revision} ({groups} groups): {seen:?}; {} steps back",
        samples.len(),
        of_release.len(),
        back.len()
    );
    for (before, after) in back.iter().take(10) {
        println!(
            "{story}: went back at {} ms: group {} ({:?}) -> {} ms later: group {} ({:?})",
            before.at_ms,
            before.group,
            before.phase,
            after.at_ms - before.at_ms,
            after.group,
            after.phase
        );
    }
    assert!(
        of_release.len() >= 40,
        "{story}: too few samples of {revision} to see a dip: {}",
        of_release.len()
    );
    assert!(
        of_release.first().is_some_and(|s| s.group < groups)
            && of_release.last().is_some_and(|s| s.group == groups),
        "{story}: the watch did not see the whole release of {revision}: {seen:?} of {groups}"
    );
    assert!(
        back.is_empty(),
        "{story}: the group counter went back {} times: {:?}",
        back.len(),
        back.first()
    );
}
