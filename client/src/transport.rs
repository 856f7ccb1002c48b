//! How a [`Client`](crate::Client) reaches the API server: over HTTP, or in-process by
//! handing requests straight to the server's router (the server implements
//! [`Transport`] for that). Both go through the same API semantics (validation,
//! defaults, conflicts), so a controller behaves the same inside `corral up` and as its
//! own process.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result, TransportFailure};

/// A response whose body arrives as a stream (watches and log follows never end).
pub struct Response {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body chunks as they arrive.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl Response {
    /// Collects the whole body.
    ///
    /// # Errors
    /// A transport error met while reading it.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }
}

/// One request/response exchange with a Corral API server.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` (its URI is a path and query, e.g. `/apis/...`) and returns the
    /// response once its head has arrived, whatever its status.
    async fn send(&self, request: http::Request<Bytes>) -> Result<Response>;

    /// Where requests go, for messages: a base URL, or `in-process`.
    fn server(&self) -> String;
}

/// The network transport: HTTP/1.1 or h2c to a server at a base URL.
pub struct HttpTransport {
    /// Every server's URL, as configured (`a,b,c`): API servers sharing one store.
    bases: Vec<String>,
    /// The one requests go to, until it cannot be reached.
    current: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    /// `Bearer <token>`, sent with every request.
    authorization: Option<http::HeaderValue>,
}

impl HttpTransport {
    /// A transport to the server at `server` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// [`Error::BadServerUrl`] if `server` is not an `http(s)` URL with a host.
    pub fn new(server: &str) -> Result<Self> {
        Self::with_config(&crate::Config { server: server.to_string(), ..Default::default() })
    }

    /// A transport to `config.server` that authenticates with `config.token`.
    /// `config.server` may list several servers, comma-separated (`http://a:7070,
    /// http://b:7070`): API servers on one store. Requests go to one of them; a
    /// request that cannot reach it (its connection refused or failing, so nothing
    /// was sent) goes to the next, and later requests stay there; so does a read
    /// (GET, HEAD) answered 503 (that server cannot reach the store). A request that
    /// failed after it was sent is not sent again: it may have been acted on.
    ///
    /// # Errors
    /// [`Error::BadServerUrl`] if a server is not an `http(s)` URL with a host;
    /// [`Error::Invalid`] if the token cannot be sent in a header.
    pub fn with_config(config: &crate::Config) -> Result<Self> {
        let servers: Vec<&str> = config.server.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let Some(server) = servers.first().copied() else {
            return Err(Error::BadServerUrl { url: config.server.clone(), message: "no server named".into() });
        };
        let authorization = match &config.token {
            Some(token) => {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| Error::Invalid("the token holds characters a header cannot carry".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut bases = Vec::new();
        for s in &servers {
            let bad = |message: &str| Error::BadServerUrl { url: s.to_string(), message: message.to_string() };
            let url = reqwest::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
                return Err(bad("expected http://HOST:PORT"));
            }
            bases.push(url.as_str().trim_end_matches('/').to_string());
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &config.ca_pem {
            // The cluster's own authority, as its kubeconfig names it.
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| Error::Invalid(format!("the configuration's certificate authority: {e}")))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some(id) = &config.client_identity {
            let pem = [id.certificate_pem.as_slice(), b"\n", id.key_pem.as_slice()].concat();
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Error::Invalid(format!("the configuration's client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| Error::Transport {
            server: server.to_string(),
            failure: failure(&e),
            source: Box::new(e),
        })?;
        Ok(HttpTransport { bases, current: Default::default(), http, authorization })
    }
}

fn failure(e: &reqwest::Error) -> TransportFailure {
    if e.is_connect() {
        TransportFailure::Connect
    } else if e.is_timeout() {
        TransportFailure::Timeout
    } else {
        TransportFailure::Broken
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<Response> {
        use std::sync::atomic::Ordering;
        let (parts, body) = request.into_parts();
        let first = self.current.load(Ordering::Relaxed);
        let mut attempt = 0;
        let resp = loop {
            let at = (first + attempt) % self.bases.len();
            let base = &self.bases[at];
            let mut req =
                self.http.request(parts.method.clone(), format!("{base}{}", parts.uri)).headers(parts.headers.clone());
            if let Some(auth) = &self.authorization {
                req = req.header(http::header::AUTHORIZATION, auth.clone());
            }
            match req.body(body.clone()).send().await {
                // A server that cannot reach the store (its etcd link broken while
                // another's holds) answers 503: a request that changes nothing may
                // simply be asked of the next server.
                Ok(resp)
                    if resp.status() == http::StatusCode::SERVICE_UNAVAILABLE
                        && parts.method.is_safe()
                        && attempt + 1 < self.bases.len() =>
                {
                    attempt += 1
                }
                Ok(resp) => {
                    if at != first {
                        self.current.store(at, Ordering::Relaxed);
                    }
                    break (resp, base.clone());
                }
                // Not connected: nothing was sent, another server may take it.
                Err(e) if e.is_connect() && attempt + 1 < self.bases.len() => attempt += 1,
                Err(e) => {
                    return Err(Error::Transport { server: base.clone(), failure: failure(&e), source: Box::new(e) });
                }
            }
        };
        let (resp, server) = resp;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map(move |c| {
                c.map_err(|e| Error::Transport { server: server.clone(), failure: failure(&e), source: Box::new(e) })
            })
            .boxed();
        Ok(Response { status, headers, body })
    }

    fn server(&self) -> String {
        self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()].clone()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback HTTP/1.1 server answering every request with `status` and an empty
    /// body; its base URL.
    async fn answering(status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = conn.write_all(head.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn request(method: http::Method) -> http::Request<Bytes> {
        http::Request::builder().method(method).uri("/api").body(Bytes::new()).unwrap()
    }

    #[tokio::test]
    async fn a_read_answered_503_goes_to_the_next_server_and_a_write_does_not() {
        let (unavailable, fine) = (answering(503).await, answering(200).await);
        let t = HttpTransport::new(&format!("{unavailable},{fine}")).unwrap();
        let write = t.send(request(http::Method::POST)).await.unwrap();
        assert_eq!(write.status, http::StatusCode::SERVICE_UNAVAILABLE, "a write may have been acted on");
        assert_eq!(t.server(), unavailable);
        let read = t.send(request(http::Method::GET)).await.unwrap();
        assert_eq!(read.status, http::StatusCode::OK);
        assert_eq!(t.server(), fine, "later requests stay on the server that answered");
    }

    #[tokio::test]
    async fn the_last_server_s_503_is_the_answer() {
        let (a, b) = (answering(503).await, answering(503).await);
        let t = HttpTransport::new(&format!("{a},{b}")).unwrap();
        let read = t.send(request(http::Method::GET)).await.unwrap();
        assert_eq!(read.status, http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
