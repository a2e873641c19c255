//! What signing in to a corporate proxy costs a new tunnel: [`CONNECTIONS`] tunnels opened
//! one after another through `--auth-proxy` to the bench's origin, each on a new connection
//! (a `407`, the token, the `200`), as `run` opens them. The whole set-up and the sign-in
//! part of it (first `407` to the final answer, from the event's record) are two rows.

use std::time::{Duration, Instant};

use super::pac::row;
use super::world::World;
use super::Row;
use crate::config::Config;
use crate::upstream::auth::Outcome;
use crate::upstream::dial;
use crate::upstream::route::UpstreamProxy;

/// Tunnels opened (after one to warm the ticket cache and the proxy's helpers).
const CONNECTIONS: usize = 100;

pub async fn rows(
    world: &World,
    config: &Config,
    proxy: &UpstreamProxy,
) -> Result<Vec<Row>, String> {
    let target = ("127.0.0.1", world.http.port());
    let mut whole = Vec::with_capacity(CONNECTIONS);
    let mut signing = Vec::with_capacity(CONNECTIONS);
    let mut scheme = String::new();
    for i in 0..=CONNECTIONS {
        let mut record = None;
        let started = Instant::now();
        let opened = dial::through(proxy, target.0, target.1, config, &mut record).await;
        let took = started.elapsed();
        opened.map_err(|f| format!("--auth-proxy {}: {}", proxy.display(), f.detail))?;
        let Some(record) = record else {
            return Err(format!(
                "--auth-proxy {}: the proxy did not ask for a sign-in (no 407)",
                proxy.display()
            ));
        };
        if record.outcome != Outcome::Ok {
            return Err(format!("--auth-proxy: {}", record.line()));
        }
        if i == 0 {
            scheme = record.scheme.unwrap_or_default();
            continue;
        }
        whole.push(took);
        signing.push(Duration::from_secs_f64(record.ms / 1000.0));
    }
    Ok(vec![
        row(
            &format!("new tunnel through a proxy with {scheme}: all of it"),
            whole,
        ),
        row("  of which signing in (407 to 200)", signing),
    ])
}
