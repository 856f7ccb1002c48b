//! The web interface's jobs and nodes pages end to end: `corral up` with its local
//! agent running busybox containers, and real headless Chromium. A job is run from its
//! page and the run is seen to succeed live, with its attempt; a second run of a
//! `FORBID` job is refused and the page says why; the local node's page shows its
//! capacity and what the running job's task holds; reached by keyboard (`g n`), the
//! nodes list shows the node's capacity against what is allocated, and a volume bound
//! to it adds its disk, live (on the dashboard and the node's page too); marking the
//! node unschedulable (and back) changes its state; a viewer is offered neither Run
//! now nor Kill; the running run is killed from its job's page. Screenshots go to
//! `docs/screenshots/job.png`, `nodes.png` and `node.png` (linked from the README).

mod ui_support;

use serde_json::{Value, json};
use ui_support::{Browser, Up, log_in, screenshot_path};

const JOBS: &str = "/apis/corral.dev/v1/namespaces/default/jobs";
const RUNS: &str = "/apis/corral.dev/v1/namespaces/default/jobruns";
const VOLUMES: &str = "/apis/corral.dev/v1/namespaces/default/volumes";

/// A job running `script` in busybox, with a yearly `FORBID` schedule (so that its
/// schedules show, and a second manual run is refused while one is active).
fn job(name: &str, script: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
        "spec": {"run": {"task": {"image": "busybox", "command": ["sh", "-c", script],
                "resources": {"cpus": 0.1, "mem": 32}, "killGracePeriodSeconds": 1}},
            "schedules": [{"id": "yearly", "cron": "0 0 1 1 *", "concurrencyPolicy": "FORBID"}]}})
}

/// The run the page says it started (`#started`), once it has.
fn started_run(b: &Browser, previous: Option<&str>) -> String {
    ui_support::wait_for("the page to say which run it started", || {
        let v = b.eval("const e = document.querySelector('#started'); return e ? e.dataset.run : null;");
        v.as_str().filter(|r| Some(*r) != previous).map(str::to_string)
    })
}

/// Waits until the element matching `css` shows the number `n`, and nothing else.
fn shows_exactly(b: &Browser, css: &str, n: f64) {
    ui_support::wait_for(&format!("{css} to show {n}"), || {
        b.find(css).filter(|e| b.text(e).trim().parse::<f64>().ok() == Some(n)).map(|_| ())
    });
}

#[test]
fn a_job_runs_and_is_killed_from_its_page_and_a_node_is_marked_unschedulable_from_its_page() {
    let up = Up::start();
    up.push_busybox();
    up.post(JOBS, &up.admin_token, &job("hello", "echo hello from the page"));
    up.post(JOBS, &up.admin_token, &job("forever", "sleep 600"));

    // Run now, from the job's page: the run appears and succeeds, live, with its attempt.
    let b = Browser::start();
    b.goto(&format!("{}/ui/k/jobs/default/hello", up.url));
    log_in(&b, &up.admin_token);
    b.wait("#schedules tr[data-schedule=yearly]");
    b.wait("#no-runs");
    b.eval("window.__sameDocument = true; return null;");
    b.click(&b.wait("button#run-now"));
    let run = started_run(&b, None);
    assert!(run.starts_with("hello-"), "{run}");
    let row = format!("tr[data-run='{run}']");
    b.wait(&format!("{row}[data-phase=Succeeded]"));
    b.wait_text(&format!("{row} .attempts"), "exit 0");
    b.wait_text(&format!("{row} .attempts"), "on local");
    b.wait_text("#last-result", "Succeeded");
    b.wait_text("#last-run", &run);
    assert_eq!(b.eval("return window.__sameDocument === true;"), json!(true), "the page was not reloaded");
    // Made as `corral job run` makes it: labelled and owned by its job.
    let stored = up.get(&format!("{RUNS}/{run}"), &up.admin_token).expect("the run");
    assert_eq!(stored["metadata"]["labels"]["corral.dev/job"], "hello", "{stored:#}");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "Job", "{stored:#}");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["name"], "hello", "{stored:#}");
    b.screenshot(&screenshot_path("job.png"));

    // The list of jobs shows the last run and its result.
    b.click(&b.wait("header nav a[href='/ui/k/jobs']"));
    let listed = b.wait_text("tr[data-key='default/hello']", "Succeeded");
    assert!(b.text(&listed).contains(&run), "{}", b.text(&listed));

    // A run that goes on; a second one is refused under FORBID, and the page says why.
    b.goto(&format!("{}/ui/k/jobs/default/forever", up.url));
    b.click(&b.wait("button#run-now"));
    let running = started_run(&b, None);
    b.wait(&format!("tr[data-run='{running}'][data-phase=Running]"));
    b.click(&b.wait("button#run-now"));
    let refused = started_run(&b, Some(&running));
    b.wait(&format!("#started[data-phase=Failed][data-run='{refused}']"));
    b.wait_text("#started", "FORBID");
    b.wait_text(&format!("tr[data-run='{refused}'] .message"), "FORBID");
    // The job's Events, recorded by the jobs controller, tell the refusal too.
    b.wait_text("#events-table tr", "RunRefused");
    b.wait_text("#events-table tr", &refused);
    let task = up.get(&format!("{RUNS}/{running}"), &up.admin_token).expect("the run")["status"]["attempts"][0]["task"]
        .as_str()
        .expect("its attempt's task")
        .to_string();

    // The node's page: capacity, what the running task holds, and its tasks.
    b.click(&b.wait(&format!("tr[data-run='{running}'] .attempts a[href='/ui/k/nodes/local']")));
    b.wait("#node-state[data-phase=Ready][data-unschedulable=false]");
    let cpus = b.wait("#capacity tr[data-resource=cpus] [data-capacity]");
    assert!(b.text(&cpus).parse::<f64>().is_ok_and(|c| c > 0.0), "capacity {:?}", b.text(&cpus));
    b.wait_text("#capacity tr[data-resource=cpus] [data-allocated]", "0.1");
    b.wait_text("#capacity tr[data-resource=mem] [data-allocated]", "32");
    b.wait(&format!("#node-tasks tr[data-key='default/{task}'][data-phase=RUNNING]"));
    b.wait("#node-tasks tr[data-phase=FINISHED]");

    // By keyboard (`g n`), the nodes list: the node with its capacity against what is
    // allocated on it; a volume bound to the node meanwhile adds its size to the disk
    // allocated, live.
    b.press("gn");
    ui_support::wait_for("`g n` to lead to the nodes list", || (b.path() == "/ui/k/nodes").then_some(()));
    let row = "#nodes tr[data-key='/local']";
    b.wait(&format!("{row}[data-phase=Ready] td[data-resource=cpus][data-allocated='0.1']"));
    b.wait(&format!("{row} td[data-resource=mem][data-allocated='32']"));
    b.wait(&format!("{row} td[data-tasks='1']"));
    let cell = |resource: &str, what: &str| -> f64 {
        let v = b.eval_with(
            "const e = document.querySelector(arguments[0]); return e ? e.dataset[arguments[1]] : null;",
            &[json!(format!("{row} td[data-resource={resource}]")), json!(what)],
        );
        v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
    };
    assert!(cell("cpus", "capacity") > 0.0, "cpus capacity {}", cell("cpus", "capacity"));
    assert!(cell("disk", "capacity") > 0.0, "disk capacity {}", cell("disk", "capacity"));
    let disk_before = cell("disk", "allocated");
    assert!(disk_before >= 0.0, "disk allocated {disk_before}");
    up.post(
        VOLUMES,
        &up.admin_token,
        &json!({"apiVersion": "corral.dev/v1", "kind": "Volume",
        "metadata": {"name": "scratch", "namespace": "default"}, "spec": {"size": 64, "nodeName": "local"}}),
    );
    ui_support::wait_for("the bound volume's 64 MiB in the list's disk allocated", || {
        (cell("disk", "allocated") == disk_before + 64.0).then_some(())
    });
    b.screenshot(&screenshot_path("nodes.png"));

    // `?` lists the shortcuts, Escape closes the list; `g d`: the dashboard, whose disk
    // allocated holds the volume too.
    b.press("?");
    b.wait_text("#shortcuts", "Nodes");
    b.press("\u{E00C}");
    ui_support::wait_for("Escape to close the shortcuts", || b.find("#shortcuts").is_none().then_some(()));
    b.press("gd");
    shows_exactly(&b, "#cluster-resources tr[data-resource=disk] [data-allocated]", disk_before + 64.0);

    // Back on the node's page (by its link in the list): the volume and its disk.
    b.press("gn");
    b.click(&b.wait(&format!("{row} a[href='/ui/k/nodes/local']")));
    b.wait("#node-volumes tr[data-key='default/scratch']");
    shows_exactly(&b, "#capacity tr[data-resource=disk] [data-allocated]", disk_before + 64.0);

    // Marked unschedulable and back, from the page: its state follows, live.
    b.click(&b.wait("button#schedulable[data-unschedulable=false]"));
    b.wait_text("#node-state[data-unschedulable=true]", "Unschedulable");
    let node = up.get("/apis/corral.dev/v1/nodes/local", &up.admin_token).expect("the node");
    assert_eq!(node["spec"]["unschedulable"], true, "{node:#}");
    // Tall enough for its tasks too.
    b.set_size(1280, 1100);
    b.screenshot(&screenshot_path("node.png"));
    b.set_size(1280, 800);
    b.click(&b.wait("button#schedulable[data-unschedulable=true]"));
    b.wait("#node-state[data-unschedulable=false]");
    // The volume deleted (its node's agent unmounts it before it goes): the disk it
    // held is free again, on the open page.
    up.corral(&["delete", "volume", "scratch", "-n", "default"]);
    ui_support::wait_for("the deleted volume to leave the node's page", || {
        b.find("#node-volumes tr[data-key='default/scratch']").is_none().then_some(())
    });
    shows_exactly(&b, "#capacity tr[data-resource=disk] [data-allocated]", disk_before);
    let node = up.get("/apis/corral.dev/v1/nodes/local", &up.admin_token).expect("the node");
    assert!(node["spec"]["unschedulable"] != true, "{node:#}");

    // A viewer sees the job and its running run, and is offered neither Run now nor Kill.
    let vera = up.viewer("vera");
    b.click(&b.wait("button#logout"));
    b.goto(&format!("{}/ui/k/jobs/default/forever", up.url));
    log_in(&b, &vera);
    b.wait(&format!("tr[data-run='{running}'][data-phase=Running]"));
    b.wait("section.job-page[data-reviewed=true]");
    assert!(b.find("button#run-now").is_none(), "a viewer is offered Run now");
    assert!(b.find("button.kill").is_none(), "a viewer is offered Kill");
    b.click(&b.wait("button#logout"));

    // Killed from its job's page (the confirmation accepted).
    b.goto(&format!("{}/ui/k/jobs/default/forever", up.url));
    log_in(&b, &up.admin_token);
    let kill = b.wait(&format!("button.kill[data-run='{running}']"));
    b.eval("window.confirm = () => true; return null;");
    b.click(&kill);
    b.wait(&format!("tr[data-run='{running}'][data-phase=Killed]"));
}
