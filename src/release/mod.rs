//! Releasing a new pod template in groups: the group planner. (The release
//! state machine of the CafeDeployment controller builds on it.)

pub mod plan;
pub mod state;
