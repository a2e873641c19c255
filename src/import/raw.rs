//! The NetLog's JSON shapes as an import reads them: `constants`, one event, the
//! parameters it uses. Every field is read leniently — one of another shape (Chromium
//! reuses names across event types) is absent, not an error — and every other field is
//! skipped unparsed.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// `constants` as far as an import reads them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constants {
    #[serde(default)]
    pub log_event_types: HashMap<String, u32>,
    #[serde(default)]
    pub log_event_phase: HashMap<String, u32>,
    #[serde(default)]
    pub net_error: HashMap<String, i64>,
    #[serde(default)]
    pub cert_status_flag: HashMap<String, u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub log_capture_mode: Option<String>,
    /// Milliseconds to add to an event's `time` for wall-clock time.
    #[serde(default, deserialize_with = "lenient_number")]
    pub time_tick_offset: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub client_info: Option<ClientInfo>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClientInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// One event as written: numbers to be named through the constants. Every field is read
/// leniently, so an event of another shape (a future Chromium's) is ignored, not fatal.
#[derive(Debug, Deserialize)]
pub struct RawEvent {
    #[serde(default)]
    pub params: Params,
    #[serde(default, deserialize_with = "lenient")]
    pub phase: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub source: Option<RawSource>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub time: Option<f64>,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct RawSource {
    pub id: i64,
}

/// Another source an event points at.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Dependency {
    pub id: i64,
}

/// The parameters an import reads; every other one is skipped unparsed. Each is read
/// leniently: a field of another shape (Chromium reuses names) is absent, not an error.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default, deserialize_with = "lenient")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub net_error: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    pub headers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub certificates: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub cert_status: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub source_dependency: Option<Dependency>,
    #[serde(default, deserialize_with = "lenient")]
    pub proxy_info: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub proxy_chain: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub proxy_server: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub new_config: Option<NewConfig>,
    /// A PAC script's exception (`PAC_JAVASCRIPT_ERROR`) and its line.
    #[serde(default, deserialize_with = "lenient")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub line_number: Option<i64>,
    /// Raw bytes, base64 (socket reads and response bodies, in Everything mode).
    #[serde(default, deserialize_with = "lenient")]
    pub bytes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewConfig {
    #[serde(default, deserialize_with = "lenient")]
    pub pac_url: Option<String>,
}

/// A field read as `T` when it is one, else absent.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// A number, or a string holding one (Chromium writes times as strings).
fn lenient_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}
