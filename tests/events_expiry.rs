//! Events do not pile up: the event expiry controller deletes each one an hour after
//! it last occurred (as Kubernetes' event TTL), and keeps the rest.

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
