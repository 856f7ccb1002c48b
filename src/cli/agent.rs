//! `corral agent` (in progress).
use super::args::AgentArgs;
pub(crate) async fn run(_server: &str, _a: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
