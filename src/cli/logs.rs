//! `corral logs` (in progress).
use super::args::LogsArgs;
pub(crate) async fn run(_ctx: &super::Ctx, _a: LogsArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
