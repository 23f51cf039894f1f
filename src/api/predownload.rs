//! Image pre-download: while a release waits, the images of the new template
//! are pulled onto the nodes of the pods not yet updated, so that their
//! in-place restart does not wait for a pull.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pull the new template's images onto the nodes of the pods a release has
/// not updated yet, before their turn comes. Each pull is a short-lived pod on
/// the node (no privilege, no access to the node's runtime): it mounts the
/// image as an image volume, so kubelet pulls it with the pods' pull secrets,
/// and is deleted once its container runs. Needs Kubernetes 1.35 or newer
/// (image volumes on by default).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreDownload {
    /// Nodes pulling at once in each cell.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 100))]
    pub parallelism: i32,
    /// Seconds a node's pull may take before it is reported failed (and
    /// tried again at the next release).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 10, max = 86400))]
    pub timeout_seconds: i32,
}

fn default_parallelism() -> i32 {
    4
}

fn default_timeout() -> i32 {
    600
}

impl Default for PreDownload {
    fn default() -> Self {
        Self {
            parallelism: default_parallelism(),
            timeout_seconds: default_timeout(),
        }
    }
}

/// How far the pre-download of one InPlaceSet's update revision has come.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreDownloadStatus {
    /// The revision whose images are pulled.
    pub revision: String,
    /// The images pulled (those of the update template that differ from
    /// what the pods run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Nodes of pods not yet updated: where the images are wanted.
    #[serde(default)]
    pub nodes: i32,
    /// Nodes that have the images (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulled: Vec<String>,
    /// Nodes pulling now.
    #[serde(default)]
    pub pulling: i32,
    /// Nodes whose pull failed, with kubelet's reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<PullFailure>,
}

/// A node whose pull failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullFailure {
    pub node: String,
    pub message: String,
}
