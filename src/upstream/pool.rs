//! Idle keep-alive HTTP/1.1 connections to upstreams (origins, or the corporate proxy), so a
//! browser's keep-alive is matched by ours.

use std::collections::HashMap;
use std::sync::Mutex;

use hyper::client::conn::http1::SendRequest;

/// Where a pooled connection goes: the TCP peer (origin or corporate proxy).
pub type PoolKey = (String, u16);

/// At most this many idle connections are kept per peer.
const MAX_IDLE_PER_PEER: usize = 32;

/// Idle senders per peer; `B` is the request body type of the caller.
#[derive(Debug)]
pub struct Pool<B> {
    idle: Mutex<HashMap<PoolKey, Vec<SendRequest<B>>>>,
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            idle: Mutex::default(),
        }
    }
}

impl<B> Pool<B> {
    /// An idle connection to `key` that is still open, if any.
    pub fn take(&self, key: &PoolKey) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some(sender) = list.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose exchange finished cleanly.
    pub fn put(&self, key: PoolKey, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            list.retain(|s| !s.is_closed());
            if list.len() < MAX_IDLE_PER_PEER {
                list.push(sender);
            }
        }
    }
}
