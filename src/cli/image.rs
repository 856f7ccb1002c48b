//! `corral image push|ls` work on the cluster's registry, through the API server;
//! `corral image import|rm` and `ls --work-dir` on a node's image store directly (not
//! through the API server), so that images can be loaded on nodes that cannot reach
//! the control plane's registry, before or while the agent runs.

use std::io::{IsTerminal, Write};

use corral_agent::Layout;
use corral_agent::image::push::{PushEvent, RemoteImage};
use corral_agent::image::{ImageInfo, ImageStore, ImportEvent};

use super::args::{ImageCommand, ImageDirArgs, ImageImportArgs, ImageLsArgs, ImagePushArgs, ImageRmArgs};
use super::output::{Table, age, now_unix};

pub(crate) async fn run(c: ImageCommand, conn: &corral_client::Config) -> anyhow::Result<u8> {
    match c {
        ImageCommand::Push(a) => push(a, conn).await,
        ImageCommand::Ls(ImageLsArgs { work_dir: None }) => ls_cluster(conn).await,
        // The store works on files and takes file locks: keep it off the async workers.
        ImageCommand::Ls(ImageLsArgs { work_dir: Some(work_dir) }) => {
            tokio::task::spawn_blocking(move || ls(ImageDirArgs { work_dir })).await?
        }
        ImageCommand::Import(a) => tokio::task::spawn_blocking(move || import(a)).await?,
        ImageCommand::Rm(a) => tokio::task::spawn_blocking(move || rm(a)).await?,
    }
}

async fn push(a: ImagePushArgs, conn: &corral_client::Config) -> anyhow::Result<u8> {
    let client = corral_client::Client::from_config(conn)?;
    let file = a.file.display().to_string();
    // On a terminal one line per blob is rewritten as bytes go; elsewhere (a log, a
    // test) each blob gets a line when it starts and when it is done.
    let tty = std::io::stderr().is_terminal();
    let mut progress = move |event: PushEvent| match event {
        PushEvent::Reading => eprintln!("reading {file}"),
        PushEvent::Skipped { what, digest, size } => {
            eprintln!("{what} sha256:{} ({}): already in the registry, skipped", short(&digest), human_size(size))
        }
        PushEvent::Sending { what, digest, sent, size } => {
            let line = format!("{what} sha256:{} {} / {}", short(&digest), human_size(sent), human_size(size));
            if tty {
                eprint!("\r{line}");
                if sent == size {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            } else if sent == 0 || sent == size {
                eprintln!("{line}{}", if sent == size { " pushed" } else { "" });
            }
        }
    };
    let pushed = corral_agent::image::push::push(&client, &a.file, a.name.as_deref(), &mut progress)
        .await
        .map_err(|e| anyhow::anyhow!("cannot push {}: {e}", a.file.display()))?;
    eprintln!("pushed {} ({}, {})", pushed.name, pushed.digest, human_size(pushed.size));
    outln!("{}@{}", pushed.name, pushed.digest)?;
    Ok(0)
}

async fn ls_cluster(conn: &corral_client::Config) -> anyhow::Result<u8> {
    let client = corral_client::Client::from_config(conn)?;
    let images = corral_agent::image::push::list(&client).await?;
    out!("{}", remote_table(&images).render())?;
    Ok(0)
}

fn short(hex: &str) -> &str {
    &hex[..12.min(hex.len())]
}

/// One row per tag of the cluster's registry.
fn remote_table(images: &[RemoteImage]) -> Table {
    let mut t = Table::new(["REPOSITORY", "TAG", "DIGEST", "SIZE"]);
    for i in images {
        t.rows.push(vec![i.repository.clone(), i.tag.clone(), i.digest.clone(), human_size(i.size)]);
    }
    t
}

fn open(dir: &ImageDirArgs) -> anyhow::Result<ImageStore> {
    let layout = Layout::new(&dir.work_dir)?;
    Ok(ImageStore::open(layout.images())?)
}

fn import(a: ImageImportArgs) -> anyhow::Result<u8> {
    // An import into a directory no agent uses succeeds and helps nobody: say so
    // before the task that needed it fails.
    let work = &a.dir.work_dir;
    if !work.join("tasks").is_dir() && !work.join("runc").is_dir() {
        eprintln!(
            "warning: no agent has run in {} (it has no tasks/ or runc/): an agent only sees the images of its own \
             --work-dir (`corral up`: DATA_DIR/agent). `corral image push FILE` makes an image available to every node",
            work.display()
        );
    }
    let store = open(&a.dir)?;
    let file = a.file.display().to_string();
    let info = store
        .import_with_progress(&a.file, a.name.as_deref(), &mut |event| match event {
            ImportEvent::Reading { archive } => eprintln!("reading {}", archive.display()),
            ImportEvent::Layer { index, count, digest, bytes } => {
                eprintln!("layer {index}/{count} sha256:{} ({})", &digest[..12.min(digest.len())], human_size(bytes))
            }
            ImportEvent::AlreadyPresent { id } => eprintln!("image {} already present; adding names", &id[..12]),
        })
        .map_err(anyhow::Error::from)
        .map_err(|e| if e.to_string().contains(&file) { e } else { e.context(format!("cannot import {file}")) })?;
    out!("{}", table(&[info]).render())?;
    Ok(0)
}

fn ls(a: ImageDirArgs) -> anyhow::Result<u8> {
    // Listing must not create a work dir where there is none.
    let images = if a.work_dir.join("images").is_dir() { open(&a)?.list()? } else { Vec::new() };
    out!("{}", table(&images).render())?;
    Ok(0)
}

fn rm(a: ImageRmArgs) -> anyhow::Result<u8> {
    if !a.dir.work_dir.join("images").is_dir() {
        anyhow::bail!("no image store in {}", a.dir.work_dir.display());
    }
    let store = open(&a.dir)?;
    let mut code = 0;
    for reference in &a.images {
        match store.remove_detailed(reference) {
            Ok(r) => {
                for name in &r.untagged {
                    outln!("untagged: {name}")?;
                }
                if r.deleted {
                    outln!("deleted: sha256:{}", r.image.id)?;
                }
            }
            Err(e) => {
                eprintln!("error: {reference}: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// One row per name (`<none>` for an unnamed image).
fn table(images: &[ImageInfo]) -> Table {
    let now = now_unix();
    let mut t = Table::new(["NAME", "ID", "SIZE", "LAYERS", "CREATED"]);
    for image in images {
        let created = match image.created.as_deref() {
            Some(ts) => format!("{} ago", age(Some(ts), now)),
            None => "<unknown>".to_string(),
        };
        let none = ["<none>".to_string()];
        let names = if image.names.is_empty() { &none[..] } else { &image.names[..] };
        for name in names {
            t.rows.push(vec![
                name.clone(),
                image.id[..12.min(image.id.len())].to_string(),
                human_size(image.size_bytes),
                image.layers.to_string(),
                created.clone(),
            ]);
        }
    }
    t.rows.sort_by(|a, b| (a[0] == "<none>", &a[0], &a[1]).cmp(&(b[0] == "<none>", &b[0], &b[1])));
    t
}

/// Bytes in binary units, one decimal above a KiB: `512 B`, `1.9 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(2 * 1024 * 1024), "2.0 MiB");
    }

    #[test]
    fn unnamed_images_show_none_and_ids_are_short() {
        let info = ImageInfo { id: "a".repeat(64), names: vec![], size_bytes: 10, layers: 2, created: None };
        let text = table(&[info]).render();
        assert!(text.contains("<none>") && text.contains(&"a".repeat(12)) && !text.contains(&"a".repeat(13)), "{text}");
    }
}
