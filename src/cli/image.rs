//! `corral image import|ls|rm` (in progress).
use super::args::ImageCommand;
pub(crate) async fn run(_c: ImageCommand) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
