//! Events do not pile up: the event expiry controller deletes each one an hour after
//! it last occurred (as Kubernetes' event TTL; `--event-ttl` changes it), and keeps
//! the rest.

mod api_support;

use api_support::TestServer;
use corral_api::kinds::Event;
use corral_api::kinds::event::{EventSpec, ObjectReference};
use corral_client::{Api, ListParams};
use corral_testkit::eventually;

fn event(name: &str, last: &str) -> Event {
    Event::new(
        name,
        EventSpec {
            involved_object: ObjectReference {
                api_version: "corral.dev/v1".into(),
                kind: "Task".into(),
                name: "t".into(),
                ..Default::default()
            },
            reason: "Killing".into(),
            message: "for the test".into(),
            count: Some(1),
            first_timestamp: Some(last.into()),
            last_timestamp: Some(last.into()),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_their_time_to_live_are_deleted_and_recent_ones_kept() {
    let server = TestServer::start().await;
    let events: Api<Event> = Api::namespaced(server.api(), "default");
    let now = corral_api::meta::now_timestamp();
    events.create(&event("recent", &now)).await.unwrap();
    // Two hours old, and one that last occurred two hours ago but first a day ago.
    events.create(&event("stale", "2020-01-01T00:00:00Z")).await.unwrap();
    let mut repeated = event("repeated-long-ago", "2020-01-01T00:00:00Z");
    repeated.spec.first_timestamp = Some("2019-12-31T00:00:00Z".into());
    repeated.spec.count = Some(7);
    events.create(&repeated).await.unwrap();

    let names = eventually("expired events are deleted", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let names: Vec<String> = list.items.iter().map(|e| e.metadata.name.clone()).collect();
        (!names.iter().any(|n| n == "stale" || n == "repeated-long-ago")).then_some(names)
    })
    .await;
    assert!(names.contains(&"recent".to_string()), "a recent event was deleted: {names:?}");
    server.stop().await;
}

/// `corral server --event-ttl 1`: the controller manager it runs takes the flag.
#[test]
fn the_event_ttl_flag_sets_how_long_events_live() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A port of its own choosing, which it writes into admin.conf once it listens: one
    // picked beforehand could be taken by a parallel test's process first.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--controllers", "event-expiry", "--event-ttl", "1", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CORRAL_CONFIG", "/nonexistent")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(child);
    let admin = data.join("admin.conf");
    let config = corral_testkit::eventually_blocking("the server writes admin.conf", || {
        corral_client::Config::from_kubeconfig(&admin).ok()
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = corral_client::Client::from_config(&config).unwrap();
        let events: Api<Event> = Api::namespaced(client, "default");
        // Occurred just now: with the default hour it would stay.
        let created = eventually("the server takes the event", || async {
            events.create(&event("fresh", &corral_api::meta::now_timestamp())).await.ok()
        })
        .await;
        assert_eq!(created.metadata.name, "fresh");
        eventually("an event a second old is deleted", || async {
            events.get_opt("fresh").await.ok()?.is_none().then_some(())
        })
        .await;
    });
}
