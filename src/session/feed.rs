//! The live feed behind the live page's `/events`: every event the recorder writes, as its
//! `events.jsonl` line, numbered, kept in a bounded ring (so a page that connects late, or
//! reconnects with `Last-Event-ID`, gets what it missed) and broadcast to the connected
//! pages.
//!
//! The thread that records an event publishes it; it never waits for a page. A page that reads too
//! slowly falls more than [`LIVE_QUEUE`] events behind and is told so (`Lagged`, which the
//! stream turns into a `resync` event) instead of holding anything up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Events the ring keeps for pages that connect or reconnect, at most.
pub const RING_EVENTS: usize = 5_000;
/// Bytes of event lines the ring keeps, at most (whichever bound comes first).
pub const RING_BYTES: usize = 8 << 20;
/// Events a connected page may be behind before it loses some and is told to resync.
pub const LIVE_QUEUE: usize = 1_024;

/// One event as the pages get it: its number in the session (from 1) and its JSON line.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub json: Arc<str>,
}

/// The ring and the broadcast; one per session, shared by the recorder and the pages.
#[derive(Debug)]
pub struct Feed {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Item>,
}

#[derive(Debug, Default)]
struct Ring {
    items: VecDeque<Item>,
    /// Bytes of JSON in `items`, for [`RING_BYTES`].
    bytes: usize,
    /// The id the next event gets.
    next: u64,
}

/// What a page that (re)connects starts from.
#[derive(Debug)]
pub struct Subscription {
    /// Events it has not seen that the ring still holds, oldest first.
    pub backlog: Vec<Item>,
    /// Events it asked for that the ring no longer holds (it was away too long).
    pub missed: u64,
    /// Everything published after `backlog`.
    pub live: broadcast::Receiver<Item>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub fn new() -> Feed {
        let (live, _) = broadcast::channel(LIVE_QUEUE);
        Feed {
            ring: Mutex::new(Ring {
                next: 1,
                ..Ring::default()
            }),
            live,
        }
    }

    /// Adds one event's JSON line (without its newline); returns its id.
    pub fn publish(&self, json: &str) -> u64 {
        self.publish_shared(Arc::from(json))
    }

    /// [`Feed::publish`] of a line already shared (no copy).
    pub fn publish_shared(&self, json: Arc<str>) -> u64 {
        let mut ring = lock(&self.ring);
        let item = Item {
            id: ring.next,
            json,
        };
        ring.next += 1;
        ring.bytes += item.json.len();
        ring.items.push_back(item.clone());
        while ring.items.len() > RING_EVENTS || (ring.bytes > RING_BYTES && ring.items.len() > 1) {
            if let Some(old) = ring.items.pop_front() {
                ring.bytes -= old.json.len();
            }
        }
        // Sent under the ring's lock, so a subscriber's backlog and its live events never
        // overlap or leave a gap. No page connected: nothing to do.
        let _ = self.live.send(item.clone());
        item.id
    }

    /// Event `id`, while the ring still holds it.
    pub fn get(&self, id: u64) -> Option<Item> {
        let ring = lock(&self.ring);
        let oldest = ring.items.front()?.id;
        let at = usize::try_from(id.checked_sub(oldest)?).ok()?;
        ring.items.get(at).cloned()
    }

    /// Starts a page's stream after event `after` (`Last-Event-ID`), or with all the ring
    /// holds.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = lock(&self.ring);
        let live = self.live.subscribe();
        let after = after.unwrap_or(0);
        let oldest = ring.items.front().map_or(ring.next, |i| i.id);
        let backlog = ring
            .items
            .iter()
            .filter(|i| i.id > after)
            .cloned()
            .collect();
        let missed = match after {
            0 => 0,
            after => oldest.saturating_sub(after + 1),
        };
        Subscription {
            backlog,
            missed,
            live,
        }
    }
}

fn lock(ring: &Mutex<Ring>) -> std::sync::MutexGuard<'_, Ring> {
    match ring.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_page_gets_the_ring_and_a_returning_one_what_it_missed() {
        let feed = Feed::new();
        for n in 0..10 {
            feed.publish(&format!("{{\"n\":{n}}}"));
        }
        let all = feed.subscribe(None);
        assert_eq!(all.backlog.len(), 10);
        assert_eq!(all.backlog[0].id, 1);
        assert_eq!(all.missed, 0);
        let back = feed.subscribe(Some(7));
        let ids: Vec<u64> = back.backlog.iter().map(|i| i.id).collect();
        assert_eq!(ids, [8, 9, 10]);
        assert_eq!(back.missed, 0);
        assert!(feed.subscribe(Some(10)).backlog.is_empty());
        assert_eq!(feed.get(3).map(|i| i.json), Some(Arc::from("{\"n\":2}")));
        assert!(feed.get(0).is_none() && feed.get(11).is_none());
    }

    #[test]
    fn the_ring_is_bounded_and_says_how_much_a_page_missed() {
        let feed = Feed::new();
        for _ in 0..RING_EVENTS + 100 {
            feed.publish("{}");
        }
        let s = feed.subscribe(Some(50));
        assert_eq!(s.backlog.len(), RING_EVENTS);
        assert_eq!(s.backlog[0].id, 101);
        assert_eq!(s.missed, 50, "events 51..=100 are gone");
        let big = "x".repeat(RING_BYTES / 2 + 1);
        feed.publish(&big);
        feed.publish(&big);
        let s = feed.subscribe(None);
        assert_eq!(s.backlog.len(), 1, "two halves and a bit do not fit");
    }

    #[tokio::test]
    async fn live_events_follow_the_backlog_without_gap_or_repeat() {
        let feed = Feed::new();
        feed.publish("{\"a\":1}");
        let mut s = feed.subscribe(None);
        feed.publish("{\"a\":2}");
        assert_eq!(s.backlog.len(), 1);
        let next = s.live.recv().await.unwrap();
        assert_eq!((next.id, &*next.json), (2, "{\"a\":2}"));
    }

    #[tokio::test]
    async fn a_page_that_does_not_read_lags_and_never_blocks_the_writer() {
        let feed = Feed::new();
        let mut s = feed.subscribe(None);
        for _ in 0..LIVE_QUEUE * 3 {
            feed.publish("{}");
        }
        match s.live.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n as usize, LIVE_QUEUE * 2),
            other => panic!("{other:?}"),
        }
    }
}
