//! `corral logs`: the real binary, through the real API server, from a real agent HTTP
//! API serving log files from a temporary work dir.

mod cli_support;

use cli_support::Env;
use corral_agent::Layout;
use serde_json::{Value, json};

/// A real agent HTTP API on 127.0.0.1:0, and a runtime to talk to the server with.
struct Agent {
    rt: tokio::runtime::Runtime,
    layout: Layout,
    endpoint: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Agent {
    fn start() -> Agent {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("work")).unwrap();
        let router = corral_agent::http::router(corral_agent::http::AgentHttp {
            layout: layout.clone(),
            registry: Default::default(),
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(corral_agent::http::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Agent { rt, layout, endpoint, _dir: dir, _stop: stop }
    }

    fn append(&self, uid: &str, file: &str, text: &str) {
        use std::io::Write;
        let logs = self.layout.task(uid).join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(file)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn exit(&self, uid: &str) {
        corral_agent::layout::write_atomic(&self.layout.task(uid).join("exit.json"), b"{\"exitCode\":0}").unwrap();
    }

    /// Sends one request to the API server; panics unless it succeeds.
    fn call(&self, env: &Env, token: &str, method: reqwest::Method, path: &str, body: &Value) -> Value {
        self.rt.block_on(async {
            let client = corral_testkit::authorized_http(token);
            let resp = client.request(method, format!("{}{path}", env.url)).json(body).send().await.unwrap();
            let code = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert!(code.is_success(), "{path}: {code} {v}");
            v
        })
    }

    /// A node pointing at this agent and a task bound to it; returns the task's uid.
    fn task(&self, env: &Env, name: &str) -> String {
        let nodes = "/apis/corral.dev/v1/nodes";
        let node = json!({"apiVersion":"corral.dev/v1","kind":"Node","metadata":{"name":"n1"},"spec":{}});
        // As the node itself: only a node sets its own agent endpoint.
        let as_node = env.node_token("n1");
        let mut node = self.call(env, &as_node, reqwest::Method::POST, nodes, &node);
        node["status"] = json!({"phase": "Ready", "agentEndpoint": self.endpoint});
        self.call(env, &as_node, reqwest::Method::PUT, &format!("{nodes}/n1/status"), &node);
        let task = json!({"apiVersion":"corral.dev/v1","kind":"Task","metadata":{"name":name},
            "spec":{"nodeName":"n1","command":["/bin/true"]}});
        let task =
            self.call(env, &env.token, reqwest::Method::POST, "/apis/corral.dev/v1/namespaces/default/tasks", &task);
        task["metadata"]["uid"].as_str().unwrap().to_string()
    }
}

/// A server, an agent and task `name` bound to the agent's node; returns the task's uid
/// too.
fn task_on_agent(name: &str) -> (Env, Agent, String) {
    let env = Env::start();
    let agent = Agent::start();
    let uid = agent.task(&env, name);
    (env, agent, uid)
}

#[test]
fn logs_prints_the_log_its_tail_and_stderr() {
    let (env, agent, uid) = task_on_agent("web");
    agent.append(&uid, "stdout.1", "one\ntwo\n");
    agent.append(&uid, "stdout", "three\n");
    agent.append(&uid, "stderr", "oops\n");
    assert_eq!(env.ok(&["logs", "web"]), "one\ntwo\nthree\n");
    assert_eq!(env.ok(&["logs", "web", "--tail", "2"]), "two\nthree\n");
    assert_eq!(env.ok(&["logs", "web", "--stderr", "-n", "default"]), "oops\n");
}

#[test]
fn logs_follow_streams_new_lines_and_exits_0_when_the_task_ends() {
    let (env, agent, uid) = task_on_agent("job");
    agent.append(&uid, "stdout", "early\n");

    let mut follow = env.spawn_lines(&["logs", "job", "-f"]);
    follow.wait_for("early", |l| l == "early");
    // Written after `corral logs -f` began: only a follow shows it.
    agent.append(&uid, "stdout", "later\n");
    follow.wait_for("later", |l| l == "later");
    agent.append(&uid, "stdout", "last\n");
    agent.exit(&uid);
    follow.wait_for("last", |l| l == "last");

    // It ends by itself once the task has exited.
    let (status, lines) = follow.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert_eq!(lines, ["early", "later", "last"]);
}

#[test]
fn logs_of_a_missing_or_unbound_task_is_an_error() {
    let env = Env::start();
    let r = env.run(&["logs", "nope"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: ") && r.stderr().contains("Task \"nope\" not found"), "{r}");

    env.write(
        "t.yaml",
        "apiVersion: corral.dev/v1\nkind: Task\nmetadata:\n  name: floating\nspec:\n  command: [/bin/true]\n",
    );
    env.ok(&["apply", "-f", "t.yaml"]);
    let r = env.run(&["logs", "floating"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("not bound to a node yet"), "{r}");
    assert!(r.stdout().is_empty(), "{r}");
}
