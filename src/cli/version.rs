//! `corral version [--client] [-o yaml|json]`: this binary's version and the
//! server's, as `kubectl version` prints them.

use corral_api::version::VersionInfo;
use serde::Serialize;

use super::args::{VersionArgs, VersionFormat};
use super::output::{to_json, to_yaml};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions {
    client_version: VersionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<VersionInfo>,
}

pub(crate) async fn run(conn: &corral_client::Config, a: VersionArgs) -> anyhow::Result<u8> {
    let client_version = VersionInfo::of(env!("CARGO_PKG_VERSION"));
    // The client's line is printed before the server is asked, so that it is there
    // even when the server cannot be reached (the error then follows it).
    if a.output == VersionFormat::Text {
        outln!("Client Version: {} ({})", client_version.git_version, client_version.platform)?;
    }
    let server_version = if a.client {
        None
    } else {
        let client = corral_client::Client::from_config(conn)?;
        let v: VersionInfo = client.call_json("/version", None).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the server's version at {}/version: {e}; `corral version --client` prints the client's alone",
                conn.server.trim_end_matches('/')
            )
        })?;
        Some(v)
    };
    match a.output {
        VersionFormat::Text => {
            if let Some(v) = &server_version {
                outln!("Server Version: {} ({})", v.git_version, v.platform)?;
            }
        }
        VersionFormat::Yaml => out!("{}", to_yaml(&Versions { client_version, server_version })?)?,
        VersionFormat::Json => out!("{}", to_json(&Versions { client_version, server_version })?)?,
    }
    Ok(0)
}
