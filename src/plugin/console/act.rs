//! The console's actions: the plugin's own verbs, run in the person's
//! session. The API server's refusal (RBAC, four-eyes, CEL) is passed on as
//! it said it, with its status code.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::ResourceExt;
use serde::Deserialize;

use super::Console;
use crate::plugin::confirm::confirm;
use crate::plugin::pause::pause;
use crate::plugin::rollback::rollback;
use crate::plugin::session::{Failure, Kind, refused};
use crate::plugin::{freeze, history};

/// What the page asks for (`POST /api/act`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    pub verb: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    pub revision: Option<i64>,
    pub reason: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub freeze: Option<String>,
}

pub async fn run(console: &Console, asked: Request) -> Response {
    let s = console.session.in_namespace(&asked.namespace);
    let done = match asked.verb.as_str() {
        "confirm" => confirm(&s, &asked.name).await,
        "pause" => pause(&s, &asked.name, true).await,
        "resume" => pause(&s, &asked.name, false).await,
        "rollback" => rollback(&s, &asked.name, asked.revision).await,
        "freeze" => match asked.reason.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => {
                let what = freeze::Asked {
                    reason,
                    namespaces: &asked.namespaces,
                    selector: None,
                    name: None,
                };
                match freeze::create(&s, &what).await {
                    Ok(made) => Ok(freeze::said(&s, &made).await),
                    Err(e) => Err(e),
                }
            }
            _ => Err(refused(
                "a freeze needs a reason (it is shown on every release it holds)",
            )),
        },
        "thaw" => match &asked.freeze {
            Some(name) => freeze::thaw_one(&s, name).await,
            None => Err(refused("name the freeze to thaw")),
        },
        other => Err(refused(format!(
            "the console does not know {other:?} (confirm, pause, resume, rollback, freeze, thaw)"
        ))),
    };
    match done {
        Ok(message) => answer(StatusCode::OK, &serde_json::json!({"message": message})),
        Err(f) => answer(status_of(&f), &serde_json::json!({"error": f.message})),
    }
}

/// A refusal by the API server keeps its code (403 RBAC or policy, 422
/// invalid); one by the plugin (nothing to confirm) is a 409; a cluster
/// that does not answer a 502.
fn status_of(f: &Failure) -> StatusCode {
    match f.kind {
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::Unavailable => StatusCode::BAD_GATEWAY,
        Kind::Usage => StatusCode::BAD_REQUEST,
    }
}

/// The revisions a release can roll back to, newest first.
pub async fn revisions(console: &Console, namespace: &str, name: &str) -> Response {
    let s = console.session.in_namespace(namespace);
    let listed = async {
        let cd = s.cd(name).await?;
        let kept = history::revisions(&s, &cd).await?;
        Ok::<_, Failure>((cd, kept))
    };
    match listed.await {
        Ok((cd, kept)) => {
            let status = cd.status.unwrap_or_default();
            let rows: Vec<serde_json::Value> = kept
                .iter()
                .rev()
                .map(|r| {
                    let own = Some(r.name_any());
                    serde_json::json!({
                        "revision": r.revision,
                        "images": history::images(r).join(", "),
                        "current": own == status.current_revision,
                        "update": own == status.update_revision,
                    })
                })
                .collect();
            answer(StatusCode::OK, &serde_json::Value::Array(rows))
        }
        Err(f) => answer(status_of(&f), &serde_json::json!({"error": f.message})),
    }
}

/// A JSON answer.
pub fn answer(code: StatusCode, body: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_kind_is_its_http_status() {
        let status = |kind| {
            status_of(&Failure {
                kind,
                message: String::new(),
            })
        };
        assert_eq!(status(Kind::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(status(Kind::Invalid), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(Kind::Conflict), StatusCode::CONFLICT);
        assert_eq!(status(Kind::Unavailable), StatusCode::BAD_GATEWAY);
        assert_eq!(
            status(refused("nothing to confirm").kind),
            StatusCode::CONFLICT
        );
    }
}
