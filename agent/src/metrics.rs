//! The agent's Prometheus metrics.

use std::time::Duration;

use corral_api::kinds::task::TaskPhase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of a task's final phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// e.g. `FINISHED`.
    pub phase: String,
}

/// Counters and gauges of one agent.
pub struct AgentMetrics {
    /// Tasks running now.
    pub running: Gauge,
    /// Tasks launched.
    pub launches: Counter,
    /// Seconds from accepting a task to its running.
    pub launch_seconds: Histogram,
    /// Tasks ended, by final phase.
    pub ended: Family<PhaseLabel, Counter>,
    /// Heartbeats that failed.
    pub heartbeat_failures: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            running: Gauge::default(),
            launches: Counter::default(),
            launch_seconds: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            ended: Family::default(),
            heartbeat_failures: Counter::default(),
        }
    }
}

impl AgentMetrics {
    /// Registers every metric under `corral_agent_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("corral_agent");
        r.register("tasks_running", "Tasks running on this node", self.running.clone());
        r.register("task_launches", "Tasks launched", self.launches.clone());
        r.register("task_launch_seconds", "From accepting a task to its running", self.launch_seconds.clone());
        r.register("tasks_ended", "Tasks ended, by final phase", self.ended.clone());
        r.register("heartbeat_failures", "Heartbeats that failed", self.heartbeat_failures.clone());
    }

    /// Records a launch.
    pub fn launched(&self, took: Duration) {
        self.launches.inc();
        self.launch_seconds.observe(took.as_secs_f64());
    }

    /// Records a task's end.
    pub fn ended(&self, phase: TaskPhase) {
        let phase = serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        self.ended.get_or_create(&PhaseLabel { phase }).inc();
    }
}
