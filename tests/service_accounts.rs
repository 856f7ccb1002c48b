//! Service-account tokens for tasks (as Kubernetes' projected, bound tokens): a task
//! holds a credential to the API only if its spec names a service account; the agent
//! asks for it (`POST /auth/task-token`, which only the task's own node may), writes
//! it into the sandbox (a container sees it at
//! `/var/run/secrets/corral.dev/serviceaccount`), and the token works only while the
//! task exists. On a real server, and for the tasks a real agent with real runc
//! containers.

mod agent_support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use agent_support::Cluster;
use corral_testkit::{TestServer, authorized_http, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";
const SA_DIR: &str = "/var/run/secrets/corral.dev/serviceaccount";

fn task(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name}, "spec": spec})
}

/// `GET path` with `token` (none: anonymous); the status code.
async fn get_as(base: &str, token: Option<&str>, path: &str) -> StatusCode {
    let http = match token {
        Some(t) => authorized_http(t),
        None => reqwest::Client::builder().no_proxy().build().expect("client"),
    };
    http.get(format!("{base}{path}")).send().await.expect("GET").status()
}

/// `POST /auth/task-token` with `token` (none: anonymous); status and answer.
async fn ask_token(base: &str, token: Option<&str>, ns: &str, name: &str) -> (StatusCode, Value) {
    let http = match token {
        Some(t) => authorized_http(t),
        None => reqwest::Client::builder().no_proxy().build().expect("client"),
    };
    let resp = http
        .post(format!("{base}/auth/task-token"))
        .json(&json!({"namespace": ns, "task": name}))
        .send()
        .await
        .expect("POST");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

/// The stdout of the task with uid `uid`.
fn stdout(c: &Cluster, uid: &str) -> String {
    std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("log")
}

fn uid(t: &Value) -> String {
    t.pointer("/metadata/uid").and_then(Value::as_str).expect("uid").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_task_reads_the_api_as_its_service_account_until_the_task_is_deleted() {
    let c = Cluster::start("sa-node", Duration::from_secs(60)).await;
    c.send(
        reqwest::Method::POST,
        &format!("{V1}/namespaces"),
        Some(&json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "tenant"}})),
    )
    .await;
    let binding = json!({"apiVersion": "corral.dev/v1", "kind": "RoleBinding", "metadata": {"name": "reader-views"},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": "view"},
                 "subjects": [{"kind": "ServiceAccount", "name": "reader"}]}});
    c.send(reqwest::Method::POST, &format!("{V1}/namespaces/tenant/rolebindings"), Some(&binding)).await;

    // Reads the tasks of its namespace (view allows it), then tries a write (it does
    // not): busybox wget exits 1 and names the 403.
    let script = format!(
        r#"echo "dir=$CORRAL_SERVICE_ACCOUNT_DIR"; echo "ns=$(cat {SA_DIR}/namespace)";
        T=$(cat {SA_DIR}/token);
        wget -q -O - --header "Authorization: Bearer $T" "$CORRAL_SERVER{V1}/namespaces/tenant/tasks" 2>&1;
        R=$?; echo; echo "list=$R";
        wget -q -O - --header "Authorization: Bearer $T" --header "Content-Type: application/json" \
          --post-data '{{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{{"name":"x"}},"spec":{{}}}}' \
          "$CORRAL_SERVER{V1}/namespaces/tenant/configmaps" 2>&1; echo "write=$?""#
    );
    let reader = json!({"image": "busybox:latest", "command": ["sh", "-c", script], "serviceAccount": "reader",
        "nodeName": c.node});
    c.send(reqwest::Method::POST, &format!("{V1}/namespaces/tenant/tasks"), Some(&task("reader", reader))).await;
    // A task naming no service account gets no directory and no variables.
    let script = format!(
        "ls {SA_DIR} >/dev/null 2>&1; echo \"mounted=$?\"; ls /mnt/sandbox/.corral >/dev/null 2>&1; \
         echo \"in-sandbox=$?\"; env | grep -E '^CORRAL_(SERVER|SERVICE_ACCOUNT_DIR)=' || echo no-env"
    );
    let plain = json!({"image": "busybox:latest", "command": ["sh", "-c", script], "nodeName": c.node});
    c.send(reqwest::Method::POST, &format!("{V1}/namespaces/tenant/tasks"), Some(&task("plain", plain))).await;

    let finished = |t: &Value| t.pointer("/status/phase").and_then(Value::as_str) == Some("FINISHED");
    let reader = c.wait_for(&format!("{V1}/namespaces/tenant/tasks/reader"), "the reader to finish", finished).await;
    let plain = c.wait_for(&format!("{V1}/namespaces/tenant/tasks/plain"), "the plain task to finish", finished).await;

    let out = stdout(&c, &uid(&reader));
    assert!(out.contains(&format!("dir={SA_DIR}")), "{out}");
    assert!(out.contains("ns=tenant"), "{out}");
    assert!(out.contains("\"name\":\"reader\""), "the list answered with the tasks: {out}");
    assert!(out.contains("list=0"), "{out}");
    assert!(out.contains("403 Forbidden"), "the write was refused: {out}");
    assert!(out.contains("write=1"), "{out}");
    let out = stdout(&c, &uid(&plain));
    assert!(out.contains("mounted=1") && out.contains("in-sandbox=1"), "{out}");
    assert!(out.contains("no-env"), "{out}");

    // On the host: only the task's user (nobody, in a restricted namespace) reads it.
    let dir = c.work_dir().join("tasks").join(uid(&reader)).join("sandbox/.corral/serviceaccount");
    let meta = std::fs::metadata(dir.join("token")).expect("token file");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o400));
    let token = std::fs::read_to_string(dir.join("token")).expect("token");
    let base = c.url.clone();
    let tasks = format!("{V1}/namespaces/tenant/tasks");
    assert_eq!(get_as(&base, Some(&token), &tasks).await, StatusCode::OK);
    assert_eq!(get_as(&base, Some(&token), &format!("{V1}/namespaces/default/tasks")).await, StatusCode::FORBIDDEN);

    // Deleted, the task takes its token along: refused, and no longer stored.
    c.send(reqwest::Method::DELETE, &format!("{tasks}/reader"), None).await;
    c.wait_gone(&format!("{tasks}/reader")).await;
    eventually("the deleted task's token to be refused", async || {
        (get_as(&base, Some(&token), &tasks).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let selector = format!("corral.dev/task-uid={}", uid(&reader));
    let path = format!("{V1}/tokens?labelSelector={selector}");
    eventually("the deleted task's token to be deleted", async || {
        let list = c.get(&path).await?;
        list["items"].as_array().is_some_and(|i| i.is_empty()).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_task_finds_its_token_in_its_sandbox() {
    // `default` is privileged in these clusters: native tasks may run there.
    let c = Cluster::start("sa-native", Duration::from_secs(60)).await;
    // The CLI inside the task finds its configuration there, with nothing else set.
    let script = format!(
        "echo \"dir=$CORRAL_SERVICE_ACCOUNT_DIR\"; echo \"server=$CORRAL_SERVER\"; \
         test -s \"$CORRAL_SERVICE_ACCOUNT_DIR/token\" && echo has-token; {} auth whoami",
        env!("CARGO_BIN_EXE_corral")
    );
    let t = c.create_task("native", json!({"command": ["/bin/sh", "-c", script], "serviceAccount": "bot"})).await;
    c.wait_phase("native", "FINISHED").await;
    let out = stdout(&c, &uid(&t));
    let dir = c.work_dir().join("tasks").join(uid(&t)).join("sandbox/.corral/serviceaccount");
    let dir = dir.canonicalize().expect("the directory exists");
    assert!(out.contains(&format!("dir={}", dir.display())), "{out}");
    assert!(out.contains(&format!("server={}", c.url)), "{out}");
    assert!(out.contains("has-token"), "{out}");
    assert!(out.contains("user:   system:serviceaccount:default:bot"), "the CLI in the task: {out}");
    let token = std::fs::read_to_string(dir.join("token")).expect("token");
    let who: Value = authorized_http(&token)
        .get(format!("{}/auth/whoami", c.url))
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("JSON");
    assert_eq!(who["user"], "system:serviceaccount:default:bot", "{who}");
    let groups = who["groups"].as_array().expect("groups");
    assert!(groups.contains(&json!("system:serviceaccounts:default")), "{who}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_node_of_a_task_naming_a_service_account_gets_its_token() {
    let s = TestServer::start().await;
    let (n1, n2) = (s.node_token("n1").await, s.node_token("n2").await);
    let http = s.http();
    for (name, spec) in [
        ("web", json!({"image": "busybox:latest", "nodeName": "n1", "serviceAccount": "reader"})),
        ("plain", json!({"image": "busybox:latest", "nodeName": "n1"})),
    ] {
        let resp = http.post(s.url(&format!("{V1}/namespaces/default/tasks"))).json(&task(name, spec)).send();
        assert_eq!(resp.await.expect("POST").status(), StatusCode::CREATED);
    }

    let (code, body) = ask_token(&s.base, None, "default", "web").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "anonymous: {body}");
    let (code, body) = ask_token(&s.base, Some(&n2), "default", "web").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "another node's task: {body}");
    let (code, body) = ask_token(&s.base, Some(&s.token), "default", "web").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "not a node: {body}");
    let (code, body) = ask_token(&s.base, Some(&n1), "default", "plain").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "no service account: {body}");
    assert!(body.to_string().contains("spec.serviceAccount"), "{body}");
    let (code, body) = ask_token(&s.base, Some(&n1), "default", "missing").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");

    let (code, body) = ask_token(&s.base, Some(&n1), "default", "web").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "system:serviceaccount:default:reader");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(get_as(&s.base, Some(&token), "/auth/whoami").await, StatusCode::OK, "usable at once");
    // No role is bound to the account: it may do nothing but say who it is.
    assert_eq!(get_as(&s.base, Some(&token), &format!("{V1}/namespaces/default/tasks")).await, StatusCode::FORBIDDEN);

    // Asking again replaces it.
    let (code, again) = ask_token(&s.base, Some(&n1), "default", "web").await;
    assert_eq!(code, StatusCode::OK, "{again}");
    eventually("the replaced token to be refused", async || {
        (get_as(&s.base, Some(&token), "/auth/whoami").await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let token = again["token"].as_str().expect("token").to_string();

    // The account is fixed once the task exists: its token is bound to the task.
    let resp = http
        .patch(s.url(&format!("{V1}/namespaces/default/tasks/web")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"serviceAccount":"admin"}}"#)
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.expect("body").contains("spec.serviceAccount"));

    // No agent holds a finalizer here: the deletion is immediate.
    let resp = http.delete(s.url(&format!("{V1}/namespaces/default/tasks/web"))).send().await.expect("DELETE");
    assert!(resp.status().is_success(), "{}", resp.status());
    eventually("the deleted task's token to be refused", async || {
        (get_as(&s.base, Some(&token), "/auth/whoami").await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    s.stop().await;
}
