//! The store under normal use and abuse, over HTTP against the real `corral server`
//! binary (issue 9, findings 5–9): history and watches stay bounded, lists page at
//! one revision, damage to the database refuses to start instead of serving the past,
//! backups restore, and a full disk answers 507 and recovers by itself.

mod hardening_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use hardening_support::*;
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

impl Server {
    async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("/metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
            .round() as u64
    }

    async fn put_configmap(&self, name: &str, data: Value) -> reqwest::Response {
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name}, "spec": {"data": data}});
        self.http.put(self.configmap_url(name)).json(&body).send().await.expect("PUT answered")
    }

    async fn post_configmap(&self, name: &str, data: Value) -> reqwest::Response {
        let url = format!("{}/apis/corral.dev/v1/namespaces/default/configmaps", self.base);
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name}, "spec": {"data": data}});
        self.http.post(url).json(&body).send().await.expect("POST answered")
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }
}

/// Bytes a directory takes on disk.
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() { disk_usage(&e.path()) } else { m.blocks() * 512 };
    }
    total
}

fn big(i: usize) -> Value {
    json!({"v": format!("{i}:{}", "x".repeat(MIB))})
}

/// Finding 5: overwrites of large objects kept every revision (4,000 writes of 1 MiB:
/// 10–12 GB on disk for 50 MiB live). History is now bounded, by bytes too, and the
/// data directory tracks the live data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_the_data_dir_stay_bounded_under_overwrites_of_large_objects() {
    let mut s = Server::start_with(&["--controllers", "none", "--history-max-bytes", "8Mi"]).await;
    for i in 0..4 {
        s.create_configmap(&format!("big{i}"), big(i)).await;
    }
    // 120 MiB written over 4 MiB of live data.
    for i in 4..124 {
        let r = s.put_configmap(&format!("big{}", i % 4), big(i)).await;
        assert_eq!(r.status(), 200, "overwrite {i}");
    }
    let live = s.metric("corral_store_live_bytes").await;
    let history = s.metric("corral_store_history_bytes").await;
    assert!((4 * MIB as u64..5 * MIB as u64).contains(&live), "live {live}");
    assert!(history <= 8 * MIB as u64, "history {history} beyond its 8 MiB bound");
    assert!(s.metric("corral_store_compacted_revision").await > 100);
    let on_disk = disk_usage(&s.data_dir());
    assert!(
        on_disk < 3 * (live + history) + 16 * MIB as u64,
        "{on_disk} bytes on disk for {live} live + {history} history"
    );
    // Every object is whole, and still is after a restart.
    s.assert_alive().await;
    let s = Server::restart_in(s).await;
    for i in 0..4 {
        let o = s.get(&format!("big{i}")).await;
        assert_eq!(o["spec"]["data"]["v"], big(120 + i)["v"], "big{i}");
    }
}

/// Finding 6: a watch that never read kept every event sent to it (+3.5 GB for 1,500
/// writes of 1 MiB). A watch now holds its place, not the events: one that falls
/// behind the retained history is ended with a 410 ERROR it recovers from by
/// re-listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_never_reads_is_dropped_with_410_instead_of_being_buffered() {
    // Long enough a stall that the server waits for it to read (see the next test).
    let mut s =
        Server::start_with(&["--controllers", "none", "--history-max-bytes", "4Mi", "--write-stall-timeout", "600"])
            .await;
    let o = s.create_configmap("big", big(0)).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut idle = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        idle,
        "GET /apis/corral.dev/v1/namespaces/default/configmaps?watch=true&resourceVersion={} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        rv(&o),
        s.token
    )
    .expect("send the watch request");
    // Its socket buffers fill with the first megabytes; the rest must not pile up.
    // More than the store keeps in memory (64 MiB), so that the watch falls behind
    // the history on disk too.
    for i in 1..100 {
        assert_eq!(s.put_configmap("big", big(i)).await.status(), 200);
    }
    let recent = s.metric("corral_store_recent_bytes").await;
    assert!(recent <= 64 * MIB as u64, "the live event buffer is bounded (64 MiB): {recent}");
    // Now it reads: what it gets ends with the 410 ERROR, and the stream ends.
    idle.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                // The chunked body's last chunk.
                if all.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            Err(e) => panic!("the watch neither ended nor answered: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&all);
    let error = text.lines().rev().find(|l| l.contains("\"type\":\"ERROR\"")).unwrap_or_else(|| {
        panic!("an ERROR event in {} bytes, ending {:?}", all.len(), &text[text.len().saturating_sub(300)..])
    });
    let error: Value = serde_json::from_str(&error[error.find('{').unwrap_or(0)..]).expect("JSON");
    assert_eq!(error["object"]["code"], 410, "{error}");
    s.assert_alive().await;
}

/// Finding 6, the rest: a client that never reads again would otherwise keep its
/// connection, hyper's buffers and the batch of events waiting for it (whole 1 MiB
/// objects the store has let go) for as long as it stays connected. The server closes
/// it once nothing could be written for the write-stall timeout, and says so in
/// `/metrics`; watchers that read are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_client_reads_nothing_is_closed_after_the_write_stall_timeout() {
    let mut s = Server::start_with(&["--controllers", "none", "--write-stall-timeout", "2"]).await;
    let o = s.create_configmap("big", big(0)).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let token = s.token.clone();
    let watch = |from: &str| {
        let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            tcp,
            "GET /apis/corral.dev/v1/namespaces/default/configmaps?watch=true&resourceVersion={from} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .expect("send the watch request");
        tcp
    };
    // The server's own watches (of custom resource definitions) count too.
    let own = s.metric("corral_store_watchers").await;
    let mut idle = watch(rv(&o));
    // A reading watcher beside it, drained by a thread of its own.
    let reading = watch(rv(&o));
    let drained = std::thread::spawn(move || {
        let mut reading = reading;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        reading.set_read_timeout(Some(std::time::Duration::from_secs(120))).expect("timeout");
        while let Ok(n) = reading.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    for _ in 0..200 {
        if s.metric("corral_store_watchers").await == own + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.metric("corral_store_watchers").await, own + 2, "both watches open");
    // Enough to fill the idle watcher's socket buffers many times over.
    for i in 1..40 {
        assert_eq!(s.put_configmap("big", big(i)).await.status(), 200);
    }
    // Its writes now wait on it; after the timeout it is closed, and its watch with
    // it. Bounded wait.
    let mut closed = false;
    for _ in 0..240 {
        if s.metric("corral_http_connections_stalled_total").await >= 1
            && s.metric("corral_store_watchers").await < own + 2
        {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(closed, "the stalled connection was never closed");
    assert_eq!(s.metric("corral_store_watchers").await, own + 1, "the reading watch stays open");
    assert_eq!(s.metric("corral_http_connections_stalled_total").await, 1, "only the idle one was closed");
    // What the idle client finds when it finally reads: what was sent, then the end.
    idle.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection is still open: {e}"),
        }
    }
    s.assert_alive().await;
    drop(s);
    assert!(drained.join().expect("reader") > 39 * MIB, "the reading watcher received every event");
}

/// Finding 7: a continued list whose revision was compacted answers 410 Expired, as
/// in Kubernetes (clients start the list again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_token_outliving_its_revision_is_expired() {
    let s = Server::start().await;
    for i in 0..5 {
        s.create_configmap(&format!("c{i}"), json!({"i": i.to_string()})).await;
    }
    let url = format!("{}/apis/corral.dev/v1/namespaces/default/configmaps", s.base);
    let first: Value = s.http.get(format!("{url}?limit=2")).send().await.expect("list").json().await.expect("JSON");
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"].as_str().expect("a continue token").to_string();
    s.put_configmap("c4", json!({"i": "changed"})).await;
    let second: Value =
        s.http.get(format!("{url}?limit=2&continue={token}")).send().await.expect("list").json().await.expect("JSON");
    assert_eq!(second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);
    let now: u64 = s.metric("corral_store_revision").await;
    let r = s.http.post(format!("{}/admin/compact?revision={now}", s.base)).send().await.expect("compact");
    assert!(r.status().is_success());
    let r = s.http.get(format!("{url}?limit=2&continue={token}")).send().await.expect("list");
    assert_eq!(r.status(), 410);
    let status: Value = r.json().await.expect("a Status");
    assert_eq!(status["reason"], "Expired", "{status}");
}

/// Runs `corral server` on `data_dir` expecting it to refuse to start; its stderr.
fn refused_start(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--controllers", "none", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run corral server");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a damaged store must not start; stderr: {stderr}");
    stderr
}

/// Finding 8: damage to the database, or its loss, started silently in the past (196
/// acknowledged updates rolled back, revisions issued twice; an empty cluster for a
/// missing db). The store now refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_database_refuses_to_start_instead_of_serving_the_past() {
    let s = Server::start().await;
    for i in 0..300 {
        s.create_configmap(&format!("m{i}"), json!({"v": format!("value-{i}-{}", "p".repeat(200))})).await;
    }
    let revision = s.metric("corral_store_revision").await;
    let dir = s.data_dir();
    let spare = tempfile::tempdir().expect("tempdir");
    let copy = spare.path().join("copy");
    // Stopped hard, as a crash would.
    let s = {
        let mut s = s;
        let _ = s.child.kill();
        let _ = s.child.wait();
        s
    };
    copy_dir(&dir, &copy);
    // 16 bytes flipped in the middle of the database file.
    let db = dir.join("db");
    let mut bytes = std::fs::read(&db).expect("the db file");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&db, &bytes).expect("write");
    let why = refused_start(&dir);
    assert!(
        why.contains("acknowledged") || why.contains("checksum") || why.contains("cannot be read"),
        "a clear reason: {why}"
    );
    // A missing database.
    std::fs::remove_file(copy.join("db")).expect("remove db");
    let why = refused_start(&copy);
    assert!(why.contains(&format!("revision {revision} was acknowledged")), "a clear reason: {why}");
    drop(s);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A backup taken from a running server with `corral admin snapshot save` restores
/// (offline, `corral admin snapshot restore`) into a store with the same objects at
/// the same revisions, large ones included; a damaged snapshot is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_save_from_a_running_server_and_restore_exactly() {
    let s = Server::start().await;
    for i in 0..50 {
        s.create_configmap(&format!("s{i}"), json!({"v": i.to_string()})).await;
    }
    s.create_configmap("large", big(7)).await;
    s.put_configmap("s3", json!({"v": "changed"})).await;
    let url = format!("{}/apis/corral.dev/v1/namespaces/default/configmaps", s.base);
    let before: Value = s.http.get(&url).send().await.expect("list").json().await.expect("JSON");
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("backup.snap");
    let admin_token = s.token.clone();
    let corral = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("CORRAL_TOKEN", &admin_token)
            .env("CORRAL_CONFIG", "/nonexistent")
            .output()
            .expect("run corral")
    };
    let out = corral(&["--server", &s.base, "admin", "snapshot", "save", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"), "{}", String::from_utf8_lossy(&out.stdout));
    // A damaged copy is refused, naming the file.
    let damaged = work.path().join("damaged.snap");
    let mut b = std::fs::read(&file).expect("read");
    let at = b.len() / 2;
    b[at] ^= 0x01;
    std::fs::write(&damaged, b).expect("write");
    let out = corral(&[
        "admin",
        "snapshot",
        "restore",
        damaged.to_str().expect("utf-8"),
        "--data-dir",
        work.path().join("bad").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged.snap"), "{}", String::from_utf8_lossy(&out.stderr));
    // A restore cut short (here by a disk too small for the snapshot) leaves a
    // directory that refuses to start, saying so, rather than a store holding part of
    // the backup.
    let small = Tmpfs::mount(1);
    let cut = small.0.path().join("cut");
    let out = corral(
        &["admin", "snapshot", "restore", file.to_str().expect("utf-8"), "--data-dir"]
            .into_iter()
            .chain(cut.to_str())
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success(), "1 MiB cannot hold the snapshot");
    let refused = refused_start(&cut);
    assert!(refused.contains("restore") && refused.contains("did not finish"), "{refused}");
    drop(small);
    // Restored into a new directory and served from there.
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let restored = s._dir.path().join("restored");
    let out = corral(&[
        "admin",
        "snapshot",
        "restore",
        file.to_str().expect("utf-8"),
        "--data-dir",
        restored.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The credential file goes with the data: the snapshot holds its token, so it
    // works at once and the restored server mints none (which would be a write).
    std::fs::copy(s.data_dir().join("admin.conf"), restored.join("admin.conf")).expect("keep admin.conf");
    std::fs::remove_dir_all(s.data_dir()).expect("remove the old store");
    std::fs::rename(&restored, s.data_dir()).expect("move the restored store in place");
    let s = Server::restart_in(s).await;
    let after: Value = s.http.get(&url).send().await.expect("list").json().await.expect("JSON");
    assert_eq!(after["items"], before["items"], "the same objects at the same revisions");
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    // Writes go on from the snapshot's revision, never re-issuing one.
    let created = s.create_configmap("after", json!({})).await;
    let at: u64 = rv(&created).parse().expect("a revision");
    assert!(at > before["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(u64::MAX));
}

/// A tmpfs mounted on a temp dir for as long as it lives.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mounting a tmpfs needs root, as the test setup has");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Finding 9: on a full disk, writes answered a generic 500, `/healthz` said ok, the
/// store stayed read-only after space was freed and SIGTERM hung. Now: 507 naming the
/// disk, `/healthz` 503, writes resume by themselves, and the server stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_writes_resume_once_space_is_freed() {
    let fs = Tmpfs::mount(96);
    let data = fs.0.path().join("data");
    // The log off the small disk.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let mut s = Server::adopt(
        spawn(&data, "127.0.0.1:0", &log, &["--controllers", "none", "--min-free-bytes", "16Mi"], None),
        log,
        dir,
    )
    .ready(&data)
    .await;
    let before = s.create_configmap("before", json!({"v": "1"})).await;
    // Fill the disk to 8 MiB short of full: below the 16 MiB reserve.
    let filler = fs.0.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![7u8; MIB];
        loop {
            // SAFETY: statvfs writes only into the struct passed.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            let path = std::ffi::CString::new(fs.0.path().to_str().expect("utf-8")).expect("path");
            assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
            if (st.f_bavail as u64) * (st.f_frsize as u64) <= 8 * MIB as u64 {
                break;
            }
            f.write_all(&chunk).expect("fill");
        }
        f.sync_all().expect("sync");
    }
    let r = s.post_configmap("refused", json!({"v": "x".repeat(64 << 10)})).await;
    assert_eq!(r.status(), 507);
    let status: Value = r.json().await.expect("a Status");
    assert!(status["message"].as_str().unwrap_or_default().contains("free"), "{status}");
    let r = s.http.get(format!("{}/healthz", s.base)).send().await.expect("/healthz");
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap_or_default().contains("full"));
    // Reads still work; nothing acknowledged is lost.
    assert_eq!(s.get("before").await["metadata"]["uid"], before["metadata"]["uid"]);
    // Space freed: writes resume without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let r = s.post_configmap("after", json!({"v": "1"})).await;
    assert_eq!(r.status(), 201);
    s.assert_alive().await;
    // And SIGTERM stops it.
    // SAFETY: kill only sends a signal to our child.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let exited =
        corral_testkit::eventually("the server exits on SIGTERM", async || s.child.try_wait().ok().flatten()).await;
    assert!(exited.success(), "{exited:?}");
}
