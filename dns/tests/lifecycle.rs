//! Starting, bounding and stopping the server (no dig needed).

use std::sync::Arc;

use corral_dns::{DnsConfig, Zone, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn zone() -> Arc<Zone> {
    Arc::new(Zone::new("corral.").unwrap())
}

#[tokio::test]
async fn shutdown_frees_the_address_for_a_new_server() {
    let dns = start(DnsConfig::default(), zone()).await.unwrap();
    let addr = dns.local_addr();
    assert_ne!(addr.port(), 0);
    dns.shutdown().await;
    let again = start(DnsConfig { listen: addr, ..DnsConfig::default() }, zone()).await.unwrap();
    assert_eq!(again.local_addr(), addr);
    again.shutdown().await;
}

#[tokio::test]
async fn a_second_server_cannot_take_an_address_in_use() {
    let dns = start(DnsConfig::default(), zone()).await.unwrap();
    let err = start(DnsConfig { listen: dns.local_addr(), ..DnsConfig::default() }, zone()).await.unwrap_err();
    assert!(err.to_string().contains("TCP"), "{err}");
    dns.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_tcp_connection_is_closed() {
    let dns = start(DnsConfig::default(), zone()).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(dns.local_addr()).await.unwrap();
    // Half a length prefix, then nothing: the paused clock runs to the idle timeout and
    // the server hangs up.
    stream.write_all(&[0]).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    dns.shutdown().await;
}
