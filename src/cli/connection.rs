//! Where the CLI connects and as whom: flags and environment first, then the
//! configuration file (`--kubeconfig`, `$CORRAL_CONFIG`, `~/.corral/config`).

use anyhow::Context;
use corral_client::Config;

use super::args::Cli;

/// The server when nothing names one.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// The connection the command line asks for.
pub(crate) fn resolve(cli: &Cli) -> anyhow::Result<Config> {
    let from_file = match &cli.kubeconfig {
        // A file named explicitly must exist.
        Some(path) => Some(Config::from_kubeconfig(path).with_context(|| "reading --kubeconfig")?),
        None => Config::infer()?,
    };
    let mut config = from_file.unwrap_or_default();
    if let Some(server) = &cli.server {
        config.server = server.clone();
    }
    if config.server.is_empty() {
        config.server = DEFAULT_SERVER.to_string();
    }
    if let Some(token) = &cli.token {
        config.token = Some(token.clone());
        // The token named on the command line is who the command acts as.
        config.client_identity = None;
    }
    if let Some(ca) = &cli.certificate_authority {
        let pem = std::fs::read(ca).with_context(|| format!("reading --certificate-authority {}", ca.display()))?;
        config.ca_pem = Some(pem);
    }
    Ok(config)
}
