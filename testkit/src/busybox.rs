//! A real image for tests and benchmarks, built from the host's static busybox
//! (Debian's `busybox-static`, installed by `scripts/setup.sh`).
//!
//! The archives have two layers. The first holds the busybox rootfs plus
//! `etc/whiteout-me` and `var/opaque/old`; the second deletes the former with a
//! whiteout, makes `var/opaque` opaque (so `old` goes) and adds `var/opaque/new`,
//! `etc/motd` and `bin/busybox-hardlink` (a hard link to `bin/busybox`). The config
//! sets `Env` `PATH=/bin` and `Cmd` `["sh"]`. The same name and format always give the
//! same image id.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What these builders return: I/O errors with the path or step in their message.
pub type Result<T> = std::io::Result<T>;

fn io_err(op: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where busybox is expected on the host.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked to busybox in `bin/`.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "ls", "dd", "head", "tail", "env", "id", "pwd", "wget", "nc",
    "httpd", "kill", "ps", "mkdir", "touch", "yes", "seq", "printf", "grep",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
/// A fixed time, so archives are reproducible.
const MTIME: u64 = 1_704_067_200;

fn busybox() -> Result<Vec<u8>> {
    fs::read(BUSYBOX).map_err(|e| {
        std::io::Error::other(format!("cannot read {BUSYBOX} ({e}): install busybox-static (scripts/setup.sh does)"))
    })
}

/// Writes a minimal busybox root filesystem into `dir` (created if missing):
/// `bin/busybox` and its applet links, `etc/passwd` and `etc/group` with root and
/// nobody, and `tmp/`.
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    let bin = busybox()?;
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| io_err("cannot create", p, e));
    let write = |p: &Path, data: &[u8], mode: u32| -> Result<()> {
        fs::write(p, data).map_err(|e| io_err("cannot write", p, e))?;
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| io_err("cannot chmod", p, e))
    };
    for d in ["bin", "etc", "tmp", "root"] {
        mk(&dir.join(d))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(|e| io_err("cannot chmod", &tmp, e))?;
    write(&dir.join("bin/busybox"), &bin, 0o755)?;
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| io_err("cannot create", &link, e))?;
        }
    }
    write(&dir.join("etc/passwd"), PASSWD.as_bytes(), 0o644)?;
    write(&dir.join("etc/group"), GROUP.as_bytes(), 0o644)
}

/// Writes an OCI image-layout archive of the busybox image named `name` to `path`.
/// Its first layer is gzip-compressed, its second plain.
pub fn busybox_oci_archive(path: &Path, name: &str) -> Result<()> {
    let (l1, l2) = layers()?;
    let l1_gz = gzip(&l1)?;
    let config = config(&[&l1, &l2], "oci")?;
    let layer_desc = |media: &str, blob: &[u8]| serde_json::json!({ "mediaType": media, "digest": format!("sha256:{}", sha(blob)), "size": blob.len() });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": layer_desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [
            layer_desc("application/vnd.oci.image.layer.v1.tar+gzip", &l1_gz),
            layer_desc("application/vnd.oci.image.layer.v1.tar", &l2),
        ],
    }))
    .map_err(json_err)?;
    let mut top = layer_desc("application/vnd.oci.image.manifest.v1+json", &manifest);
    top["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [top],
    }))
    .map_err(json_err)?;
    let mut b = Tar::new();
    b.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    b.file("index.json", &index, 0o644)?;
    b.dir("blobs", 0o755)?;
    b.dir("blobs/sha256", 0o755)?;
    for blob in [&l1_gz, &l2, &config, &manifest] {
        b.file(&format!("blobs/sha256/{}", sha(blob)), blob, 0o644)?;
    }
    write_file(path, &b.finish()?)
}

/// Writes a `docker save` archive of the busybox image named `name` to `path`.
pub fn busybox_docker_archive(path: &Path, name: &str) -> Result<()> {
    let (l1, l2) = layers()?;
    let config = config(&[&l1, &l2], "docker")?;
    let config_name = format!("{}.json", sha(&config));
    let (p1, p2) = (format!("{}/layer.tar", sha(&l1)), format!("{}/layer.tar", sha(&l2)));
    let manifest = serde_json::to_vec(&serde_json::json!([
        { "Config": config_name, "RepoTags": [name], "Layers": [p1, p2] }
    ]))
    .map_err(json_err)?;
    let mut b = Tar::new();
    b.file(&config_name, &config, 0o644)?;
    for (p, blob) in [(&p1, &l1), (&p2, &l2)] {
        b.dir(p.trim_end_matches("/layer.tar"), 0o755)?;
        b.file(p, blob, 0o644)?;
    }
    b.file("manifest.json", &manifest, 0o644)?;
    write_file(path, &b.finish()?)
}

/// The two layers, as uncompressed tars.
fn layers() -> Result<(Vec<u8>, Vec<u8>)> {
    let bin = busybox()?;
    let mut l1 = Tar::new();
    for d in ["bin", "etc", "root", "var", "var/opaque"] {
        l1.dir(d, 0o755)?;
    }
    l1.dir("tmp", 0o1777)?;
    l1.file("bin/busybox", &bin, 0o755)?;
    for applet in APPLETS {
        l1.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    l1.file("etc/passwd", PASSWD.as_bytes(), 0o644)?;
    l1.file("etc/group", GROUP.as_bytes(), 0o644)?;
    l1.file("etc/whiteout-me", b"deleted by layer 2\n", 0o644)?;
    l1.file("var/opaque/old", b"hidden by layer 2\n", 0o644)?;

    let mut l2 = Tar::new();
    l2.dir("etc", 0o755)?;
    l2.file("etc/.wh.whiteout-me", b"", 0o644)?;
    l2.file("etc/motd", b"welcome to corral\n", 0o644)?;
    l2.dir("var/opaque", 0o755)?;
    l2.file("var/opaque/new", b"from layer 2\n", 0o644)?;
    l2.file("var/opaque/.wh..wh..opq", b"", 0o644)?;
    l2.hardlink("bin/busybox-hardlink", "bin/busybox")?;
    Ok((l1.finish()?, l2.finish()?))
}

fn config(layers: &[&[u8]], format: &str) -> Result<Vec<u8>> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha(l))).collect();
    serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Labels": { "org.corral.testing.format": format },
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .map_err(json_err)
}

/// An in-memory tar with fixed owners and times.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, mode);
        self.0.append_data(&mut h, path, data).map_err(tar_err)
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0, mode);
        self.0.append_data(&mut h, format!("{path}/"), std::io::empty()).map_err(tar_err)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0, 0o777);
        self.0.append_link(&mut h, path, target).map_err(tar_err)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Link, 0, 0o755);
        self.0.append_link(&mut h, path, target).map_err(tar_err)
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.0.into_inner().map_err(tar_err)
    }
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|e| std::io::Error::other(format!("cannot gzip a layer: {e}")))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| io_err("cannot write", path, e))
}

fn tar_err(e: std::io::Error) -> std::io::Error {
    std::io::Error::other(format!("cannot build a test archive: {e}"))
}

fn json_err(source: serde_json::Error) -> std::io::Error {
    std::io::Error::other(format!("test image JSON: {source}"))
}
