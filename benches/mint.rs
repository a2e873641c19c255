//! Leaf minting for interception: cold (a host never seen: one signature) and cached (a
//! host seen before: a map lookup).

use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use diagproxy::profile::Profile;
use diagproxy::tls::{ca, mint::Minter};

fn mint(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = ca::InitOptions {
        dir: dir.path().to_path_buf(),
        days: 2,
        unconstrained: false,
        force: true,
    };
    ca::init(&options, &Profile::builtin()).expect("ca init");
    let minter = Minter::new(ca::load(dir.path()).expect("load")).expect("minter");
    let next = AtomicUsize::new(0);
    c.bench_function("mint cold (new host)", |b| {
        b.iter(|| {
            let host = format!("h{}.chatgpt.com", next.fetch_add(1, Ordering::Relaxed));
            minter.server_config(&host).expect("mint")
        })
    });
    minter.server_config("chatgpt.com").expect("mint");
    c.bench_function("mint cached (known host)", |b| {
        b.iter(|| minter.server_config("chatgpt.com").expect("cached"))
    });
}

criterion_group!(benches, mint);
criterion_main!(benches);
