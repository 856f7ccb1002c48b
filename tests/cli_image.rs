//! `corral image import|ls|rm` with the real binary, on archives of both formats
//! built from the host's busybox. No server is involved: the CLI uses the node's
//! image store directly.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_support::Run;
use corral_testkit::busybox as testing;

/// Runs `corral image args... --work-dir <work>` in `dir`.
fn image(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("image")
        .args(args)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .current_dir(dir)
        .env_remove("CORRAL_AGENT_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run(out)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let r = image(dir, args);
    assert_eq!(r.code(), 0, "corral image {args:?} failed:\n{r}");
    r.stdout()
}

fn archives(dir: &Path) -> (PathBuf, PathBuf) {
    let oci = dir.join("busybox-oci.tar");
    let docker = dir.join("busybox-docker.tar");
    testing::busybox_oci_archive(&oci, "busybox:oci").unwrap();
    testing::busybox_docker_archive(&docker, "busybox:docker").unwrap();
    (oci, docker)
}

/// The rows of a table, split on runs of spaces, header first.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split("   ").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()).collect()
}

#[test]
fn import_ls_rm_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (oci, docker) = archives(dir);

    let empty = ok(dir, &["ls"]);
    assert_eq!(rows(&empty), [["NAME", "ID", "SIZE", "LAYERS", "CREATED"]]);

    let r = image(dir, &["import", oci.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().contains("layer 1/2") && r.stderr().contains("layer 2/2"), "progress per layer:\n{r}");
    let imported = rows(&r.stdout());
    assert_eq!(imported.len(), 2, "{r}");
    assert_eq!(imported[1][0], "busybox:oci");
    assert_eq!(imported[1][1].len(), 12);
    assert!(imported[1][2].ends_with("MiB"), "{r}");
    assert_eq!(imported[1][3], "2");
    let oci_id = imported[1][1].clone();

    ok(dir, &["import", docker.to_str().unwrap()]);
    ok(dir, &["import", docker.to_str().unwrap(), "--name", "web:v1"]);

    let listed = rows(&ok(dir, &["ls"]));
    let names: Vec<&str> = listed[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["busybox:docker", "busybox:oci", "web:v1"]);
    assert!(listed[1..].iter().all(|r| r.len() == 5 && r[4].ends_with("ago")), "{listed:?}");
    let docker_id = listed[1][1].clone();
    assert_eq!(listed[3][1], docker_id, "a second import of one image only adds a name");
    assert_ne!(docker_id, oci_id);

    // By name: untags; the image goes with its last name. By id prefix: all at once.
    let out = ok(dir, &["rm", "web:v1", &oci_id]);
    assert!(out.contains("untagged: web:v1") && out.contains("untagged: busybox:oci"), "{out}");
    assert_eq!(out.matches("deleted: sha256:").count(), 1, "{out}");
    let listed = rows(&ok(dir, &["ls"]));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[1][0], "busybox:docker");

    let r = image(dir, &["rm", "busybox", "busybox:docker"]);
    assert_eq!(r.code(), 1, "one of two references is unknown:\n{r}");
    assert!(r.stderr().contains("busybox") && r.stderr().contains("not found"), "{r}");
    assert!(r.stdout().contains("deleted: sha256:"), "{r}");
    assert_eq!(rows(&ok(dir, &["ls"])).len(), 1);
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = image(dir, &["import", "missing.tar"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("missing.tar") && r.stderr().contains("no such file"), "{r}");

    std::fs::write(dir.join("junk.tar"), b"not an archive").unwrap();
    let r = image(dir, &["import", "junk.tar"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("junk.tar") && r.stderr().contains("tar"), "{r}");

    let (oci, _) = archives(dir);
    let r = image(dir, &["import", oci.to_str().unwrap(), "--name", "Not A Name"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("Not A Name"), "{r}");
    assert_eq!(rows(&ok(dir, &["ls"])).len(), 1, "nothing was imported");
}

#[test]
fn rm_refuses_an_image_a_task_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (oci, _) = archives(dir);
    ok(dir, &["import", oci.to_str().unwrap()]);
    // The agent's side of the store: a task holds the image.
    let store = corral_agent::image::ImageStore::open(dir.join("work/images")).unwrap();
    let id = store.resolve("busybox:oci").unwrap().id;
    store.acquire(&id, "task-1234").unwrap();
    let r = image(dir, &["rm", "busybox:oci"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("task-1234"), "the error names the holder:\n{r}");
    store.release(&id, "task-1234").unwrap();
    ok(dir, &["rm", "busybox:oci"]);
}

/// `kill -9` during an import leaves either the whole image or none of it, and the
/// next user of the store cleans up the rest.
#[test]
fn an_import_killed_midway_leaves_no_half_image() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (oci, _) = archives(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["image", "import", oci.to_str().unwrap(), "--work-dir"])
        .arg(dir.join("work"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let Ok(line) = line else { break };
        if line.contains("layer 1/2") {
            break;
        }
    }
    let _ = child.kill();
    child.wait().unwrap();

    let store = corral_agent::image::ImageStore::open(dir.join("work/images")).unwrap();
    match store.list().unwrap().as_slice() {
        [] => {}
        [one] => {
            let rootfs = store.resolve(&one.id).unwrap().rootfs;
            assert!(rootfs.join("bin/busybox").is_file() && rootfs.join("var/opaque/new").is_file());
        }
        many => panic!("{many:?}"),
    }
    assert_eq!(std::fs::read_dir(dir.join("work/images/staging")).unwrap().count(), 0);
    ok(dir, &["import", oci.to_str().unwrap()]);
    assert_eq!(rows(&ok(dir, &["ls"])).len(), 2);
}
