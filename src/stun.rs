//! The STUN server of TR-111 Part 2 (`stun.listen`, usually port 3478): moves datagrams
//! only. Each Binding Request is decoded with `ferroacs-stun`, answered as
//! [`crate::domain::stun::answer`] decides, and an authenticated binding of a device's
//! connection-request socket is written to the store (`device_stun`). The same socket sends
//! the UDP connection requests (`connreq::UdpConnReq`), so they come from the address and
//! port the device's NAT mapping was opened towards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::connreq::UdpConnReq;
use crate::state::AppState;

/// Bind the server's socket (before anything else starts, so a port conflict stops the start).
pub fn bind(listen: &str) -> anyhow::Result<std::net::UdpSocket> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("stun.listen {listen}: not an IP:port address"))?;
    let s = std::net::UdpSocket::bind(addr)
        .map_err(|e| anyhow::anyhow!("stun.listen {addr}: cannot listen: {e}"))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Binding writes in flight at once; above this, writes of unchanged bindings are skipped.
const MAX_WRITES: usize = 64;

/// Register the socket at once, as the STUN address devices are given and as the sender of
/// UDP connection requests, then return the loop that serves it until the runtime stops.
/// Called before the HTTP servers start: a device bootstrapping in the first moments gets
/// its STUN settings like any other. Must run inside the runtime that will serve it.
pub fn start(
    state: Arc<AppState>,
    sock: std::net::UdpSocket,
) -> Option<impl std::future::Future<Output = ()>> {
    let sock = match UdpSocket::from_std(sock) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "STUN server cannot start");
            return None;
        }
    };
    let local = sock.local_addr().ok()?;
    let sv = &state.services;
    let clock = state.clock.clone();
    sv.connreq.set_udp(Arc::new(
        UdpConnReq::new(sock.clone())
            .with_policy(Arc::new(sv.connreq_policy.clone()))
            .with_clock(Arc::new(move || clock()))
            .with_copies(
                state.config.stun.udp_copies as usize,
                Duration::from_millis(100),
            ),
    ));
    sv.stun.set_addr(local);
    tracing::info!(stun = %local, "STUN server listening");
    Some(serve(state, sock, local))
}

async fn serve(state: Arc<AppState>, sock: Arc<UdpSocket>, local: std::net::SocketAddr) {
    let sv = &state.services;
    let writes = Arc::new(tokio::sync::Semaphore::new(MAX_WRITES));
    let mut buf = vec![0u8; ferroacs_stun::MAX_MESSAGE + 1];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "STUN receive failed");
                continue;
            }
        };
        let bytes = &buf[..n];
        let Ok(msg) = ferroacs_stun::decode(bytes) else {
            continue;
        };
        let now = (state.clock)();
        let cred = match msg.username() {
            Some(u) => match sv.stun.credentials(&state.store, u, now).await {
                Ok(c) => c,
                Err(e) => {
                    // No answer rather than a 401 the device would take as final.
                    tracing::warn!(error = %e, "STUN credentials unavailable");
                    continue;
                }
            },
            None => None,
        };
        let d = crate::domain::stun::answer(
            bytes,
            &msg,
            from,
            local,
            cred.as_ref(),
            state.config.stun.require_integrity_on_change,
        );
        if let Some(reply) = d.reply {
            if let Err(e) = sock.send_to(&reply, from).await {
                tracing::debug!(error = %e, %from, "STUN answer not sent");
            }
        }
        if let Some(seen) = d.binding {
            if !sv.stun.needs_write(&seen, now) {
                continue;
            }
            let permit = if seen.change {
                writes.clone().acquire_owned().await.ok()
            } else {
                writes.clone().try_acquire_owned().ok()
            };
            let Some(permit) = permit else {
                continue;
            };
            let store = state.store.clone();
            tokio::spawn(async move {
                let binding = seen.binding.to_string();
                let id = seen.device_id.clone();
                match store
                    .run(move |s| s.record_stun_binding(&id, &binding, now))
                    .await
                {
                    Ok(true) => tracing::info!(
                        device = %seen.device_id, binding = %seen.binding,
                        "device's STUN binding changed"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "STUN binding not recorded"),
                }
                drop(permit);
            });
        }
    }
}
