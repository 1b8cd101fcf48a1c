//! TR-111 throughput of one core, over real UDP on loopback:
//!
//! * `stun`: Binding Requests answered per second by the STUN server's per-datagram work
//!   (`ferroacs_stun::decode`, `domain::stun::answer` with MESSAGE-INTEGRITY checked and the
//!   answer signed, `send_to`), on one single-threaded runtime; a client thread keeps 64
//!   requests in flight and counts answers.
//! * `udp_connreq`: UDP connection requests sent per second by `connreq::UdpConnReq` (target
//!   policy, HMAC-SHA1 signature, one copy each) on one single-threaded runtime, to a socket
//!   that counts what arrives.
//!
//! Run with `cargo bench --bench tr111` (a release build) on a quiet machine; it prints one
//! line per figure. `BENCH_SECS` sets the measuring time per figure (default 5).

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroacs::connreq::{ConnReqTarget, TargetPolicy, UdpConnReq};
use ferroacs::domain::stun::{answer, Credentials};
use ferroacs_stun::{Attr, Class, Message, BINDING};

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn stun() -> f64 {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let cred = Credentials {
        device_id: "00259E-EG8145V5-48575443A94196A5".into(),
        password: "0123456789abcdef0123456789abcdef".into(),
    };
    let srv = std::thread::spawn(move || {
        runtime().block_on(async move {
            let sock = tokio::net::UdpSocket::from_std(server).unwrap();
            let local = sock.local_addr().unwrap();
            let mut buf = vec![0u8; 1501];
            while !stop2.load(Ordering::Relaxed) {
                let Ok(Ok((n, from))) =
                    tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf))
                        .await
                else {
                    continue;
                };
                let Ok(msg) = ferroacs_stun::decode(&buf[..n]) else {
                    continue;
                };
                let c = msg.username().map(|_| &cred);
                let d = answer(&buf[..n], &msg, from, local, c, true);
                if let Some(reply) = d.reply {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        })
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = Message::classic(Class::Request, BINDING, [0x5a; 16])
        .with(Attr::ConnectionRequestBinding)
        .with(Attr::Username("00259E-EG8145V5-48575443A94196A5".into()))
        .encode(Some(b"0123456789abcdef0123456789abcdef"));
    let window = 64;
    for _ in 0..window {
        client.send_to(&request, addr).unwrap();
    }
    let mut buf = [0u8; 1500];
    let (mut answered, start) = (0u64, Instant::now());
    while start.elapsed() < secs() {
        match client.recv_from(&mut buf) {
            Ok(_) => {
                answered += 1;
                client.send_to(&request, addr).unwrap();
            }
            // Lost datagrams: refill the window.
            Err(_) => {
                for _ in 0..window {
                    client.send_to(&request, addr).unwrap();
                }
            }
        }
    }
    let rate = answered as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    rate
}

fn udp_connreq() -> f64 {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let target: SocketAddr = sink.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r2, s2) = (received.clone(), stop.clone());
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !s2.load(Ordering::Relaxed) {
            if sink.recv_from(&mut buf).is_ok() {
                r2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let sent = runtime().block_on(async move {
        let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let policy =
            TargetPolicy::new("127.0.0.1", ferroacs::connreq::policy::DEFAULT_DENY).unwrap();
        let sender = UdpConnReq::new(sock)
            .with_policy(Arc::new(policy))
            .with_copies(1, Duration::ZERO);
        let t = ConnReqTarget {
            url: target.to_string(),
            username: "cr-0123456789ab".into(),
            password: "0123456789abcdef0123456789abcdef".into(),
        };
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < secs() {
            assert!(sender.request(&t).await.is_ok());
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    eprintln!(
        "udp_connreq: {} datagrams arrived",
        received.load(Ordering::Relaxed)
    );
    sent
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once quickly.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    println!("stun_binding_answers_per_sec {:.0}", stun());
    println!("udp_connection_requests_per_sec {:.0}", udp_connreq());
}
