//! Malicious archives cannot make an import write, link or delete anything outside
//! the image: each is rejected with an error naming the entry, leaves the store as
//! it was, and leaves a sentinel directory beside the store untouched.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use corral_agent::image::ImageStore;
use sha2::{Digest, Sha256};

/// `<tmp>/work/images` is the store; `<tmp>/sentinel` must never change. From a
/// staging rootfs (`images/staging/<n>/rootfs`), five `..` reach `<tmp>`.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    sentinel: PathBuf,
    store: ImageStore,
}

const UP: &str = "../../../../../sentinel";

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let sentinel = root.join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("secret"), b"secret").unwrap();
    fs::write(sentinel.join("victim"), b"victim").unwrap();
    let store = ImageStore::open(root.join("work/images")).unwrap();
    Env { _tmp: tmp, root, sentinel, store }
}

impl Env {
    /// Names, contents and link counts of everything in the sentinel.
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u64)> {
        fs::read_dir(&self.sentinel)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = fs::symlink_metadata(e.path()).unwrap();
                (e.file_name().to_string_lossy().into_owned(), (fs::read(e.path()).unwrap_or_default(), meta.nlink()))
            })
            .collect()
    }

    /// Imports a docker archive of `layers`; expects a rejection naming `entry`, the
    /// store unchanged and the sentinel untouched.
    fn rejects(&self, layers: &[Vec<u8>], entry: &str) {
        let before = self.snapshot();
        let archive = self.root.join("evil.tar");
        fs::write(&archive, docker_archive(layers)).unwrap();
        let err = self.store.import(&archive, Some("evil:1")).unwrap_err().to_string();
        assert!(err.contains(entry), "the error names {entry:?}: {err}");
        assert!(err.contains("evil.tar"), "the error names the archive: {err}");
        assert_eq!(self.snapshot(), before, "the sentinel is untouched");
        assert!(self.store.list().unwrap().is_empty());
        for sub in ["staging", "rootfs", "meta", "blobs/sha256"] {
            assert_eq!(fs::read_dir(self.store.dir().join(sub)).unwrap().count(), 0, "{sub} is empty");
        }
    }
}

/// A tar layer built entry by entry, with raw names where the `tar` crate would
/// refuse them.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, size: usize) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size as u64);
        h.set_mode(0o644);
        h
    }

    /// A regular file with a name written as is into the header.
    fn raw_file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, data.len());
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, data.len());
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    fn dir(mut self, name: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        self.0.append_data(&mut h, name, std::io::empty()).unwrap();
        self
    }

    fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, name, target)
    }

    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `docker save` archive of one image with these layers.
fn docker_archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", sha(l))).collect::<Vec<_>>() },
    }))
    .unwrap();
    let paths: Vec<String> =
        layers.iter().enumerate().map(|(i, l)| format!("{i}-{}/layer.tar", &sha(l)[..8])).collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{ "Config": "config.json", "RepoTags": ["evil:1"], "Layers": paths }]))
            .unwrap();
    let mut outer = Layer::new().file("config.json", &config).file("manifest.json", &manifest);
    for (p, l) in paths.iter().zip(layers) {
        outer = outer.file(p, l);
    }
    outer.done()
}

#[test]
fn parent_dir_components_are_rejected() {
    let env = env();
    let layer = Layer::new().file("ok", b"ok").raw_file(&format!("{UP}/escape"), b"pwned").done();
    env.rejects(&[layer], &format!("{UP}/escape"));
}

#[test]
fn absolute_paths_are_rejected() {
    let env = env();
    let abs = format!("{}/abs", env.sentinel.display());
    let layer = Layer::new().raw_file(&abs, b"pwned").done();
    env.rejects(&[layer], &abs);
}

#[test]
fn files_are_never_written_through_a_symlink() {
    let env = env();
    let target = env.sentinel.display().to_string();
    let layer = Layer::new().symlink("evil", &target).file("evil/pwned", b"pwned").done();
    env.rejects(&[layer], "evil/pwned");
    // Across layers too, and for directories.
    let lower = Layer::new().symlink("evil", &target).done();
    let upper = Layer::new().dir("evil/sub").done();
    env.rejects(&[lower, upper], "evil/sub");
}

#[test]
fn hard_links_must_stay_inside() {
    let env = env();
    let layer = Layer::new().hardlink("hl", &format!("{UP}/secret")).done();
    env.rejects(&[layer], "hl");
    let layer = Layer::new().hardlink("hl", &format!("{}/secret", env.sentinel.display())).done();
    env.rejects(&[layer], "hl");
}

#[test]
fn hard_links_never_go_through_a_symlink() {
    let env = env();
    let layer = Layer::new().symlink("lnk", &env.sentinel.display().to_string()).hardlink("hl", "lnk/secret").done();
    env.rejects(&[layer], "hl");
}

#[test]
fn whiteouts_cannot_escape_or_follow_links() {
    let env = env();
    let layer = Layer::new().dir("etc").file("etc/.wh...", b"").done();
    env.rejects(&[layer], "etc/.wh...");
    let lower = Layer::new().symlink("d", &env.sentinel.display().to_string()).done();
    let upper = Layer::new().file("d/.wh.victim", b"").done();
    env.rejects(&[lower.clone(), upper], "d/.wh.victim");
    let upper = Layer::new().file("d/.wh..wh..opq", b"").done();
    env.rejects(&[lower, upper], "d/.wh..wh..opq");
}

#[test]
fn the_outer_archive_is_extracted_safely_too() {
    let env = env();
    let before = env.snapshot();
    let archive = env.root.join("outer.tar");
    fs::write(&archive, Layer::new().file("manifest.json", b"[]").raw_file(&format!("{UP}/escape"), b"x").done())
        .unwrap();
    let err = env.store.import(&archive, None).unwrap_err().to_string();
    assert!(err.contains(&format!("{UP}/escape")) && err.contains("outer.tar"), "{err}");
    assert_eq!(env.snapshot(), before);
    assert_eq!(fs::read_dir(env.store.dir().join("staging")).unwrap().count(), 0);
}

#[test]
fn links_planted_earlier_are_replaced_not_followed() {
    let env = env();
    let before = env.snapshot();
    let target = env.sentinel.join("victim").display().to_string();
    // A symlink to the outside, then a file, a directory and a hard link at its path:
    // each replaces the link itself. A symlink may point anywhere: it is resolved
    // inside the container.
    let lower = Layer::new().symlink("a", &target).symlink("b", &target).symlink("c", &target).done();
    let upper = Layer::new()
        .file("a", b"mine")
        .dir("b")
        .file("b/inner", b"in b")
        .file("real", b"real")
        .hardlink("c", "real")
        .symlink("dangling", "/nowhere/at/all")
        .done();
    let archive = env.root.join("ok.tar");
    fs::write(&archive, docker_archive(&[lower, upper])).unwrap();
    let info = env.store.import(&archive, Some("fine:1")).unwrap();
    let rootfs = env.store.resolve(&info.id).unwrap().rootfs;
    assert_eq!(fs::read(rootfs.join("a")).unwrap(), b"mine");
    assert_eq!(fs::read(rootfs.join("b/inner")).unwrap(), b"in b");
    assert_eq!(fs::read(rootfs.join("c")).unwrap(), b"real");
    assert_eq!(fs::read_link(rootfs.join("dangling")).unwrap(), Path::new("/nowhere/at/all"));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn device_nodes_are_skipped() {
    let env = env();
    let mut layer = tar::Builder::new(Vec::new());
    for (name, kind) in [("dev-null", tar::EntryType::Char), ("fifo", tar::EntryType::Fifo)] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o666);
        layer.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    let layer = Layer(layer).file("kept", b"k").done();
    let archive = env.root.join("dev.tar");
    fs::write(&archive, docker_archive(&[layer])).unwrap();
    let info = env.store.import(&archive, Some("dev:1")).unwrap();
    let rootfs = env.store.resolve(&info.id).unwrap().rootfs;
    assert!(rootfs.join("kept").is_file());
    assert!(fs::symlink_metadata(rootfs.join("dev-null")).is_err());
    assert!(fs::symlink_metadata(rootfs.join("fifo")).is_err());
}
