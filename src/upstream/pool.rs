//! Idle keep-alive HTTP/1.1 connections to upstreams (origins, or the corporate proxy), so a
//! browser's keep-alive is matched by ours. Bounded three ways: connections per peer, peers,
//! and how long a connection may sit idle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

/// Where a pooled connection goes: the TCP peer (origin or corporate proxy).
pub type PoolKey = (String, u16);

/// At most this many idle connections are kept per peer.
const MAX_IDLE_PER_PEER: usize = 32;
/// At most this many peers have idle connections; a new one beyond it is not pooled.
const MAX_PEERS: usize = 256;
/// An idle connection older than this is closed instead of reused (origins close theirs
/// after 5 to 120 s; one that is probably closed costs a failed send).
pub const IDLE: Duration = Duration::from_secs(60);

/// An idle connection and since when it has been idle.
type Idle<B> = (SendRequest<B>, Instant);

/// Idle senders per peer; `B` is the request body type of the caller.
#[derive(Debug)]
pub struct Pool<B> {
    idle: Mutex<HashMap<PoolKey, Vec<Idle<B>>>>,
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            idle: Mutex::default(),
        }
    }
}

impl<B> Pool<B> {
    /// An idle connection to `key` that is still open and not too old, if any.
    pub fn take(&self, key: &PoolKey) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some((sender, since)) = list.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE {
                found = Some(sender);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Returns a connection whose exchange finished cleanly.
    pub fn put(&self, key: PoolKey, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if !idle.contains_key(&key) && idle.len() >= MAX_PEERS {
            // Make room from peers whose connections have all aged or closed.
            idle.retain(|_, list| {
                list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE);
                !list.is_empty()
            });
            if idle.len() >= MAX_PEERS {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE);
        if list.len() < MAX_IDLE_PER_PEER {
            list.push((sender, Instant::now()));
        }
    }
}
