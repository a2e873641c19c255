//! A headless Chromium driven over the DevTools protocol (a WebSocket, `tungstenite`): open a
//! page, evaluate JavaScript in it, wait for a condition, take a screenshot, record its
//! network events and write them as the HAR DevTools would export. Blocking calls: use from a
//! multi-thread runtime inside `block_in_place`, or from a plain thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Browser {
    child: Killed,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    /// DevTools events (messages without an id) read so far, oldest first; at most
    /// [`MAX_EVENTS`] are kept (a test page makes tens).
    events: Vec<Value>,
    /// The browser's temporary profile, removed with it.
    _profile: tempfile::TempDir,
}

/// The bound on recorded DevTools events.
const MAX_EVENTS: usize = 10_000;

/// The flags every test browser gets: headless, no sandbox (CI runs as root), nothing that
/// talks to Google, a DevTools port the OS picks.
pub fn command(profile: &std::path::Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--remote-debugging-port=0",
        "--window-size=1400,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

impl Browser {
    /// Starts Chromium on `url` with `extra` flags and attaches to its page.
    pub fn open(url: &str, extra: &[&str]) -> Browser {
        Browser::open_in(url, extra, None)
    }

    /// As [`Browser::open`], with `HOME` set to `home` (where Chromium on Linux finds the NSS
    /// database it trusts).
    pub fn open_in(url: &str, extra: &[&str], home: Option<&std::path::Path>) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = command(profile.path());
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
        let mut child = cmd
            .args(extra)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take();
        // From here a panic (no DevTools, no page) still ends the browser.
        let child = Killed(child);
        let port = devtools_port(stderr);
        let ws_url = page_socket(port, url);
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("attach to the page");
        Browser {
            child,
            ws,
            next: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends one DevTools command and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let answer = self.answer(method, params);
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends one DevTools command and returns its whole answer (`result` or `error`).
    fn answer(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).unwrap();
        loop {
            let msg = self.ws.read().expect("devtools answer");
            let Some(value) = self.keep(msg) else {
                continue;
            };
            if value["id"] == id {
                return value;
            }
        }
    }

    /// Sends one DevTools command without waiting; its id.
    fn send(&mut self, method: &str, params: Value) -> tungstenite::Result<u64> {
        let id = self.next;
        self.next += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg))?;
        Ok(id)
    }

    /// Parses one message; an event is kept in `events`, an answer is returned. A request
    /// paused by `Fetch` is let go; a proxy's or site's request for credentials is cancelled,
    /// as a user closing the sign-in dialog does.
    fn keep(&mut self, msg: tungstenite::Message) -> Option<Value> {
        let value: Value = serde_json::from_str(msg.to_text().ok()?).ok()?;
        let paused = &value["params"]["requestId"];
        let answer = match value["method"].as_str() {
            Some("Fetch.requestPaused") => {
                Some(("Fetch.continueRequest", json!({"requestId": paused})))
            }
            Some("Fetch.authRequired") => Some((
                "Fetch.continueWithAuth",
                json!({"requestId": paused, "authChallengeResponse": {"response": "CancelAuth"}}),
            )),
            _ => None,
        };
        if let Some((method, params)) = answer {
            let _ = self.send(method, params);
        }
        if value["id"].is_null() && value["method"].is_string() {
            if self.events.len() < MAX_EVENTS {
                self.events.push(value);
            }
            return None;
        }
        Some(value)
    }

    /// Reads events until one satisfies `done` or `within` passes; whether one did.
    pub fn wait_event(&mut self, within: Duration, done: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let tick = Some(Duration::from_millis(100));
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            let _ = s.set_read_timeout(tick);
        }
        let mut seen = self.events.iter().any(&done);
        while !seen && Instant::now() < deadline {
            match self.ws.read() {
                Ok(msg) => {
                    let _ = self.keep(msg);
                    seen = self.events.last().is_some_and(&done);
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            let _ = s.set_read_timeout(None);
        }
        seen
    }

    /// Loads `url` with the network recorded and returns once the page's own request ended
    /// (loaded or failed) and `settle` more has passed for what it pulled in.
    pub fn navigate_recorded(&mut self, url: &str, settle: Duration) {
        self.call("Network.enable", json!({}));
        self.call("Page.enable", json!({}));
        self.call("Fetch.enable", json!({"handleAuthRequests": true}));
        self.call("Page.navigate", json!({"url": url}));
        let document = |e: &Value| {
            e["method"] == "Network.requestWillBeSent" && e["params"]["type"] == "Document"
        };
        self.wait_event(Duration::from_secs(30), document);
        let id = self
            .events
            .iter()
            .find(|e| document(e))
            .map(|e| e["params"]["requestId"].clone());
        let ended = |e: &Value| {
            let m = e["method"].as_str().unwrap_or("");
            (m == "Network.loadingFinished" || m == "Network.loadingFailed")
                && id
                    .as_ref()
                    .is_some_and(|id| e["params"]["requestId"] == *id)
        };
        self.wait_event(Duration::from_secs(30), ended);
        self.wait_event(settle, |_| false);
    }

    /// The recorded requests as DevTools' "Export HAR (with content)" writes them: failed
    /// requests kept with `response._error`, bodies of finished ones, and Playwright's
    /// `_securityDetails` (both are built from these same events).
    pub fn har(&mut self) -> Value {
        let events = self.events.clone();
        let mut entries: Vec<(String, Value)> = Vec::new();
        for event in &events {
            let p = &event["params"];
            let id = p["requestId"].as_str().unwrap_or("").to_string();
            let method = event["method"].as_str().unwrap_or("");
            if method == "Network.requestWillBeSent" {
                entries.push((id, har_entry(p)));
                continue;
            }
            let body = (method == "Network.loadingFinished").then(|| self.body(&id));
            // The latest entry of that request (a redirect reuses the id).
            let Some((_, entry)) = entries.iter_mut().rev().find(|(i, _)| *i == id) else {
                continue;
            };
            match method {
                "Network.responseReceived" => har_response(entry, &p["response"]),
                "Network.loadingFailed" => entry["response"]["_error"] = p["errorText"].clone(),
                _ => {
                    if let Some(body) = body {
                        entry["response"]["content"] = body;
                    }
                }
            }
        }
        json!({"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
            "pages": [], "entries": entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>()}})
    }

    /// A finished request's body as HAR `content` (empty when DevTools no longer has it).
    fn body(&mut self, id: &str) -> Value {
        let answer = self.answer("Network.getResponseBody", json!({"requestId": id}));
        let r = &answer["result"];
        let encoding = if r["base64Encoded"] == true {
            json!("base64")
        } else {
            Value::Null
        };
        json!({"size": r["body"].as_str().map_or(0, str::len), "mimeType": "",
            "text": r["body"], "encoding": encoding})
    }

    /// Asks the browser to close (so a `--log-net-log` file is finished) and waits up to
    /// 30 s for it to exit; killed after that.
    pub fn close(mut self) {
        let _ = self.send("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expr}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expr` until it is `true` or `within` passes; returns whether it became true.
    pub fn wait_for(&mut self, expr: &str, within: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.eval(expr) == Value::Bool(true) {
                return true;
            }
            if start.elapsed() > within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A PNG of the page as it is.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or(""))
            .unwrap()
    }
}

/// A HAR entry from `Network.requestWillBeSent`; the response is filled in later.
fn har_entry(p: &Value) -> Value {
    let request = &p["request"];
    let wall = p["wallTime"].as_f64().unwrap_or(0.0);
    let started = time::OffsetDateTime::from_unix_timestamp_nanos((wall * 1e9) as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    json!({
        "startedDateTime": started,
        "_resourceType": p["type"],
        "request": {"method": request["method"], "url": request["url"], "httpVersion": "",
            "headers": har_headers(&request["headers"]), "queryString": [], "cookies": [],
            "headersSize": -1, "bodySize": 0},
        "response": {"status": 0, "statusText": "", "httpVersion": "", "headers": [],
            "cookies": [], "content": {"size": 0, "mimeType": ""}, "redirectURL": "",
            "headersSize": -1, "bodySize": -1, "_transferSize": 0, "_error": null},
        "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}, "time": 0,
    })
}

fn har_response(entry: &mut Value, response: &Value) {
    entry["response"]["status"] = response["status"].clone();
    entry["response"]["statusText"] = response["statusText"].clone();
    entry["response"]["httpVersion"] = response["protocol"].clone();
    entry["response"]["headers"] = har_headers(&response["headers"]);
    entry["serverIPAddress"] = response["remoteIPAddress"].clone();
    let details = &response["securityDetails"];
    if details.is_object() {
        entry["_securityDetails"] = json!({"protocol": details["protocol"],
            "subjectName": details["subjectName"], "issuer": details["issuer"],
            "validFrom": details["validFrom"], "validTo": details["validTo"]});
    }
}

/// DevTools' header object as HAR's name/value list.
fn har_headers(headers: &Value) -> Value {
    let list: Vec<Value> = headers
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect()
        })
        .unwrap_or_default();
    Value::Array(list)
}

/// The browser process, killed and reaped when dropped (also while a test unwinds).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads Chromium's stderr until it says where DevTools listens; keeps draining it after.
fn devtools_port(stderr: Option<std::process::ChildStderr>) -> u16 {
    let stderr = stderr.expect("chromium's stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                let port: u16 = rest.split('/').next().unwrap_or("").parse().unwrap_or(0);
                let _ = tx.send(port);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("chromium says where DevTools listens")
}

/// The WebSocket of the page showing `url` (its first tab).
fn page_socket(port: u16, url: &str) -> String {
    let start = Instant::now();
    loop {
        let list = http_get(port, "/json/list");
        let pages: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
        let found = pages.as_array().and_then(|pages| {
            pages
                .iter()
                .find(|p| {
                    p["type"] == "page"
                        && p["url"].as_str().is_some_and(|u| {
                            u.starts_with(url) || url.starts_with(u.trim_end_matches('/'))
                        })
                })
                .or_else(|| pages.iter().find(|p| p["type"] == "page"))
                .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_string))
        });
        if let Some(ws) = found {
            return ws;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no page in {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string())
}
