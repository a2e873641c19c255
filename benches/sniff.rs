//! ClientHello parsing: what every tunnel pays to learn its SNI and ALPN.

use criterion::{criterion_group, criterion_main, Criterion};
use diagproxy::tls::sniff::{client_hello, example_hello};

fn sniff(c: &mut Criterion) {
    let hello = example_hello(Some("files.oaiusercontent.com"), &["h2", "http/1.1"]);
    c.bench_function("sniff ClientHello (SNI + ALPN)", |b| {
        b.iter(|| client_hello(std::hint::black_box(&hello)))
    });
    let plaintext = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n\r\n".to_vec();
    c.bench_function("sniff plaintext (not TLS)", |b| {
        b.iter(|| client_hello(std::hint::black_box(&plaintext)))
    });
}

criterion_group!(benches, sniff);
criterion_main!(benches);
