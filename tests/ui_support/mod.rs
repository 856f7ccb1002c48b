//! Shared by the web interface's tests: `corral up` run as a user runs it, and real
//! headless Chromium (Debian's `chromium`) driven through `chromedriver` with the W3C
//! WebDriver protocol — a dozen JSON requests, spoken here directly with the blocking
//! HTTP client the tests already use rather than through another client library.
//!
//! Every wait is bounded by [`PATIENCE`]; everything binds 127.0.0.1; the browser, its
//! driver and the server are killed when dropped.

#![allow(dead_code)]

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use corral_testkit::PATIENCE;
use serde_json::{Value, json};

/// The browser the tests drive (Debian's package).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver server (Debian's `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the tests save a page's screenshot (`docs/screenshots/NAME`, linked from the
/// README).
pub fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots").join(name)
}

/// Logs in on the page shown (the login form) with `token`, and waits for the shell.
pub fn log_in(b: &Browser, token: &str) {
    let field = b.wait("input#token");
    b.type_into(&field, token);
    b.click(&b.wait("button#login"));
    b.wait("button#logout");
}

/// Waits, bounded by [`PATIENCE`], until `check` gives a value; panics with `what`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `corral up` (with its local agent, or not), on a fresh data directory and a port
/// of its own choosing.
pub struct Up {
    child: Option<Child>,
    dir: tempfile::TempDir,
    listen: String,
    agent: bool,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The administrator's token, from the configuration `corral up` wrote.
    pub admin_token: String,
}

impl Up {
    /// Starts `corral up` and waits until it serves and its node is `Ready`.
    pub fn start() -> Up {
        Up::start_with(true)
    }

    /// Starts `corral up` (`agent`: with its local agent, waiting until its node is
    /// `Ready`; else `--no-agent`) and waits until it serves.
    pub fn start_with(agent: bool) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        // A port of its own choosing: one picked beforehand could be taken by a
        // parallel test's process first. A start again keeps the port it took.
        let listen = "127.0.0.1:0".to_string();
        let mut up = Up { child: None, dir, listen, agent, url: String::new(), admin_token: String::new() };
        up.start_again();
        up
    }

    /// Starts the server (again, after [`Up::stop`]) on the same data and address. The
    /// address may have been taken meanwhile by a parallel test's process: the start
    /// then fails at once, saying so, rather than talking to that process.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let config = self.config();
        // Written again at each start: waiting for it is waiting for this start.
        let _ = std::fs::remove_file(&config);
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("up.log")).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.env("CORRAL_CONFIG", &config)
            .env_remove("CORRAL_NODE_NAME")
            .arg("up")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen", &self.listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if !self.agent {
            cmd.arg("--no-agent");
        }
        self.child = Some(cmd.spawn().expect("corral up starts"));
        // Written by this process once it listens, with its address.
        let written = wait_for(&self.with_log("corral up to write the CLI's configuration"), || {
            self.assert_running();
            corral_client::Config::from_kubeconfig(&config).ok().filter(|c| c.token.is_some())
        });
        if self.url.is_empty() {
            self.listen = written.server.trim_start_matches("http://").to_string();
            self.url = written.server.clone();
        }
        assert_eq!(self.url, written.server, "corral up listens where it did before");
        let token = written.token.expect("a token");
        self.admin_token = token.clone();
        wait_for(&self.with_log("corral up to serve"), || {
            self.assert_running();
            self.get("/apis/corral.dev/v1/namespaces/default", &token).ok()
        });
        if self.agent {
            wait_for(&self.with_log("the local node to be Ready"), || {
                let node = self.get("/apis/corral.dev/v1/nodes/local", &token).ok()?;
                (node["status"]["phase"] == "Ready").then_some(())
            });
        }
    }

    /// Panics, with the log, if the server has exited (as it does when its address is
    /// taken).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("wait")) {
            // Reaped: no signal must go to its pid, which may be another's by now.
            self.child = None;
            panic!("{}", self.with_log(&format!("corral up exited with {status}")));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL if it has not ended within 20 s). With an
    /// agent, its tasks are deleted first and their end awaited: containers outlive
    /// their agent by design (a restarted agent adopts them), not a test.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if self.agent {
            self.delete_tasks();
        }
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Deletes every task and waits (bounded) until none is left.
    fn delete_tasks(&self) {
        let token = self.admin_token.clone();
        let names = |up: &Up| -> Vec<(String, String)> {
            let list = up.get("/apis/corral.dev/v1/tasks", &token).unwrap_or_default();
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let field = |f: &str| t["metadata"][f].as_str().unwrap_or_default().to_string();
                    (field("namespace"), field("name"))
                })
                .collect()
        };
        for (ns, name) in names(self) {
            let _ = Self::http()
                .delete(format!("{}/apis/corral.dev/v1/namespaces/{ns}/tasks/{name}", self.url))
                .bearer_auth(&token)
                .send();
        }
        let deadline = Instant::now() + PATIENCE;
        while !names(self).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `what`, with the server's log so far (for failures).
    pub fn with_log(&self, what: &str) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        format!("{what}\ncorral up log:\n{log}")
    }

    /// The CLI's configuration `corral up` wrote.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `corral ARGS` as the administrator; its standard output, or a panic with why.
    pub fn corral(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("--server")
            .arg(&self.url)
            .args(args)
            .env("CORRAL_CONFIG", self.config())
            .env_remove("CORRAL_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("corral runs");
        assert!(
            out.status.success(),
            "corral {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Builds the example busybox image and pushes it, as the README's tour does.
    pub fn push_busybox(&self) {
        let archive = self.file("busybox.tar");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/images/busybox-image.sh");
        let built = Command::new("sh").arg(script).arg(&archive).stdout(Stdio::null()).status().expect("script");
        assert!(built.success(), "the example image script builds an archive");
        self.corral(&["image", "push", archive.to_str().expect("path")]);
    }

    /// A token of `user`, bound to the `view` role in `default` (read, never write).
    pub fn viewer(&self, user: &str) -> String {
        let token = self.corral(&["token", "create", "--user", user, "--ttl", "1h"]);
        let binding = self.write(
            &format!("{user}.yaml"),
            &format!(
                "apiVersion: corral.dev/v1\nkind: RoleBinding\nmetadata: {{name: {user}-views, namespace: default}}\n\
                 spec:\n  roleRef: {{kind: ClusterRole, name: view}}\n  subjects: [{{kind: User, name: {user}}}]\n"
            ),
        );
        self.corral(&["apply", "-f", binding.to_str().expect("path")]);
        token.trim().to_string()
    }

    /// A path in the test's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` into the test's directory; returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn http() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
    }

    /// `GET path` with `token`, as JSON.
    pub fn get(&self, path: &str, token: &str) -> Result<Value, String> {
        let resp =
            Self::http().get(format!("{}{path}", self.url)).bearer_auth(token).send().map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
    }

    /// `POST path` of `body` with `token`, as JSON; panics unless it succeeds.
    pub fn post(&self, path: &str, token: &str, body: &Value) -> Value {
        self.send("POST", path, token, body)
    }

    /// `PUT path` of `body` with `token`, as JSON; panics unless it succeeds.
    pub fn put(&self, path: &str, token: &str, body: &Value) -> Value {
        self.send("PUT", path, token, body)
    }

    fn send(&self, method: &str, path: &str, token: &str, body: &Value) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let resp = Self::http()
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("{method} {path} is not sent: {e}"));
        let status = resp.status();
        let body: Value = resp.json().expect("a JSON answer");
        assert!(status.is_success(), "{method} {path}: {status}: {body}");
        body
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stand-in for the network between the browser and the server — a fake, named as
/// such: a TCP forwarder on 127.0.0.1 that the test can cut (every connection through
/// it closed, new ones closed as they come) and mend, while the server goes on
/// serving. The browser loads the interface through it ([`Gate::url`]).
pub struct Gate {
    /// `http://127.0.0.1:PORT` of the forwarder.
    pub url: String,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

impl Gate {
    /// Forwards to the server at `server_url` (`http://127.0.0.1:PORT`), open.
    pub fn start(server_url: &str) -> Gate {
        let to: SocketAddr = server_url.trim_start_matches("http://").parse().expect("the server's address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("the gate binds");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let (open, stop) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (o, st, c) = (open.clone(), stop.clone(), conns.clone());
        let accepter = std::thread::spawn(move || {
            // Ends when the gate is dropped.
            while !st.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(to) else { continue };
                let pipe = |mut from: TcpStream, mut into: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                };
                let (Ok(c1), Ok(s1)) = (client.try_clone(), server.try_clone()) else { continue };
                c.lock().expect("connections").extend([c1, s1]);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
                pipe(c2, s2);
                pipe(server, client);
            }
        });
        Gate { url, open, stop, conns, accepter: Some(accepter) }
    }

    /// Closes every connection through the gate, and each new one as it comes.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for s in self.conns.lock().expect("connections").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accepter.take() {
            let _ = t.join();
        }
    }
}

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Headless Chromium driven through its own `chromedriver`, with a fresh profile.
pub struct Browser {
    driver: Child,
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page, as WebDriver names it.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session at 1280×800.
    pub fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: `bash scripts/setup.sh test` installs Debian's chromium and chromium-driver"
            );
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // It says on its standard output which port it took: one picked beforehand
        // could be taken by a parallel test's process first.
        let out = profile.path().join("chromedriver.out");
        let driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("chromedriver's output"))
            .stderr(Stdio::null())
            // Its own process group: dropping the browser kills chromedriver and every
            // Chromium process it started, whatever state they are in.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let mut browser = Browser { driver, http, session: String::new(), _profile: profile };
        let port = wait_for("chromedriver to say its port", || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let port = text.lines().find_map(|l| l.strip_prefix("ChromeDriver was started successfully on port "));
            if port.is_none()
                && let Some(status) = browser.driver.try_wait().expect("wait")
            {
                panic!("chromedriver exited with {status}:\n{text}");
            }
            port?.trim_end_matches('.').parse::<u16>().ok()
        });
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to answer /status", || {
            let v: Value = browser.http.get(format!("{base}/status")).send().ok()?.json().ok()?;
            (v["value"]["ready"] == true).then_some(())
        });
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--window-size=1280,800".to_string(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args,
                // A page's downloads stay in the profile, removed with it.
                "prefs": {"download.default_directory": browser._profile.path().join("downloads"),
                    "download.prompt_for_download": false}},
        }}});
        let created = browser.raw("POST", &format!("{base}/session"), Some(caps)).expect("a browser session starts");
        let id = created["sessionId"].as_str().expect("a session id").to_string();
        browser.session = format!("{base}/session/{id}");
        browser.set_size(1280, 800);
        browser
    }

    fn raw(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().map_err(|e| format!("{method} {url}: {e}"))?;
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(format!("{method} {url}: {status}: {}", v["value"]))
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.raw(method, &format!("{}{path}", self.session), body)
    }

    /// Loads `url` (a full page load).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).expect("navigation");
    }

    /// The page's path and query, as the address bar shows them.
    pub fn path(&self) -> String {
        let url = self.cmd("GET", "/url", None).expect("url");
        let url = url.as_str().unwrap_or_default();
        url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default()
    }

    /// Sets the window's size.
    pub fn set_size(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height}))).expect("window size");
    }

    /// The elements matching `css` now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.cmd("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        found
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
            .collect()
    }

    /// The first element matching `css` now, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        self.find_all(css).into_iter().next()
    }

    /// Waits (bounded) for an element matching `css`.
    pub fn wait(&self, css: &str) -> Element {
        wait_for(&format!("an element {css:?} on {}", self.path()), || self.find(css))
    }

    /// Waits (bounded) for an element matching `css` whose text contains `text`.
    pub fn wait_text(&self, css: &str, text: &str) -> Element {
        wait_for(&format!("{css:?} showing {text:?} on {}", self.path()), || {
            self.find_all(css).into_iter().find(|e| self.text(e).contains(text))
        })
    }

    /// The rendered text of `e`.
    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Clicks `e`.
    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), None).expect("click");
    }

    /// Types `text` into `e`.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/value", e.0), Some(json!({ "text": text }))).expect("typing");
    }

    /// Runs `script` in the page; its result.
    pub fn eval(&self, script: &str) -> Value {
        self.eval_with(script, &[])
    }

    /// Runs `script` in the page with `args` (`arguments[i]`); its result.
    pub fn eval_with(&self, script: &str, args: &[Value]) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).expect("script")
    }

    /// Sets the value of the field matching `css` to `text` as typing would end (an
    /// `input` event follows), whatever its length or its newlines.
    pub fn set_value(&self, css: &str, text: &str) {
        self.wait(css);
        self.eval_with(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); return null;",
            &[json!(css), json!(text)],
        );
    }

    /// The value of the field matching `css`.
    pub fn value(&self, css: &str) -> String {
        self.wait(css);
        let v = self.eval_with("return document.querySelector(arguments[0]).value;", &[json!(css)]);
        v.as_str().unwrap_or_default().to_string()
    }

    /// The text of the file `name` the page downloaded (into the profile's
    /// `downloads`), once it is there whole.
    pub fn downloaded(&self, name: &str) -> String {
        let path = self._profile.path().join("downloads").join(name);
        wait_for(&format!("the download {name}"), || std::fs::read_to_string(&path).ok())
    }

    /// Presses the keys of `keys` one after the other, as a keyboard would, into
    /// whatever has the focus (WebDriver actions, not events made up by a script).
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]
            })
            .collect();
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.cmd("POST", "/actions", Some(body)).expect("key presses");
        let _ = self.cmd("DELETE", "/actions", None);
    }

    /// Makes the page see `prefers-color-scheme: scheme` (`light` or `dark`), through
    /// Chromium's DevTools protocol as chromedriver relays it.
    pub fn color_scheme(&self, scheme: &str) {
        let params = json!({"media": "", "features": [{"name": "prefers-color-scheme", "value": scheme}]});
        self.cmd("POST", "/goog/cdp/execute", Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": params})))
            .expect("color scheme emulation");
    }

    /// Opens a new tab and makes it the one the next commands drive; returns its handle.
    pub fn new_tab(&self) -> String {
        let v = self.cmd("POST", "/window/new", Some(json!({"type": "tab"}))).expect("a new tab");
        let handle = v["handle"].as_str().expect("its handle").to_string();
        self.switch_to(&handle);
        handle
    }

    /// The handle of the tab the commands drive.
    pub fn tab(&self) -> String {
        self.cmd("GET", "/window", None).expect("the current tab").as_str().unwrap_or_default().to_string()
    }

    /// Makes tab `handle` the one the next commands drive.
    pub fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", Some(json!({ "handle": handle }))).expect("switching tabs");
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.cmd("GET", "/screenshot", None).expect("screenshot");
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("base64");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &self.session.clone(), None);
        }
        // SAFETY: kill(2) on the process group this value's chromedriver leads.
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
