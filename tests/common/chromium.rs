//! A headless Chromium driven over the DevTools protocol (a WebSocket, `tungstenite`): open a
//! page, evaluate JavaScript in it, wait for a condition, take a screenshot. Blocking calls:
//! use from a multi-thread runtime inside `block_in_place`, or from a plain thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Browser {
    child: Killed,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    /// The browser's temporary profile, removed with it.
    _profile: tempfile::TempDir,
}

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
        let profile = tempfile::tempdir().unwrap();
        let mut child = command(profile.path())
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
            _profile: profile,
        }
    }

    /// Sends one DevTools command and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let msg = self.ws.read().expect("devtools answer");
            let Ok(text) = msg.to_text() else { continue };
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
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
