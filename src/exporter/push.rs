//! `check --push URL`: the check's families sent to a Prometheus Pushgateway with `PUT
//! URL/metrics/job/JOB/KEY/VALUE…`, so a re-run replaces the group's last result (a laptop
//! behind NAT runs it from cron). The URL is built here (pure); the request is one HTTP/1.1
//! PUT over a connection that follows the loopback-only guard.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long the push may take, connect to answer.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most grouping labels a push takes.
pub const MAX_GROUPING: usize = 16;

/// `BASE/metrics/job/JOB/KEY/VALUE…`; a value that is not plain (`/`, spaces, empty) is sent
/// base64url-encoded as `KEY@base64/VALUE`, as the Pushgateway documents.
pub fn url(base: &str, job: &str, grouping: &[(String, String)]) -> Result<String, String> {
    if !base.starts_with("http://") {
        return Err(format!(
            "--push {base}: only http:// Pushgateway URLs are supported"
        ));
    }
    if grouping.len() > MAX_GROUPING {
        return Err(format!("at most {MAX_GROUPING} --grouping labels"));
    }
    let mut url = format!(
        "{}/metrics/{}",
        base.trim_end_matches('/'),
        segment("job", job)?
    );
    for (key, value) in grouping {
        url.push('/');
        url.push_str(&segment(key, value)?);
    }
    Ok(url)
}

fn segment(key: &str, value: &str) -> Result<String, String> {
    let name_ok = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.as_bytes()[0].is_ascii_digit()
        && !key.starts_with("__");
    if !name_ok {
        return Err(format!("{key:?} is not a Prometheus label name"));
    }
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    Ok(if plain {
        format!("{key}/{value}")
    } else {
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(value);
        // An empty value is `=` in base64url, as the Pushgateway expects.
        let encoded = if encoded.is_empty() {
            "=".into()
        } else {
            encoded
        };
        format!("{key}@base64/{encoded}")
    })
}

/// `KEY=VALUE` as given to `--grouping`. `job` is `--job`'s, and `host` is the label every
/// pushed series already carries, so neither may be a grouping key.
pub fn parse_grouping(pairs: &[String]) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--grouping {p:?}: expected KEY=VALUE"))?;
            if matches!(k, "job" | "host") {
                return Err(format!(
                    "--grouping {k}: `job` is --job's and `host` is every series' own label; pick another key (e.g. site, device)"
                ));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// PUTs `body` to `url`; `loopback_only` refuses any other address (the test guard).
pub async fn put(url: &str, body: String, loopback_only: bool) -> Result<(), String> {
    tokio::time::timeout(PUSH_TIMEOUT, send(url, body, loopback_only))
        .await
        .map_err(|_| format!("{url}: no answer in {PUSH_TIMEOUT:?}"))?
}

async fn send(url: &str, body: String, loopback_only: bool) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let literal = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok();
    if loopback_only && !literal && host != "localhost" {
        return Err(format!("{url}: loopback only: names are not looked up"));
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .filter(|a| !loopback_only || a.ip().is_loopback())
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| format!("{url}: no address (loopback only: {loopback_only})"))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(conn);
    let request = hyper::Request::put(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(hyper::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned();
    Err(format!(
        "{url}: the Pushgateway answered {status}: {}",
        crate::text::terminal(text.trim(), false)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_pushgateway_rules() {
        let grouping = vec![
            ("site".to_string(), "office-3".to_string()),
            ("path".to_string(), "a/b".to_string()),
        ];
        assert_eq!(
            url("http://127.0.0.1:9091/", "diagproxy", &grouping).unwrap(),
            "http://127.0.0.1:9091/metrics/job/diagproxy/site/office-3/path@base64/YS9i"
        );
        assert!(url("https://gw", "j", &[]).is_err());
        assert!(url("http://gw", "j", &[("1x".into(), "v".into())]).is_err());
        assert!(url("http://gw", "j", &[("__name".into(), "v".into())]).is_err());
        assert_eq!(
            url("http://gw", "j", &[("k".into(), String::new())]).unwrap(),
            "http://gw/metrics/job/j/k@base64/="
        );
        assert_eq!(
            parse_grouping(&["site=office".into()]).unwrap(),
            vec![("site".to_string(), "office".to_string())]
        );
        assert!(parse_grouping(&["site".into()]).is_err());
        assert!(parse_grouping(&["host=a".into()]).is_err());
        assert!(parse_grouping(&["job=a".into()]).is_err());
    }
}
