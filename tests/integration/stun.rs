//! TR-111 Part 2 over real UDP on loopback: the built-in STUN server answers classic and
//! RFC 5389 Binding Requests, gives a STUN-capable device its settings after discovery,
//! records the binding of its authenticated requests only, and UDP connection requests
//! leave from the STUN socket to that binding, followed when it changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferroacs_stun::{decode, Attr, Class, Message, BINDING};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::api::Api;
use crate::battery;
use crate::cpe::{start_cr_listener, BindingAnswer, Device, Root, UdpAgent};
use crate::support::{Backend, TestApp, TestClock, TestDb};

battery!(
    binding_requests_of_both_flavours_are_answered,
    a_tr111_device_is_configured_reached_over_udp_and_followed,
);

async fn stun_app(b: Backend) -> (TestApp, TestClock) {
    let clock = TestClock::new(1_800_000_000_000);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.stun.listen = Some("127.0.0.1:0".into());
    })
    .await;
    (app, clock)
}

fn stun_addr(app: &TestApp) -> SocketAddr {
    app.running
        .as_ref()
        .and_then(|r| r.stun_addr)
        .expect("the STUN server listens")
}

async fn ask(sock: &UdpSocket, server: SocketAddr, bytes: &[u8]) -> Option<Message> {
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    assert_eq!(from, server);
    Some(decode(&buf[..n]).expect("a STUN answer"))
}

async fn binding_requests_of_both_flavours_are_answered(b: Backend) {
    let (app, _clock) = stun_app(b).await;
    let server = stun_addr(&app);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();

    // Classic RFC 3489, as TR-111 devices send it: no magic cookie.
    let req =
        Message::classic(Class::Request, BINDING, [7; 16]).with(Attr::ConnectionRequestBinding);
    let ans = ask(&sock, server, &req.encode(None))
        .await
        .expect("answered");
    assert_eq!((ans.class, ans.transaction), (Class::Success, [7; 16]));
    assert_eq!(
        ans.get(Attr::MAPPED_ADDRESS),
        Some(&Attr::MappedAddress(me))
    );

    // RFC 5389.
    let req = Message::rfc5389(Class::Request, BINDING, [8; 12]);
    let ans = ask(&sock, server, &req.encode(None))
        .await
        .expect("answered");
    assert!(ans.is_rfc5389());
    assert_eq!(
        ans.get(Attr::XOR_MAPPED_ADDRESS),
        Some(&Attr::XorMappedAddress(me))
    );

    // Junk and truncated datagrams get nothing, and the server keeps answering.
    let good = req.encode(None);
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &good[..good.len() - 3],
        &[0u8; 19][..],
    ] {
        assert!(ask(&sock, server, junk).await.is_none(), "{junk:?}");
    }
    // An unauthenticated BINDING-CHANGE gets 401 (stun.require_integrity_on_change).
    let req = Message::classic(Class::Request, BINDING, [9; 16])
        .with(Attr::ConnectionRequestBinding)
        .with(Attr::BindingChange);
    let ans = ask(&sock, server, &req.encode(None))
        .await
        .expect("answered");
    assert_eq!(ans.class, Class::Error);
    assert!(matches!(
        ans.get(Attr::ERROR_CODE),
        Some(Attr::ErrorCode { code: 401, .. })
    ));
}

async fn reachability(api: &Api, id: &str) -> Value {
    api.get(&format!("/api/v1/devices/{id}/reachability")).await
}

async fn post_task(api: &Api, id: &str) -> Value {
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks?connection_request=true"),
            Some(json!({"rpc": "GetParameterValues", "names": ["Device.DeviceInfo.UpTime"]})),
        )
        .await;
    assert!(s == 200 || s == 202, "{s} {t}");
    t
}

async fn a_tr111_device_is_configured_reached_over_udp_and_followed(b: Backend) {
    let (app, clock) = stun_app(b).await;
    let server = stun_addr(&app);
    // Known from the moment the server runs, before any session: a device bootstrapping in
    // the first moments gets its STUN settings too.
    assert_eq!(app.state().services.stun.addr(), Some(server));
    let api = Api::new(&app, "operator").await;
    let mut dev = Device::synthetic(Root::Device2, "STUN0001", 120)
        .with_acs_credentials("cpe", "cpe-secret")
        .with_cwmp_version("1.4")
        .with_stun();
    let (_, mut http_cr) = start_cr_listener(&mut dev).await.unwrap();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );

    // Bootstrap + discovery gave the device STUN, its own credentials and the server port.
    let ms = |leaf: &str| dev.get(&dev.ms(leaf)).unwrap_or_default().to_string();
    assert_eq!(ms("STUNEnable"), "true");
    assert_eq!(ms("STUNServerPort"), server.port().to_string());
    assert_eq!(ms("STUNUsername"), id);
    let password = ms("STUNPassword");
    assert_eq!(password.len(), 32);
    assert_eq!(ms("STUNMinimumKeepAlivePeriod"), "30");
    assert_eq!(ms("STUNMaximumKeepAlivePeriod"), "60");
    // Sealed at rest, never shown.
    let id2 = id.clone();
    let row = app
        .store()
        .run(move |s| s.stun_of(&id2))
        .await
        .unwrap()
        .expect("STUN credentials stored");
    assert!(row.password.starts_with("enc1:") && !row.password.contains(&password));
    let r = reachability(&api, &id).await;
    assert_eq!(r["stun"]["username"], id.as_str(), "{r}");
    assert!(!r.to_string().contains(&password), "{r}");
    assert_eq!(r["stun"]["binding"], Value::Null, "{r}");

    // The device's connection-request socket learns its binding with a Binding Request
    // carrying its STUN credentials; the answer is signed with its password.
    let agent = UdpAgent::bind("127.0.0.1:0", &dev).await.unwrap();
    let mut agent = agent;
    let ans = agent
        .learn_binding(&dev, server, true)
        .await
        .expect("answer");
    assert_eq!(
        ans,
        BindingAnswer::Mapped {
            address: agent.local_addr(),
            signed: true
        }
    );
    let r = wait_binding(&api, &id, agent.local_addr()).await;
    assert!(r["stun"]["age_ms"].as_i64().unwrap() >= 0, "{r}");
    assert_eq!(
        r["routes"][0],
        json!({"transport": "udp", "target": agent.local_addr().to_string()})
    );
    dev.report_udp_binding(agent.local_addr(), agent.local_addr());

    // Unauthenticated sources never move the binding: a wrong password gets 401, a request
    // without USERNAME is answered but recorded nowhere.
    let intruder = UdpAgent::bind("127.0.0.1:0", &dev).await.unwrap();
    let wrong = intruder
        .binding_request(server, true, Some((&id, "guess")), Duration::from_secs(2))
        .await;
    assert_eq!(wrong, Some(BindingAnswer::Error(401)));
    let anon = intruder
        .binding_request(server, false, None, Duration::from_secs(2))
        .await;
    assert!(
        matches!(anon, Some(BindingAnswer::Mapped { signed: false, .. })),
        "{anon:?}"
    );
    let r = reachability(&api, &id).await;
    assert_eq!(r["stun"]["binding"], agent.local_addr().to_string(), "{r}");

    // A task with a connection request: a UDP datagram from the STUN socket, signed with the
    // connection-request password; the device's session runs the task.
    let t = post_task(&api, &id).await;
    assert_eq!(t["connection_request"]["transport"], "udp", "{t}");
    assert_eq!(t["connection_request"]["outcome"], "ok", "{t}");
    let got = agent
        .wait(Duration::from_secs(5))
        .await
        .expect("UDP connection request");
    assert_eq!(got.from, server, "sent from the STUN server's own socket");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let task = api.get(&format!("/api/v1/tasks/{}", t["id"])).await;
    assert_eq!(task["status"], "done", "{task}");
    let r = reachability(&api, &id).await;
    assert_eq!(r["attempts"][0]["transport"], "udp", "{r}");
    assert!(r["attempts"][0]["confirmed_at"].is_i64(), "{r}");
    assert!(
        http_cr.wait(Duration::from_millis(200)).await.is_none(),
        "no HTTP request"
    );

    // The NAT gives the socket a new mapping: the device reports the change, ferroacs
    // follows, and the next request goes to the new binding with a newer ts and a fresh id.
    let moved = UdpAgent::bind("127.0.0.1:0", &dev).await.unwrap();
    let mut moved = moved;
    let ans = moved
        .learn_binding(&dev, server, true)
        .await
        .expect("answer");
    assert!(
        matches!(ans, BindingAnswer::Mapped { signed: true, .. }),
        "{ans:?}"
    );
    wait_binding(&api, &id, moved.local_addr()).await;
    // Past the per-device interval; `ts` counts seconds of the server's clock.
    clock.advance_ms(3_000);
    let t = post_task(&api, &id).await;
    assert_eq!(t["connection_request"]["transport"], "udp", "{t}");
    let second = moved
        .wait(Duration::from_secs(5))
        .await
        .expect("UDP request at the new binding");
    assert!(
        second.ts > got.ts && second.id != got.id,
        "{got:?} {second:?}"
    );
    assert!(
        agent.wait(Duration::from_millis(200)).await.is_none(),
        "old binding left alone"
    );
}

/// Poll the API until the recorded binding is `want` (it is written in the background).
async fn wait_binding(api: &Api, id: &str, want: SocketAddr) -> Value {
    let what = format!("binding {want} recorded");
    crate::support::wait_until(Duration::from_secs(5), &what, || async {
        let r = reachability(api, id).await;
        if r["stun"]["binding"] == want.to_string() {
            Ok(r)
        } else {
            Err(r)
        }
    })
    .await
}
