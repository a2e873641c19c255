//! Getting a PAC script running: the file fetched (`http://`, directly, as browsers do) or
//! read, described, and handed to a new [`engine`](super::engine) thread.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::{engine, Pac, PacError, PacFile};
use crate::config::Config;
use crate::failure::Side;
use crate::upstream::addr::HostPort;
use crate::upstream::dial;

/// The largest PAC file read: real ones are a few KiB, the biggest seen some hundred.
pub const MAX_SIZE: usize = 1 << 20;
/// How long fetching the PAC file may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches (or reads) the PAC file at `location` and starts its script.
pub async fn load(location: &str, config: &Config) -> Result<Pac, (PacError, Option<PacFile>)> {
    let (script, file) = fetch(location, config).await?;
    start(script, file, config).await
}

/// Starts a script already in hand.
pub async fn start(
    script: String,
    file: PacFile,
    config: &Config,
) -> Result<Pac, (PacError, Option<PacFile>)> {
    match engine::start(script, config.clone()).await {
        Ok(jobs) => Ok(Pac::new(jobs, file)),
        Err(e) => Err((e, Some(file))),
    }
}

/// The script at `location` (`http://` URL, `file://` URL or a path) and its description.
pub async fn fetch(
    location: &str,
    config: &Config,
) -> Result<(String, PacFile), (PacError, Option<PacFile>)> {
    let (bytes, status, content_type) = if let Some(rest) = location.strip_prefix("http://") {
        let got = tokio::time::timeout(FETCH_TIMEOUT, get(rest, config)).await;
        match got {
            Ok(Ok(got)) => got,
            Ok(Err(why)) => return Err((PacError(format!("PAC {location}: {why}")), None)),
            Err(_) => {
                let why = format!("PAC {location}: no answer in {FETCH_TIMEOUT:?}");
                return Err((PacError(why), None));
            }
        }
    } else if location.starts_with("https://") {
        let why = format!(
            "PAC {location}: https:// PAC URLs are not fetched yet; download the file and give pac:FILE"
        );
        return Err((PacError(why), None));
    } else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        let bytes =
            read_file(path).map_err(|why| (PacError(format!("PAC {path}: {why}")), None))?;
        (bytes, None, None)
    };
    let file = PacFile {
        url: location.to_string(),
        status,
        content_type,
        size: bytes.len(),
        sha256: crate::text::sha256_hex(&bytes),
        text: None,
    };
    if let Some(code) = status.filter(|s| *s != 200) {
        let why = format!("PAC {location}: the server answered {code}");
        return Err((PacError(why), Some(file)));
    }
    let script = String::from_utf8_lossy(&bytes).into_owned();
    let file = PacFile {
        text: Some(script.as_str().into()),
        ..file
    };
    Ok((script, file))
}

fn read_file(path: &str) -> Result<Bytes, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_SIZE {
        return Err(format!("larger than {} KiB", MAX_SIZE >> 10));
    }
    Ok(Bytes::from(bytes))
}

/// GET `http://{rest}` directly (as browsers fetch PAC files), at most [`MAX_SIZE`] bytes.
async fn get(rest: &str, config: &Config) -> Result<(Bytes, Option<u16>, Option<String>), String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let HostPort { host, port } = HostPort::parse(authority, 80).ok_or("bad host or port")?;
    let dialed = dial::dial(&host, port, config, Side::Upstream)
        .await
        .map_err(|f| f.detail)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(dialed.stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(HOST, authority)
        .header(
            "user-agent",
            concat!("diagproxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::text::bounded(crate::text::terminal(v, false).into_owned()));
    let body = Limited::new(response.into_body(), MAX_SIZE)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e} (at most {} KiB)", MAX_SIZE >> 10))?;
    Ok((body.to_bytes(), Some(status), content_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers one request with `answer`; its PAC URL.
    async fn serve_once(answer: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/proxy.pac", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        });
        url
    }

    fn answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-ns-proxy-autoconfig\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_pac_url_is_read_on_200_and_any_other_status_is_an_error_that_describes_it() {
        let mut config = crate::cli::config::for_tests(&[]).unwrap();
        config.loopback_only = true;
        let script = "function FindProxyForURL(u, h) { return 'DIRECT'; }";
        let url = serve_once(answer("200 OK", script)).await;
        let (text, file) = fetch(&url, &config).await.unwrap();
        assert_eq!(
            (text.as_str(), file.status, file.size),
            (script, Some(200), script.len())
        );
        assert_eq!(
            file.text.as_deref(),
            Some(script),
            "kept for the session's proxy.pac"
        );
        let pac_type = file.content_type.as_deref();
        assert_eq!(pac_type, Some("application/x-ns-proxy-autoconfig"));
        let url = serve_once(answer("404 Not Found", "no")).await;
        let (e, file) = fetch(&url, &config).await.unwrap_err();
        assert!(e.0.contains("the server answered 404"), "{e}");
        assert_eq!(file.map(|f| f.status), Some(Some(404)));
    }

    #[test]
    fn a_pac_file_is_read_up_to_its_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.pac");
        std::fs::write(&path, vec![b'/'; MAX_SIZE]).unwrap();
        assert_eq!(read_file(path.to_str().unwrap()).unwrap().len(), MAX_SIZE);
        std::fs::write(&path, vec![b'/'; MAX_SIZE + 1]).unwrap();
        let e = read_file(path.to_str().unwrap()).unwrap_err();
        assert_eq!(e, "larger than 1024 KiB");
    }
}
