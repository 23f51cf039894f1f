//! The words for a member that cannot be trusted now: since when it is
//! silent and what to check, or that it rejects its credential and which
//! Secret to put a fresh kubeconfig in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::SecretKeyRef;

/// Why a member that has not answered for `unreachableAfterSeconds` is not
/// trusted: since when it is silent (this operator's last answer, else the
/// last contact its status recorded, else since when this operator tries),
/// the last error, and what to do.
pub(super) fn silent(name: &str, heard: Heard) -> String {
    let tried = heard
        .trying_since
        .map_or_else(|| "it started".to_string(), second);
    let since = match (heard.contact, heard.recorded) {
        (Some(t), _) => format!("has not answered since {}", second(t)),
        (None, Some(t)) => format!(
            "has not answered since {} (the last contact on record); this operator has tried \
             since {tried}",
            second(t)
        ),
        (None, None) => format!("has not answered this operator, which has tried since {tried}"),
    };
    let error = heard.error.map_or(String::new(), |e| format!(": {e}"));
    format!(
        "member cluster {name} {since}{error}. Nothing is written there until it answers; \
         check that its API server is up and reachable from this cluster"
    )
}

/// What the host heard of a member, to say since when it is silent.
#[derive(Clone, Copy, Default)]
pub(super) struct Heard<'a> {
    /// This operator's last answer from it.
    pub contact: Option<&'a Time>,
    /// The last contact its MemberCluster's status recorded.
    pub recorded: Option<&'a Time>,
    /// Since when this operator has tried.
    pub trying_since: Option<&'a Time>,
    /// The last error.
    pub error: Option<&'a str>,
}

/// A 401 from the member: the credential in its kubeconfig Secret expired or
/// was revoked. Says which Secret key to put a fresh kubeconfig in.
pub(crate) fn credential_rejected(source: &SecretKeyRef, message: &str) -> (&'static str, String) {
    let secret = format!(
        "Secret {}/{} key {}",
        source.namespace, source.name, source.key
    );
    (
        "Unauthorized",
        format!(
            "it rejects the credential of the kubeconfig in {secret} ({message}): expired or \
             revoked. Put a fresh kubeconfig in {secret}; the host rebuilds its client as soon \
             as it sees the change"
        ),
    )
}

/// `t` to the second, as messages show it.
pub(super) fn second(t: &Time) -> String {
    t.0.round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(t.0)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().expect("time"))
    }

    #[test]
    fn silence_is_counted_from_the_last_answer_else_the_record_else_the_first_try() {
        let (tried, recorded, answered) = (
            at("2026-12-07T10:05:00.4Z"),
            at("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:06:00Z"),
        );
        let mut heard = Heard {
            trying_since: Some(&tried),
            error: Some("connection refused"),
            ..Heard::default()
        };
        let never = silent("dc-3", heard);
        assert!(
            never.contains(
                "has not answered this operator, which has tried since \
                 2026-12-07T10:05:00Z: connection refused"
            ),
            "{never}"
        );
        heard.recorded = Some(&recorded);
        let on_record = silent("dc-3", heard);
        assert!(
            on_record.contains(
                "has not answered since 2026-12-07T10:00:00Z (the last contact on record); \
                 this operator has tried since 2026-12-07T10:05:00Z"
            ),
            "{on_record}"
        );
        heard.contact = Some(&answered);
        let since = silent("dc-3", heard);
        assert!(since.contains("has not answered since 2026-12-07T10:06:00Z: connection refused"));
        for why in [never, on_record, since] {
            assert!(!why.contains("never answered") && why.contains("check that its API server"));
        }
    }

    #[test]
    fn a_rejected_credential_names_the_secret_and_what_to_do() {
        let source = SecretKeyRef {
            namespace: "cafe-system".into(),
            name: "dc-2".into(),
            key: "kubeconfig".into(),
        };
        let (reason, message) = credential_rejected(&source, "Unauthorized");
        assert_eq!(reason, "Unauthorized");
        assert!(
            message.contains("Secret cafe-system/dc-2 key kubeconfig"),
            "{message}"
        );
        assert!(
            message.contains("expired or revoked. Put a fresh kubeconfig in"),
            "{message}"
        );
    }
}
