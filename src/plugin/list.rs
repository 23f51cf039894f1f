//! `kubectl cafe list [-A]`: one line per CafeDeployment.

use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::session::{Failure, Session, unreachable};
use super::view;
use crate::api::CafeDeployment;

pub(super) async fn list(s: &Session, all: bool) -> Result<u8, Failure> {
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
