//! `kubectl cafe set image NAME CONTAINER=IMAGE...`: a new release, by a
//! JSON patch that tests each container's name before it replaces its image.

use kube::api::Patch;
use serde_json::json;

use super::session::{Failure, MANAGER, Session, api_failure, refused, unreachable, usage};
use crate::api::CafeDeployment;
use crate::runtime::patch_as;

pub(super) async fn set_image(s: &Session, name: &str, pairs: &[String]) -> Result<u8, Failure> {
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
            return Err(usage(format!(
                "{pair:?}: write CONTAINER=IMAGE, e.g. app=nginx:1.27"
            )));
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
