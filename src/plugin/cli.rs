//! The command line: `kubectl cafe`'s verbs and flags (clap), and the
//! duration flags' parser. What each verb does lives in its own file.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Console(ConsoleOptions),
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

/// `kubectl cafe console` flags.
#[derive(Args, Debug, Clone)]
pub struct ConsoleOptions {
    /// Every namespace (default: the one of -n or the context).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 8467)]
    pub port: u16,
    /// The address to listen on. Anything but a loopback address lets others
    /// on the network reach the console (it still acts as you): a warning is
    /// printed.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub address: IpAddr,
    /// Show, never act: no button is enabled and every action is refused.
    #[arg(long)]
    pub read_only: bool,
    /// Open the page in the desktop's browser (xdg-open or open).
    #[arg(long)]
    pub open: bool,
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
}
