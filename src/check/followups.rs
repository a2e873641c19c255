//! The stages that follow the GET on the same connection: a WebSocket upgrade for the hosts
//! that stream answers, and Cloudflare's `/cdn-cgi/trace` for the hosts it fronts —
//! independent evidence of the public egress address, of Cloudflare WARP or Gateway in the
//! path, and of TLS re-terminated on the way (the TLS version the edge saw against the one
//! diagproxy negotiated).

use std::time::{Duration, Instant};

use super::http::{judge_answer, send, state_of, Sender, Target};
use super::stage::{Stage, State};
use crate::config::Config;
use crate::inspect::finding::Finding;

fn ms(d: Duration) -> Option<f64> {
    Some(d.as_secs_f64() * 1e3)
}

/// `Upgrade: websocket` on the connection: `101` passes; an answer of the server itself (a
/// 4xx without a token is healthy: the upgrade reached it) passes with its status; a block
/// page, a reset or silence fails.
pub async fn websocket(
    target: &Target,
    path: &str,
    config: &Config,
    budget: Duration,
    sender: &mut Sender,
    findings: &mut Vec<Finding>,
) -> Stage {
    let headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        // Any 16 bytes, base64: the server's accept value is not checked.
        ("sec-websocket-key", "ZGlhZ3Byb3h5IGNoZWNrIQ=="),
    ];
    let started = Instant::now();
    let answered = tokio::time::timeout(budget, send(sender, target, path, &headers)).await;
    let took = ms(started.elapsed());
    let (status, head, body) = match answered {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Stage::new(State::Fail, took, format!("WebSocket upgrade: {e}")),
        Err(_) => {
            return Stage::new(
                State::Fail,
                took,
                format!("no answer to the WebSocket upgrade in {budget:?}"),
            )
        }
    };
    if status == 101 {
        return Stage::new(State::Pass, took, "101 Switching Protocols");
    }
    let found = judge_answer(target, config, status, &head, &body);
    let state = match state_of(&found) {
        State::Pass if status >= 500 => State::Warn,
        other => other,
    };
    let mut detail = format!(
        "{status} to the upgrade (the server answered; without a session a 4xx is expected)"
    );
    for f in &found {
        detail = format!("{status} to the upgrade; {}", f.in_words());
    }
    findings.extend(found);
    Stage::new(state, took, detail)
}

/// How long the stream must stay open after its first event to count as streamed.
const STILL_OPEN: Duration = Duration::from_millis(500);

/// An event stream at `path` (a test endpoint): `pass` when the first event arrives and the
/// stream stays open (it is relayed as it comes), `fail` when the first bytes come only with
/// the end of the body (something on the way buffers the stream: answers appear all at
/// once, or time out).
pub async fn event_stream(target: &Target, path: &str, config: &Config, budget: Duration) -> Stage {
    use http_body_util::BodyExt;
    let started = Instant::now();
    let asked = async {
        // Its own connection: the stream stays open, and a WebSocket upgrade may have taken
        // the first one.
        let mut sender = super::http::fresh(target, config).await?;
        ask_stream(target, path, &mut sender).await
    };
    let response = match tokio::time::timeout(budget, asked).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            return Stage::new(
                State::Fail,
                ms(started.elapsed()),
                format!("GET {path}: {e}"),
            )
        }
        Err(_) => {
            return Stage::new(
                State::Fail,
                ms(started.elapsed()),
                format!("no answer to GET {path} in {budget:?}"),
            )
        }
    };
    let status = response.status().as_u16();
    if status != 200 {
        return Stage::new(
            State::Fail,
            ms(started.elapsed()),
            format!("GET {path} → {status}, not an event stream"),
        );
    }
    let mut body = response.into_body();
    let first = loop {
        match tokio::time::timeout_at((started + budget).into(), body.frame()).await {
            Ok(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| !d.is_empty()) => {
                break started.elapsed()
            }
            Ok(Some(Ok(_))) => continue,
            Ok(_) => {
                return Stage::new(
                    State::Fail,
                    ms(started.elapsed()),
                    "the stream ended without an event",
                )
            }
            Err(_) => {
                return Stage::new(
                    State::Fail,
                    ms(started.elapsed()),
                    format!("no event in {budget:?}"),
                )
            }
        }
    };
    let ended = tokio::time::timeout(STILL_OPEN, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    let after = format!("first event after {:.0} ms", first.as_secs_f64() * 1e3);
    match ended {
        Err(_) => Stage::new(State::Pass, ms(first), format!("{after}, the stream still open: relayed as it comes")),
        Ok(()) => Stage::new(
            State::Fail,
            ms(first),
            format!("{after}, and the body ended right after it: something on the way buffers event streams"),
        ),
    }
}

async fn ask_stream(
    target: &Target,
    path: &str,
    sender: &mut Sender,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let authority = if target.port == 443 {
        target.host.clone()
    } else {
        crate::upstream::addr::join(&target.host, target.port)
    };
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "text/event-stream")
        .header(hyper::header::USER_AGENT, super::record::CHECK_AGENT)
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// What Cloudflare's edge says about the connection (`ip`, `loc`, `colo`, `tls`, `warp`,
/// `gateway`); `warn` when WARP or Gateway is on, or the edge saw another TLS version than
/// diagproxy negotiated (`negotiated`: the TLS stage's detail).
pub async fn egress(
    target: &Target,
    budget: Duration,
    sender: &mut Sender,
    negotiated: &str,
) -> Stage {
    let started = Instant::now();
    let answered = tokio::time::timeout(budget, send(sender, target, "/cdn-cgi/trace", &[])).await;
    let took = ms(started.elapsed());
    let body = match answered {
        Ok(Ok((200, _, body))) => body,
        Ok(Ok((status, _, _))) => {
            return Stage::new(
                State::NotRun,
                took,
                format!("no Cloudflare trace here ({status})"),
            )
        }
        Ok(Err(e)) => return Stage::new(State::NotRun, took, format!("no Cloudflare trace: {e}")),
        Err(_) => {
            return Stage::new(
                State::NotRun,
                took,
                format!("no Cloudflare trace in {budget:?}"),
            )
        }
    };
    let text = String::from_utf8_lossy(&body);
    let (state, detail) = judge_trace(&text, negotiated);
    Stage::new(
        state,
        took,
        crate::text::terminal(&detail, false).into_owned(),
    )
}

/// The trace's fields and what they say. Pure.
pub fn judge_trace(text: &str, negotiated: &str) -> (State, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    };
    let Some(ip) = field("ip") else {
        return (State::NotRun, "not a Cloudflare trace".into());
    };
    let shown: Vec<String> = ["ip", "loc", "colo", "tls", "warp", "gateway"]
        .iter()
        .filter_map(|k| field(k).map(|v| format!("{k}={v}")))
        .collect();
    let mut notes = Vec::new();
    if field("warp").is_some_and(|w| w != "off") {
        notes.push("Cloudflare WARP is in the path");
    }
    if field("gateway").is_some_and(|g| g != "off") {
        notes.push("Cloudflare Gateway is in the path");
    }
    // `TLSv1.3` at the edge against rustls' `TLSv1_3`.
    let edge_tls = field("tls").map(|t| t.replace('.', "_"));
    if edge_tls.as_deref().is_some_and(|t| !negotiated.contains(t)) {
        notes.push("the edge saw another TLS version than diagproxy negotiated: TLS is re-terminated on the way");
    }
    let state = if notes.is_empty() {
        State::Pass
    } else {
        State::Warn
    };
    let mut detail = format!("egress {ip}: {}", shown.join(" "));
    for note in notes {
        detail.push_str(&format!("; {note}"));
    }
    (state, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "fl=1\nh=chatgpt.com\nip=203.0.113.7\nts=1.2\nvisit_scheme=https\nuag=x\ncolo=FRA\nsliver=none\nhttp=http/1.1\nloc=DE\ntls=TLSv1.3\nsni=plaintext\nwarp=off\ngateway=off\n";

    #[test]
    fn a_plain_trace_passes_with_the_egress_address() {
        let (state, detail) = judge_trace(TRACE, "TLSv1_3, http/1.1, public chain");
        assert_eq!(state, State::Pass);
        assert_eq!(
            detail,
            "egress 203.0.113.7: ip=203.0.113.7 loc=DE colo=FRA tls=TLSv1.3 warp=off gateway=off"
        );
    }

    #[test]
    fn warp_gateway_and_a_changed_tls_version_are_warnings() {
        let warp = TRACE
            .replace("warp=off", "warp=on")
            .replace("gateway=off", "gateway=on");
        let (state, detail) = judge_trace(&warp, "TLSv1_3");
        assert_eq!(state, State::Warn);
        assert!(
            detail.contains("WARP is in the path") && detail.contains("Gateway is in the path"),
            "{detail}"
        );
        let (state, detail) = judge_trace(TRACE, "TLSv1_2, http/1.1");
        assert_eq!(state, State::Warn);
        assert!(detail.contains("re-terminated"), "{detail}");
        assert_eq!(judge_trace("<html>", "").0, State::NotRun);
    }
}
