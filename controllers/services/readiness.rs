//! Readiness checks, run by the services controller itself (as Marathon runs them):
//! an HTTP GET to a new task's port that must answer one of the ready status codes
//! before a deployment counts the task.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Asks `http://host:port/path` and returns whether it answered one of `codes`
/// within `timeout`.
pub async fn check(host: &str, port: u16, path: &str, codes: &[u16], timeout: Duration) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: corral-readiness\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // The status line is all that matters; read until it is complete.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        status_code(&buf)
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(Some(code)) => codes.contains(&code),
        _ => false,
    }
}

/// The status code of an HTTP/1.x response's status line.
fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_code_is_read_from_the_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\nServer: x\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[tokio::test]
    async fn a_server_answering_a_ready_code_is_ready_and_others_are_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        assert!(check("127.0.0.1", port, "/ready", &[200], Duration::from_secs(5)).await);
        assert!(!check("127.0.0.1", port, "/ready", &[200], Duration::from_secs(5)).await);
    }
}
