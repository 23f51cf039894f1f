//! Sign-off: who did each step of a release, as the API server vouches for it.
//!
//! The operator cannot know who wrote an object (a watch event carries no
//! user), so identities are recorded where they are known: in admission. The
//! MutatingAdmissionPolicy `cafe-signoff-stamps` (deploy/signoff/) writes the
//! requester's user name into a stamp annotation on every write that changes
//! what the stamp is about; the ValidatingAdmissionPolicy `cafe-signoff`
//! refuses a write that sets a stamp by hand, edits the history, or confirms a
//! group of a template its author wrote (four-eyes, opt-in). The operator
//! reads the stamps when it acts on the write and appends the release history.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::{self, Rule};

/// The stamps the API server writes (annotations on the CafeDeployment), each
/// the user name of the request that last changed what it names.
pub mod stamp {
    /// `spec.template` (and the creation).
    pub const TEMPLATE: &str = "cafe.sofastack.io/template-changed-by";
    /// `cafe.sofastack.io/upgrade-confirmed` set to "true"; removed when the
    /// annotation is set to anything else (the operator's reset opens a wait).
    pub const CONFIRMED: &str = "cafe.sofastack.io/confirmed-by";
    /// "break-glass" when the confirmation's author also wrote the template
    /// and passed four-eyes as a member of the break-glass group.
    pub const CONFIRM_BYPASS: &str = "cafe.sofastack.io/confirm-bypass";
    /// `spec.strategy.pause` changed (paused or resumed).
    pub const PAUSE: &str = "cafe.sofastack.io/pause-changed-by";
    /// `spec.rollbackTo` set.
    pub const ROLLBACK: &str = "cafe.sofastack.io/rollback-requested-by";
    /// `spec.strategy.analysis` changed.
    pub const ANALYSIS: &str = "cafe.sofastack.io/analysis-changed-by";
    /// `cafe.sofastack.io/window-override` set.
    pub const WINDOW_OVERRIDE: &str = "cafe.sofastack.io/window-override-by";
    /// A dry-run probe: the operator sends it with any value and the policy
    /// answers "stamped", which proves the policy is in force for the object.
    pub const PROBE: &str = "cafe.sofastack.io/signoff-probe";
    /// What the policy answers a probe with.
    pub const PROBE_ANSWER: &str = "stamped";
    /// Every stamp the history reads (the probe aside).
    pub const ALL: [&str; 7] = [
        TEMPLATE,
        CONFIRMED,
        CONFIRM_BYPASS,
        PAUSE,
        ROLLBACK,
        ANALYSIS,
        WINDOW_OVERRIDE,
    ];
}

/// CafeDeployment annotation: a reason to release inside a deny window. It
/// opens the window that holds the release (or the next one to begin) until
/// that window ends; then the operator removes it.
pub const WINDOW_OVERRIDE_ANNOTATION: &str = "cafe.sofastack.io/window-override";

/// CafeDeployment annotation stamped by the API server from the namespace's
/// ConfigMap `cafe-signoff`: its rules (`fourEyes,humanBeta`).
pub const SIGNOFF_RULES_ANNOTATION: &str = "cafe.sofastack.io/signoff-rules";

/// ControllerRevision annotation: the history entries of that revision (a
/// JSON list, append-only), so a revision's story outlives the status.
pub const REVISION_HISTORY_ANNOTATION: &str = "cafe.sofastack.io/history";

/// What `by` reads when the identity cannot be vouched for (no policy in force).
pub const UNVERIFIED: &str = "unverified";
/// What `by` reads for a step the analysis took.
pub const BY_ANALYSIS: &str = "analysis";
/// What `by` reads for a step the operator took on its own (a drained cell,
/// a window that closed).
pub const BY_OPERATOR: &str = "operator";

/// How many entries `status.history` keeps: the newest. About 250 bytes an
/// entry, so at most ~12 KiB of a status that is rewritten on every change;
/// enough for the last few releases (each takes 2 + 2 x groups entries). The
/// revisions keep their own entries for as long as they are kept
/// (`historyLimit`), Events and the log lines for as long as those are kept.
pub const STATUS_HISTORY_LIMIT: usize = 50;
/// How many entries a ControllerRevision keeps (the first ones: later ones
/// stay in status, Events and logs).
pub const REVISION_HISTORY_LIMIT: usize = 200;

/// Sign-off rules of one CafeDeployment (the namespace's ConfigMap
/// `cafe-signoff` sets them for every CafeDeployment in it). Turning a rule
/// off needs the verb `signoff` on cafedeployments (the policy checks it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signoff {
    /// The author of the template being released may not confirm its groups.
    #[serde(default)]
    pub four_eyes: bool,
    /// The Beta group is confirmed by a person, never by the analysis alone.
    #[serde(default)]
    pub human_beta: bool,
}

/// A step of a release, as the history records it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HistoryAction {
    /// A new template (a new revision) to release.
    TemplateChanged,
    /// A group started moving pods.
    GroupOpened,
    /// A group's wait ended by a person's or the analysis's confirmation.
    Confirmed,
    Paused,
    Resumed,
    /// A rollback requested (`spec.rollbackTo`) or ordered by the analysis.
    RolledBack,
    /// A ReleaseFreeze began holding this CafeDeployment.
    Frozen,
    /// That freeze was thawed.
    Thawed,
    /// A deny window began holding the release.
    WindowClosed,
    /// The window ended (or was overridden).
    WindowOpened,
    /// Someone released inside a deny window, with a reason.
    WindowOverride,
    /// `spec.strategy.analysis` changed.
    AnalysisChanged,
    /// The release completed: every pod runs the revision.
    Completed,
    /// An action a newer operator recorded that this version does not know.
    #[serde(other)]
    Other,
}

impl HistoryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemplateChanged => "TemplateChanged",
            Self::GroupOpened => "GroupOpened",
            Self::Confirmed => "Confirmed",
            Self::Paused => "Paused",
            Self::Resumed => "Resumed",
            Self::RolledBack => "RolledBack",
            Self::Frozen => "Frozen",
            Self::Thawed => "Thawed",
            Self::WindowClosed => "WindowClosed",
            Self::WindowOpened => "WindowOpened",
            Self::WindowOverride => "WindowOverride",
            Self::AnalysisChanged => "AnalysisChanged",
            Self::Completed => "Completed",
            Self::Other => "Other",
        }
    }
}

/// One step of a release: what, who, when, on which revision and group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Numbers the entries of one CafeDeployment, from 1, without gaps.
    pub seq: i64,
    pub action: HistoryAction,
    /// The user name the API server stamped, `analysis`, `operator`, or
    /// `unverified` when no policy vouches for the identity.
    pub by: String,
    /// When the operator recorded the step (it acts on a write within a
    /// second of it; the API server's audit log has the write's own time).
    pub at: Time,
    /// The revision (`<name>-<hash>`) the step belongs to.
    pub revision: String,
    /// The group (1-based) the step opened or confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<i32>,
    /// What the step came from, when not a person's write: a ReleaseFreeze
    /// (`ReleaseFreeze/<name>`), a deny window (`window/<name>`), the
    /// analysis (`analysis/<digest of its spec>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The details: the analysis's query and value, the freeze or window and
    /// its reason, a break-glass bypass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A time in which no group opens and no pod starts moving (a pause and a
/// rollback still do): it begins at each time `schedule` names in `timeZone`
/// and lasts `duration`. E.g. no changes from Friday 16:00 to Monday 08:00 in
/// Zurich: schedule "0 16 * * FRI", duration "2d16h", timeZone "Europe/Zurich".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = deny_window_rules)]
pub struct DenyWindow {
    /// Shown in status and events.
    pub name: String,
    /// When each window begins: a cron line of five fields (minute hour
    /// day-of-month month day-of-week), e.g. "0 16 * * FRI", "0 0 20 12 *".
    pub schedule: String,
    /// How long each window lasts, e.g. "64h", "2d16h", "14d" (at most 31d).
    /// Days are calendar days in `timeZone` (a day over a clock change is 23
    /// or 25 hours).
    pub duration: String,
    /// The IANA time zone `schedule` is read in, e.g. "Europe/Zurich".
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".to_string()
}

fn deny_window_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "name"], "maxLength", json!(63));
    rules::bound(schema, &["properties", "schedule"], "maxLength", json!(128));
    rules::bound(schema, &["properties", "duration"], "maxLength", json!(32));
    rules::bound(schema, &["properties", "timeZone"], "maxLength", json!(64));
    rules::push(
        schema,
        &[
            Rule {
                rule: "size(self.name) > 0",
                message: "a deny window needs a name (it is shown in status)",
                field_path: ".name",
            },
            Rule {
                rule: "size(self.schedule.split(' ').filter(f, f != '')) == 5",
                message: "schedule must be a cron line of five fields: minute hour day-of-month \
                          month day-of-week, e.g. \"0 16 * * FRI\"",
                field_path: ".schedule",
            },
            Rule {
                rule: "self.duration.matches('^([0-9]+d)?([0-9]+h)?([0-9]+m)?$') && \
                       size(self.duration) > 0",
                message: "duration must be days, hours and minutes, e.g. \"64h\", \"2d16h\" \
                          or \"30m\"",
                field_path: ".duration",
            },
        ],
    );
}

/// The deny window holding a release, in status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowStatus {
    /// The window's name (a ReleaseFreeze's windows: `<freeze>/<window>`).
    pub name: String,
    /// When this occurrence began.
    pub since: Time,
    /// When releases may go on again.
    pub reopens_at: Time,
    /// An override in force: who and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}
