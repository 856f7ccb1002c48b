//! The TCP side, served by hickory-server's [`Server`] (RFC 7766: length-prefixed
//! messages, several per connection, each connection closed after [`IDLE_TIMEOUT`]
//! without a query) with a [`RequestHandler`] that answers through the same
//! [`Answerer::answer`] as UDP.
//!
//! hickory-server logs each TCP query at `info` (target `hickory_server`): a binary
//! serving real traffic filters it to `hickory_server=warn`.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, ResponseCode};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::TcpListener;

use super::answer::{Answerer, Read, Response, qtype_of, rcode_of, read};
use super::forward::Forwarder;
use crate::metrics::DnsMetrics;

/// A connection with no query for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per connection before the writer waits.
const RESPONSE_BUFFER: usize = 32;

/// Answers TCP queries from the zone, forwarding as UDP does.
pub(crate) struct Handler {
    answerer: Arc<Answerer>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: Arc<DnsMetrics>,
    shard: usize,
}

impl Handler {
    /// The response to a request's bytes, or `None` for no response.
    async fn respond(&self, raw: &[u8]) -> Option<(Message, u16)> {
        let query = match read(raw) {
            Read::Drop => return None,
            Read::Error(m) => return Some((*m, 0)),
            Read::Query(q) => q,
        };
        let qtype = qtype_of(&query);
        match self.answerer.answer(&query) {
            Response::Message(m) => Some((*m, qtype)),
            Response::Forward => {
                self.metrics.count_forwarded(self.shard);
                let response = match (&self.forwarder, self.forwarder.as_ref().and_then(|f| f.permit())) {
                    (Some(f), Some(_permit)) => f.forward(&query, true).await,
                    _ => None,
                };
                Some(match response {
                    Some(r) => (r, qtype),
                    None => {
                        self.metrics.count_forward_failed(self.shard);
                        (self.answerer.servfail(&query), qtype)
                    }
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let not_sent = |rcode| {
            let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
            metadata.response_code = rcode;
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        };
        let Some((response, qtype)) = self.respond(request.as_slice()).await else {
            return not_sent(ResponseCode::NoError);
        };
        self.metrics.count_query(self.shard, qtype, rcode_of(&response));
        let builder = MessageResponseBuilder::new(&request.queries, response.edns.as_ref());
        let message = builder.build(
            response.metadata,
            response.answers.iter(),
            response.authorities.iter(),
            std::iter::empty(),
            response.additionals.iter(),
        );
        match response_handle.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                self.metrics.count_error(self.shard);
                tracing::debug!(error = %e, "dns: sending a TCP response");
                not_sent(ResponseCode::ServFail)
            }
        }
    }
}

/// A hickory-server [`Server`] serving `listener`; dropping it (or aborting the task
/// that runs it) closes the listener and every connection.
pub(crate) fn server(
    listener: TcpListener,
    answerer: Arc<Answerer>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: Arc<DnsMetrics>,
    shard: usize,
) -> Server<Handler> {
    let mut server = Server::new(Handler { answerer, forwarder, metrics, shard });
    server.register_listener(listener, IDLE_TIMEOUT, RESPONSE_BUFFER);
    server
}
