//! `corral image import|ls|rm`: the node's image store, used directly (not through
//! the API server), so that images can be loaded before or while the agent runs.

use corral_agent::Layout;
use corral_agent::image::{ImageInfo, ImageStore, ImportEvent};

use super::args::{ImageCommand, ImageDirArgs, ImageImportArgs, ImageRmArgs};
use super::output::{Table, age, now_unix};

pub(crate) async fn run(c: ImageCommand) -> anyhow::Result<u8> {
    // The store works on files and takes file locks: keep it off the async workers.
    tokio::task::spawn_blocking(move || match c {
        ImageCommand::Import(a) => import(a),
        ImageCommand::Ls(a) => ls(a),
        ImageCommand::Rm(a) => rm(a),
    })
    .await?
}

fn open(dir: &ImageDirArgs) -> anyhow::Result<ImageStore> {
    let layout = Layout::new(&dir.work_dir)?;
    Ok(ImageStore::open(layout.images())?)
}

fn import(a: ImageImportArgs) -> anyhow::Result<u8> {
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
