//! kube-rs, the Rust Kubernetes client, works against Corral unchanged: the example
//! controller (examples/kube-rs-controller), built on `Api<DynamicObject>` and kube's
//! `Controller`, lists, watches and reconciles Corral ConfigMaps on a real server,
//! configured from the kubeconfig the server writes.

mod api_support;

#[path = "../examples/kube-rs-controller/mirror.rs"]
mod mirror;

use api_support::TestServer;
use corral_testkit::eventually;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn kube_client(server: &TestServer) -> kube::Client {
    let path = server.kit().dir().join("data/admin.conf");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("the server writes a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("it is one");
    kube::Client::try_from(config).expect("kube-rs takes it")
}

fn source(name: &str, greeting: &str, labelled: bool) -> DynamicObject {
    let mut o =
        DynamicObject::new(name, &mirror::config_maps()).data(json!({"spec": {"data": {"greeting": greeting}}}));
    if labelled {
        o.labels_mut().insert("mirror".into(), "true".into());
    }
    o
}

async fn greeting(api: &Api<DynamicObject>, name: &str) -> Option<String> {
    let o = api.get_opt(name).await.ok()??;
    o.data.pointer("/spec/data/greeting").and_then(|v| v.as_str()).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_rs_controller_lists_watches_and_reconciles_corral_config_maps() {
    let server = TestServer::start().await;
    let client = kube_client(&server).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &mirror::config_maps());

    // Present before the controller starts: found by its first list.
    api.create(&PostParams::default(), &source("early", "hello", true)).await.unwrap();
    api.create(&PostParams::default(), &source("plain", "not mirrored", false)).await.unwrap();
    let controller = tokio::spawn(mirror::run(client.clone(), "default"));
    eventually("the listed ConfigMap is mirrored", || async {
        (greeting(&api, "early-mirror").await.as_deref() == Some("hello")).then_some(())
    })
    .await;

    // Created and changed afterwards: found by its watch.
    api.create(&PostParams::default(), &source("late", "bonjour", true)).await.unwrap();
    eventually("the watched ConfigMap is mirrored", || async {
        (greeting(&api, "late-mirror").await.as_deref() == Some("bonjour")).then_some(())
    })
    .await;
    let change = json!({"spec": {"data": {"greeting": "salut"}}});
    api.patch("late", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    eventually("the change reaches the mirror", || async {
        (greeting(&api, "late-mirror").await.as_deref() == Some("salut")).then_some(())
    })
    .await;
    // A mirror edited by hand is put back (the controller watches what it owns).
    let vandal = json!({"spec": {"data": {"greeting": "defaced"}}});
    api.patch("late-mirror", &PatchParams::default(), &Patch::Merge(&vandal)).await.unwrap();
    eventually("the owned copy is reconciled back", || async {
        (greeting(&api, "late-mirror").await.as_deref() == Some("salut")).then_some(())
    })
    .await;

    let mirror = api.get("late-mirror").await.unwrap();
    let owner = mirror.owner_references().first().cloned().expect("the mirror is owned");
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("ConfigMap", "late"));
    assert_eq!(Some(owner.uid), api.get("late").await.unwrap().uid());
    let names: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.iter().map(|o| o.name_any()).collect();
    assert!(!names.contains(&"plain-mirror".to_string()), "{names:?}");

    // Deleting the original takes its copy with it: Corral's garbage collector
    // follows the owner reference kube-rs wrote.
    api.delete("late", &DeleteParams::default()).await.unwrap();
    eventually("the copy is collected with its owner", || async {
        api.get_opt("late-mirror").await.ok().flatten().is_none().then_some(())
    })
    .await;
    controller.abort();
}
