//! `POST /watches`: several watches over one response, each sent through the whole
//! API (authentication, authorization, its own semantics), against a real server on
//! 127.0.0.1 with a real sled store.

mod api_support;

use api_support::{CMS, TestServer, cm};
use corral_testkit::PATIENCE;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

const NODES: &str = "/apis/corral.dev/v1/nodes";

/// The lines of an open `POST /watches`, one JSON value each.
struct Lines {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Lines {
    async fn open(s: &TestServer, watches: Value) -> Lines {
        let resp = s.client.post(s.url("/watches")).json(&watches).send().await.expect("answered");
        assert_eq!(resp.status(), StatusCode::OK, "POST /watches");
        Lines { stream: resp.bytes_stream().boxed(), buf: Vec::new() }
    }

    /// The next line that is not a bookmark; `None` once the response ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let v: Value = serde_json::from_slice(&line).expect("each line is JSON");
                if v["event"]["type"] == "BOOKMARK" {
                    continue;
                }
                return Some(v);
            }
            match tokio::time::timeout(PATIENCE, self.stream.next()).await.expect("a line arrives") {
                Some(c) => self.buf.extend_from_slice(&c.expect("the stream reads")),
                None => return None,
            }
        }
    }
}

#[tokio::test]
async fn several_watches_share_one_response_and_one_refused_leaves_the_others_going() {
    let s = TestServer::start().await;
    let (code, first) = s.post(CMS, &cm("before", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let from = s.revision().await;
    // One watch of ConfigMaps and one of nodes from now, one from a revision the
    // event log no longer holds.
    let (code, v) = s.call(reqwest::Method::POST, &format!("/admin/compact?revision={from}"), None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let mut lines = Lines::open(
        &s,
        json!({"watches": [
            {"id": "cms", "path": format!("{CMS}?watch=true&resourceVersion={from}")},
            {"id": "nodes", "path": format!("{NODES}?watch=true&resourceVersion={from}&allowWatchBookmarks=true")},
            {"id": "old", "path": format!("{CMS}?watch=true&resourceVersion=1")},
        ]}),
    )
    .await;
    let gone = lines.next().await.expect("the compacted watch's end");
    assert_eq!(gone["id"], "old", "{gone}");
    assert_eq!(gone["end"]["code"], 410, "{gone}");

    let (code, v) = s.post(CMS, &cm("after", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    s.register_node("n1", 2.0, 1024).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let l = lines.next().await.expect("the watches go on");
        seen.push((
            l["id"].as_str().unwrap_or_default().to_string(),
            l["event"]["type"].as_str().unwrap_or_default().to_string(),
            l["event"]["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        ));
    }
    assert_eq!(seen[0], ("cms".into(), "ADDED".into(), "after".into()), "{seen:?}");
    assert_eq!(seen[1], ("nodes".into(), "ADDED".into(), "n1".into()), "{seen:?}");
}

#[tokio::test]
async fn watches_are_authorized_one_by_one_and_bad_requests_are_refused_whole() {
    let s = TestServer::start().await;
    // Without a credential: the 401 itself, so a client knows to log in.
    let anonymous = reqwest::Client::builder().no_proxy().build().expect("client");
    let one_watch = |client: &reqwest::Client| {
        client
            .post(s.url("/watches"))
            .json(&json!({"watches": [{"id": "a", "path": format!("{CMS}?watch=true")}]}))
            .send()
    };
    let resp = one_watch(&anonymous).await.expect("answered");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A user with no role: each watch ends refused (403), named by its id.
    let token = s.kit().create_token("nobody", &[], corral_api::kinds::token::TokenPurpose::Authentication, None).await;
    let nobody = corral_testkit::authorized_http(&token);
    let resp = one_watch(&nobody).await.expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("body");
    let end: Value = serde_json::from_str(text.trim()).expect("one line");
    assert_eq!((end["id"].as_str(), end["end"]["code"].as_u64()), (Some("a"), Some(403)), "{text}");

    // Not a watch, or none at all: refused whole, saying why.
    for (body, says) in [
        (json!({"watches": [{"id": "x", "path": "/admin/snapshot"}]}), "is not a watch of the API"),
        (json!({"watches": [{"id": "x", "path": format!("{CMS}?watch=false")}]}), "is not a watch of the API"),
        (json!({"watches": []}), "carries 1 to 32 watches"),
        (json!({"watch": []}), "not a list of watches"),
    ] {
        let (code, v) = s.call(reqwest::Method::POST, "/watches", Some(&body)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["message"].as_str().unwrap_or_default().contains(says), "{body}: {v}");
    }
}
