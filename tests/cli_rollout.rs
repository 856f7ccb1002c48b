//! `corral scale`, `restart` and `rollout status|history|undo` driven through the real
//! binary against a real server.
//!
//! The services controller is being written separately, so no controller runs here:
//! where a command reads what that controller reports (`status.deployment`,
//! `status.history`), the test plays the controller's part and writes the status
//! through the status subresource.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_api::kinds::service::{Deployment, DeploymentPhase, Service, ServiceSpec, ServiceStatus, TemplateRevision};
use corral_api::kinds::task::TaskSpec;
use corral_client::Api;
use corral_controllers::Selection;
use corral_testkit::{PATIENCE, TestServer};

/// A control plane with no controllers (so that nothing but the test writes a
/// service's status), and the `corral` binary pointed at it.
struct Env {
    rt: tokio::runtime::Runtime,
    server: Option<TestServer>,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = rt.block_on(TestServer::start_with(|o| o.controllers = Selection::Only(Vec::new())));
        Env { rt, server: Some(server), dir: tempfile::tempdir().unwrap() }
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().expect("running")
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.server().client(), "default")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("--server")
            .arg(&self.server().base)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CORRAL_SERVER")
            .env("CORRAL_TOKEN", &self.server().token)
            .env("CORRAL_CONFIG", self.dir.path().join("no-config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `corral args...` to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `corral args...`, requires exit 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "corral {args:?}:\n{}", shown(&out));
        text(&out.stdout)
    }

    /// Runs `corral args...`, requires exit 1, returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "corral {args:?}:\n{}", shown(&out));
        text(&out.stderr)
    }

    fn create(&self, name: &str, template: TaskSpec) -> Service {
        let svc = Service::namespaced("default", name, ServiceSpec { instances: 2, template, ..Default::default() });
        self.rt.block_on(self.services().create(&svc)).unwrap()
    }

    fn get(&self, name: &str) -> Service {
        self.rt.block_on(self.services().get(name)).unwrap()
    }

    /// Writes `status` as the services controller would.
    fn set_status(&self, name: &str, status: ServiceStatus) {
        let mut svc = self.get(name);
        svc.status = Some(status);
        self.rt.block_on(self.services().update_status(&svc)).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.stop());
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shown(out: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn busybox(script: &str) -> TaskSpec {
    TaskSpec {
        image: Some("busybox".into()),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..TaskSpec::default()
    }
}

/// A deployment of `revision` at `phase`, `updated` of 2 new.
fn deployment(revision: u64, phase: DeploymentPhase, updated: u32) -> Deployment {
    Deployment { revision, phase, updated, old: 2 - updated, target: 2, ..Deployment::default() }
}

/// A `corral` running in the background, its stdout lines on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(env: &Env, args: &[&str]) -> Running {
        let mut child = env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line printed.
    fn line(&self) -> String {
        self.lines.recv_timeout(PATIENCE).expect("a line within PATIENCE")
    }

    /// Waits for the exit; returns its code, the lines printed since, and stderr.
    fn exit(mut self) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = self.lines.iter().collect();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), lines, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn scale_and_restart_change_the_spec() {
    let env = Env::start();
    let created = env.create("web", busybox("httpd -f -p $PORT0"));

    assert_eq!(env.ok(&["scale", "service/web", "5"]), "service/web scaled to 5\n");
    let svc = env.get("web");
    assert_eq!(svc.spec.instances, 5);
    assert!(svc.metadata.generation > created.metadata.generation, "a change of the spec");

    assert_eq!(env.ok(&["restart", "svc/web"]), "service/web restarted\n");
    let first = env.get("web").spec.restarted_at.expect("restartedAt set");
    assert!(first.ends_with('Z') && first.len() >= 20, "RFC 3339 UTC: {first}");
    env.ok(&["restart", "service/web"]);
    let second = env.get("web").spec.restarted_at.expect("restartedAt set");
    assert_ne!(first, second, "each restart is a new revision");
    assert_eq!(env.get("web").spec.template, created.spec.template, "the template is untouched");

    let stderr = env.fails(&["scale", "service/nope", "3"]);
    assert!(stderr.contains("service/nope not found in namespace \"default\""), "{stderr}");
    let stderr = env.fails(&["scale", "task/web", "3"]);
    assert!(stderr.contains("is not a service"), "{stderr}");
    let stderr = env.fails(&["restart", "web"]);
    assert!(stderr.contains("give the service as service/NAME"), "{stderr}");
}

#[test]
fn history_lists_revisions_and_undo_restores_the_template() {
    let env = Env::start();
    let v1 = busybox("echo v1 && sleep 1000");
    let v2 = busybox("echo v2 && sleep 1000");
    env.create("web", v2.clone());
    assert!(env.fails(&["rollout", "undo", "service/web"]).contains("no revision before its current one"));

    // Playing the services controller: revision 1 ran v1, revision 2 (current) runs v2.
    let generation = env.get("web").metadata.generation;
    let revision = |revision, template: &TaskSpec, time: &str| TemplateRevision {
        revision,
        template: template.clone(),
        restarted_at: None,
        time: Some(time.into()),
    };
    env.set_status(
        "web",
        ServiceStatus {
            observed_generation: generation,
            revision: 2,
            deployment: Some(deployment(2, DeploymentPhase::Complete, 2)),
            history: vec![revision(1, &v1, "2030-01-01T00:00:00Z"), revision(2, &v2, "2030-01-02T00:00:00Z")],
            ..ServiceStatus::default()
        },
    );

    let table = env.ok(&["rollout", "history", "service/web"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let columns = |line: &str| line.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect();
    let columns: Vec<Vec<String>> = lines.iter().map(|l| columns(l)).collect();
    assert_eq!(columns[0], ["REVISION", "TIME", "IMAGE", "COMMAND"], "{table}");
    assert_eq!(columns[1], ["1", "2030-01-01T00:00:00Z", "busybox", "/bin/sh -c 'echo v1 && sleep 1000'"], "{table}");
    assert_eq!(columns[2][0], "2 (current)", "{table}");
    let yaml = env.ok(&["rollout", "history", "service/web", "-o", "yaml"]);
    let history: Vec<TemplateRevision> = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(history.len(), 2);

    assert_eq!(env.ok(&["rollout", "undo", "service/web"]), "service/web rolled back to revision 1\n");
    assert_eq!(env.get("web").spec.template, v1);
    assert_eq!(
        env.ok(&["rollout", "undo", "service/web", "--to-revision", "1"]),
        "service/web already has the template of revision 1; nothing to do\n"
    );
    assert_eq!(
        env.ok(&["rollout", "undo", "service/web", "--to-revision", "2"]),
        "service/web rolled back to revision 2\n"
    );
    assert_eq!(env.get("web").spec.template, v2);

    let stderr = env.fails(&["rollout", "undo", "service/web", "--to-revision", "7"]);
    assert!(stderr.contains("keeps no revision 7; the revisions kept are: 1, 2"), "{stderr}");
}

#[test]
fn status_follows_the_deployment_until_it_completes() {
    let env = Env::start();
    env.create("web", busybox("sleep 1000"));
    let generation = env.get("web").metadata.generation;
    // Playing the services controller: revision 1 is being deployed.
    let status = |phase, updated| ServiceStatus {
        observed_generation: generation,
        revision: 1,
        deployment: Some(deployment(1, phase, updated)),
        ..ServiceStatus::default()
    };
    env.set_status("web", status(DeploymentPhase::InProgress, 0));

    let waiting = "Waiting for deployment of revision 1: 0 of 2 updated, 2 old remaining...";
    assert_eq!(env.ok(&["rollout", "status", "service/web", "--watch=false"]), format!("{waiting}\n"));
    let stderr = env.fails(&["rollout", "status", "service/web", "--timeout", "1"]);
    assert!(stderr.contains("did not finish rolling out within 1s"), "{stderr}");

    let following = Running::start(&env, &["rollout", "status", "service/web"]);
    assert_eq!(following.line(), waiting);
    env.set_status("web", status(DeploymentPhase::InProgress, 1));
    assert_eq!(following.line(), "Waiting for deployment of revision 1: 1 of 2 updated, 1 old remaining...");
    env.set_status("web", status(DeploymentPhase::Complete, 2));
    let (code, lines, stderr) = following.exit();
    assert_eq!(code, Some(0), "{lines:?} {stderr}");
    assert_eq!(lines, ["service/web successfully rolled out: revision 1, 2 of 2 updated"]);

    // A service deleted while its rollout is followed ends the command with an error.
    env.set_status("web", status(DeploymentPhase::InProgress, 1));
    let following = Running::start(&env, &["rollout", "status", "service/web"]);
    following.line();
    env.rt.block_on(env.services().delete("web", &Default::default())).unwrap();
    let (code, _, stderr) = following.exit();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("service/web was deleted"), "{stderr}");
}
