//! TR-111 through a real NAT. The test builds three network namespaces of its own:
//!
//! ```text
//!   acs  10.231.0.1 ──veth── 10.231.0.2 router 192.168.231.1 ──veth── 192.168.231.2  cpe
//!        (ferroacs)                   (nftables masquerade)              (simulated CPE)
//! ```
//!
//! ferroacs runs in `acs` (its sockets are created there; PostgreSQL is reached through a
//! forwarder listening inside `acs`), the simulated CPE in `cpe`, which only the router can
//! reach. The CPE bootstraps, gets its STUN settings, learns its public binding from the STUN
//! server through the NAT and reports it; a UDP connection request from the STUN socket
//! passes the NAT and starts a session. Then the router's public address changes (the NAT
//! drops its mappings), the CPE's next Binding Request shows a new binding, and ferroacs
//! sends the next request there. Every address lives in the test's namespaces, which are
//! removed when the test ends, also when it fails.
//!
//! Needs root (network namespaces) and `ip`/`nft` (iproute2, nftables: `scripts/test`
//! installs them); skipped with a message when not root.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::battery;
use crate::cpe::{BindingAnswer, Device, Root, UdpAgent};
use crate::support::{Backend, TestApp, TestClock, TestDb};

battery!(a_udp_connection_request_passes_the_nat_and_follows_a_binding_change);

const ACS_IP: &str = "10.231.0.1";
const WAN_IP: &str = "10.231.0.2";
const WAN_IP2: &str = "10.231.0.3";
const LAN_GW: &str = "192.168.231.1";
const CPE_IP: &str = "192.168.231.2";

/// The test's namespaces; removed on drop (a namespace's interfaces, addresses and nftables
/// rules go with it).
struct Netns {
    acs: String,
    router: String,
    cpe: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.cpe, &self.router, &self.acs] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install iproute2 and nftables; scripts/test does)",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn build(tag: &str) -> Netns {
        let n = Netns {
            acs: format!("fa{tag}a"),
            router: format!("fa{tag}r"),
            cpe: format!("fa{tag}c"),
        };
        for ns in [&n.acs, &n.router, &n.cpe] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            run(&["ip", "netns", "add", ns]);
        }
        let (a, r, c) = (n.acs.as_str(), n.router.as_str(), n.cpe.as_str());
        run(&[
            "ip", "link", "add", "wan0", "netns", a, "type", "veth", "peer", "name", "wan1",
            "netns", r,
        ]);
        run(&[
            "ip", "link", "add", "lan0", "netns", r, "type", "veth", "peer", "name", "lan1",
            "netns", c,
        ]);
        let acs_cidr = format!("{ACS_IP}/24");
        let wan_cidr = format!("{WAN_IP}/24");
        let gw_cidr = format!("{LAN_GW}/24");
        let cpe_cidr = format!("{CPE_IP}/24");
        for (ns, dev, addr) in [
            (a, "wan0", acs_cidr.as_str()),
            (r, "wan1", wan_cidr.as_str()),
            (r, "lan0", gw_cidr.as_str()),
            (c, "lan1", cpe_cidr.as_str()),
        ] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        for ns in [a, r, c] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&["ip", "-n", c, "route", "add", "default", "via", LAN_GW]);
        run(&[
            "ip",
            "netns",
            "exec",
            r,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]);
        run(&["ip", "netns", "exec", r, "nft", "add", "table", "ip", "nat"]);
        run(&[
            "ip",
            "netns",
            "exec",
            r,
            "nft",
            "add chain ip nat post { type nat hook postrouting priority 100 ; }",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            r,
            "nft",
            "add rule ip nat post oifname \"wan1\" masquerade",
        ]);
        n
    }

    /// The ISP gives the router another public address: the NAT's mappings to the old one
    /// are dropped with it.
    fn renumber_wan(&self) {
        let r = self.router.as_str();
        let (old, new) = (format!("{WAN_IP}/24"), format!("{WAN_IP2}/24"));
        // Removed first: removing a primary address also removes the secondaries of its subnet.
        for (op, addr) in [("del", &old), ("add", &new)] {
            run(&["ip", "-n", r, "addr", op, addr, "dev", "wan1"]);
        }
    }
}

/// Run `f` on a new thread inside namespace `ns` (threads it starts stay there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a namespace file descriptor we hold open.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Forward TCP connections accepted inside namespace `ns` on 127.0.0.1 to `target` (in this
/// process's namespace): how ferroacs in `acs` reaches the test's PostgreSQL.
async fn forwarder(ns: &str, target: SocketAddr) -> SocketAddr {
    let std_listener = in_netns(ns, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind in namespace");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

/// What the CPE thread reports.
#[derive(Debug)]
enum Ev {
    Booted(String),
    Bound(SocketAddr),
    Reached { ts: u64, id: String },
    Failed(String),
}

/// The simulated CPE, on its own runtime inside namespace `ns`: bootstrap, then for each
/// `go` received: learn the binding (announcing a change when it differs), report it in an
/// Inform, wait for a UDP connection request and run the session it asks for.
fn spawn_cpe(
    ns: String,
    acs_url: String,
    stun: SocketAddr,
    events: mpsc::UnboundedSender<Ev>,
    mut go: mpsc::UnboundedReceiver<bool>,
) {
    std::thread::spawn(move || {
        let path = format!("/var/run/netns/{ns}");
        let Ok(file) = std::fs::File::open(&path) else {
            let _ = events.send(Ev::Failed(format!("cannot open {path}")));
            return;
        };
        // SAFETY: setns on this thread only, with a namespace file descriptor we hold open.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let _ = events.send(Ev::Failed("setns failed".into()));
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let fail = |e: String| {
                let _ = events.send(Ev::Failed(e));
            };
            let mut dev = Device::synthetic(Root::Device2, "NAT0001", 120)
                .with_acs_credentials("cpe", "cpe-secret")
                .with_cwmp_version("1.4")
                .with_stun();
            match dev.run_session(&acs_url, &[]).await {
                Ok(rep) if rep.ended_cleanly() => {}
                other => return fail(format!("bootstrap: {other:?}")),
            }
            let id = ferroacs::cwmp::device_id(
                &dev.identity.oui,
                &dev.identity.product_class,
                &dev.identity.serial_number,
            );
            let _ = events.send(Ev::Booted(id));
            let mut agent = match UdpAgent::bind(&format!("{CPE_IP}:0"), &dev).await {
                Ok(a) => a,
                Err(e) => return fail(format!("bind: {e}")),
            };
            let local = agent.local_addr();
            let mut known: Option<SocketAddr> = None;
            while let Some(renumbered) = go.recv().await {
                // A keep-alive shows the binding; a new one is announced with BINDING-CHANGE.
                // After the router was renumbered the kernel drops its old NAT mappings in
                // the background: keep-alives (as a device sends them) until one shows it.
                let mut tries = 0;
                let public = loop {
                    let public = match agent.learn_binding(&dev, stun, false).await {
                        Some(BindingAnswer::Mapped {
                            address,
                            signed: true,
                        }) => address,
                        other => return fail(format!("binding request: {other:?}")),
                    };
                    tries += 1;
                    if !renumbered || known != Some(public) || tries >= 50 {
                        break public;
                    }
                    // Kept: the device's own retry pace while the NAT renumbers (at most 50).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                if known.is_some_and(|k| k != public) {
                    match agent.learn_binding(&dev, stun, true).await {
                        Some(BindingAnswer::Mapped {
                            address,
                            signed: true,
                        }) if address == public => {}
                        other => return fail(format!("binding change: {other:?}")),
                    }
                }
                known = Some(public);
                dev.report_udp_binding(public, local);
                match dev.run_session(&acs_url, &[]).await {
                    Ok(rep) if rep.ended_cleanly() => {}
                    other => return fail(format!("value change session: {other:?}")),
                }
                let _ = events.send(Ev::Bound(public));
                let Some(cr) = agent.wait(Duration::from_secs(10)).await else {
                    return fail("no UDP connection request arrived through the NAT".into());
                };
                match dev
                    .run_session(&acs_url, &[("6 CONNECTION REQUEST", "")])
                    .await
                {
                    Ok(rep) if rep.ended_cleanly() => {}
                    other => return fail(format!("connection-request session: {other:?}")),
                }
                let _ = events.send(Ev::Reached {
                    ts: cr.ts,
                    id: cr.id,
                });
            }
        });
    });
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        Ok(Some(Ev::Failed(e))) => panic!("simulated CPE: {e}"),
        Ok(Some(ev)) => ev,
        other => panic!("simulated CPE silent: {other:?}"),
    }
}

async fn start_in(ns: &Netns, b: Backend, clock: &TestClock) -> TestApp {
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let mut url = db.url.clone();
    if b == Backend::Postgres {
        // postgres://user:pw@host:port/db → the forwarder inside the namespace.
        let at = url.find('@').expect("user in URL") + 1;
        let end = at + url[at..].find('/').expect("database in URL");
        let target: SocketAddr = url[at..end].parse().expect("numeric host:port");
        let fwd = forwarder(&ns.acs, target).await;
        url.replace_range(at..end, &fwd.to_string());
    }
    let trace_dir = tempfile::tempdir().unwrap();
    let files_dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = ferroacs::config::Config::default();
    config.database.url = url;
    config.database.pool_size = 4;
    config.secrets.key = Some(ferroacs::config::Secret(db.key.clone()));
    config.cwmp.listen = format!("{ACS_IP}:0");
    config.api.listen = "127.0.0.1:0".into();
    config.stun.listen = Some(format!("{ACS_IP}:0"));
    config.cwmp.default_password = Some(ferroacs::config::Secret("cpe-secret".into()));
    config.files.dir = files_dir.path().to_path_buf();
    config.log.level = std::env::var("FERROACS_TEST_LOG").unwrap_or_else(|_| "warn".into());
    config.log.cwmp_trace_dir = Some(trace_dir.path().to_path_buf());
    ferroacs::telemetry::init(&config.log);
    let (cfg, clk) = (config.clone(), clock.as_clock());
    let running = in_netns(&ns.acs, move || ferroacs::app::start(cfg, Some(clk), false))
        .expect("ferroacs starts inside the namespace");
    TestApp {
        running: Some(running),
        db,
        config,
        files_dir,
        trace_dir,
        clock: Some(clock.as_clock()),
    }
}

/// Wait until ferroacs recorded `want` as the device's binding and the session that reported
/// it released the device. The CPE has its last answer before the server releases the session
/// lock; a connection request before that is deferred ("the device is in a session now").
async fn wait_binding(app: &TestApp, id: &str, want: SocketAddr) {
    let state = app.state();
    let what = format!("binding {want} recorded, no session in progress");
    crate::support::wait_until(Duration::from_secs(10), &what, || async {
        let r = state
            .services
            .connreq
            .reachability(&state.store, id, (state.clock)())
            .await
            .unwrap();
        let dev_id = id.to_string();
        let dev = state
            .store
            .run(move |s| s.get_device(&dev_id))
            .await
            .unwrap()
            .expect("the device exists");
        let bound = r.stun.as_ref().and_then(|s| s.binding.clone()) == Some(want.to_string());
        if bound && dev.session_owner.is_none() {
            Ok(())
        } else {
            Err((r, dev.session_owner))
        }
    })
    .await;
}

async fn a_udp_connection_request_passes_the_nat_and_follows_a_binding_change(b: Backend) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "NAT test skipped: creating network namespaces needs root (scripts/test in CI runs as root)"
        );
        return;
    }
    let tag = format!(
        "{}{}",
        std::process::id() % 100_000,
        if b == Backend::Sqlite { "s" } else { "p" }
    );
    // Declared first, dropped last: the namespaces outlive the server using them.
    let ns = Netns::build(&tag);
    let clock = TestClock::new(1_800_000_000_000);
    let app = start_in(&ns, b, &clock).await;
    let running = app.running.as_ref().unwrap();
    let stun = running.stun_addr.expect("STUN server");
    let acs_url = format!("http://{}/", running.cwmp_addr);
    let (ev_tx, mut ev) = mpsc::unbounded_channel();
    let (go, go_rx) = mpsc::unbounded_channel();
    spawn_cpe(ns.cpe.clone(), acs_url, stun, ev_tx, go_rx);
    let Ev::Booted(id) = next(&mut ev).await else {
        panic!("expected bootstrap")
    };
    let state = app.state();

    // The CPE learns its public binding through the NAT: the router's address.
    go.send(false).unwrap();
    let Ev::Bound(first) = next(&mut ev).await else {
        panic!("expected a binding")
    };
    assert_eq!(first.ip().to_string(), WAN_IP, "mapped by the NAT");
    wait_binding(&app, &id, first).await;
    let sent = state
        .services
        .connreq
        .request(&state.store, &id, clock.now())
        .await
        .unwrap();
    assert_eq!(
        (sent.outcome, sent.transport),
        ("ok", Some("udp")),
        "{sent:?}"
    );
    let Ev::Reached { ts: ts1, id: id1 } = next(&mut ev).await else {
        panic!("expected a session")
    };
    let r = state
        .services
        .connreq
        .reachability(&state.store, &id, clock.now())
        .await
        .unwrap();
    assert!(r.attempts[0].confirmed_at.is_some(), "{r:?}");

    // The router is renumbered: its NAT mappings go, the next Binding Request shows a new
    // binding, and ferroacs follows it.
    ns.renumber_wan();
    clock.advance_ms(5_000);
    go.send(true).unwrap();
    let Ev::Bound(second) = next(&mut ev).await else {
        panic!("expected a new binding")
    };
    assert_eq!(second.ip().to_string(), WAN_IP2, "{second}");
    wait_binding(&app, &id, second).await;
    let sent = state
        .services
        .connreq
        .request(&state.store, &id, clock.now())
        .await
        .unwrap();
    assert_eq!(
        (sent.outcome, sent.transport),
        ("ok", Some("udp")),
        "{sent:?}"
    );
    let Ev::Reached { ts: ts2, id: id2 } = next(&mut ev).await else {
        panic!("expected a session at the new binding")
    };
    assert!(ts2 > ts1 && id2 != id1);
    drop(go);
    drop(app);
}
