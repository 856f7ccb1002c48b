//! `corral admin snapshot save|restore`: backups of the store; `corral admin migrate`:
//! from sled to etcd.

use std::io::Write;

use anyhow::Context;
use corral_client::{HttpTransport, Transport};
use futures::StreamExt;

use super::args::{AdminCommand, SnapshotCommand};

pub(crate) async fn run(conn: &corral_client::Config, c: AdminCommand) -> anyhow::Result<u8> {
    match c {
        AdminCommand::Snapshot(SnapshotCommand::Save { file }) => save(conn, &file).await,
        AdminCommand::Snapshot(SnapshotCommand::Restore { file, data_dir }) => {
            let (revision, objects) = tokio::task::spawn_blocking(move || {
                corral_store::snapshot::restore(&file, &data_dir)
                    .with_context(|| format!("cannot restore {} into {}", file.display(), data_dir.display()))
            })
            .await??;
            outln!("restored {objects} objects at revision {revision}")?;
            Ok(0)
        }
        AdminCommand::Migrate { from, data_dir, to, etcd } => {
            let data_dir = match (from, data_dir) {
                (_, Some(dir)) => dir,
                (Some(from), None) => match from.strip_prefix("sled:") {
                    Some(dir) if !dir.is_empty() => dir.into(),
                    _ => anyhow::bail!("--from {from}: migrate copies a sled store into etcd: give --from sled:DIR"),
                },
                (None, None) => anyhow::bail!("name the store to copy: --from sled:DIR"),
            };
            migrate(&data_dir, &to, &etcd).await
        }
    }
}

/// Copies the sled store in `data_dir` into the empty etcd at `to`, a page at a time,
/// all pages at one revision of the sled store.
async fn migrate(data_dir: &std::path::Path, to: &str, etcd: &super::args::EtcdArgs) -> anyhow::Result<u8> {
    use corral_store::{ListRequest, Storage};
    let endpoints = corral_store_etcd::parse_store_url(to)?;
    let options = super::serve::etcd_options(to, etcd)?;
    if !data_dir.join(corral_store::MARKER_FILE).exists() {
        anyhow::bail!("{} holds no store (choose it with --data-dir)", data_dir.display());
    }
    let sled = corral_store::SledStore::open(data_dir, corral_store::Options::default()).with_context(|| {
        format!("cannot open the store in {} (stop the server that holds it first)", data_dir.display())
    })?;
    let target = corral_store_etcd::EtcdStore::connect(&endpoints, options).await?;
    if !target.is_empty().await? {
        anyhow::bail!("etcd at {to} already holds objects: migrate into an empty etcd (or another --prefix)");
    }
    let mut req = ListRequest { limit: Some(500), ..ListRequest::default() };
    let mut copied = 0usize;
    loop {
        let page = sled.list_page(&req).await?;
        target.import(&page.items).await?;
        copied += page.items.len();
        req.at = Some(page.revision);
        match page.next {
            Some(next) => req.after = Some(next),
            None => {
                outln!("copied {copied} objects (sled revision {}) to etcd at {to}", page.revision)?;
                break;
            }
        }
    }
    sled.shutdown().await;
    Ok(0)
}

async fn save(conn: &corral_client::Config, file: &std::path::Path) -> anyhow::Result<u8> {
    let server = &conn.server;
    let transport = HttpTransport::with_config(conn)?;
    let request = http::Request::get("/admin/snapshot").body(bytes::Bytes::new())?;
    let mut resp = transport.send(request).await?;
    if !resp.status.is_success() {
        let status = resp.status;
        let body = resp.bytes().await.unwrap_or_default();
        anyhow::bail!("{server} refused the snapshot ({status}): {}", String::from_utf8_lossy(&body).trim());
    }
    let tmp = file.with_extension("part");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let mut bytes = 0u64;
    while let Some(chunk) = resp.body.next().await {
        let chunk = chunk.context("the snapshot stream broke off")?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk).with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // Checked before it takes the name: a cut stream never passes for a backup.
    let (revision, objects) = match corral_store::snapshot::check_snapshot(&tmp) {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).context("the snapshot received is incomplete; nothing was saved");
        }
    };
    std::fs::rename(&tmp, file).with_context(|| format!("cannot move the snapshot to {}", file.display()))?;
    outln!("saved {objects} objects at revision {revision} to {} ({bytes} bytes)", file.display())?;
    Ok(0)
}
