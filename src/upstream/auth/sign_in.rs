//! The handshake after a proxy's `407`, on the connection that got it: each candidate
//! scheme in turn (a scheme that cannot start here — no ticket, no library — gives way to
//! the next), until the proxy answers something other than `407`, refuses what was sent, or
//! [`MAX_ROUNDS`] requests have gone. The caller says how to send its request again
//! ([`Resend`]): a CONNECT, or a plain request with no body.

use std::future::Future;
use std::time::{Instant, SystemTime};

use base64::Engine;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, DATE, PROXY_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::{
    challenges, classify_gss, gss, ntlm, AuthFailure, AuthRecord, Can, Challenge, Outcome, Scheme,
    Settings,
};
use crate::failure::{Failure, FailureKind, Side};

/// Requests after the first `407`, at most, for one connection (NTLM needs two; Negotiate
/// one, or two when the proxy answers with a token).
pub const MAX_ROUNDS: u8 = 4;
/// A `407` body is read up to here (and for at most 2 s) so the connection can carry the
/// next request; its start is kept for the failure.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Sends the caller's request again, with `Proxy-Authorization`, on the same connection.
pub trait Resend {
    fn resend(
        &mut self,
        authorization: HeaderValue,
    ) -> impl Future<Output = Result<Response<Incoming>, Failure>> + Send;
}

/// The proxy being signed in to, as the route names it.
pub struct Proxy<'a> {
    pub host: &'a str,
    pub port: u16,
    /// `Basic …` from the proxy URL, if it had `user:pass@`.
    pub url_basic: Option<&'a str>,
    /// The user named this proxy (not a PAC): `--upstream-user`'s password may go to it.
    pub chosen: bool,
}

/// How a scheme's attempt ended short of success.
enum Stop {
    /// It could not start here (no ticket, no principal): the next scheme may.
    Local(AuthFailure, String),
    /// The proxy answered `407` to what was sent.
    Refused(Response<Incoming>, String),
    /// The connection failed.
    Broken(Failure),
}

/// Signs in after `first` (a `407`); the proxy's final answer, or the failure, and what it
/// took.
pub async fn sign_in(
    first: Response<Incoming>,
    conn: &mut impl Resend,
    proxy: &Proxy<'_>,
    settings: &Settings,
) -> (Result<Response<Incoming>, Failure>, AuthRecord) {
    let started = Instant::now();
    let offered = offered(&first);
    let mut record = AuthRecord {
        proxy: crate::upstream::addr::join(proxy.host, proxy.port),
        offered: offered.iter().map(|c| c.scheme.clone()).collect(),
        ..AuthRecord::default()
    };
    let can = Can {
        negotiate: if offers(&offered, Scheme::Negotiate) {
            gss::available()
        } else {
            Ok(())
        },
        url_basic: proxy.url_basic.is_some(),
        password: settings.password_to(proxy.host, proxy.port, proxy.chosen),
    };
    let candidates = match settings.candidates(&offered, &can) {
        Ok(c) => c,
        Err(why) => {
            let why = format!("{why} (Proxy-Authenticate: {})", challenge_text(&first));
            let result = refused(first, &mut record, AuthFailure::Unsupported, why).await;
            return finish(result, record, started);
        }
    };
    let body = drain(first).await;
    let result = each_scheme(candidates, conn, proxy, settings, &mut record, body).await;
    finish(result, record, started)
}

/// Tries `candidates` in turn on the connection whose `407` was read.
async fn each_scheme(
    candidates: Vec<Scheme>,
    conn: &mut impl Resend,
    proxy: &Proxy<'_>,
    settings: &Settings,
    record: &mut AuthRecord,
    body: String,
) -> Result<Response<Incoming>, Failure> {
    let mut local = None;
    for scheme in candidates {
        record.scheme = Some(scheme.to_string());
        let stop = match attempt(scheme, conn, proxy, settings, record).await {
            Ok(response) => {
                record.outcome = Outcome::Ok;
                return Ok(response);
            }
            Err(stop) => stop,
        };
        match stop {
            Stop::Local(failure, why) => {
                record.skipped.push(format!("{scheme}: {why}"));
                local.get_or_insert((failure, why));
            }
            Stop::Refused(response, mut why) => {
                let (failure, skewed) = judge_refusal(scheme, &response);
                if let Some(skewed) = skewed {
                    why.push_str(&format!(
                        "; this machine's clock is {} from the proxy's (Date), Kerberos allows 5 min",
                        crate::clock::human(skewed)
                    ));
                }
                return refused(response, record, failure, why).await;
            }
            Stop::Broken(failure) => {
                record.outcome = Outcome::Failed;
                record.detail = Some(failure.detail.clone());
                return Err(failure);
            }
        }
    }
    let (failure, why) =
        local.unwrap_or((AuthFailure::Unsupported, "no scheme could be used".into()));
    // The first scheme's failure is the one named; the others stay in `skipped`.
    record.scheme = record
        .skipped
        .first()
        .and_then(|s| s.split(':').next())
        .map(str::to_string);
    if !record.skipped.is_empty() {
        record.skipped.remove(0);
    }
    record.outcome = Outcome::Failed;
    record.failure = Some(failure);
    record.detail = Some(why.clone());
    let mut f = auth_failure(record, failure, &why);
    f.proxy_body = Some(body).filter(|b| !b.is_empty());
    Err(f)
}

fn finish(
    result: Result<Response<Incoming>, Failure>,
    mut record: AuthRecord,
    started: Instant,
) -> (Result<Response<Incoming>, Failure>, AuthRecord) {
    record.ms = crate::clock::ms(started.elapsed());
    (result, record)
}

fn offered(response: &Response<Incoming>) -> Vec<Challenge> {
    challenges(
        response
            .headers()
            .get_all(PROXY_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The `Proxy-Authenticate` values as sent (`Basic realm="corp"`), for the failure.
fn challenge_text(response: &Response<Incoming>) -> String {
    let values: Vec<&str> = response
        .headers()
        .get_all(PROXY_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        "none".into()
    } else {
        values.join(", ")
    }
}

fn offers(offered: &[Challenge], scheme: Scheme) -> bool {
    offered
        .iter()
        .any(|c| Scheme::parse(&c.scheme) == Some(scheme))
}

/// The token the proxy sent with `scheme` in its `407`, decoded.
fn token_of(response: &Response<Incoming>, scheme: Scheme) -> Option<Vec<u8>> {
    offered(response)
        .into_iter()
        .find(|c| Scheme::parse(&c.scheme) == Some(scheme))?
        .token
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
}

/// A second `407` after Negotiate: the proxy could not accept the ticket. If its clock is
/// minutes from ours, that is why.
fn judge_refusal(
    scheme: Scheme,
    response: &Response<Incoming>,
) -> (AuthFailure, Option<std::time::Duration>) {
    let skewed = response
        .headers()
        .get(DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| super::skew(d, SystemTime::now()));
    match (scheme, skewed) {
        (Scheme::Negotiate, Some(by)) => (AuthFailure::ClockSkew, Some(by)),
        _ => (AuthFailure::Rejected, None),
    }
}

async fn refused(
    response: Response<Incoming>,
    record: &mut AuthRecord,
    failure: AuthFailure,
    why: String,
) -> Result<Response<Incoming>, Failure> {
    let status = response.status();
    let body = drain(response).await;
    record.outcome = Outcome::Failed;
    record.failure = Some(failure);
    record.detail = Some(why.clone());
    let mut f = auth_failure(record, failure, &why);
    f.proxy_status = Some(status.as_u16());
    f.proxy_body = Some(body).filter(|b| !b.is_empty());
    Err(f)
}

fn auth_failure(record: &AuthRecord, failure: AuthFailure, why: &str) -> Failure {
    let detail = format!(
        "the corporate proxy {} wants credentials (407) and signing in failed: {} — {why}",
        record.proxy,
        failure.as_str()
    );
    Failure::new(FailureKind::UpstreamProxyAuth, Side::UpstreamProxy, detail)
}

/// One scheme's handshake.
async fn attempt(
    scheme: Scheme,
    conn: &mut impl Resend,
    proxy: &Proxy<'_>,
    settings: &Settings,
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    match scheme {
        Scheme::Negotiate => negotiate(conn, proxy, record).await,
        Scheme::Ntlm => ntlm_handshake(conn, settings, record).await,
        Scheme::Basic => basic(conn, proxy, settings, record).await,
    }
}

async fn negotiate(
    conn: &mut impl Resend,
    proxy: &Proxy<'_>,
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    let host = proxy.host.to_string();
    record.spn = Some(format!("HTTP@{host}"));
    match first_token(host).await {
        Ok(session) => negotiate_with(session, conn, record).await,
        Err(e) => Err(Stop::Local(classify_gss(e.minor, &e.message), e.message)),
    }
}

/// A context and its first token; when SPNEGO cannot make one, Kerberos' own reason.
async fn first_token(host: String) -> Result<(gss::Session, Vec<u8>), gss::GssError> {
    let made = tokio::task::spawn_blocking(move || {
        let mut session = gss::Session::new(&host)?;
        match session.step(None) {
            Ok((token, _)) => Ok((session, token)),
            Err(spnego) => Err(gss::Session::why_not(&host).unwrap_or(spnego)),
        }
    })
    .await;
    made.unwrap_or_else(|e| {
        Err(gss::GssError {
            major: 0,
            minor: 0,
            message: format!("GSSAPI call failed: {e}"),
        })
    })
}

async fn negotiate_with(
    (mut session, first): (gss::Session, Vec<u8>),
    conn: &mut impl Resend,
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    let mut token = first;
    loop {
        let response = send(conn, "Negotiate", &token, record).await?;
        if response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Ok(response);
        }
        match token_of(&response, Scheme::Negotiate) {
            Some(more) if record.rounds < MAX_ROUNDS => {
                drain(response).await;
                let (next, back) = blocking(move || {
                    let step = session.step(Some(&more));
                    step.map(|(token, _)| (token, session))
                })
                .await?;
                (token, session) = (next, back);
            }
            _ => {
                let why = format!(
                    "the proxy answered 407 again to the Kerberos ticket for {}",
                    record.spn.as_deref().unwrap_or_default()
                );
                return Err(Stop::Refused(response, why));
            }
        }
    }
}

/// Runs a GSSAPI call on a blocking thread (it may ask the KDC), its error named.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, gss::GssError> + Send + 'static,
) -> Result<T, Stop> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Stop::Local(classify_gss(e.minor, &e.message), e.message)),
        Err(e) => Err(Stop::Local(
            AuthFailure::NoTicket,
            format!("GSSAPI call failed: {e}"),
        )),
    }
}

async fn ntlm_handshake(
    conn: &mut impl Resend,
    settings: &Settings,
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    let Some(user) = &settings.user else {
        return Err(Stop::Local(
            AuthFailure::Unsupported,
            "NTLM needs --upstream-user".into(),
        ));
    };
    record.user = Some(user.display());
    let local = |why: String| Stop::Local(AuthFailure::Rejected, why);
    let mut client = ntlm::Client::new(user).map_err(local)?;
    let negotiate = client.negotiate().map_err(local)?;
    let response = send(conn, "NTLM", &negotiate, record).await?;
    if response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Ok(response);
    }
    let Some(challenge) = token_of(&response, Scheme::Ntlm) else {
        let why = "the proxy sent no NTLM challenge after the negotiate message".to_string();
        return Err(Stop::Refused(response, why));
    };
    drain(response).await;
    let authenticate = client.authenticate(&challenge).map_err(local)?;
    let response = send(conn, "NTLM", &authenticate, record).await?;
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let why = format!(
            "the proxy refused the NTLM credentials of {}",
            user.display()
        );
        return Err(Stop::Refused(response, why));
    }
    Ok(response)
}

async fn basic(
    conn: &mut impl Resend,
    proxy: &Proxy<'_>,
    settings: &Settings,
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    let password = settings.password_to(proxy.host, proxy.port, proxy.chosen);
    let value = match (&settings.user, proxy.url_basic) {
        (Some(user), _) if password.is_ok() => {
            record.user = Some(user.display());
            crate::upstream::route::basic(&format!("{}:{}", user.user, user.password))
        }
        (_, Some(url)) => url.to_string(),
        (Some(_), None) => {
            let why = password.err().unwrap_or_default();
            return Err(Stop::Local(AuthFailure::Unsupported, why));
        }
        (None, None) => {
            return Err(Stop::Local(
                AuthFailure::Unsupported,
                "Basic needs credentials".into(),
            ))
        }
    };
    record.warning = Some(format!(
        "Basic sent the password readable to anyone on the path to {} (plain HTTP to the proxy)",
        record.proxy
    ));
    let header = HeaderValue::from_str(&value).map_err(|_| {
        Stop::Local(
            AuthFailure::Rejected,
            "credentials not valid in a header".into(),
        )
    })?;
    record.rounds += 1;
    let response = conn.resend(header).await.map_err(Stop::Broken)?;
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Err(Stop::Refused(
            response,
            "the proxy refused the Basic credentials".into(),
        ));
    }
    Ok(response)
}

/// Sends `scheme token` (base64), counting the round.
async fn send(
    conn: &mut impl Resend,
    scheme: &str,
    token: &[u8],
    record: &mut AuthRecord,
) -> Result<Response<Incoming>, Stop> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(token);
    let header = HeaderValue::from_str(&format!("{scheme} {encoded}"))
        .map_err(|_| Stop::Local(AuthFailure::Rejected, "token not valid in a header".into()))?;
    record.rounds += 1;
    conn.resend(header).await.map_err(Stop::Broken)
}

/// Reads a response body to its end (at most [`DRAIN_LIMIT`], 2 s) so the connection can
/// carry the next request; its start as text.
pub async fn drain(response: Response<Incoming>) -> String {
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let mut read = 0usize;
    let reading = async {
        while read < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len();
                        let room = 4096usize.saturating_sub(kept.len());
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reading).await;
    String::from_utf8_lossy(&kept).into_owned()
}
