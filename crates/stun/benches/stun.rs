//! The STUN server's per-request work without the socket: decode a TR-111 Binding Request
//! (classic, with CONNECTION-REQUEST-BINDING, USERNAME and MESSAGE-INTEGRITY), verify its
//! integrity, and encode the Binding Response. One iteration is one request answered.
//!
//! Run with `cargo bench -p ferroacs-stun`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroacs_stun::{check_integrity, decode, Attr, Class, Integrity, Message, BINDING};

fn request(authenticated: bool) -> Vec<u8> {
    let m = Message::classic(Class::Request, BINDING, [0x5a; 16])
        .with(Attr::ConnectionRequestBinding)
        .with(Attr::Username("00259E-EG8145V5-48575443A94196A5".into()));
    m.encode(authenticated.then_some(b"0123456789abcdef".as_slice()))
}

fn answer(bytes: &[u8]) -> Vec<u8> {
    let m = decode(bytes).unwrap();
    let ok = check_integrity(bytes, b"0123456789abcdef") != Integrity::Invalid;
    let from = "203.0.113.7:40001".parse().unwrap();
    let class = if ok { Class::Success } else { Class::Error };
    m.response(class)
        .with(Attr::MappedAddress(from))
        .encode(None)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stun");
    g.throughput(Throughput::Elements(1));
    let plain = request(false);
    let signed = request(true);
    g.bench_function("binding_request_answered", |b| {
        b.iter(|| answer(black_box(&plain)))
    });
    g.bench_function("binding_request_with_integrity_answered", |b| {
        b.iter(|| answer(black_box(&signed)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
