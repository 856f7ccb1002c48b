//! Requests built to exhaust the control plane, sent over HTTP to the real `corral
//! server` binary: each is refused with a clear status, the server stays healthy, and
//! nothing it acknowledged before is lost or changed.

mod hardening_support;

use hardening_support::*;
use serde_json::{Value, json};

/// Finding 1 of issue 9: 40 `copy` operations, each copying the document's data
/// into itself, would double it 40 times (a terabyte from 2.4 KB of request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_doubling_json_patch_is_refused_and_the_server_stays_up() {
    let mut s = Server::start().await;
    let before = s.create_configmap("doubled", json!({"x": "y".repeat(1000)})).await;
    let ops: Vec<Value> =
        (0..40).map(|i| json!({"op": "copy", "from": "/spec/data", "path": format!("/spec/data/d{i}")})).collect();
    let body = serde_json::to_vec(&ops).expect("JSON");
    assert!(body.len() < 3000, "the patch is small: {} bytes", body.len());

    let (code, status) = s.patch("doubled", "application/json-patch+json", body).await;
    assert_eq!(code, 413, "{status}");
    assert_eq!(status["reason"], "RequestEntityTooLarge", "{status}");
    assert!(status["message"].as_str().unwrap_or_default().contains("operation 11 (copy)"), "{status}");
    s.assert_alive().await;
    let after = s.get("doubled").await;
    assert_eq!(rv(&after), rv(&before), "the object is unchanged");
    assert_eq!(after["spec"], before["spec"]);
    s.create_configmap("afterwards", json!({"a": "b"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_patch_of_more_than_ten_thousand_operations_is_refused() {
    let mut s = Server::start().await;
    let before = s.create_configmap("many", json!({"a": "b"})).await;
    let ops: Vec<Value> = (0..10_001).map(|_| json!({"op": "test", "path": "/spec/data/a", "value": "b"})).collect();
    let (code, status) = s.patch("many", "application/json-patch+json", serde_json::to_vec(&ops).expect("JSON")).await;
    assert_eq!(code, 413, "{status}");
    assert!(status["message"].as_str().unwrap_or_default().contains("at most 10000 operations"), "{status}");
    s.assert_alive().await;
    assert_eq!(rv(&s.get("many").await), rv(&before));

    // Ten thousand is allowed.
    let ops: Vec<Value> = (0..10_000).map(|_| json!({"op": "test", "path": "/spec/data/a", "value": "b"})).collect();
    let (code, status) = s.patch("many", "application/json-patch+json", serde_json::to_vec(&ops).expect("JSON")).await;
    assert_eq!(code, 200, "{status}");
}

/// Each patch body is within the 3 MiB limit, but the object they build would not be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_cannot_grow_an_object_past_the_object_limit() {
    let mut s = Server::start().await;
    let two_mib = "z".repeat(2 * 1024 * 1024);
    let before = s.create_configmap("grown", json!({"a": two_mib})).await;
    for (content_type, body) in [
        ("application/merge-patch+json", json!({"spec": {"data": {"b": two_mib}}})),
        ("application/json-patch+json", json!([{"op": "add", "path": "/spec/data/b", "value": two_mib}])),
        ("application/json-patch+json", json!([{"op": "copy", "from": "/spec/data/a", "path": "/spec/data/b"}])),
    ] {
        let (code, status) = s.patch("grown", content_type, serde_json::to_vec(&body).expect("JSON")).await;
        assert_eq!(code, 413, "{content_type}: answered {code} {}", status["message"]);
        assert_eq!(status["reason"], "RequestEntityTooLarge", "{}", status["message"]);
        s.assert_alive().await;
        let after = s.get("grown").await;
        assert_eq!(rv(&after), rv(&before), "{content_type}: the object is unchanged");
        assert!(after["spec"]["data"].get("b").is_none());
    }
    // A patch that keeps it within the limit still works.
    let (code, status) = s
        .patch(
            "grown",
            "application/merge-patch+json",
            serde_json::to_vec(&json!({"spec": {"data": {"b": "small"}}})).expect("JSON"),
        )
        .await;
    assert_eq!(code, 200, "{status}");
}

/// Finding 10 of issue 9: a watch from resourceVersion u64::MAX overflowed into
/// "events up to revision 0 are gone".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_revision_ahead_of_the_store_is_gone_with_a_clear_message() {
    let mut s = Server::start().await;
    let created = s.create_configmap("a", json!({"a": "b"})).await;
    let current: u64 = rv(&created).parse().expect("a revision");
    for from in [u64::MAX, current + 1] {
        let url = format!("{}/apis/corral.dev/v1/configmaps?watch=true&resourceVersion={from}", s.base);
        let r = s.http.get(url).send().await.expect("GET");
        assert_eq!(r.status(), 410, "from {from}");
        let status: Value = r.json().await.expect("a Status");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("revision {from} is ahead")), "{message}");
        assert!(message.contains(&format!("at revision {current}")), "{message}");
        s.assert_alive().await;
    }
    let url = format!("{}/apis/corral.dev/v1/configmaps?watch=true&resourceVersion={current}", s.base);
    assert_eq!(s.http.get(url).send().await.expect("GET").status(), 200, "the current revision is a valid start");
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        send_as(&self.http, &self.base, method, path, body).await
    }

    /// Node `node` whose agent is at `endpoint`, and task `task` bound to it.
    async fn task_on(&self, node: &str, endpoint: &str, task: &str) {
        // As the node itself (joined with a join token): only a node sets its endpoint.
        let join = corral_client::BearerToken::generate().expect("token");
        let spec = json!({"user": "system:bootstrap:t", "purpose": "Join", "secretHash": join.secret_hash()});
        let token =
            json!({"apiVersion": "corral.dev/v1", "kind": "Token", "metadata": {"name": join.id}, "spec": spec});
        self.send(reqwest::Method::POST, "/apis/corral.dev/v1/tokens", &token).await;
        let joined: Value = corral_testkit::authorized_http(&join.expose())
            .post(format!("{}/auth/join", self.base))
            .json(&json!({"node": node}))
            .send()
            .await
            .expect("join answered")
            .json()
            .await
            .expect("JSON");
        let as_node = corral_testkit::authorized_http(joined["token"].as_str().expect("token"));
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": node}, "spec": {}});
        let mut obj = send_as(&as_node, &self.base, reqwest::Method::POST, "/apis/corral.dev/v1/nodes", &body).await;
        obj["status"] = json!({"phase": "Ready", "agentEndpoint": endpoint});
        let status = format!("/apis/corral.dev/v1/nodes/{node}/status");
        send_as(&as_node, &self.base, reqwest::Method::PUT, &status, &obj).await;
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": task},
            "spec": {"image": "busybox", "command": ["/bin/echo", "hi"], "nodeName": node}});
        self.send(reqwest::Method::POST, "/apis/corral.dev/v1/namespaces/default/tasks", &body).await;
    }

    fn log_url(&self, task: &str) -> String {
        format!("{}/apis/corral.dev/v1/namespaces/default/tasks/{task}/log", self.base)
    }
}

/// Sends `method path body` with `http`; panics unless it succeeds.
async fn send_as(http: &reqwest::Client, base: &str, method: reqwest::Method, path: &str, body: &Value) -> Value {
    let r = http.request(method, format!("{base}{path}")).json(body).send().await.expect("answered");
    let code = r.status();
    let v: Value = r.json().await.expect("JSON");
    assert!(code.is_success(), "{path}: {code} {v}");
    v
}

/// A fake agent endpoint: a listener on loopback that answers each request with
/// `answer` (or never, when `None`), counting the requests. It stops answering after
/// 20, so that a server that loops through it stops too.
async fn fake_agent(answer: Option<String>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) >= 20 {
                continue;
            }
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            match &answer {
                Some(a) => {
                    let _ = conn.write_all(a.as_bytes()).await;
                }
                None => held.push(conn),
            }
        }
    });
    (endpoint, seen)
}

/// Finding 10 of issue 9: an agent endpoint that redirects to the server's own log
/// path made the server call itself until no descriptor was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_proxy_follows_no_redirect() {
    use std::sync::atomic::Ordering;
    let mut s = Server::start().await;
    let answer = format!(
        "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s.log_url("looped")
    );
    let (endpoint, seen) = fake_agent(Some(answer)).await;
    s.task_on("redirecting", &endpoint, "looped").await;
    let r = tokio::time::timeout(corral_testkit::PATIENCE, s.http.get(s.log_url("looped")).send())
        .await
        .expect("the log request ends")
        .expect("answered");
    let code = r.status();
    let status: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, 502, "{status}");
    assert!(status["message"].as_str().unwrap_or_default().contains("answered 302 Found"), "{status}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the endpoint was asked once");
    s.assert_alive().await;
}

/// An agent endpoint that accepts the connection and never answers holds the request
/// only for the proxy's answer timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_proxy_gives_up_on_an_agent_that_never_answers() {
    let mut s = Server::start().await;
    let (endpoint, _) = fake_agent(None).await;
    s.task_on("silent", &endpoint, "waits").await;
    let r = tokio::time::timeout(corral_testkit::PATIENCE, s.http.get(s.log_url("waits")).send())
        .await
        .expect("the log request ends")
        .expect("answered");
    let code = r.status();
    let status: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, 504, "{status}");
    assert!(status["message"].as_str().unwrap_or_default().contains("did not answer within"), "{status}");
    s.assert_alive().await;
}

/// Finding 10 of issue 9: foreground deletion of an ownership cycle, or of an object
/// that owns itself, stayed stuck forever (each waited for the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_of_ownership_cycles_finishes() {
    let mut s = Server::start_with(&["--controllers", "garbage-collector"]).await;
    let owner_ref = |o: &Value| {
        json!([{"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
                "uid": o["metadata"]["uid"], "blockOwnerDeletion": true}])
    };
    let own = async |s: &Server, name: &str, owner: &Value| {
        let patch = json!({"metadata": {"ownerReferences": owner_ref(owner)}});
        let (code, v) = s.patch(name, "application/merge-patch+json", serde_json::to_vec(&patch).expect("JSON")).await;
        assert_eq!(code, 200, "{v}");
    };
    let a = s.create_configmap("cycle-a", json!({})).await;
    let b = s.create_configmap("cycle-b", json!({})).await;
    own(&s, "cycle-b", &a).await;
    own(&s, "cycle-a", &b).await;
    let me = s.create_configmap("owns-itself", json!({})).await;
    own(&s, "owns-itself", &me).await;

    for name in ["cycle-a", "owns-itself"] {
        let r = s
            .http
            .delete(format!("{}?propagationPolicy=Foreground", s.configmap_url(name)))
            .send()
            .await
            .expect("DELETE answered");
        assert!(r.status().is_success(), "delete {name}: {}", r.status());
    }
    for name in ["cycle-a", "cycle-b", "owns-itself"] {
        corral_testkit::eventually(&format!("{name} to be gone"), async || {
            let r = s.http.get(s.configmap_url(name)).send().await.ok()?;
            (r.status() == 404).then_some(())
        })
        .await;
    }
    s.assert_alive().await;
}

/// Finding 4 of issue 9: 1,100 idle TCP connections made a server limited to 1,024
/// descriptors unreachable (accept failed, `/healthz` and writes timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_make_the_server_unreachable() {
    use tokio::io::AsyncReadExt;
    // This test holds 1,100 sockets itself.
    let mut own = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut own);
        own.rlim_cur = own.rlim_max.max(own.rlim_cur);
        libc::setrlimit(libc::RLIMIT_NOFILE, &own);
    }
    let mut s = Server::start_limited(&["--controllers", "none"], Some(1024)).await;
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().expect("an address");

    // A client at 127.0.0.2 opens 1,100 connections and never sends a byte.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind("127.0.0.2:0".parse().expect("address")).expect("bind 127.0.0.2");
        idle.push(socket.connect(addr).await.expect("connect"));
    }

    // Others are still served: health, and a write.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .default_headers(s.http_headers())
        .build()
        .expect("a client");
    let r = http.get(format!("{}/healthz", s.base)).send().await.expect("/healthz answers");
    assert!(r.status().is_success(), "/healthz: {}", r.status());
    s.create_configmap("written-meanwhile", json!({"a": "b"})).await;

    // The connections over that client's cap were told why.
    let mut refused = 0;
    for c in idle.iter_mut().rev().take(200) {
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 429 Too Many Requests")
        {
            refused += 1;
        }
    }
    assert!(refused > 0, "no refused connection got a 429");
    let metrics = http.get(format!("{}/metrics", s.base)).send().await.expect("/metrics").text().await.expect("text");
    assert!(
        metrics.lines().any(|l| l.starts_with("corral_http_connections_refused_total ") && !l.ends_with(" 0")),
        "refusals are counted"
    );

    // And the admitted idle ones are closed once the header-read timeout passes.
    let mut first = idle.swap_remove(0);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(corral_testkit::PATIENCE, first.read(&mut buf))
        .await
        .expect("the server closes an idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response: {:?}", String::from_utf8_lossy(&buf[..n]));
    s.assert_alive().await;
}

/// Finding 3 of issue 9: a YAML body nested 100,000 deep cost a minute of CPU before
/// its 400; four at once stalled `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_bodies_are_refused_before_they_are_decoded() {
    let mut s = Server::start().await;
    let deep_yaml = format!(
        "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nspec: {{data: {}{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_json = format!(
        "{{\"apiVersion\": \"corral.dev/v1\", \"kind\": \"ConfigMap\", \"x\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let apply = |body: String, content_type: &'static str| {
        let http = s.http.clone();
        let url = s.configmap_url("deep");
        async move {
            let r = http.patch(url).header("content-type", content_type).body(body).send().await.expect("answered");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Four at once, as in the finding.
    let answers =
        futures::future::join_all((0..4).map(|_| apply(deep_yaml.clone(), "application/apply-patch+yaml")).chain([
            apply(deep_json.clone(), "application/apply-patch+json"),
            apply(deep_json.clone(), "application/merge-patch+json"),
        ]))
        .await;
    for (code, status) in answers {
        assert_eq!(code, 400, "{status}");
        assert!(status["message"].as_str().unwrap_or_default().contains("more than 100 levels deep"), "{status}");
    }
    s.assert_alive().await;
    let r = s.http.get(s.configmap_url("deep")).send().await.expect("GET");
    assert_eq!(r.status(), 404, "nothing was written");

    // The CLI reads manifests with the same bound, and names the file.
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("deep.yaml");
    std::fs::write(&file, &deep_yaml).expect("write the manifest");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &s.base, "--token", &s.token, "apply", "-f"])
        .arg(&file)
        .output()
        .await
        .expect("corral apply runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("deep.yaml") && stderr.contains("more than 100 levels deep"), "{stderr}");
}

fn definition(plural: &str, kind: &str, spec_schema: Value) -> Value {
    json!({
        "apiVersion": "corral.dev/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "version": "v1", "kind": kind, "plural": plural, "scope": "Namespaced",
                 "schema": {"spec": spec_schema}}
    })
}

/// Finding 2 of issue 9: a definition chaining 20,000 `$ref`s crashed the server at the
/// first object of its kind; one nesting `allOf: [$ref, $ref]` 40 deep pinned every
/// worker; a 2 MiB pattern blocked a worker for seconds, at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_kinds_with_unbounded_schemas_are_refused_and_a_stored_one_cannot_stop_a_start() {
    let mut s = Server::start().await;
    let chained = {
        let defs: serde_json::Map<String, Value> = (0..20_000)
            .map(|i| {
                (
                    format!("d{i}"),
                    if i == 19_999 {
                        json!({"type": "string"})
                    } else {
                        json!({"$ref": format!("#/$defs/d{}", i + 1)})
                    },
                )
            })
            .collect();
        json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "$defs": defs})
    };
    let fanned = {
        let mut defs = serde_json::Map::new();
        defs.insert("d40".to_string(), json!({"type": "string"}));
        for i in (0..40).rev() {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(format!("d{i}"), json!({"allOf": [{"$ref": next}, {"$ref": next}]}));
        }
        json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "$defs": defs})
    };
    let regex = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(a|b)".repeat(400_000)}}});
    let crds = format!("{}/apis/corral.dev/v1/customresourcedefinitions", s.base);
    for (plural, kind, schema, field) in [
        ("chains", "Chain", chained, ".$ref"),
        ("fans", "Fan", fanned, ".$ref"),
        ("regexes", "Regex", regex, "spec.schema.spec.properties.a.pattern"),
    ] {
        let r = s.http.post(&crds).json(&definition(plural, kind, schema)).send().await.expect("POST");
        let code = r.status();
        let status: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(code, 422, "{plural}: {}", status["message"]);
        let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
        let named = |c: &Value| {
            let f = c["field"].as_str().unwrap_or_default();
            f.starts_with("spec.schema.spec.") && f.ends_with(field)
        };
        assert!(causes.iter().any(named), "{plural}: {causes:?}");
        s.assert_alive().await;
    }

    // One stored before these bounds (written to the store directly, server stopped)
    // is not served, says why, and the server starts and serves the rest.
    let data = s._dir.path().join("data");
    let _ = s.child.kill();
    let _ = s.child.wait();
    {
        use corral_store::Storage;
        let store = corral_store::SledStore::open(&data, corral_store::Options::default()).expect("open the store");
        let mut crd = definition(
            "olds",
            "Old",
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}},
                                                          "$defs": {"x": {"type": "string"}}}),
        );
        crd["metadata"]["uid"] = json!("old-uid");
        store
            .create(corral_store::Key::cluster("corral.dev/customresourcedefinitions", "olds.example.com"), crd)
            .await
            .expect("stored");
        store.close();
    }
    let mut s = Server::restart_in(s).await;
    let crd_url = format!("{crds}/olds.example.com");
    let crd: Value = corral_testkit::eventually("the definition's status to say why", async || {
        let v: Value = s.http.get(&crd_url).send().await.ok()?.json().await.ok()?;
        (v.pointer("/status/accepted") == Some(&json!(false))).then_some(v)
    })
    .await;
    assert!(crd["status"]["message"].as_str().unwrap_or_default().contains("references are not supported"), "{crd}");
    let r = s.http.get(format!("{}/apis/example.com/v1/namespaces/default/olds", s.base)).send().await.expect("GET");
    assert_eq!(r.status(), 404, "the kind is not served");
    s.create_configmap("still-served", json!({})).await;
    s.assert_alive().await;
}

/// Finding 4 of issue 9, watches: one HTTP/2 connection carries many watches, so they
/// are counted per client address as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_capped_per_client() {
    let mut s = Server::start_with(&["--controllers", "none", "--max-watches-per-client", "3"]).await;
    let url = format!("{}/apis/corral.dev/v1/configmaps?watch=true", s.base);
    let from = |ip: [u8; 4]| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", s.token).parse().expect("header"));
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .default_headers(headers)
            .http2_prior_knowledge()
            .build()
            .expect("a client")
    };
    let greedy = from([127, 0, 0, 2]);
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = greedy.get(&url).send().await.expect("watch answered");
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = greedy.get(&url).send().await.expect("answered");
    assert_eq!(r.status(), 429);
    let status: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status["message"].as_str().unwrap_or_default().contains("127.0.0.2 has 3 watches open"), "{status}");
    // Another client watches; the greedy one may again once one of its watches ends.
    assert_eq!(from([127, 0, 0, 3]).get(&url).send().await.expect("answered").status(), 200);
    drop(open.pop());
    corral_testkit::eventually("the ended watch to free its place", async || {
        (greedy.get(&url).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    s.assert_alive().await;
}
