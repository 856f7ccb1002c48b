//! The web interface end to end: `corral up` (with its local agent) serving it, and
//! real headless Chromium using it as a person would — log in with a token, follow
//! links, watch a list change live, and see only the actions the user's role allows.
//! Screenshots of the main pages go to `docs/screenshots/` (linked from the README).

mod ui_support;

use serde_json::json;
use ui_support::{Browser, Gate, Up, log_in, screenshot_path};

#[test]
fn a_user_logs_in_sees_a_list_change_live_and_a_viewer_is_offered_no_write_action() {
    let up = Up::start();
    let b = Browser::start();

    // A deep link before logging in: the login form, then the page it named.
    b.goto(&format!("{}/ui/k/configmaps", up.url));
    log_in(&b, &up.admin_token);
    assert_eq!(b.text(&b.wait("#me")), "admin");
    b.wait("table.objects[data-kind=configmaps]");
    b.wait("[data-link=live]");
    // What the administrator may do is offered.
    b.wait("a#create");

    // Created through the API, shown without a reload: the page's own marker survives.
    b.eval("window.__sameDocument = true; return null;");
    up.post(
        "/apis/corral.dev/v1/namespaces/default/configmaps",
        &up.admin_token,
        &json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": "ui-live", "namespace": "default"}, "spec": {"data": {"greeting": "hello"}}}),
    );
    let row = b.wait("tr[data-key='default/ui-live']");
    assert!(b.text(&row).contains("ui-live"), "{}", b.text(&row));
    assert_eq!(b.eval("return window.__sameDocument === true;"), json!(true), "the page was not reloaded");
    b.screenshot(&screenshot_path("configmaps.png"));

    // The object's page, by its link: YAML, and the actions the administrator may take.
    b.click(&b.wait("tr[data-key='default/ui-live'] a"));
    b.wait_text("#yaml-view", "greeting: hello");
    assert_eq!(b.path(), "/ui/k/configmaps/default/ui-live");
    b.wait("button#edit");
    b.wait("button#delete");

    // Edited from the page: the server's answer comes back through the watch.
    b.click(&b.wait("button#edit"));
    let yaml = b.value("textarea#yaml");
    assert!(yaml.contains("greeting: hello"), "{yaml}");
    b.set_value("textarea#yaml", &yaml.replace("greeting: hello", "greeting: edited"));
    // Preview first: a dry run shows what would change, and writes nothing.
    b.click(&b.wait("button#preview"));
    let diff = b.text(&b.wait("#changes[data-changed='2'] #diff"));
    assert!(diff.contains("-     greeting: hello") && diff.contains("+     greeting: edited"), "{diff}");
    let stored = up.get("/apis/corral.dev/v1/namespaces/default/configmaps/ui-live", &up.admin_token).expect("read");
    assert_eq!(stored["spec"]["data"]["greeting"], "hello", "a preview writes nothing");
    b.click(&b.wait("button#save"));
    b.wait_text("#yaml-view", "greeting: edited");
    let stored = up.get("/apis/corral.dev/v1/namespaces/default/configmaps/ui-live", &up.admin_token).expect("read");
    assert_eq!(stored["spec"]["data"]["greeting"], "edited");

    // A service applied from the editor that no node can take: the page says why it
    // waits, and scaling it from the page changes its count.
    b.goto(&format!("{}/ui/k/services/_new", up.url));
    b.set_value(
        "textarea#yaml",
        "apiVersion: corral.dev/v1\nkind: Service\nmetadata: {name: huge, namespace: default}\n\
         spec:\n  instances: 2\n  template:\n    image: busybox\n    command: [sleep, '3600']\n\
         \x20   resources: {cpus: 4096, mem: 32}\n",
    );
    b.click(&b.wait("button#save"));
    b.wait("#yaml-view");
    assert_eq!(b.path(), "/ui/k/services/default/huge");
    let waiting = b.wait("#waiting");
    assert!(!b.text(&waiting).trim_start_matches("Waiting:").trim().is_empty(), "{}", b.text(&waiting));
    b.wait_text("#scale-now", "now 2");
    b.screenshot(&screenshot_path("service-waiting.png"));
    b.set_value("input#replicas", "3");
    b.click(&b.wait("button#scale"));
    b.wait_text("#scale-now", "now 3");
    let stored = up.get("/apis/corral.dev/v1/namespaces/default/services/huge", &up.admin_token).expect("read");
    assert_eq!(stored["spec"]["instances"], 3);

    // A task's log, followed live: new lines arrive in the open page. The image is
    // pushed as the README's tour does; the task writes a numbered line at a time.
    up.push_busybox();
    up.post(
        "/apis/corral.dev/v1/namespaces/default/tasks",
        &up.admin_token,
        &json!({"apiVersion": "corral.dev/v1", "kind": "Task",
            "metadata": {"name": "counter", "namespace": "default"},
            "spec": {"nodeName": "local", "image": "busybox", "resources": {"cpus": 0.1, "mem": 32},
                "command": ["sh", "-c", "i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.3; done"]}}),
    );
    b.goto(&format!("{}/ui/k/tasks/default/counter", up.url));
    let logs = b.wait_text("#logs", "line 1");
    let last = b
        .text(&logs)
        .lines()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.trim().parse::<u64>().ok()))
        .max()
        .expect("numbered lines");
    b.wait_text("#logs", &format!("line {}\n", last + 3));
    b.screenshot(&screenshot_path("task-logs.png"));

    // The dashboard: the local node Ready, live.
    b.click(&b.wait("header nav a[href='/ui/']"));
    b.wait("#nodes .count[data-name=Ready]");
    b.wait("[data-link=live]");
    b.screenshot(&screenshot_path("dashboard.png"));

    // Phone width: the same list, readable.
    b.set_size(390, 844);
    b.goto(&format!("{}/ui/k/configmaps", up.url));
    b.wait("tr[data-key='default/ui-live']");
    b.screenshot(&screenshot_path("configmaps-phone.png"));
    b.set_size(1280, 800);

    // A viewer: may read, is offered nothing that writes.
    let vera = up.viewer("vera");
    b.click(&b.wait("button#logout"));
    b.goto(&format!("{}/ui/k/configmaps/default/ui-live", up.url));
    log_in(&b, &vera);
    assert_eq!(b.text(&b.wait("#me")), "vera");
    b.wait_text("#yaml-view", "greeting: edited");
    b.wait("[data-reviewed=true]");
    assert!(b.find("button#edit").is_none(), "a viewer is offered Edit");
    assert!(b.find("button#delete").is_none(), "a viewer is offered Delete");

    b.goto(&format!("{}/ui/k/configmaps?namespace=default", up.url));
    b.wait("tr[data-key='default/ui-live']");
    b.wait("[data-reviewed=true]");
    assert!(b.find("a#create").is_none(), "a viewer is offered Create");
}

#[test]
fn a_page_shows_a_lost_connection_and_resumes_without_losing_a_change() {
    let mut up = Up::start_with(false);
    let b = Browser::start();
    b.goto(&format!("{}/ui/k/configmaps?namespace=default", up.url));
    log_in(&b, &up.admin_token);
    b.wait("[data-link=live]");
    b.eval("window.__sameDocument = true; return null;");

    up.stop();
    b.wait("[data-link=reconnecting]");

    up.start_again();
    // Written as soon as the server is back, whether or not the page has reconnected
    // yet: it is shown either way, from the resumed watch.
    up.post(
        "/apis/corral.dev/v1/namespaces/default/configmaps",
        &up.admin_token,
        &json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": "while-away", "namespace": "default"}, "spec": {"data": {"k": "v"}}}),
    );
    b.wait("tr[data-key='default/while-away']");
    b.wait("[data-link=live]");
    assert_eq!(b.eval("return window.__sameDocument === true;"), json!(true), "the page was not reloaded");
}

/// A ConfigMap in `default` holding one key.
fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "spec": {"data": {"k": "v"}}})
}

#[test]
fn a_page_cut_off_past_compaction_lists_again_and_shows_every_change_it_missed() {
    const CONFIG_MAPS: &str = "/apis/corral.dev/v1/namespaces/default/configmaps";
    let up = Up::start_with(false);
    up.post(CONFIG_MAPS, &up.admin_token, &config_map("stays"));
    up.post(CONFIG_MAPS, &up.admin_token, &config_map("doomed"));
    up.post(CONFIG_MAPS, &up.admin_token, &config_map("changes"));
    // The browser reaches the server through a gate the test can cut: the server goes
    // on serving (and compacting) while the page cannot reach it.
    let gate = Gate::start(&up.url);
    let b = Browser::start();
    b.goto(&format!("{}/ui/k/configmaps?namespace=default", gate.url));
    log_in(&b, &up.admin_token);
    b.wait("tr[data-key='default/doomed']");
    b.wait_text("tr[data-key='default/changes'] td[data-column=DATA]", "1");
    b.wait("[data-link=live]");
    b.eval("window.__sameDocument = true; return null;");

    gate.cut();
    b.wait("[data-link=reconnecting]");
    // While the page is away: one created, one deleted, one changed (from 1 key to 3),
    // and the event log compacted past all of it, so that the page's watch cannot
    // resume where it was.
    up.post(CONFIG_MAPS, &up.admin_token, &config_map("arrived"));
    up.corral(&["delete", "configmap", "doomed", "-n", "default"]);
    let mut changed = up.get(&format!("{CONFIG_MAPS}/changes"), &up.admin_token).expect("changes");
    changed["spec"]["data"] = json!({"a": "1", "b": "2", "c": "3"});
    up.put(&format!("{CONFIG_MAPS}/changes"), &up.admin_token, &changed);
    let revision =
        up.get("/admin/revision", &up.admin_token).expect("revision")["revision"].as_u64().expect("a number");
    let compacted = up.post(&format!("/admin/compact?revision={revision}"), &up.admin_token, &json!({}));
    assert_eq!(compacted["compacted"].as_u64(), Some(revision), "{compacted}");

    // Mended: the resumed watch is answered 410 Gone, the page lists again and shows
    // the list as it is now, without a reload.
    gate.mend();
    b.wait("tr[data-key='default/arrived']");
    b.wait_text("tr[data-key='default/changes'] td[data-column=DATA]", "3");
    ui_support::wait_for("the deleted ConfigMap to leave the page", || {
        b.find("tr[data-key='default/doomed']").is_none().then_some(())
    });
    b.wait("tr[data-key='default/stays']");
    b.wait("[data-link=live]");
    assert_eq!(b.eval("return window.__sameDocument === true;"), json!(true), "the page was not reloaded");
    // And it goes on live from the new list.
    up.post(CONFIG_MAPS, &up.admin_token, &config_map("afterwards"));
    b.wait("tr[data-key='default/afterwards']");
}

#[test]
fn a_custom_kind_is_listed_with_its_columns_and_written_from_the_editor_without_ui_code() {
    let up = Up::start_with(false);
    // A controller author's kind, with the columns `corral get` shows.
    let crd = up.write(
        "crd.yaml",
        "apiVersion: corral.dev/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example.com}\n\
         spec:\n  group: example.com\n  version: v1\n  kind: Gadget\n  plural: gadgets\n  scope: Namespaced\n\
         \x20 additionalPrinterColumns:\n\
         \x20 - {name: Size, jsonPath: .spec.size, type: integer}\n\
         \x20 - {name: Colour, jsonPath: .spec.colour}\n\
         \x20 schema:\n    spec:\n      type: object\n      additionalProperties: false\n      required: [size]\n\
         \x20     properties:\n        size: {type: integer, minimum: 1, description: How big the gadget is.}\n\
         \x20       colour: {type: string, enum: [red, green, blue], description: Its paint.}\n",
    );
    up.corral(&["apply", "-f", crd.to_str().expect("path")]);
    let b = Browser::start();
    b.goto(&format!("{}/ui/k", up.url));
    log_in(&b, &up.admin_token);
    // Among every kind, under its group; its list has its columns.
    b.click(&b.wait("a[href='/ui/k/gadgets.example.com']"));
    let heads = b.text(&b.wait("table[data-kind=gadgets] thead"));
    assert!(heads.contains("SIZE") && heads.contains("COLOUR"), "{heads}");
    b.wait("[data-link=live]");

    // Created from the YAML editor: the server validates against the kind's schema and
    // its refusal names the field; corrected, the object appears with its columns.
    b.click(&b.wait("a#create"));
    let bad = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1, namespace: default}\n\
               spec: {size: 0, colour: purple}\n";
    b.set_value("textarea#yaml", bad);
    b.click(&b.wait("button#save"));
    let refusal = b.text(&b.wait_text("#refusal", "spec.size"));
    assert!(refusal.contains("spec.colour"), "each refused field is named: {refusal}");
    assert!(up.get("/apis/example.com/v1/namespaces/default/gadgets/g1", &up.admin_token).is_err(), "nothing written");
    // Beside the editor, the kind's fields as the server validates them; each refused
    // field's line is a button that selects it in the text.
    b.wait_text("#schema-help [data-path='spec.size']", "How big the gadget is.");
    let colour = b.text(&b.wait("#schema-help [data-path='spec.colour']"));
    assert!(!colour.contains("required") && colour.contains("red, green, blue"), "{colour}");
    assert!(b.text(&b.wait("#schema-help [data-path='spec.size']")).contains("required"), "size is required");
    let goto = b.wait("#refusal li[data-field^='spec.size'] button.goto");
    assert_eq!(b.text(&goto), "line 4");
    b.click(&goto);
    let selected = b.eval(
        "const a = document.activeElement; \
         return a && a.id === 'yaml' ? a.value.substring(a.selectionStart, a.selectionEnd) : null;",
    );
    assert_eq!(selected, json!("0"), "the refused value is selected in the editor");
    b.screenshot(&screenshot_path("editor.png"));
    b.set_value("textarea#yaml", &bad.replace("size: 0, colour: purple", "size: 3, colour: green"));
    b.click(&b.wait("button#save"));
    b.wait_text("#yaml-view", "colour: green");
    assert_eq!(b.path(), "/ui/k/gadgets.example.com/default/g1");
    b.click(&b.wait("nav.crumbs a[href='/ui/k/gadgets.example.com']"));
    b.wait_text("tr[data-key='default/g1'] td[data-column=Size]", "3");
    b.wait_text("tr[data-key='default/g1'] td[data-column=Colour]", "green");
    // Changed through the API: the open list follows.
    let path = "/apis/example.com/v1/namespaces/default/gadgets/g1";
    let mut g1 = up.get(path, &up.admin_token).expect("g1");
    g1["spec"]["size"] = json!(5);
    up.put(path, &up.admin_token, &g1);
    b.wait_text("tr[data-key='default/g1'] td[data-column=Size]", "5");

    // By keyboard, `/` goes to the name filter; what is typed there narrows the list.
    up.post(
        "/apis/example.com/v1/namespaces/default/gadgets",
        &up.admin_token,
        &json!({"apiVersion": "example.com/v1", "kind": "Gadget",
            "metadata": {"name": "other", "namespace": "default"}, "spec": {"size": 1}}),
    );
    b.wait("tr[data-key='default/other']");
    b.press("/oth");
    assert_eq!(b.value("input#search"), "oth", "typed into the name filter");
    ui_support::wait_for("the filter to leave g1 out", || b.find("tr[data-key='default/g1']").is_none().then_some(()));
    b.wait("tr[data-key='default/other']");
}

#[test]
fn many_tabs_stay_live_since_each_carries_all_its_watches_over_one_connection() {
    // Over HTTP/1.1 Chromium keeps six connections to a server across its tabs; the
    // dashboard watches five kinds. Four dashboards and a list stay live only if a
    // tab's watches share a connection (`POST /watches`).
    let up = Up::start_with(false);
    let b = Browser::start();
    let mut tabs = Vec::new();
    for i in 0..4 {
        if i > 0 {
            b.new_tab();
        }
        tabs.push(b.tab());
        // The token is kept per tab (session storage): each logs in.
        b.goto(&format!("{}/ui/", up.url));
        log_in(&b, &up.admin_token);
        b.wait("#nodes [data-total]");
        b.wait("[data-link=live]");
    }
    b.new_tab();
    b.goto(&format!("{}/ui/k/configmaps?namespace=default", up.url));
    log_in(&b, &up.admin_token);
    b.wait("[data-link=live]");
    up.post("/apis/corral.dev/v1/namespaces/default/configmaps", &up.admin_token, &config_map("seen-in-tab-5"));
    b.wait("tr[data-key='default/seen-in-tab-5']");
    // The first tab is still live, and sees a change too.
    b.switch_to(&tabs[0]);
    b.goto(&format!("{}/ui/k/configmaps?namespace=default", up.url));
    b.wait("tr[data-key='default/seen-in-tab-5']");
    b.wait("[data-link=live]");
    up.post("/apis/corral.dev/v1/namespaces/default/configmaps", &up.admin_token, &config_map("seen-in-tab-1"));
    b.wait("tr[data-key='default/seen-in-tab-1']");
}
