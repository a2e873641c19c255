//! What the check's HTTP stages share: the target, one HTTP/1.1 connection over the TLS
//! stream, a bounded GET, and the detectors' judgement of an answer.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::stage::State;
use crate::config::Config;
use crate::inspect::detect::{self, Answer};
use crate::inspect::finding::Finding;
use crate::upstream::dial::Io;

/// How much of an answer's body a stage reads (the detectors' window).
const BODY_KEPT: usize = 64 * 1024;

/// The TLS stream to the host.
pub type Tls = tokio_rustls::client::TlsStream<Box<dyn Io>>;

/// One host to check and what to ask it.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The harmless path the HTTP stage GETs.
    pub path: String,
    /// Try a WebSocket upgrade on this path after the GET (hosts that stream answers).
    pub websocket: Option<String>,
    /// Fetch Cloudflare's `/cdn-cgi/trace` after the GET (Cloudflare-fronted hosts).
    pub trace: bool,
    /// An event-stream endpoint to check for buffering, last (it stays open).
    pub event_stream: Option<String>,
}

/// `fail` for a finding that stops ChatGPT, `warn` for any other, else `pass`.
pub fn state_of(found: &[Finding]) -> State {
    if found.iter().any(|f| f.kind.is_error()) {
        State::Fail
    } else if found.is_empty() {
        State::Pass
    } else {
        State::Warn
    }
}

/// The detectors' findings on an answer.
pub fn judge_answer(
    target: &Target,
    config: &Config,
    status: u16,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Vec<Finding> {
    let answer = Answer::page(&target.host, &target.path, status, headers, body);
    detect::answer_findings(&answer, &config.profile)
}

/// An HTTP/1.1 connection over the TLS stream.
pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

pub async fn open(tls: Tls) -> Result<Sender, String> {
    let (sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

/// A new connection to the target along its route (TCP, TLS without judging the chain
/// again), for a stage that cannot share the first one.
pub async fn fresh(target: &Target, config: &Config) -> Result<Sender, String> {
    let (_, opened) = crate::upstream::dial::open_tunnel(&target.host, target.port, config).await;
    let upstream = opened.map_err(|f| f.detail)?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|_| format!("{:?} is not a server name", target.host))?;
    let connector = tokio_rustls::TlsConnector::from(crate::tls::probe::look_only_config(false));
    let io: Box<dyn Io> = upstream.io.into_io();
    let tls = connector
        .connect(name, io)
        .await
        .map_err(|e| e.to_string())?;
    open(tls).await
}

/// Status, headers and the first [`BODY_KEPT`] bytes of `GET path` (with `extra` headers).
pub async fn send(
    sender: &mut Sender,
    target: &Target,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<(u16, hyper::HeaderMap, Vec<u8>), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let authority = if target.port == 443 {
        target.host.clone()
    } else {
        crate::upstream::addr::join(&target.host, target.port)
    };
    let mut request = Request::get(path)
        .header(HOST, authority)
        .header(USER_AGENT, super::record::CHECK_AGENT);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, mut body) = response.into_parts();
    let mut kept = Vec::new();
    if parts.status != hyper::StatusCode::SWITCHING_PROTOCOLS {
        while kept.len() < BODY_KEPT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        kept.extend_from_slice(data);
                    }
                }
                _ => break,
            }
        }
    }
    kept.truncate(BODY_KEPT);
    Ok((parts.status.as_u16(), parts.headers, kept))
}
