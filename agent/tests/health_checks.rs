//! Health checks: grace period, consecutive failures, few updates, every kind of check.
//! Command checks run under Tokio's paused clock with a scripted runner; HTTP and TCP
//! checks hit real listeners on 127.0.0.1 under the real clock.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_agent::health::{self, CommandRunner, HealthUpdate};
use corral_api::kinds::task::{HealthCheck, HttpCheck, TcpCheck};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// A guard against hanging forever, not a timing assertion.
use corral_testkit::PATIENCE;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Exit codes handed out in order; the last one repeats. Records how often it ran.
struct Scripted {
    codes: Mutex<VecDeque<i32>>,
    runs: Mutex<u32>,
}

impl Scripted {
    fn new(codes: &[i32]) -> Arc<Scripted> {
        Arc::new(Scripted { codes: Mutex::new(codes.iter().copied().collect()), runs: Mutex::new(0) })
    }

    fn runs(&self) -> u32 {
        *self.runs.lock().unwrap()
    }
}

impl CommandRunner for Scripted {
    fn run(&self, argv: Vec<String>, _timeout: Duration) -> BoxFuture<'static, corral_agent::Result<i32>> {
        assert_eq!(argv, ["check"]);
        *self.runs.lock().unwrap() += 1;
        let mut codes = self.codes.lock().unwrap();
        let code = if codes.len() > 1 { codes.pop_front() } else { codes.front().copied() };
        Box::pin(async move { Ok(code.unwrap_or(0)) })
    }
}

fn command(grace: u32, max: u32) -> HealthCheck {
    HealthCheck {
        command: Some(vec!["check".into()]),
        grace_period_seconds: Some(grace),
        interval_seconds: Some(10),
        timeout_seconds: Some(5),
        max_consecutive_failures: Some(max),
        ..Default::default()
    }
}

fn start(
    checks: Vec<HealthCheck>,
    ports: BTreeMap<String, u16>,
    runner: Arc<dyn CommandRunner>,
) -> (health::HealthHandle, mpsc::UnboundedReceiver<HealthUpdate>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = health::spawn(checks, ports, LOCALHOST, runner, move |u| {
        let _ = tx.send(u);
    });
    (handle, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<HealthUpdate>) -> HealthUpdate {
    tokio::time::timeout(PATIENCE, rx.recv()).await.expect("an update arrives").expect("checks still running")
}

/// Summary of an update: (healthy, consecutive failures, failed).
fn sum(u: &HealthUpdate) -> (bool, u32, bool) {
    (u.health.healthy, u.health.consecutive_failures, u.failed)
}

#[tokio::test(start_paused = true)]
async fn failures_in_the_grace_period_do_not_count() {
    let runner = Scripted::new(&[1]);
    // Grace 25s: the checks at 0s, 10s and 20s fail uncounted, those at 30s and 40s count.
    let (h, mut rx) = start(vec![command(25, 2)], BTreeMap::new(), runner.clone());
    let first = next(&mut rx).await;
    assert_eq!(sum(&first), (false, 0, false));
    assert!(first.health.message.as_deref().is_some_and(|m| m.contains("grace period")), "{first:?}");
    assert_eq!(sum(&next(&mut rx).await), (false, 1, false));
    let last = next(&mut rx).await;
    assert_eq!(sum(&last), (false, 2, true));
    assert!(last.health.message.as_deref().is_some_and(|m| m.contains("exited with code 1")), "{last:?}");
    assert_eq!(runner.runs(), 5);
    // After `failed` the checks stop on their own and say nothing more.
    assert!(tokio::time::timeout(PATIENCE, rx.recv()).await.expect("closes").is_none());
    assert!(h.is_finished());
    assert_eq!(runner.runs(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_success_ends_the_grace_period_and_resets_the_count() {
    // Fails, passes (grace over), fails twice, passes, then fails until killed.
    let runner = Scripted::new(&[1, 0, 1, 1, 0, 1]);
    let (_h, mut rx) = start(vec![command(1000, 3)], BTreeMap::new(), runner);
    assert_eq!(sum(&next(&mut rx).await), (false, 0, false));
    assert_eq!(sum(&next(&mut rx).await), (true, 0, false));
    assert_eq!(sum(&next(&mut rx).await), (false, 1, false));
    assert_eq!(sum(&next(&mut rx).await), (false, 2, false));
    assert_eq!(sum(&next(&mut rx).await), (true, 0, false));
    assert_eq!(sum(&next(&mut rx).await), (false, 1, false));
    assert_eq!(sum(&next(&mut rx).await), (false, 2, false));
    assert_eq!(sum(&next(&mut rx).await), (false, 3, true));
}

#[tokio::test(start_paused = true)]
async fn unchanged_health_is_not_reported_again() {
    let runner = Scripted::new(&[0]);
    let (h, mut rx) = start(vec![command(0, 3)], BTreeMap::new(), runner.clone());
    assert_eq!(sum(&next(&mut rx).await), (true, 0, false));
    // Many passing checks later, still that one update.
    for _ in 0..1000 {
        if runner.runs() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert!(runner.runs() >= 20);
    assert!(rx.try_recv().is_err());
    assert!(!h.is_finished());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_checks() {
    let runner = Scripted::new(&[0]);
    let (h, mut rx) = start(vec![command(0, 3)], BTreeMap::new(), runner.clone());
    next(&mut rx).await;
    drop(h);
    // The callback, and the sender in it, goes with the checks.
    assert!(tokio::time::timeout(PATIENCE, rx.recv()).await.expect("closes").is_none());
    let runs = runner.runs();
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(runner.runs(), runs);
}

#[tokio::test(start_paused = true)]
async fn the_task_is_healthy_only_when_every_check_is() {
    let passing = Scripted::new(&[0]);
    let tcp_nowhere = HealthCheck {
        tcp: Some(TcpCheck { port_name: Some("admin".into()), port: None }),
        grace_period_seconds: Some(0),
        max_consecutive_failures: Some(1),
        ..Default::default()
    };
    let ports = BTreeMap::from([("http".to_string(), 8080)]);
    let (_h, mut rx) = start(vec![command(0, 3), tcp_nowhere], ports, passing);
    let u = next(&mut rx).await;
    assert_eq!(sum(&u), (false, 1, true));
    // A check naming a port the task does not have says so.
    let m = u.health.message.unwrap_or_default();
    assert!(m.contains("\"admin\"") && m.contains("not one of the task's ports (http)"), "{m}");
}

#[tokio::test(start_paused = true)]
async fn no_checks_means_no_updates() {
    let (h, mut rx) = start(Vec::new(), BTreeMap::new(), Scripted::new(&[0]));
    assert!(h.is_finished());
    drop(h);
    assert!(rx.recv().await.is_none());
}

/// A tiny HTTP server answering every request with `status`.
async fn http_server(status: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn http(port_name: &str, path: &str) -> HealthCheck {
    HealthCheck {
        http: Some(HttpCheck { port_name: Some(port_name.into()), port: None, path: Some(path.into()) }),
        grace_period_seconds: Some(0),
        interval_seconds: Some(1),
        timeout_seconds: Some(10),
        max_consecutive_failures: Some(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn http_checks_pass_on_2xx_and_3xx_and_fail_otherwise() {
    let ok = http_server("200 OK").await;
    let moved = http_server("302 Found").await;
    let broken = http_server("500 Internal Server Error").await;
    let ports = BTreeMap::from([("ok".to_string(), ok), ("moved".to_string(), moved), ("broken".to_string(), broken)]);

    let (_h, mut rx) = start(vec![http("ok", "/health"), http("moved", "health")], ports.clone(), Scripted::new(&[0]));
    assert_eq!(sum(&next(&mut rx).await), (true, 0, false));

    let (_h, mut rx) = start(vec![http("ok", "/"), http("broken", "/")], ports, Scripted::new(&[0]));
    let u = next(&mut rx).await;
    assert_eq!(sum(&u), (false, 1, false));
    assert!(u.health.message.as_deref().is_some_and(|m| m.contains("answered 500")), "{u:?}");
    assert_eq!(sum(&next(&mut rx).await), (false, 2, true));
}

#[tokio::test]
async fn tcp_checks_pass_when_a_connection_is_accepted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tcp = |port| HealthCheck {
        tcp: Some(TcpCheck { port_name: None, port: Some(port) }),
        grace_period_seconds: Some(0),
        interval_seconds: Some(1),
        max_consecutive_failures: Some(1),
        ..Default::default()
    };
    let (_h, mut rx) = start(vec![tcp(open)], BTreeMap::new(), Scripted::new(&[0]));
    assert_eq!(sum(&next(&mut rx).await), (true, 0, false));
    let (_h, mut rx) = start(vec![tcp(closed)], BTreeMap::new(), Scripted::new(&[0]));
    let u = next(&mut rx).await;
    assert_eq!(sum(&u), (false, 1, true));
    assert!(u.health.message.as_deref().is_some_and(|m| m.contains("tcp check 127.0.0.1")), "{u:?}");
    drop(listener);
}
