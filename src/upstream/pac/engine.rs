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

use super::{Answer, Job, PacError};
use crate::config::Config;
use crate::failure::Side;
use crate::text::clip;
use crate::upstream::resolve;

/// How long one call of the script (or its first evaluation) may run: Chromium's PAC
/// evaluation has no fixed limit, but a script that loops must not hold every lookup.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The longest answer read from the script: 32 proxies need about 1 KiB; a longer answer
/// is a `pac_error` (a hostile script would fill the session files).
pub const MAX_ANSWER: usize = 4096;
/// The most of an exception's message (or a URL or host in it) kept.
pub const MAX_EXCEPTION: usize = 512;
/// The script's heap: PAC files are a few KiB; this leaves room for big rule lists.
const MEMORY_LIMIT: usize = 64 << 20;
/// Lookups waiting for the thread; more wait for a place (each waits at most
/// [`super::QUEUE_WAIT`]).
pub const QUEUE: usize = 64;
/// Names `dnsResolve` remembers, each for [`DNS_TTL`]; a full cache starts again empty.
const DNS_CACHE: usize = 256;
const DNS_TTL: Duration = Duration::from_secs(60);
/// How long one `dnsResolve` may wait for DNS: the script's time limit cannot stop a call
/// that waits in Rust, so this one does (an answer that does not come is `null`).
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

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
        let answer = script.find(&job.url, &job.host, job.trace);
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
    fn find(&self, url: &str, host: &str, trace: bool) -> Result<Answer, PacError> {
        self.calls.borrow_mut().clear();
        self.deadline.set(Some(Instant::now() + TIME_LIMIT));
        let result = self.context.with(|ctx| {
            let globals = ctx.globals();
            // The wrappers record while `__recorded` is under 64.
            let _ = globals.set("__recorded", if trace { 0 } else { 64 });
            let entry: Function = globals
                .get(self.entry)
                .map_err(|e| PacError(format!("{}: {e}", self.entry)))?;
            let called = entry
                .call::<_, Coerced<String>>((url, host))
                .catch(&ctx)
                .map_err(|e| {
                    let why = e.to_string();
                    let (url, host) = (clip(url, MAX_EXCEPTION), clip(host, MAX_EXCEPTION));
                    if self.deadline.get().is_some_and(|d| Instant::now() > d) {
                        PacError(format!(
                            "{}({url:?}, {host:?}) ran longer than {TIME_LIMIT:?} and was stopped",
                            self.entry
                        ))
                    } else {
                        let why = clip(&why, MAX_EXCEPTION);
                        PacError(format!("{}({url:?}, {host:?}): {why}", self.entry))
                    }
                })?;
            if called.0.len() > MAX_ANSWER {
                return Err(PacError(format!(
                    "{}({:?}) answered {} bytes; more than {MAX_ANSWER} is not a proxy list",
                    self.entry,
                    clip(url, MAX_EXCEPTION),
                    called.0.len()
                )));
            }
            Ok(called.0)
        });
        self.deadline.set(None);
        result.map(|result| Answer {
            result,
            calls: std::mem::take(&mut *self.calls.borrow_mut()),
        })
    }
}

/// `__dnsResolve` (wrapped by `dnsResolve`, which answers `null` for ""), `dnsResolveEx`,
/// `myIpAddress`, `myIpAddressEx`, and `__record` (the helper-call trace).
fn install_natives(
    ctx: &rquickjs::Ctx<'_>,
    dns: Rc<Dns>,
    calls: Rc<RefCell<Vec<String>>>,
) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    let d = dns.clone();
    globals.set(
        "__dnsResolve",
        Function::new(ctx.clone(), move |host: Coerced<String>| {
            let ips = d.lookup(&host.0);
            ips.into_iter()
                .find(IpAddr::is_ipv4)
                .map_or(String::new(), |ip| ip.to_string())
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
        let lookup = resolve::resolve(host, 0, &self.config, Side::Upstream);
        let looked_up = self
            .handle
            .block_on(async { tokio::time::timeout(DNS_TIMEOUT, lookup).await });
        match looked_up {
            Ok(Ok((addrs, _))) => addrs.iter().map(|a| a.ip()).collect(),
            _ => Vec::new(),
        }
    }
}

/// This machine's addresses as `myIpAddress` should see them (Chromium's rule): the
/// address of the interface that routes to the internet — never loopback or link-local
/// where another exists — then the other interfaces' addresses, IPv4 first.
pub fn my_addresses(loopback_only: bool) -> Vec<IpAddr> {
    // A UDP "connect" sends nothing; it only asks the kernel which source address the
    // route to a public address would use.
    let routed = (!loopback_only)
        .then(|| {
            std::net::UdpSocket::bind("0.0.0.0:0")
                .and_then(|s| s.connect("8.8.8.8:53").map(|()| s))
                .and_then(|s| s.local_addr())
                .ok()
        })
        .flatten();
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    chosen_addresses(
        routed.map(|a| a.ip()),
        interfaces.into_iter().map(|i| i.ip()).collect(),
    )
}

/// [`my_addresses`]' rule on what the machine said: the routed address first, then the
/// interfaces' (IPv4 first), each once, without loopback, unspecified or link-local ones;
/// 127.0.0.1 when nothing else is left.
fn chosen_addresses(routed: Option<IpAddr>, mut others: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = routed.into_iter().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn script(source: &str) -> Result<mpsc::Sender<Job>, PacError> {
        let mut config = crate::cli::config::for_tests(&["--resolve", "pinned.test:443:10.1.2.3"])
            .expect("config");
        config.loopback_only = true;
        start(source.to_string(), config).await
    }

    async fn find(jobs: &mpsc::Sender<Job>, url: &str, host: &str) -> Result<Answer, PacError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            url: url.into(),
            host: host.into(),
            trace: true,
            reply,
        };
        jobs.send(job)
            .await
            .map_err(|_| PacError("stopped".into()))?;
        answer.await.map_err(|_| PacError("stopped".into()))?
    }

    /// Each check is `true` when the helper behaves as the Netscape/Microsoft definitions
    /// say; the script answers the indexes of those that are not.
    const CHECKS: &str = r#"
    function FindProxyForURL(url, host) {
      var r = [
        isPlainHostName("www"), !isPlainHostName("www.example.com"),
        dnsDomainIs("www.example.com", ".example.com"), !dnsDomainIs("www", ".example.com"),
        localHostOrDomainIs("www.example.com", "www.example.com"),
        localHostOrDomainIs("www", "www.example.com"),
        !localHostOrDomainIs("www.other.com", "www.example.com"),
        isResolvable("pinned.test"), !isResolvable("nothing.invalid"),
        dnsResolve("pinned.test") === "10.1.2.3", dnsResolve("nothing.invalid") === null,
        isInNet("pinned.test", "10.1.0.0", "255.255.0.0"),
        !isInNet("10.2.3.4", "10.1.0.0", "255.255.0.0"),
        isInNet("198.95.249.79", "198.95.249.79", "255.255.255.255"),
        isInNet("200.1.2.3", "200.0.0.0", "255.0.0.0"), !isInNet("nothing.invalid", "0.0.0.0", "0.0.0.0"),
        dnsDomainLevels("www") === 0, dnsDomainLevels("www.example.com") === 2,
        shExpMatch("http://home.example.com/people/ari/index.html", "*/ari/*"),
        !shExpMatch("http://home.example.com/people/montulli/index.html", "*/ari/*"),
        shExpMatch("a.b", "a?b"), !shExpMatch("axb", "a.b"), shExpMatch("x.chatgpt.com", "*.chatgpt.com"),
        isInNetEx("10.1.2.3", "10.1.0.0/16"), isInNetEx("fd00::1", "fd00::/8"),
        !isInNetEx("fe00::1", "fd00::/8"), isInNetEx("pinned.test", "10.0.0.0/8"),
        isInNetEx("::ffff:1.2.3.4", "::ffff:1.2.0.0/112"),
        sortIpAddressList("10.2.3.9;::1;10.2.3.1") === "::1;10.2.3.1;10.2.3.9",
        sortIpAddressList("nonsense") === false,
        dnsResolveEx("pinned.test") === "10.1.2.3", isResolvableEx("pinned.test"),
        myIpAddress() !== "", myIpAddressEx().length > 0,
        weekdayRange("SUN", "SAT"), weekdayRange("SAT", "FRI", "GMT"),
        dateRange(1, 31), dateRange("JAN", "DEC"), !dateRange(1995), !dateRange("JAN", 2000, "DEC", 2001),
        dateRange(1, "JAN", 2000, 31, "DEC", 2999),
        timeRange(0, 23), timeRange(0, 0, 0, 23, 59, 59, "GMT"), !timeRange("x"),
        getClientVersion() === "1.0"
      ];
      var bad = [];
      for (var i = 0; i < r.length; i++) if (r[i] !== true) bad.push(i);
      return bad.length ? "FAIL " + bad.join(",") : "DIRECT";
    }"#;

    #[tokio::test(flavor = "multi_thread")]
    async fn every_helper_behaves_as_defined() {
        let jobs = script(CHECKS).await.expect("script starts");
        let answer = find(&jobs, "https://chatgpt.com/", "chatgpt.com")
            .await
            .expect("answer");
        assert_eq!(answer.result, "DIRECT");
        assert_eq!(answer.calls[0], r#"isPlainHostName("www") = true"#);
        assert!(answer
            .calls
            .contains(&r#"dnsResolve("pinned.test") = "10.1.2.3""#.to_string()));
        let jobs = script(
            "function FindProxyForURL(u, h) { for (var i = 0; i < 100; i++) isPlainHostName(h); return ''; }",
        )
        .await
        .unwrap();
        let answer = find(&jobs, "https://x/", "x").await.unwrap();
        assert_eq!(answer.calls.len(), 64, "the trace keeps the first 64 calls");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn ex_is_preferred_and_results_are_strings() {
        let jobs = script(
            "function FindProxyForURL(u, h) { return 'PROXY a:1'; }\n\
             function FindProxyForURLEx(u, h) { return 'PROXY ex:1; DIRECT'; }",
        )
        .await
        .expect("script starts");
        let answer = find(&jobs, "https://x/", "x").await.expect("answer");
        assert_eq!(answer.result, "PROXY ex:1; DIRECT");
        let jobs = script("function FindProxyForURL(u, h) { return 42; }")
            .await
            .unwrap();
        assert_eq!(find(&jobs, "https://x/", "x").await.unwrap().result, "42");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn broken_scripts_are_named() {
        let e = script("function FindProxyForURL(u, h) { return 'DIRECT' ")
            .await
            .unwrap_err();
        assert!(e.0.contains("does not run"), "{e}");
        let e = script("var x = 1;").await.unwrap_err();
        assert!(e.0.contains("no FindProxyForURL"), "{e}");
        let jobs = script("function FindProxyForURL(u, h) { throw new Error('boom ' + h); }")
            .await
            .unwrap();
        let e = find(&jobs, "https://x/", "x").await.unwrap_err();
        assert!(e.0.contains("boom x"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_script_that_loops_is_stopped_and_the_next_lookup_still_runs() {
        let jobs = script(
            "function FindProxyForURL(u, h) { if (h == 'loop') { while (true) {} } return 'DIRECT'; }",
        )
        .await
        .unwrap();
        let started = Instant::now();
        let e = find(&jobs, "https://loop/", "loop").await.unwrap_err();
        assert!(e.0.contains("ran longer than 5s"), "{e}");
        assert!(started.elapsed() >= TIME_LIMIT);
        assert_eq!(
            find(&jobs, "https://ok/", "ok").await.unwrap().result,
            "DIRECT"
        );
    }

    /// The heap is bounded: a script that builds a string larger than [`MEMORY_LIMIT`] gets
    /// an exception (a `pac_error`), not the machine's memory; the same script under the
    /// limit answers.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_scripts_heap_is_bounded() {
        let jobs = script(
            "function FindProxyForURL(u, h) { var s = 'x'.repeat(h == 'big' ? 96 << 20 : 1 << 20); \
             return s.length > 0 ? 'DIRECT' : ''; }",
        )
        .await
        .unwrap();
        let e = find(&jobs, "https://big/", "big").await.unwrap_err();
        assert!(e.0.contains("memory"), "{e}");
        assert_eq!(
            find(&jobs, "https://small/", "small").await.unwrap().result,
            "DIRECT"
        );
    }

    /// An answer of exactly [`MAX_ANSWER`] bytes is read; one byte more is an error.
    #[tokio::test(flavor = "multi_thread")]
    async fn answers_longer_than_the_limit_are_refused() {
        let jobs = script(&format!(
            "function FindProxyForURL(u, h) {{ return 'D'.repeat(h == 'long' ? {} : {MAX_ANSWER}); }}",
            MAX_ANSWER + 1
        ))
        .await
        .unwrap();
        let ok = find(&jobs, "https://x/", "x").await.unwrap();
        assert_eq!(ok.result.len(), MAX_ANSWER);
        let e = find(&jobs, "https://long/", "long").await.unwrap_err();
        assert!(e.0.contains("answered 4097 bytes"), "{e}");
    }

    #[test]
    fn my_address_is_the_routed_one_then_the_usable_interfaces_ipv4_first() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let interfaces = [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "fd00::2",
            "192.0.2.2",
            "0.0.0.0",
            "10.0.0.5",
            "169.254.1.1",
            "fd00::2",
        ];
        let chosen = chosen_addresses(Some(ip("192.0.2.2")), interfaces.map(ip).to_vec());
        assert_eq!(chosen, ["192.0.2.2", "10.0.0.5", "fd00::2"].map(ip));
        let chosen = chosen_addresses(None, ["fd00::2", "10.0.0.5"].map(ip).to_vec());
        assert_eq!(chosen, ["10.0.0.5", "fd00::2"].map(ip), "IPv4 first");
        let only_local = ["127.0.0.1", "::1", "fe80::1", "169.254.9.9"]
            .map(ip)
            .to_vec();
        assert_eq!(chosen_addresses(None, only_local), [ip("127.0.0.1")]);
    }

    /// `dnsResolve` asks once per name a minute: a pin changed meanwhile is not seen until
    /// the entry is older than [`DNS_TTL`]; the cache never holds more than [`DNS_CACHE`].
    #[test]
    fn the_scripts_dns_answers_are_remembered_for_a_minute_and_bounded() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let config = crate::cli::config::for_tests(&["--resolve", "a.test:443:10.0.0.1"]).unwrap();
        let dns = Dns::new(config, runtime.handle().clone());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(dns.lookup("A.test."), [ip("10.0.0.1")]);
        assert_eq!(
            dns.lookup("127.0.0.1"),
            [ip("127.0.0.1")],
            "what the resolver says"
        );
        let repin = |dns: &Dns, to: &str| {
            let mut config = crate::cli::config::for_tests(&["--resolve", to]).unwrap();
            config.loopback_only = true;
            Dns {
                config,
                handle: dns.handle.clone(),
                cache: RefCell::new(dns.cache.take()),
            }
        };
        let dns = repin(&dns, "a.test:443:10.0.0.2");
        assert_eq!(dns.lookup("a.test"), [ip("10.0.0.1")], "remembered");
        let old = Instant::now() - DNS_TTL - Duration::from_secs(1);
        dns.cache.borrow_mut().get_mut("a.test").unwrap().0 = old;
        assert_eq!(
            dns.lookup("a.test"),
            [ip("10.0.0.2")],
            "asked again after a minute"
        );
        // Distinct loopback literals: no name is sent to a DNS server.
        for i in 0..DNS_CACHE + 10 {
            dns.lookup(&format!("127.0.{}.{}", i / 250, i % 250 + 1));
            assert!(dns.cache.borrow().len() <= DNS_CACHE);
        }
        assert!(
            dns.cache.borrow().len() < 20,
            "a full cache starts again empty"
        );
    }

    #[test]
    fn my_address_is_never_loopback_when_another_exists() {
        let mine = my_addresses(true);
        let others = if_addrs::get_if_addrs().unwrap_or_default();
        if others
            .iter()
            .any(|i| !i.ip().is_loopback() && !link_local(&i.ip()))
        {
            assert!(mine.iter().all(|ip| !ip.is_loopback()), "{mine:?}");
        } else {
            assert_eq!(mine, [IpAddr::from([127, 0, 0, 1])]);
        }
    }
}
