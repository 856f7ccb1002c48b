//! The web interface's dashboard resources and a task's page end to end: `corral up`
//! with its local agent running busybox containers, and real headless Chromium. The
//! dashboard charts what the cluster's tasks hold against what its node has (non-zero
//! cpus once a task runs), in all and by role; a task's page lists the Events recorded
//! about it, live; its log shows stdout, stderr or both, narrowed to the lines that
//! hold what is looked for, and Download saves the chosen log as a file (from a Blob
//! holding what the server answers) that the test reads;
//! the dashboard turns dark when the system asks for it, and the theme switch
//! overrides the system either way, kept across a reload. The screenshots go to
//! `docs/screenshots/dashboard-resources.png` and `dashboard-dark.png` (linked from the
//! README).

mod ui_support;

use serde_json::{Value, json};
use ui_support::{Browser, Up, log_in, screenshot_path};

const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

/// A busybox task on the local node running `script`, holding `cpus` and 32 MiB.
fn task(name: &str, cpus: f64, script: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "local", "image": "busybox", "resources": {"cpus": cpus, "mem": 32},
            "command": ["sh", "-c", script], "killGracePeriodSeconds": 1}})
}

/// The number in the cell matching `css`, once there is one above 0.
fn positive(b: &Browser, css: &str) -> f64 {
    ui_support::wait_for(&format!("a number above 0 in {css}"), || {
        let e = b.find(css)?;
        b.text(&e).trim().parse::<f64>().ok().filter(|n| *n > 0.0)
    })
}

#[test]
fn the_dashboard_charts_allocated_resources_and_a_task_page_shows_its_events_streams_and_download() {
    let up = Up::start();
    up.push_busybox();
    up.post(TASKS, &up.admin_token, &task("busy", 0.25, "sleep 600"));

    // The dashboard: what the running task holds, against the node's capacity, charted.
    let b = Browser::start();
    b.goto(&format!("{}/ui/", up.url));
    log_in(&b, &up.admin_token);
    b.wait("#resource-chart g[data-resource=cpus]");
    b.wait("#resource-chart g[data-resource=ports]");
    let cpus = positive(&b, "#cluster-resources tr[data-resource=cpus] [data-allocated]");
    assert!(cpus >= 0.25, "the running task's 0.25 cpus are counted: {cpus}");
    let capacity = positive(&b, "#cluster-resources tr[data-resource=cpus] [data-capacity]");
    assert!(capacity >= cpus, "capacity {capacity} against allocated {cpus}");
    positive(&b, "#cluster-resources tr[data-resource=mem] [data-allocated]");
    let share = b.eval("return document.querySelector('#resource-chart g[data-resource=cpus]').dataset.share;");
    let share: f64 = share.as_str().and_then(|s| s.parse().ok()).expect("a share");
    assert!(share > 0.0, "the cpus bar is not empty: {share}");
    // By role: the task's role (`*`, none named) holds its cpus.
    let role = b.wait("#roles tr[data-role='*']");
    assert!(b.text(&role).contains("0.25 cpus"), "{}", b.text(&role));
    b.wait("[data-link=live]");
    b.screenshot(&screenshot_path("dashboard-resources.png"));

    // Dark when the system asks for it: the page's colours follow, without a reload.
    let lightness = |b: &Browser| -> f64 {
        let rgb = b.eval("return getComputedStyle(document.body).backgroundColor;");
        let parts: Vec<f64> = rgb
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        assert_eq!(parts.len(), 3, "a background colour: {rgb}");
        parts.iter().sum::<f64>() / (3.0 * 255.0)
    };
    assert!(lightness(&b) > 0.8, "light by default: {}", lightness(&b));
    b.color_scheme("dark");
    ui_support::wait_for("the dark theme", || (lightness(&b) < 0.2).then_some(()));
    b.screenshot(&screenshot_path("dashboard-dark.png"));
    // The theme switch overrides the system: light while it prefers dark, then dark
    // while it prefers light, kept across a reload; back on automatic, the system's.
    b.click(&b.wait("button#theme[data-theme=auto]"));
    ui_support::wait_for("light by the switch", || (lightness(&b) > 0.8).then_some(()));
    b.click(&b.wait("button#theme[data-theme=light]"));
    b.wait("button#theme[data-theme=dark]");
    b.color_scheme("light");
    ui_support::wait_for("dark by the switch", || (lightness(&b) < 0.2).then_some(()));
    b.goto(&format!("{}/ui/", up.url));
    b.wait("button#theme[data-theme=dark]");
    assert!(lightness(&b) < 0.2, "the choice is kept across a reload: {}", lightness(&b));
    b.click(&b.wait("button#theme[data-theme=dark]"));
    b.wait("button#theme[data-theme=auto]");
    ui_support::wait_for("the system's light again", || (lightness(&b) > 0.8).then_some(()));

    // A task writing to both streams, then ending: its page shows its log by stream and,
    // live, the Event recorded when it ended.
    up.post(
        TASKS,
        &up.admin_token,
        &task("talker", 0.1, "echo 'out line 1'; echo 'err line 1' >&2; sleep 3; echo 'out line 2'"),
    );
    b.goto(&format!("{}/ui/k/tasks/default/talker", up.url));
    b.wait_text("#logs[data-stream=stdout]", "out line 1");
    assert!(!b.text(&b.wait("#logs")).contains("err line 1"), "stdout alone by default");
    b.click(&b.wait("#stream-stderr"));
    let err = b.wait_text("#logs[data-stream=stderr]", "err line 1");
    assert!(!b.text(&err).contains("out line"), "{}", b.text(&err));
    let ev = b.wait("#events-table tr[data-reason=Completed]");
    assert!(b.text(&ev).contains("Normal"), "{}", b.text(&ev));

    // Download: the chosen stream as a file, then both.
    b.click(&b.wait("button#log-download"));
    b.wait("#log-file");
    let name = b.eval("return document.querySelector('#log-file').getAttribute('download');");
    assert_eq!(name, json!("talker.stderr.log"));
    let file = b.downloaded("talker.stderr.log");
    assert_eq!(file.trim_end(), "err line 1", "{file:?}");
    b.click(&b.wait("#stream-both"));
    b.wait_text("#logs[data-stream=stdout]", "out line 2");
    b.wait_text("#logs-stderr[data-stream=stderr]", "err line 1");
    b.click(&b.wait("button#log-download"));
    ui_support::wait_for("the link to the file of both streams", || {
        let v = b.eval("const a = document.querySelector('#log-file'); return a && a.getAttribute('download');");
        (v == json!("talker.both.log")).then_some(())
    });
    let file = b.downloaded("talker.both.log");
    for line in ["==> stdout <==", "out line 1", "out line 2", "==> stderr <==", "err line 1"] {
        assert!(file.contains(line), "{line:?} in {file:?}");
    }
    assert!(file.find("out line 2") < file.find("==> stderr <=="), "stdout first: {file:?}");

    // Find in the log: only the lines holding the text, in each pane, counted.
    let find = b.wait("input#log-find");
    b.type_into(&find, "LINE 2");
    let found = b.wait("#logs[data-stream=stdout]");
    ui_support::wait_for("only `out line 2` in stdout", || {
        let t = b.text(&found);
        (t.contains("out line 2") && !t.contains("out line 1")).then_some(())
    });
    b.wait(".log-stream [data-matches='1']");
    b.wait(".log-stream [data-matches='0']");
    assert!(!b.text(&b.wait("#logs-stderr")).contains("err line 1"), "stderr has no `line 2`");
}
