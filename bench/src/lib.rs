//! The benchmarks behind `corral-bench …`. They print figures; they assert nothing.

mod agent;
pub mod cluster;
mod controller;
pub mod dns;
pub mod dns_propagation;
pub mod ha;
pub mod hollow;
pub mod jobs;
mod load;
pub mod procs;
pub mod services;
mod soak;
mod store;
pub mod sync;
mod versus;

pub use agent::{AgentBenchOptions, run_agent_bench};
pub use controller::{ControllerBenchOptions, run_controller_bench};
pub use ha::{HaBenchOptions, run_ha_bench};
pub use load::{LoadResult, closed_loop, open_loop, percentile_ms};
pub use soak::{SoakOptions, run_soak};
pub use store::{StoreBenchOptions, run_store_bench};
pub use versus::run_versus;
