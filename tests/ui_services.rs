//! A service's page in the web interface, end to end: `corral up` with its local agent
//! running busybox containers under runc, and real headless Chromium. A service is
//! applied from the YAML editor; its tasks appear on its page as they start, without
//! a reload; scaling it from the page changes the count of its running tasks; Restart
//! rolls out a new revision (its tasks replaced, the history growing) and Roll back
//! returns to the first template; an invalid edit shows the server's refusal by field;
//! Delete removes it and its tasks. Saves `docs/screenshots/service.png`.

mod ui_support;

use serde_json::{Value, json};
use ui_support::{Browser, Up, log_in, screenshot_path, wait_for};

/// A busybox web server on a port from the offer, checked over HTTP.
const MANIFEST: &str = "\
apiVersion: corral.dev/v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  instances: 1
  template:
    image: busybox
    command: [sh, -c, 'echo ok > /mnt/sandbox/index.html; exec httpd -f -p $PORT_HTTP -h /mnt/sandbox']
    ports: [{name: http}]
    resources: {cpus: 0.1, mem: 32}
    killGracePeriodSeconds: 1
    healthChecks:
    - http: {portName: http, path: /index.html}
      gracePeriodSeconds: 60
      intervalSeconds: 1
      timeoutSeconds: 2
";

const SERVICE: &str = "/apis/corral.dev/v1/namespaces/default/services/web";

/// The page's task rows that are RUNNING (of `revision`, if given).
fn running(b: &Browser, revision: Option<u64>) -> usize {
    let css = match revision {
        Some(r) => format!("#tasks tr[data-phase=RUNNING][data-revision='{r}']"),
        None => "#tasks tr[data-phase=RUNNING]".to_string(),
    };
    b.find_all(&css).len()
}

fn revision_shown(b: &Browser) -> u64 {
    let v = b.eval("return document.querySelector('#deployment')?.dataset.revision ?? '';");
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn same_document(b: &Browser) -> bool {
    b.eval("return window.__sameDocument === true;") == json!(true)
}

#[test]
fn a_service_applied_from_the_editor_shows_its_tasks_live_scales_restarts_and_rolls_back() {
    let up = Up::start();
    up.push_busybox();
    let b = Browser::start();

    // Applied from the YAML editor: the page opens on the service, and its task
    // appears as it starts, without a reload (the page's own marker survives).
    b.goto(&format!("{}/ui/k/services/_new", up.url));
    log_in(&b, &up.admin_token);
    b.wait("textarea#yaml");
    b.eval("window.__sameDocument = true; return null;");
    b.set_value("textarea#yaml", MANIFEST);
    b.click(&b.wait("button#save"));
    b.wait("#deployment");
    assert_eq!(b.path(), "/ui/k/services/default/web");
    b.wait("[data-reviewed=true]");
    for action in ["button#restart", "button#rollback", "button#edit", "button#delete", "button#scale"] {
        b.wait(action);
    }
    let row = b.wait("#tasks tr[data-phase=RUNNING]");
    let text = b.text(&row);
    assert!(text.contains("local"), "the node is shown: {text}");
    assert!(text.contains("http:"), "the host port is shown: {text}");
    b.wait("#tasks tr[data-phase=RUNNING][data-healthy=true]");
    b.wait("#deployment[data-phase=Complete]");
    assert!(same_document(&b), "the page was not reloaded");

    // Scaled from the page: a second task appears, running.
    b.set_value("input#replicas", "2");
    b.click(&b.wait("button#scale"));
    b.wait_text("#scale-now", "now 2");
    wait_for("two running tasks on the page", || (running(&b, None) == 2).then_some(()));
    let stored = up.get(SERVICE, &up.admin_token).expect("read");
    assert_eq!(stored["spec"]["instances"], 2);

    // The list of services, by the breadcrumb: its counts and state, and back by its link.
    b.click(&b.wait("nav.crumbs a[href='/ui/k/services?namespace=default']"));
    let row = b.wait("tr[data-key='default/web'][data-state=healthy]");
    assert!(b.text(&row).contains("Complete"), "the deployment is shown: {}", b.text(&row));
    // Scaled from its row's actions, to 3 and back to 2: the row's count follows.
    let instances = "tr[data-key='default/web'] td:nth-child(2)";
    let scale_from_row = |n: &str| {
        let actions = "details.row-actions[data-service='default/web']";
        b.wait(actions);
        if b.eval_with("return document.querySelector(arguments[0]).open;", &[json!(actions)]) != json!(true) {
            b.click(&b.wait(&format!("{actions} summary")));
        }
        b.set_value(&format!("{actions} input.row-count"), n);
        b.click(&b.wait(&format!("{actions} button.row-scale-go")));
        b.wait_text(instances, n);
    };
    scale_from_row("3");
    assert_eq!(up.get(SERVICE, &up.admin_token).expect("read")["spec"]["instances"], 3);
    scale_from_row("2");
    assert_eq!(up.get(SERVICE, &up.admin_token).expect("read")["spec"]["instances"], 2);
    b.click(&b.wait("tr[data-key='default/web'] a"));
    b.wait("#deployment");
    wait_for("two running tasks on the page again", || (running(&b, None) == 2).then_some(()));

    // Restart (what `corral restart` does): a new revision, rolled out to new tasks.
    let before = revision_shown(&b);
    assert!(before >= 1, "a revision is shown");
    b.eval("window.confirm = () => true; return null;");
    b.click(&b.wait("button#restart"));
    b.wait_text("#done", "restarted");
    let after = wait_for("a new revision in the page's deployment", || {
        let r = revision_shown(&b);
        (r > before).then_some(r)
    });
    wait_for("two running tasks of the new revision", || {
        (running(&b, Some(after)) == 2 && running(&b, None) == 2).then_some(())
    });
    b.wait("#deployment[data-phase=Complete]");
    b.wait(&format!("#history tr[data-revision='{after}'][data-current=true]"));
    b.wait(&format!("#history tr[data-revision='{before}']"));
    // Its Events tell the deployments, recorded by the services controller.
    b.wait_text("#events-table", &format!("revision {after} rolled out"));
    b.wait_text("#events-table", "DeploymentStarted");
    let stored = up.get(SERVICE, &up.admin_token).expect("read");
    assert!(stored["spec"]["restartedAt"].is_string(), "{}", stored["spec"]);
    // Tall enough to show the revisions too.
    b.set_size(1280, 1300);
    b.screenshot(&screenshot_path("service.png"));
    b.set_size(1280, 800);

    // Roll back (what `corral rollout undo` does): the first template again, without
    // the restart's stamp.
    b.click(&b.wait("button#rollback"));
    b.wait_text("#done", &format!("rolled back to revision {before}"));
    let stored = up.get(SERVICE, &up.admin_token).expect("read");
    assert_eq!(stored["spec"]["restartedAt"], Value::Null, "{}", stored["spec"]);
    wait_for("the rollback rolled out", || {
        let r = revision_shown(&b);
        (r > after && running(&b, Some(r)) == 2 && running(&b, None) == 2).then_some(())
    });

    // An edit the server refuses: its message and the field it names.
    b.click(&b.wait("button#edit"));
    let yaml = b.value("textarea#yaml");
    assert!(yaml.contains("instances: 2"), "{yaml}");
    b.set_value("textarea#yaml", &yaml.replacen("instances: 2", "instances: 2\n  constraints: [[hostname, UNIQU]]", 1));
    b.click(&b.wait("button#save"));
    b.wait_text("#refusal", "spec.constraints[0]");
    b.click(&b.wait_text("form.editor button", "Cancel"));
    b.wait("#deployment");

    // Deleted from the page: the list, and its tasks go too.
    b.click(&b.wait("button#delete"));
    wait_for("the services list after the delete", || (b.path() == "/ui/k/services?namespace=default").then_some(()));
    b.wait("table.objects[data-kind=services]");
    wait_for("the service to leave the list", || b.find("tr[data-key='default/web']").is_none().then_some(()));
    wait_for("the service's tasks to be gone", || {
        let list = up.get("/apis/corral.dev/v1/tasks?labelSelector=corral.dev/service%3Dweb", &up.admin_token).ok()?;
        list["items"].as_array().is_some_and(|a| a.is_empty()).then_some(())
    });
    assert!(same_document(&b), "the page was not reloaded");

    // A service no node meets the constraint of: its page says why, with each refusal
    // the controller counted (what turned the offers down, how many, on how many nodes).
    up.post(
        "/apis/corral.dev/v1/namespaces/default/services",
        &up.admin_token,
        &json!({"apiVersion": "corral.dev/v1", "kind": "Service",
            "metadata": {"name": "pinned", "namespace": "default"},
            "spec": {"instances": 1, "constraints": [["hostname", "IS", "elsewhere"]],
                "template": {"image": "busybox", "command": ["sleep", "3600"], "resources": {"cpus": 0.1, "mem": 32}}}}),
    );
    b.click(&b.wait("tr[data-key='default/pinned'] a"));
    b.wait_text("#waiting", "Waiting:");
    let refusal = b.wait("#refusals tbody tr");
    assert!(b.text(&refusal).contains("hostname"), "the constraint is named: {}", b.text(&refusal));
    let warned = b.wait_text("#events-table tr", "NotPlaced");
    assert!(b.text(&warned).contains("hostname"), "the Event names the constraint: {}", b.text(&warned));
    b.screenshot(&screenshot_path("service-refusals.png"));

    // A viewer sees the same page and is offered none of its actions.
    let vera = up.viewer("vera");
    b.click(&b.wait("button#logout"));
    b.goto(&format!("{}/ui/k/services/default/pinned", up.url));
    log_in(&b, &vera);
    b.wait("#refusals tbody tr");
    b.wait("[data-reviewed=true]");
    for action in ["button#restart", "button#rollback", "button#edit", "button#delete", "button#scale"] {
        assert!(b.find(action).is_none(), "a viewer is offered {action}");
    }
    // Nor the list's row actions.
    b.click(&b.wait("nav.crumbs a[href='/ui/k/services?namespace=default']"));
    b.wait(".row-actions-none[data-service='default/pinned']");
    assert!(b.find("details.row-actions").is_none(), "a viewer is offered a row's actions");
    b.click(&b.wait("tr[data-key='default/pinned'] a"));
    up.corral(&["delete", "service", "pinned"]);
    b.wait("#gone");
}
