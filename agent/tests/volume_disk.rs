//! A volume's disk, with real loop devices and a real ext4 image: its size holds,
//! its usage is measured, its data survives an unmount and a mount again, and no loop
//! device is left behind. And the fallback, a measured directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_agent::volumes::disk::{self, Enforcement, MIB};

/// The loop devices attached to a file under `under`, from `losetup -a`.
fn loops_under(under: &Path) -> Vec<String> {
    let out = Command::new("losetup").arg("-a").output().expect("losetup runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let under = under.display().to_string();
    text.lines().filter(|l| l.contains(&under)).map(str::to_string).collect()
}

/// Unmounts whatever a failed test left mounted under the temp dir.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = disk::unmount(&self.0);
    }
}

/// Writes `mib` MiB of ones to `path`, syncing; the error, if any.
fn fill(path: &Path, mib: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![1u8; MIB as usize];
    for _ in 0..mib {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

#[test]
fn an_image_volume_holds_its_size_keeps_its_data_and_leaves_no_loop_device() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("resolves");
    let (dir, image) = (root.join("ns/vol"), root.join("ns/vol.img"));
    let _cleanup = Cleanup(dir.clone());
    let tools = disk::image_support(true);
    assert!(tools.is_ok(), "this host supports images: {tools:?}");
    assert!(loops_under(&root).is_empty());

    let p = disk::prepare(&dir, &image, 16, &tools).expect("prepares");
    assert_eq!((p.enforcement, p.note.as_deref()), (Enforcement::Filesystem, None));
    assert!(disk::is_mounted(&dir));
    assert_eq!(loops_under(&root).len(), 1, "one loop device, on the image");
    // Sparse: the image takes little of the host's disk.
    use std::os::unix::fs::MetadataExt;
    let img = std::fs::metadata(&image).expect("image");
    assert_eq!(img.len(), 16 * MIB);
    assert!(img.blocks() * 512 < 16 * MIB, "sparse: {} bytes allocated", img.blocks() * 512);

    // Preparing again (an agent restart) finds it mounted and leaves it so.
    assert_eq!(disk::prepare(&dir, &image, 16, &tools).expect("again"), p);
    assert_eq!(loops_under(&root).len(), 1);

    fill(&dir.join("small"), 4).expect("4 MiB fit");
    let used = disk::usage(&p).expect("measures").expect("a figure");
    assert!(used.complete && (4..16).contains(&used.mib()), "{used:?}");
    let err = fill(&dir.join("big"), 32).expect_err("32 MiB do not fit in 16");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let full = disk::usage(&p).expect("measures").expect("a figure");
    assert!(full.mib() <= 16, "{full:?}");
    std::fs::remove_file(dir.join("big")).expect("removes");

    // Unmounted (Retain): the data stays in the image; mounted again, it is there.
    disk::release(&dir, &image, false).expect("unmounts");
    assert!(!disk::is_mounted(&dir));
    assert!(!dir.join("small").exists(), "unmounted, the directory is empty");
    assert!(loops_under(&root).is_empty(), "the loop device detached itself");
    let again = disk::prepare(&dir, &image, 16, &tools).expect("mounts again");
    assert_eq!(again.enforcement, Enforcement::Filesystem);
    assert_eq!(std::fs::metadata(dir.join("small")).expect("kept").len(), 4 * MIB);

    // Deleted (Delete): nothing left, no loop device.
    disk::release(&dir, &image, true).expect("releases");
    assert!(!dir.exists() && !image.exists() && !root.join("ns").exists());
    assert!(loops_under(&root).is_empty(), "{:?}", loops_under(&root));
}

#[test]
fn without_images_a_volume_is_a_measured_directory_and_stays_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("resolves");
    let (dir, image) = (root.join("ns/vol"), root.join("ns/vol.img"));
    let _cleanup = Cleanup(dir.clone());
    let off = disk::image_support(false);
    let why = off.as_ref().expect_err("turned off").clone();
    assert!(why.contains("--no-volume-images"), "{why}");

    let p = disk::prepare(&dir, &image, 16, &off).expect("prepares");
    assert_eq!(p.enforcement, Enforcement::Measured);
    assert!(p.note.as_deref().is_some_and(|n| n.contains("--no-volume-images")), "{p:?}");
    assert!(!disk::is_mounted(&dir) && !image.exists());

    // Nothing holds it: 20 MiB go into a 16 MiB volume, and the usage says so.
    fill(&dir.join("data"), 20).expect("nothing enforces the size");
    let used = disk::usage(&p).expect("measures").expect("a figure");
    assert!(used.complete && used.mib() >= 20, "{used:?}");

    // Made as a directory, it stays one when images work again: its data is there.
    let on = disk::image_support(true);
    let later = disk::prepare(&dir, &image, 16, &on).expect("prepares");
    assert_eq!(later.enforcement, Enforcement::Measured);
    assert!(dir.join("data").exists() && !image.exists());
    disk::release(&dir, &image, true).expect("removes");
    assert!(!dir.exists());
    assert!(loops_under(&root).is_empty());
}
