//! The MemberCluster controller: keeps each registered member cluster
//! connected, registered while in use, and its status current. The registry
//! it keeps (`crate::placement::members`) is what the CafeDeployment
//! controller reads.

pub mod connection;
pub mod controller;
