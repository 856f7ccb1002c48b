//! The control plane's OCI registry (`/v2/…`) driven by the real `skopeo` against a
//! real server: push a `docker save` archive, read it back by tag and digest with
//! every digest checked, pull it with skopeo; refusals (a blob whose digest does not
//! match, a push without credentials, a node pushing) in the distribution's format.

mod registry_support;

use std::path::Path;

use corral_testkit::TestServer;
use registry_support::{sha, show, skopeo};
use serde_json::Value;

/// Pushes the busybox archive as `repo:tag` with skopeo, as the admin.
async fn push(server: &TestServer, dir: &Path, repo: &str, tag: &str) {
    registry_support::push_busybox(&server.base, &server.token, dir, repo, tag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_everything_reads_back_with_its_digest() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    push(&server, tmp.path(), "team/busybox", "1").await;
    let http = server.http();

    let resp = http.get(server.url("/v2/team/busybox/manifests/1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let digest = resp.headers()["docker-content-digest"].to_str().unwrap().to_string();
    let media_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    assert_eq!(sha(&body), digest, "the manifest's digest header is its content's");
    assert!(media_type.contains("manifest"), "{media_type}");

    // By digest, the same bytes.
    let by_digest = http.get(server.url(&format!("/v2/team/busybox/manifests/{digest}"))).send().await.unwrap();
    assert_eq!(by_digest.status(), 200);
    assert_eq!(by_digest.bytes().await.unwrap(), body);

    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(blobs.len(), 3, "a config and two layers: {manifest}");
    for b in &blobs {
        let head = http.head(server.url(&format!("/v2/team/busybox/blobs/{b}"))).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {b}");
        let resp = http.get(server.url(&format!("/v2/team/busybox/blobs/{b}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {b}");
        assert_eq!(&sha(&resp.bytes().await.unwrap()), b, "blob content matches its digest");
    }

    let tags: Value = http.get(server.url("/v2/team/busybox/tags/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
    let catalog: Value = http.get(server.url("/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/busybox"]));

    // Pushed bytes are counted.
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let pushed = metrics
        .lines()
        .find(|l| l.starts_with("corral_registry_pushed_bytes_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(pushed.is_some_and(|p| p > body.len() as u64), "corral_registry_pushed_bytes_total: {pushed:?}");

    // skopeo reads it back, and copies it out to an OCI layout.
    let host = server.base.trim_start_matches("http://").to_string();
    let creds = format!("corral:{}", server.token);
    let out = skopeo(vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        "--creds".into(),
        creds.clone(),
        format!("docker://{host}/team/busybox:1"),
    ])
    .await;
    assert!(out.status.success(), "skopeo inspect failed:\n{}", show(&out));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], Value::String(digest.clone()));
    let layout = tmp.path().join("pulled");
    let out = skopeo(vec![
        "copy".into(),
        "--src-tls-verify=false".into(),
        "--src-creds".into(),
        creds,
        format!("docker://{host}/team/busybox:1"),
        format!("oci:{}:pulled", layout.display()),
    ])
    .await;
    assert!(out.status.success(), "skopeo copy out failed:\n{}", show(&out));
    assert!(layout.join("index.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_digest_does_not_match_is_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let http = server.http();
    let content = b"not what the digest says".to_vec();
    let claimed = sha(b"something else");

    // Chunked: POST, PATCH, then PUT with the wrong digest.
    let start = http.post(server.url("/v2/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(start.status(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let patch = http.patch(server.url(&location)).body(content.clone()).send().await.unwrap();
    assert_eq!(patch.status(), 202);
    assert_eq!(patch.headers()["range"], format!("0-{}", content.len() - 1).as_str());
    let put = http.put(server.url(&format!("{location}?digest={claimed}"))).send().await.unwrap();
    assert_eq!(put.status(), 400);
    let err: Value = put.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "DIGEST_INVALID", "{err}");

    // Monolithic: POST ?digest= with the body.
    let mono = http.post(server.url(&format!("/v2/app/blobs/uploads/?digest={claimed}"))).body(content.clone()).send();
    let mono = mono.await.unwrap();
    assert_eq!(mono.status(), 400);

    for d in [&claimed, &sha(&content)] {
        let head = http.head(server.url(&format!("/v2/app/blobs/{d}"))).send().await.unwrap();
        assert_eq!(head.status(), 404, "{d} must not be stored");
        let get = http.get(server.url(&format!("/v2/app/blobs/{d}"))).send().await.unwrap();
        let err: Value = get.json().await.unwrap();
        assert_eq!(err["errors"][0]["code"], "BLOB_UNKNOWN", "{err}");
    }
    let registry = server.dir().join("data/registry");
    for sub in ["blobs/sha256", "uploads"] {
        let left: Vec<_> = std::fs::read_dir(registry.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub} holds {left:?}");
    }

    // The same content under its own digest is taken.
    let ok = http.post(server.url(&format!("/v2/app/blobs/uploads/?digest={}", sha(&content)))).body(content.clone());
    assert_eq!(ok.send().await.unwrap().status(), 201);
    // A manifest naming a blob never pushed is refused.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": claimed, "size": 1},
        "layers": [],
    });
    let put = http
        .put(server.url("/v2/app/manifests/1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 400);
    let err: Value = put.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{err}");
    let get = http.get(server.url("/v2/app/manifests/1")).send().await.unwrap();
    assert_eq!(get.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_without_a_valid_credential_get_401_with_a_basic_challenge() {
    let server = TestServer::start().await;
    let anonymous = reqwest::Client::builder().no_proxy().build().unwrap();
    for (method, path) in [(reqwest::Method::GET, "/v2/"), (reqwest::Method::POST, "/v2/app/blobs/uploads/")] {
        let resp = anonymous.request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
        assert_eq!(resp.headers()["www-authenticate"], r#"Basic realm="corral""#);
        assert_eq!(resp.headers()["docker-distribution-api-version"], "registry/2.0");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["errors"][0]["code"], "UNAUTHORIZED", "{err}");
    }
    // Basic with a token as the password works; with anything else it does not.
    let basic = |password: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("someone:{password}")))
    };
    let ok = anonymous.get(server.url("/v2/")).header("authorization", basic(&server.token)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let bad = anonymous.get(server.url("/v2/")).header("authorization", basic("nope")).send().await.unwrap();
    assert_eq!(bad.status(), 401);

    // skopeo without credentials is refused too.
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("busybox.tar");
    corral_testkit::busybox::busybox_docker_archive(&archive, "busybox:1").unwrap();
    let host = server.base.trim_start_matches("http://").to_string();
    let out = skopeo(vec![
        "copy".into(),
        format!("docker-archive:{}", archive.display()),
        format!("docker://{host}/busybox:1"),
        "--dest-tls-verify=false".into(),
        "--dest-no-creds".into(),
    ])
    .await;
    assert!(!out.status.success(), "an anonymous push must fail:\n{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401")
            || String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "{}",
        show(&out)
    );
    let catalog: Value = server.http().get(server.url("/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_pull_but_do_not_push() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    push(&server, tmp.path(), "busybox", "1").await;
    let node = corral_testkit::authorized_http(&server.node_token("n1").await);
    let get = node.get(server.url("/v2/busybox/manifests/1")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let post = node.post(server.url("/v2/busybox/blobs/uploads/")).send().await.unwrap();
    assert_eq!(post.status(), 403);
    let err: Value = post.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "DENIED", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_the_same_blob_both_succeed() {
    let server = TestServer::start().await;
    let http = server.http();
    // Larger than the API's body limit: blobs stream, they are not bounded by it.
    let content = vec![7u8; 12 << 20];
    let digest = sha(&content);
    // Both chunked, interleaved: each writes its own upload file.
    let mut locations = Vec::new();
    for _ in 0..2 {
        let start = http.post(server.url("/v2/app/blobs/uploads/")).send().await.unwrap();
        assert_eq!(start.status(), 202);
        locations.push(start.headers()["location"].to_str().unwrap().to_string());
    }
    for half in [&content[..1 << 20], &content[1 << 20..]] {
        for l in &locations {
            let patch = http.patch(server.url(l)).body(half.to_vec()).send().await.unwrap();
            assert_eq!(patch.status(), 202);
        }
    }
    let puts = locations.iter().map(|l| http.put(server.url(&format!("{l}?digest={digest}"))).send());
    for put in futures::future::join_all(puts).await {
        assert_eq!(put.unwrap().status(), 201);
    }
    let got = http.get(server.url(&format!("/v2/app/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(sha(&got.bytes().await.unwrap()), digest);
    let left: Vec<_> = std::fs::read_dir(server.dir().join("data/registry/uploads")).unwrap().collect();
    assert!(left.is_empty(), "finished uploads leave no files: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_images_survive_a_restart_and_unfinished_uploads_do_not() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    push(&server, tmp.path(), "busybox", "1").await;
    let http = server.http();
    let before = http.get(server.url("/v2/busybox/manifests/1")).send().await.unwrap();
    let digest = before.headers()["docker-content-digest"].to_str().unwrap().to_string();
    // An upload left half-way.
    let start = http.post(server.url("/v2/busybox/blobs/uploads/")).send().await.unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let patch = http.patch(server.url(&location)).body(vec![1u8; 1000]).send().await.unwrap();
    assert_eq!(patch.status(), 202);

    let server = server.restart().await;
    let http = server.http();
    let after = http.get(server.url("/v2/busybox/manifests/1")).send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(after.headers()["docker-content-digest"], digest.as_str());
    let gone = http.get(server.url(&location)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let err: Value = gone.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN", "{err}");
}
