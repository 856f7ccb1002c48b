//! The image store with real archives built from the host's busybox: both archive
//! formats, whiteouts, references, leases, removal, idempotent and concurrent
//! imports, digest verification and recovery from crash leftovers.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use corral_agent::Error;
use corral_agent::image::{ImageStore, ImportEvent};
use corral_testkit::busybox as testing;

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: ImageStore,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store = ImageStore::open(root.join("images")).unwrap();
    Env { _tmp: tmp, root, store }
}

impl Env {
    fn oci(&self, name: &str) -> PathBuf {
        let p = self.root.join(format!("oci-{}.tar", name.replace([':', '/'], "_")));
        testing::busybox_oci_archive(&p, name).unwrap();
        p
    }

    fn docker(&self, name: &str) -> PathBuf {
        let p = self.root.join(format!("docker-{}.tar", name.replace([':', '/'], "_")));
        testing::busybox_docker_archive(&p, name).unwrap();
        p
    }

    fn count(&self, sub: &str) -> usize {
        fs::read_dir(self.store.dir().join(sub)).unwrap().count()
    }
}

/// The rootfs has the layers' content, with layer 2's whiteouts applied.
fn check_flattened(rootfs: &Path) {
    let busybox = fs::symlink_metadata(rootfs.join("bin/busybox")).unwrap();
    assert!(busybox.is_file() && busybox.mode() & 0o777 == 0o755);
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("busybox"));
    let hard = fs::metadata(rootfs.join("bin/busybox-hardlink")).unwrap();
    assert_eq!(hard.ino(), busybox.ino(), "the hard link shares the inode");
    assert!(!rootfs.join("etc/whiteout-me").exists(), "whiteout applied");
    assert!(!rootfs.join("etc/.wh.whiteout-me").exists(), "whiteouts are not files");
    assert!(!rootfs.join("var/opaque/old").exists(), "opaque dir hides the lower layer");
    assert!(!rootfs.join("var/opaque/.wh..wh..opq").exists());
    assert_eq!(fs::read_to_string(rootfs.join("var/opaque/new")).unwrap(), "from layer 2\n");
    assert_eq!(fs::read_to_string(rootfs.join("etc/motd")).unwrap(), "welcome to corral\n");
    assert!(fs::read_to_string(rootfs.join("etc/passwd")).unwrap().contains("nobody"));
    assert_eq!(fs::metadata(rootfs.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
}

#[test]
fn oci_archive_imports_flattened_with_whiteouts() {
    let env = env();
    let mut events = Vec::new();
    let info = env.store.import_with_progress(&env.oci("busybox:test"), None, &mut |e| events.push(e)).unwrap();
    assert_eq!(info.names, ["busybox:test"]);
    assert_eq!(info.layers, 2);
    assert_eq!(info.id.len(), 64);
    assert_eq!(info.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert!(info.size_bytes > 100_000, "busybox is big: {}", info.size_bytes);
    let layers: Vec<_> = events.iter().filter(|e| matches!(e, ImportEvent::Layer { .. })).collect();
    assert_eq!(layers.len(), 2, "{events:?}");

    let r = env.store.resolve("busybox:test").unwrap();
    assert_eq!(r.id, info.id);
    assert_eq!(r.rootfs, env.store.dir().join("rootfs").join(&info.id));
    assert_eq!(r.env, ["PATH=/bin"]);
    assert_eq!(r.cmd, ["sh"]);
    assert!(r.entrypoint.is_empty() && r.working_dir.is_none() && r.user.is_none());
    check_flattened(&r.rootfs);
    assert_eq!(env.count("staging"), 0, "staging is cleaned up");
    // Config, manifest and two layers.
    assert_eq!(env.count("blobs/sha256"), 4);
}

#[test]
fn docker_archive_imports_even_gzipped() {
    let env = env();
    let plain = env.docker("app:1");
    let gz = env.root.join("app.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();

    let info = env.store.import(&gz, None).unwrap();
    assert_eq!(info.names, ["app:1"]);
    assert_eq!(info.layers, 2);
    let r = env.store.resolve("app:1").unwrap();
    check_flattened(&r.rootfs);
    assert_eq!(env.store.list().unwrap(), [info]);
}

#[test]
fn importing_again_only_adds_names() {
    let env = env();
    let archive = env.oci("busybox:a");
    let first = env.store.import(&archive, None).unwrap();
    let mut events = Vec::new();
    let second = env.store.import_with_progress(&archive, Some("busybox:b"), &mut |e| events.push(e)).unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.names, ["busybox:a", "busybox:b"]);
    assert!(events.iter().any(|e| matches!(e, ImportEvent::AlreadyPresent { .. })), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, ImportEvent::Layer { .. })), "no layer work: {events:?}");
    let all = env.store.list().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].names, ["busybox:a", "busybox:b"]);
    // Another format is another config, so another image.
    let other = env.store.import(&env.docker("busybox:a"), None).unwrap();
    assert_ne!(other.id, first.id);
    let all = env.store.list().unwrap();
    assert_eq!(all.len(), 2);
    let moved = all.iter().find(|i| i.id == first.id).unwrap();
    assert_eq!(moved.names, ["busybox:b"], "the name moved to the newer image");
}

#[test]
fn references_by_name_id_and_prefix() {
    let env = env();
    let id = env.store.import(&env.oci("busybox"), None).unwrap().id;
    assert_eq!(env.store.list().unwrap()[0].names, ["busybox:latest"]);
    for reference in [
        "busybox",
        "busybox:latest",
        id.as_str(),
        &format!("sha256:{id}"),
        &id[..12],
        &id[..6],
        &id[..6].to_uppercase(),
    ] {
        assert_eq!(env.store.resolve(reference).unwrap().id, id, "{reference}");
    }
    for reference in [&id[..5], "busybox:other", "nothing", "sha256:0"] {
        let err = env.store.resolve(reference).unwrap_err();
        assert!(matches!(err, Error::Image(_)), "{reference}: {err}");
    }
}

#[test]
fn named_import_replaces_archive_names_and_bad_names_are_refused() {
    let env = env();
    let archive = env.docker("ignored:1");
    let info = env.store.import(&archive, Some("mine")).unwrap();
    assert_eq!(info.names, ["mine:latest"]);
    let err = env.store.import(&archive, Some("Bad Name")).unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");
}

#[test]
fn leases_block_removal_and_survive_reopening() {
    let env = env();
    let info = env.store.import(&env.oci("busybox:1"), None).unwrap();
    env.store.acquire(&info.id, "task-a").unwrap();
    env.store.acquire(&info.id, "task-b").unwrap();
    env.store.acquire(&info.id, "task-b").unwrap();
    assert_eq!(env.store.leases(&info.id).unwrap(), ["task-a", "task-b"]);

    let reopened = ImageStore::open(env.store.dir().to_path_buf()).unwrap();
    let err = reopened.remove("busybox:1").unwrap_err().to_string();
    assert!(err.contains("task-a") && err.contains("task-b"), "{err}");
    assert_eq!(env.store.list().unwrap().len(), 1, "a refused removal changes nothing");
    assert!(env.store.resolve("busybox:1").is_ok());

    assert!(env.store.acquire(&info.id, "../x").is_err(), "holders are task uids");
    env.store.release(&info.id, "task-a").unwrap();
    env.store.release(&info.id, "task-b").unwrap();
    env.store.release(&info.id, "task-b").unwrap();
    let removed = reopened.remove("busybox:1").unwrap();
    assert_eq!(removed.id, info.id);
    assert!(env.store.list().unwrap().is_empty());
    assert!(!env.store.dir().join("rootfs").join(&info.id).exists());
    assert_eq!(env.count("blobs/sha256"), 0, "unused blobs go");
    assert_eq!(env.count("staging"), 0);
    assert!(env.store.acquire(&info.id, "task-c").is_err(), "no lease on a removed image");
}

#[test]
fn removing_a_name_untags_until_the_last() {
    let env = env();
    let archive = env.oci("web:1");
    let id = env.store.import(&archive, None).unwrap().id;
    env.store.import(&archive, Some("web:stable")).unwrap();
    env.store.acquire(&id, "task-1").unwrap();

    let r = env.store.remove_detailed("web:1").unwrap();
    assert_eq!((r.untagged.as_slice(), r.deleted), (["web:1".to_string()].as_slice(), false));
    assert!(env.store.resolve(&id).is_ok());
    assert!(env.store.remove("web:stable").is_err(), "the last name would delete a leased image");
    env.store.release(&id, "task-1").unwrap();
    let r = env.store.remove_detailed("web:stable").unwrap();
    assert!(r.deleted);
    assert!(env.store.list().unwrap().is_empty());

    // By id: every name goes.
    env.store.import(&archive, None).unwrap();
    env.store.import(&archive, Some("web:2")).unwrap();
    let r = env.store.remove_detailed(&id[..8]).unwrap();
    assert!(r.deleted);
    assert_eq!(r.untagged, ["web:1", "web:2"]);
    assert!(env.store.list().unwrap().is_empty());
}

#[test]
fn shared_blobs_stay_while_another_image_uses_them() {
    let env = env();
    env.store.import(&env.oci("a:1"), None).unwrap();
    env.store.import(&env.docker("b:1"), None).unwrap();
    // The docker layers are the OCI layers uncompressed: layer 2 is shared.
    let before = env.count("blobs/sha256");
    env.store.remove("a:1").unwrap();
    let after = env.count("blobs/sha256");
    assert!(after < before && after == 3, "{before} -> {after}");
    check_flattened(&env.store.resolve("b:1").unwrap().rootfs);
}

/// Rewrites an archive's entries through `edit` (path, content) → content.
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut archive = tar::Archive::new(fs::File::open(src).unwrap());
    let mut out = tar::Builder::new(fs::File::create(dst).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let data = edit(&path, data);
        let mut h = entry.header().clone();
        h.set_size(data.len() as u64);
        out.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn a_tampered_oci_blob_is_rejected_and_leaves_nothing() {
    let env = env();
    let good = env.oci("busybox:1");
    let bad = env.root.join("bad.tar");
    // Append to the biggest blob, the gzipped layer with busybox in it.
    let biggest = {
        let mut archive = tar::Archive::new(fs::File::open(&good).unwrap());
        let mut best = (0, String::new());
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            if e.size() > best.0 {
                best = (e.size(), e.path().unwrap().to_string_lossy().into_owned());
            }
        }
        best.1
    };
    rewrite(&good, &bad, |path, mut data| {
        if path == biggest {
            data.extend_from_slice(b"tampered");
        }
        data
    });
    let err = env.store.import(&bad, None).unwrap_err().to_string();
    assert!(err.contains("bad.tar") && err.contains(&biggest) && err.contains("digest"), "{err}");
    assert!(env.store.list().unwrap().is_empty());
    for sub in ["staging", "rootfs", "meta", "blobs/sha256"] {
        assert_eq!(env.count(sub), 0, "{sub} is empty");
    }
}

#[test]
fn unknown_archives_are_rejected_with_the_file_name() {
    let env = env();
    let junk = env.root.join("junk.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", &b"hi"[..]).unwrap();
    fs::write(&junk, b.into_inner().unwrap()).unwrap();
    let err = env.store.import(&junk, None).unwrap_err().to_string();
    assert!(err.contains("junk.tar") && err.contains("manifest.json"), "{err}");

    fs::write(&junk, b"this is not a tar file at all, not even close.").unwrap();
    let err = env.store.import(&junk, None).unwrap_err().to_string();
    assert!(err.contains("junk.tar"), "{err}");

    let err = env.store.import(&env.root.join("missing.tar"), None).unwrap_err().to_string();
    assert!(err.contains("missing.tar"), "{err}");
    assert_eq!(env.count("staging"), 0);
}

#[test]
fn open_cleans_up_after_a_crash() {
    let env = env();
    let info = env.store.import(&env.oci("keep:1"), None).unwrap();
    let dir = env.store.dir().to_path_buf();
    let orphan = "ab".repeat(32);
    fs::create_dir_all(dir.join("staging/1234-crashed/rootfs/bin")).unwrap();
    fs::write(dir.join("staging/1234-crashed/rootfs/bin/x"), b"x").unwrap();
    fs::create_dir_all(dir.join("rootfs").join(&orphan).join("etc")).unwrap();
    fs::write(dir.join("blobs/sha256").join(&orphan), b"orphan").unwrap();

    let store = ImageStore::open(dir.clone()).unwrap();
    assert_eq!(fs::read_dir(dir.join("staging")).unwrap().count(), 0);
    assert!(!dir.join("rootfs").join(&orphan).exists());
    assert!(!dir.join("blobs/sha256").join(&orphan).exists());
    assert_eq!(store.list().unwrap(), [info]);
    check_flattened(&store.resolve("keep:1").unwrap().rootfs);
}

#[test]
fn concurrent_imports_of_one_image_make_one_image() {
    let env = env();
    let archive = env.oci("busybox:race");
    let dir = env.store.dir().to_path_buf();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let (archive, dir) = (archive.clone(), dir.clone());
            std::thread::spawn(move || {
                let store = ImageStore::open(dir).unwrap();
                store.import(&archive, Some(&format!("busybox:t{i}"))).unwrap().id
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
    let all = env.store.list().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].names, ["busybox:t0", "busybox:t1", "busybox:t2"]);
    assert_eq!(env.count("staging"), 0);
    check_flattened(&env.store.resolve("busybox:t1").unwrap().rootfs);
}

#[test]
fn busybox_rootfs_has_the_applets() {
    let tmp = tempfile::tempdir().unwrap();
    testing::busybox_rootfs(tmp.path()).unwrap();
    for applet in testing::APPLETS {
        assert_eq!(fs::read_link(tmp.path().join("bin").join(applet)).unwrap(), Path::new("busybox"));
    }
    assert!(fs::read_to_string(tmp.path().join("etc/passwd")).unwrap().starts_with("root:"));
    assert!(tmp.path().join("tmp").is_dir());
    let out = std::process::Command::new(tmp.path().join("bin/busybox")).args(["echo", "hi"]).output().unwrap();
    assert_eq!(out.stdout, b"hi\n");
}
