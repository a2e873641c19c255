//! Direct vs through diagproxy, in-process on loopback: one keep-alive plain-HTTP request,
//! one CONNECT set-up, one intercepted HTTPS request. `diagproxy bench` measures the same
//! under load; this is the per-request view criterion can track over time.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use diagproxy::bench::load::{self, Via};
use diagproxy::bench::world::{World, HOST};
use diagproxy::cli::{Cli, Command};
use diagproxy::config::Config;

fn start_proxy(rt: &tokio::runtime::Runtime, world: &World) -> SocketAddr {
    let dir = world.dir.path();
    let roots = dir.join("origin-root.pem");
    let pin = format!("{HOST}:{}:127.0.0.1", world.https.port());
    let (ca_dir, session_dir) = (dir.join("ca"), dir.join("session"));
    let args = [
        "diagproxy",
        "run",
        "-q",
        "--intercept",
        "*.chatgpt.com",
        "--ca-dir",
        ca_dir.to_str().expect("utf-8"),
        "--session-dir",
        session_dir.to_str().expect("utf-8"),
        "--public-roots",
        roots.to_str().expect("utf-8"),
        "--system-roots",
        roots.to_str().expect("utf-8"),
        "--resolve",
        &pin,
    ];
    let Command::Run(run) = Cli::try_parse_from(args).expect("args").command else {
        panic!("run")
    };
    let config = Config::from_run_args(&run).expect("config");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(diagproxy::run(listener, config, std::future::pending()));
        addr
    })
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(World::start(None)).expect("world");
    let proxy = start_proxy(&rt, &world);
    let tiny = Duration::from_millis(1);
    let mut group = c.benchmark_group("overhead");
    for (name, via) in [
        ("direct", Via::Direct),
        ("via diagproxy", Via::Proxy(proxy)),
    ] {
        group.bench_function(format!("forward request {name}"), |b| {
            b.iter(|| {
                rt.block_on(load::forward(world.http, via, 1, tiny))
                    .expect("forward")
            })
        });
        group.bench_function(format!("tunnel setup {name}"), |b| {
            b.iter(|| {
                rt.block_on(load::open_tunnel(world.http, via))
                    .expect("tunnel")
            })
        });
    }
    let direct_trust = load::trusting(&world.origin_root).expect("trust");
    let proxy_trust = load::trusting(&world.ca_pem).expect("trust");
    group.bench_function("intercept new connection + request direct", |b| {
        b.iter(|| {
            rt.block_on(load::one_request(
                world.https,
                HOST,
                &direct_trust,
                Via::Direct,
            ))
            .expect("direct")
        })
    });
    group.bench_function("intercept new connection + request via diagproxy", |b| {
        b.iter(|| {
            rt.block_on(load::one_request(
                world.https,
                HOST,
                &proxy_trust,
                Via::Proxy(proxy),
            ))
            .expect("proxy")
        })
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
