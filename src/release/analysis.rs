//! The metric analysis of a group, pure: reading a Prometheus answer, judging
//! one measurement against a query's conditions, tallying measurements, the
//! verdict and when the next measurement is due. The shell only sends the
//! queries; every rule here is a unit or property test.
//!
//! Rules (what Argo Rollouts' and Flagger's users found missing or wrong):
//! - an empty result or a NaN value is never a crash and never a silent pass:
//!   it counts as the query's `onEmpty` (Inconclusive by default);
//! - a query Prometheus cannot answer is an *error*, not a verdict: errors
//!   back off (interval x 2^n, at most 5 minutes) and only more than
//!   `errorLimit` in a row give the verdict Error;
//! - a single bad sample fails the group only beyond `failureLimit`;
//! - the verdict, once reached, is final for that group: nothing re-measures
//!   it, so no re-pausing loop.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    Analysis, AnalysisPhase, AnalysisQuery, AnalysisStatus, EmptyResult, MEASUREMENTS_KEPT,
    Measurement, QueryTally,
};

/// The longest wait between two measurements after errors.
const MAX_BACKOFF_SECONDS: i64 = 300;

/// The values of a Prometheus instant-query answer (`/api/v1/query`): one per
/// series of a vector, the scalar, or the newest point of each series of a
/// matrix. An answer Prometheus marks as an error is an `Err` with its words.
pub fn parse_answer(body: &[u8]) -> Result<Vec<f64>, String> {
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a Prometheus API answer ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus refused the query: {} {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or("(no message)")
        ));
    }
    let data = &answer["data"];
    let point = |p: &serde_json::Value| -> Result<f64, String> {
        let text = p
            .get(1)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("a sample without a value: {p}"))?;
        // Prometheus writes NaN, +Inf and -Inf as such.
        text.parse::<f64>()
            .map_err(|_| format!("a sample value that is not a number: {text:?}"))
    };
    let empty = Vec::new();
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|s| point(&s["value"]))
            .collect(),
        Some("scalar") => Ok(vec![point(&data["result"])?]),
        Some("matrix") => data["result"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|s| s["values"].as_array()?.last().cloned())
            .map(|p| point(&p))
            .collect(),
        other => Err(format!(
            "a result of type {} cannot be judged: return a number (a vector or a scalar)",
            other.unwrap_or("(none)")
        )),
    }
}

/// The facts of a group that a query template may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub namespace: String,
    pub name: String,
    /// The revision name (`<name>-<hash>`).
    pub revision: String,
    /// The pods' `cafe.sofastack.io/revision` label values of the revision
    /// (one per cell: a cell's template carries its cell label).
    pub pod_revisions: Vec<String>,
    /// The group analysed, 1-based.
    pub group: usize,
    /// The cells and pods the group released.
    pub cells: Vec<String>,
    pub pods: Vec<String>,
}

/// The query with `{{namespace}}`, `{{name}}`, `{{revision}}`, `{{group}}`,
/// `{{cells}}`, `{{pods}}` and `{{podRevisions}}` filled in; the last three
/// as regex alternations (`a|b`) for `=~`.
pub fn fill(template: &str, facts: &Facts) -> String {
    [
        ("{{namespace}}", facts.namespace.clone()),
        ("{{name}}", facts.name.clone()),
        ("{{revision}}", facts.revision.clone()),
        ("{{podRevisions}}", facts.pod_revisions.join("|")),
        ("{{group}}", facts.group.to_string()),
        ("{{cells}}", facts.cells.join("|")),
        ("{{pods}}", facts.pods.join("|")),
    ]
    .iter()
    .fold(template.to_string(), |q, (key, value)| {
        q.replace(key, value)
    })
}

/// A condition that does not compile, as a user can act on it.
pub fn check_conditions(query: &AnalysisQuery) -> Result<(), String> {
    for (field, text) in conditions(query) {
        cel::Program::compile(text).map_err(|e| {
            format!(
                "analysis query {:?}: {field} {text:?} is not a CEL expression ({e}); \
                 write it over `result`, e.g. \"result < 0.05\"",
                query.name
            )
        })?;
    }
    Ok(())
}

fn conditions(query: &AnalysisQuery) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("successCondition", query.success_condition.as_deref()),
        ("failureCondition", query.failure_condition.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, text)| Some((field, text?)))
}

/// Whether `condition` holds for `value`.
fn holds(condition: &str, value: f64) -> Result<bool, String> {
    let program = cel::Program::compile(condition)
        .map_err(|e| format!("{condition:?} is not a CEL expression: {e}"))?;
    let mut context = cel::Context::default();
    context.add_variable_from_value("result", cel::Value::Float(value));
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("{condition:?} gave {other:?}, not true or false")),
        Err(e) => Err(format!("{condition:?} failed: {e}")),
    }
}

/// Values shown per measurement; more are summarised (status stays small).
const VALUES_SHOWN: usize = 5;
/// Characters of a measurement's message kept in status.
const MESSAGE_KEPT: usize = 300;

/// The values as status shows them: a few, then how many in all.
fn show(values: &[f64]) -> String {
    match values {
        [one] => format!("{one}"),
        many => {
            let shown: Vec<String> = many
                .iter()
                .take(VALUES_SHOWN)
                .map(|v| format!("{v}"))
                .collect();
            let more = if many.len() > VALUES_SHOWN {
                format!(", ... ({} series)", many.len())
            } else {
                String::new()
            };
            format!("[{}{more}]", shown.join(", "))
        }
    }
}

fn bounded(mut message: String) -> String {
    if message.len() > MESSAGE_KEPT {
        let mut end = MESSAGE_KEPT;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// Judges one answer to `query`. With both conditions: Failed when the
/// failure condition holds for any series, Successful when the success
/// condition holds for all, Inconclusive when neither; with one condition,
/// the other outcome is its negation.
pub fn judge(query: &AnalysisQuery, answer: Result<Vec<f64>, String>, at: &Time) -> Measurement {
    let measurement = |phase, value: String, message: String| Measurement {
        query: query.name.clone(),
        phase,
        value,
        at: at.clone(),
        message: bounded(message),
    };
    let values = match answer {
        Ok(v) => v,
        Err(e) => return measurement(AnalysisPhase::Error, String::new(), e),
    };
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        let phase = match query.on_empty {
            EmptyResult::Inconclusive => AnalysisPhase::Inconclusive,
            EmptyResult::Success => AnalysisPhase::Successful,
            EmptyResult::Failure => AnalysisPhase::Failed,
        };
        let what = if values.is_empty() {
            "no series"
        } else {
            "a NaN value"
        };
        return measurement(
            phase,
            show(&values),
            format!("the query returned {what}: counted as onEmpty {phase:?}"),
        );
    }
    let all = |condition: &str| -> Result<bool, String> {
        values
            .iter()
            .try_fold(true, |acc, v| Ok(acc && holds(condition, *v)?))
    };
    let any = |condition: &str| -> Result<bool, String> {
        values
            .iter()
            .try_fold(false, |acc, v| Ok(acc || holds(condition, *v)?))
    };
    let verdict = (|| -> Result<(AnalysisPhase, String), String> {
        let failed = match &query.failure_condition {
            Some(c) => any(c)?.then(|| format!("failureCondition {c:?} holds")),
            None => None,
        };
        if let Some(why) = failed {
            return Ok((AnalysisPhase::Failed, why));
        }
        Ok(match (&query.success_condition, &query.failure_condition) {
            (Some(c), _) if all(c)? => (AnalysisPhase::Successful, String::new()),
            (Some(c), None) => (
                AnalysisPhase::Failed,
                format!("successCondition {c:?} does not hold"),
            ),
            (Some(c), Some(f)) => (
                AnalysisPhase::Inconclusive,
                format!("neither successCondition {c:?} nor failureCondition {f:?} holds"),
            ),
            (None, _) => (AnalysisPhase::Successful, String::new()),
        })
    })();
    match verdict {
        Ok((phase, why)) => measurement(phase, show(&values), why),
        Err(e) => measurement(AnalysisPhase::Error, show(&values), e),
    }
}

/// A new analysis of `group` of `revision`, started now.
pub fn start(spec: &Analysis, revision: &str, group: usize, now: &Time) -> AnalysisStatus {
    AnalysisStatus {
        revision: revision.to_string(),
        group: i32::try_from(group).unwrap_or(i32::MAX),
        phase: AnalysisPhase::Running,
        started_at: now.clone(),
        message: format!(
            "measuring {} quer{} after {}s, {} time{} every {}s",
            spec.queries.len(),
            if spec.queries.len() == 1 { "y" } else { "ies" },
            spec.initial_delay_seconds,
            spec.count,
            plural(spec.count),
            spec.interval_seconds
        ),
        action: None,
        queries: spec
            .queries
            .iter()
            .map(|q| QueryTally {
                name: q.name.clone(),
                ..QueryTally::default()
            })
            .collect(),
        measurements: Vec::new(),
    }
}

/// The record after `measurements` (one round: one per query), with its
/// verdict. A concluded analysis is returned as it is.
pub fn record(
    spec: &Analysis,
    previous: &AnalysisStatus,
    measurements: Vec<Measurement>,
) -> AnalysisStatus {
    if previous.phase != AnalysisPhase::Running {
        return previous.clone();
    }
    let mut next = previous.clone();
    for m in &measurements {
        let tally = match next.queries.iter_mut().find(|t| t.name == m.query) {
            Some(t) => t,
            None => {
                next.queries.push(QueryTally {
                    name: m.query.clone(),
                    ..QueryTally::default()
                });
                next.queries.last_mut().expect("just pushed")
            }
        };
        match m.phase {
            AnalysisPhase::Successful => tally.successful += 1,
            AnalysisPhase::Failed => tally.failed += 1,
            AnalysisPhase::Inconclusive => tally.inconclusive += 1,
            AnalysisPhase::Error => tally.errors += 1,
            AnalysisPhase::Running => {}
        }
        if m.phase == AnalysisPhase::Error {
            tally.consecutive_errors += 1;
        } else {
            tally.consecutive_errors = 0;
        }
    }
    next.measurements.extend(measurements);
    let excess = next.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    next.measurements.drain(..excess);
    let (phase, message) = verdict(spec, &next);
    next.phase = phase;
    next.message = message;
    next
}

/// The verdict of the tallies: Failed if any query failed beyond its limit,
/// else Error if any erred beyond its limit, else Inconclusive if any was
/// inconclusive beyond its limit, else Successful once every query was
/// measured `count` times, else still Running.
pub fn verdict(spec: &Analysis, record: &AnalysisStatus) -> (AnalysisPhase, String) {
    if let Some(beyond) = beyond_limit(spec, record) {
        return beyond;
    }
    let done = spec.queries.iter().all(|q| {
        record
            .queries
            .iter()
            .any(|t| t.name == q.name && measured(t) >= spec.count)
    });
    if done {
        let names: Vec<&str> = spec.queries.iter().map(|q| q.name.as_str()).collect();
        return (
            AnalysisPhase::Successful,
            format!(
                "{} passed {} measurement{}",
                names.join(", "),
                spec.count,
                plural(spec.count)
            ),
        );
    }
    (AnalysisPhase::Running, running(spec, record))
}

/// How often a query was measured with a result (errors do not count).
fn measured(t: &QueryTally) -> i32 {
    t.successful + t.failed + t.inconclusive
}

/// The first limit a query went beyond, in order of precedence, with the
/// phase it concludes and why.
fn beyond_limit(spec: &Analysis, record: &AnalysisStatus) -> Option<(AnalysisPhase, String)> {
    // In order of precedence: a failure beyond its limit outweighs errors,
    // errors outweigh an inconclusive result.
    type Limit<'a> = (AnalysisPhase, fn(&QueryTally) -> i32, i32, &'a str, &'a str);
    let limits: [Limit; 3] = [
        (
            AnalysisPhase::Failed,
            |t| t.failed,
            spec.failure_limit,
            "failed",
            "failureLimit",
        ),
        (
            AnalysisPhase::Error,
            |t| t.consecutive_errors,
            spec.error_limit,
            "could not be measured, in a row,",
            "errorLimit",
        ),
        (
            AnalysisPhase::Inconclusive,
            |t| t.inconclusive,
            spec.inconclusive_limit,
            "was inconclusive",
            "inconclusiveLimit",
        ),
    ];
    for (phase, count, limit, what, field) in limits {
        if let Some(t) = record.queries.iter().find(|t| count(t) > limit) {
            let n = count(t);
            return Some((
                phase,
                format!(
                    "query {} {what} {n} time{} ({field} {limit}); {}",
                    t.name,
                    plural(n),
                    last_of(record, &t.name)
                ),
            ));
        }
    }
    None
}

/// The last measurement of query `name` in words ("last Failed = 3: why"),
/// or nothing when it has none.
fn last_of(record: &AnalysisStatus, name: &str) -> String {
    record
        .measurements
        .iter()
        .rev()
        .find(|m| m.query == name)
        .map(|m| {
            let value = if m.value.is_empty() {
                String::new()
            } else {
                format!(" = {}", m.value)
            };
            let why = if m.message.is_empty() {
                String::new()
            } else {
                format!(": {}", m.message)
            };
            format!("last {:?}{value}{why}", m.phase)
        })
        .unwrap_or_default()
}

/// The message of a running analysis: how far the least measured query got,
/// and the last measurement.
fn running(spec: &Analysis, record: &AnalysisStatus) -> String {
    let least = record
        .queries
        .iter()
        .map(measured)
        .min()
        .unwrap_or_default();
    format!(
        "measured {least} of {} time{}{}",
        spec.count,
        plural(spec.count),
        record
            .measurements
            .last()
            .map(|m| format!(
                "; last {} {:?}{}",
                m.query,
                m.phase,
                if m.value.is_empty() {
                    String::new()
                } else {
                    format!(" = {}", m.value)
                }
            ))
            .unwrap_or_default()
    )
}

fn plural(n: i32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Seconds until the next measurement is due (0: now; `None`: concluded).
/// The first waits `initialDelaySeconds` from the start; the next ones
/// `intervalSeconds` from the last, doubled per consecutive error.
pub fn due_in(spec: &Analysis, record: &AnalysisStatus, now: &Time) -> Option<i64> {
    if record.phase != AnalysisPhase::Running {
        return None;
    }
    let now = now.0.as_second();
    let due = match record.measurements.last() {
        None => record.started_at.0.as_second() + i64::from(spec.initial_delay_seconds),
        Some(last) => {
            let errors = record
                .queries
                .iter()
                .map(|t| t.consecutive_errors)
                .max()
                .unwrap_or(0)
                .clamp(0, 16);
            let interval = i64::from(spec.interval_seconds);
            let wait = if errors == 0 {
                interval
            } else {
                (interval << (errors - 1)).min(MAX_BACKOFF_SECONDS.max(interval))
            };
            last.at.0.as_second() + wait
        }
    };
    Some((due - now).max(0))
}

#[cfg(test)]
mod tests;
