//! The PAC script's own thread: one QuickJS runtime (rquickjs) that evaluates
//! `FindProxyForURL` (or `FindProxyForURLEx`) for one lookup at a time, with the standard
//! helpers (`helpers.js`), DNS through diagproxy's resolver, a time limit per call and a
//! memory limit. The runtime is not `Send`, so it lives on this thread and lookups arrive
//! over a bounded queue.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::{CatchResultExt, Coerced, Context, Function, Runtime};
use tokio::sync::{mpsc, oneshot};

use super::PacError;
use crate::config::Config;
use crate::failure::Side;
use crate::upstream::resolve;

/// How long one call of the script (or its first evaluation) may run: Chromium's PAC
/// evaluation has no fixed limit, but a script that loops must not hold every lookup.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The script's heap: PAC files are a few KiB; this leaves room for big rule lists.
const MEMORY_LIMIT: usize = 64 << 20;
/// Lookups waiting for the thread; more wait for a place (each waits at most
/// [`QUEUE_WAIT`]).
pub const QUEUE: usize = 64;
/// How long a lookup waits for its answer, queue included.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Names `dnsResolve` remembers, each for [`DNS_TTL`]; a full cache starts again empty.
const DNS_CACHE: usize = 256;
const DNS_TTL: Duration = Duration::from_secs(60);

/// One lookup for the thread.
pub struct Job {
    pub url: String,
    pub host: String,
    pub reply: oneshot::Sender<Result<Answer, PacError>>,
}

/// What the script answered, and the helper calls it made (the first 64).
#[derive(Debug, Clone)]
pub struct Answer {
    pub result: String,
    pub calls: Vec<String>,
}

/// Starts the thread; the script is evaluated before this returns, so a syntax error or a
/// script without `FindProxyForURL` is an error here.
pub async fn start(script: String, config: Config) -> Result<mpsc::Sender<Job>, PacError> {
    let (jobs, queue) = mpsc::channel(QUEUE);
    let (ready, started) = oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("pac".into())
        .spawn(move || serve(&script, Dns::new(config, handle), ready, queue))
        .map_err(|e| PacError(format!("cannot start the PAC thread: {e}")))?;
    match started.await {
        Ok(Ok(())) => Ok(jobs),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(PacError("the PAC thread stopped while starting".into())),
    }
}

/// The thread: set up the runtime, evaluate the script, then answer lookups until every
/// sender is gone.
fn serve(
    script: &str,
    dns: Dns,
    ready: oneshot::Sender<Result<(), PacError>>,
    mut queue: mpsc::Receiver<Job>,
) {
    let deadline = Rc::new(Cell::new(None::<Instant>));
    let calls = Rc::new(RefCell::new(Vec::new()));
    let set_up = Script::new(script, Rc::new(dns), deadline.clone(), calls.clone());
    let script = match set_up {
        Ok(script) => {
            let _ = ready.send(Ok(()));
            script
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Some(job) = queue.blocking_recv() {
        let answer = script.find(&job.url, &job.host);
        let _ = job.reply.send(answer);
    }
}

/// The runtime, its context and what the natives share with the thread.
struct Script {
    // Dropped after `context` (fields drop in order).
    context: Context,
    _runtime: Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
    calls: Rc<RefCell<Vec<String>>>,
    /// `FindProxyForURLEx` when the script defines it (Microsoft's IPv6-aware entry point).
    entry: &'static str,
}

impl Script {
    fn new(
        source: &str,
        dns: Rc<Dns>,
        deadline: Rc<Cell<Option<Instant>>>,
        calls: Rc<RefCell<Vec<String>>>,
    ) -> Result<Script, PacError> {
        let err = |e: rquickjs::Error| PacError(format!("JavaScript engine: {e}"));
        let runtime = Runtime::new().map_err(err)?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|d| Instant::now() > d)
        })));
        let context = Context::full(&runtime).map_err(err)?;
        let entry = context.with(|ctx| -> Result<&'static str, PacError> {
            install_natives(&ctx, dns, calls.clone()).map_err(err)?;
            ctx.eval::<(), _>(include_str!("helpers.js"))
                .catch(&ctx)
                .map_err(|e| PacError(format!("PAC helpers: {e}")))?;
            deadline.set(Some(Instant::now() + TIME_LIMIT));
            let evaluated = ctx.eval::<(), _>(source).catch(&ctx);
            deadline.set(None);
            evaluated.map_err(|e| PacError(format!("the PAC script does not run: {e}")))?;
            let globals = ctx.globals();
            let defined = |name: &str| globals.get::<_, Function>(name).is_ok();
            match (defined("FindProxyForURLEx"), defined("FindProxyForURL")) {
                (true, _) => Ok("FindProxyForURLEx"),
                (false, true) => Ok("FindProxyForURL"),
                _ => Err(PacError(
                    "the PAC script defines no FindProxyForURL function".into(),
                )),
            }
        })?;
        Ok(Script {
            context,
            _runtime: runtime,
            deadline,
            calls,
            entry,
        })
    }

    /// Calls the entry point for one URL, within [`TIME_LIMIT`].
    fn find(&self, url: &str, host: &str) -> Result<Answer, PacError> {
        self.calls.borrow_mut().clear();
        self.deadline.set(Some(Instant::now() + TIME_LIMIT));
        let result = self.context.with(|ctx| {
            let globals = ctx.globals();
            let _ = globals.set("__recorded", 0);
            let entry: Function = globals
                .get(self.entry)
                .map_err(|e| PacError(format!("{}: {e}", self.entry)))?;
            let called = entry
                .call::<_, Coerced<String>>((url, host))
                .catch(&ctx)
                .map_err(|e| {
                    let why = e.to_string();
                    if self.deadline.get().is_some_and(|d| Instant::now() > d) {
                        PacError(format!(
                            "{}({url:?}, {host:?}) ran longer than {TIME_LIMIT:?} and was stopped",
                            self.entry
                        ))
                    } else {
                        PacError(format!("{}({url:?}, {host:?}): {why}", self.entry))
                    }
                })?;
            Ok(called.0)
        });
        self.deadline.set(None);
        result.map(|result| Answer {
            result,
            calls: std::mem::take(&mut *self.calls.borrow_mut()),
        })
    }
}

/// `dnsResolve`, `dnsResolveEx`, `myIpAddress`, `myIpAddressEx`, and `__record` (the
/// helper-call trace).
fn install_natives(
    ctx: &rquickjs::Ctx<'_>,
    dns: Rc<Dns>,
    calls: Rc<RefCell<Vec<String>>>,
) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    let d = dns.clone();
    globals.set(
        "dnsResolve",
        Function::new(ctx.clone(), move |host: Coerced<String>| {
            d.lookup(&host.0).into_iter().find(IpAddr::is_ipv4).map(|ip| ip.to_string())
        })?,
    )?;
    let d = dns.clone();
    globals.set(
        "dnsResolveEx",
        Function::new(ctx.clone(), move |host: Coerced<String>| {
            join(&d.lookup(&host.0))
        })?,
    )?;
    let mine = Rc::new(my_addresses(dns.config.loopback_only));
    let m = mine.clone();
    globals.set(
        "myIpAddress",
        Function::new(ctx.clone(), move || {
            m.iter()
                .find(|ip| ip.is_ipv4())
                .map_or("127.0.0.1".to_string(), IpAddr::to_string)
        })?,
    )?;
    globals.set(
        "myIpAddressEx",
        Function::new(ctx.clone(), move || join(&mine))?,
    )?;
    globals.set(
        "__record",
        Function::new(ctx.clone(), move |line: Coerced<String>| {
            calls.borrow_mut().push(line.0);
        })?,
    )?;
    Ok(())
}

fn join(ips: &[IpAddr]) -> String {
    let text: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    text.join(";")
}

/// DNS for the script: `--resolve` pins (for any port) first, then diagproxy's resolver,
/// remembered for a minute.
struct Dns {
    config: Config,
    handle: tokio::runtime::Handle,
    cache: RefCell<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

impl Dns {
    fn new(config: Config, handle: tokio::runtime::Handle) -> Dns {
        Dns {
            config,
            handle,
            cache: RefCell::new(HashMap::new()),
        }
    }

    fn lookup(&self, host: &str) -> Vec<IpAddr> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some((at, ips)) = self.cache.borrow().get(&host) {
            if at.elapsed() < DNS_TTL {
                return ips.clone();
            }
        }
        let ips = self.ask(&host);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= DNS_CACHE {
            cache.clear();
        }
        cache.insert(host, (Instant::now(), ips.clone()));
        ips
    }

    fn ask(&self, host: &str) -> Vec<IpAddr> {
        if let Some(ip) = resolve::pinned_any_port(&self.config, host) {
            return vec![ip];
        }
        let looked_up = self
            .handle
            .block_on(resolve::resolve(host, 0, &self.config, Side::Upstream));
        looked_up.map_or(Vec::new(), |(addrs, _)| {
            addrs.iter().map(|a| a.ip()).collect()
        })
    }
}

/// This machine's addresses as `myIpAddress` should see them (Chromium's rule): the
/// address of the interface that routes to the internet — never loopback or link-local
/// where another exists — then the other interfaces' addresses, IPv4 first.
pub fn my_addresses(loopback_only: bool) -> Vec<IpAddr> {
    let mut out = Vec::new();
    if !loopback_only {
        // A UDP "connect" sends nothing; it only asks the kernel which source address
        // the route to a public address would use.
        let routed = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("8.8.8.8:53").map(|()| s))
            .and_then(|s| s.local_addr());
        if let Ok(addr) = routed {
            out.push(addr.ip());
        }
    }
    let mut others: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .collect();
    others.sort_by_key(|ip| !ip.is_ipv4());
    out.extend(others);
    let usable = |ip: &IpAddr| !ip.is_loopback() && !ip.is_unspecified() && !link_local(ip);
    let mut seen = Vec::new();
    for ip in out.into_iter().filter(usable) {
        if !seen.contains(&ip) {
            seen.push(ip);
        }
    }
    if seen.is_empty() {
        seen.push(IpAddr::from([127, 0, 0, 1]));
    }
    seen
}

fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}
