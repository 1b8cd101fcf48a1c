//! The TFTP server for phones (Cisco and any phone pointed at DHCP option 66/150 with a
//! TFTP address): read requests only, answered from `domain::phones` like HTTP fetches.
//!
//! Off unless `tftp.listen` is set. Only sources in `tftp.allow_networks` get an answer
//! (TFTP has no authentication, so files are found by the MAC in their name; a request for
//! `<token>/<file>` uses a phone's token as over HTTP). Each transfer has its own socket
//! (its transfer id), the options of RFC 2347-2349 (blksize up to `tftp.max_blksize`,
//! timeout, tsize), retransmission after the timeout up to `tftp.retries` times, and block
//! numbers that wrap after 65535. Write requests get "access violation". The packet format
//! and the sending state machine are in [`codec`], without I/O.

pub mod codec;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::config::IpNet;
use crate::domain::phones::{self, Access, FetchRequest, Fetched};
use crate::state::AppState;
use codec::{code, Packet, Step};

/// Transfers in flight at once; requests beyond it are dropped (the phone retries).
const MAX_TRANSFERS: usize = 512;

/// Bind the TFTP socket (at start, so a bad address fails the start).
pub fn bind(listen: &str) -> anyhow::Result<std::net::UdpSocket> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("tftp.listen {listen}: not an IP:port address"))?;
    let s = std::net::UdpSocket::bind(addr).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (port 69 needs privileges: run with CAP_NET_BIND_SERVICE or choose a port above 1023)"
        } else {
            ""
        };
        anyhow::anyhow!("tftp.listen {addr}: cannot listen: {e}{hint}")
    })?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Serve until the runtime stops.
pub async fn serve(state: Arc<AppState>, sock: std::net::UdpSocket) {
    let sock = match UdpSocket::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "TFTP server cannot start");
            return;
        }
    };
    let allow: Vec<IpNet> = state
        .config
        .tftp
        .allow_networks
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|n| IpNet::parse(n).ok())
        .collect();
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TRANSFERS));
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "TFTP receive failed");
                continue;
            }
        };
        if !allow.iter().any(|net| net.contains(peer.ip())) {
            tracing::debug!(%peer, "TFTP request from a network not in tftp.allow_networks ignored");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "TFTP request dropped: {MAX_TRANSFERS} transfers in flight");
            continue;
        };
        let pkt = buf[..n].to_vec();
        let st = state.clone();
        tokio::spawn(async move {
            if let Err(e) = transfer(&st, local, peer, &pkt).await {
                tracing::debug!(%peer, error = %e, "TFTP transfer ended");
            }
            drop(permit);
        });
    }
}

fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn transfer(
    state: &AppState,
    local: SocketAddr,
    peer: SocketAddr,
    first: &[u8],
) -> std::io::Result<()> {
    let bind_ip: IpAddr = local.ip();
    let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
    sock.connect(peer).await?;
    let req = match codec::decode(first) {
        Ok(Packet::Rrq(r)) => r,
        Ok(Packet::Wrq(_)) => {
            sock.send(&codec::error(
                code::ACCESS_VIOLATION,
                "this server is read-only",
            ))
            .await?;
            return Ok(());
        }
        Ok(_) => {
            sock.send(&codec::error(
                code::ILLEGAL_OPERATION,
                "expected a read request",
            ))
            .await?;
            return Ok(());
        }
        Err(e) => {
            sock.send(&codec::error(code::ILLEGAL_OPERATION, &e.to_string()))
                .await?;
            return Ok(());
        }
    };
    let name = req.filename.strip_prefix('/').unwrap_or(&req.filename);
    let (access, file) = match name.split_once('/') {
        Some((t, f)) if token_ok(t) => (Access::Token(t.to_string()), f.to_string()),
        Some(_) => {
            sock.send(&codec::error(code::ACCESS_VIOLATION, "no paths"))
                .await?;
            return Ok(());
        }
        None => (Access::Network, name.to_string()),
    };
    // A firmware file a phone model's configuration names (or `tftp.firmware_files`
    // allows): served from the file store. Names of phone files never reach the store.
    if matches!(crate::phones::files::parse(&file), Ok(None)) {
        match firmware_bytes(state, peer, &access, &file).await {
            Ok(Some(bytes)) => return send_file(state, &sock, peer, &req, bytes).await,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(%peer, file = %file, error = %e, "TFTP firmware file not served");
                sock.send(&codec::error(code::NOT_DEFINED, "try again later"))
                    .await?;
                return Ok(());
            }
        }
    }
    let fetch = FetchRequest {
        access,
        file,
        source: peer.ip(),
        protocol: "tftp",
        user_agent: String::new(),
        query_firmware: None,
        base_url: format!("tftp://{local}"),
        now: state.now(),
    };
    let cfg = &state.config;
    let fetched = match phones::fetch(&state.store, cfg, &state.services.phones, fetch).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "TFTP fetch failed");
            sock.send(&codec::error(code::NOT_DEFINED, "try again later"))
                .await?;
            return Ok(());
        }
    };
    let bytes: Arc<[u8]> = match fetched {
        Fetched::File(f) => Arc::from(&f.bytes[..]),
        Fetched::Upload(d) => Arc::from(d),
        Fetched::NotFound => {
            sock.send(&codec::error(code::FILE_NOT_FOUND, "file not found"))
                .await?;
            return Ok(());
        }
        Fetched::BadName(_)
        | Fetched::Forbidden
        | Fetched::TooManyFailures
        | Fetched::CertificateRequired
        | Fetched::Unauthorized { .. } => {
            sock.send(&codec::error(code::ACCESS_VIOLATION, "access violation"))
                .await?;
            return Ok(());
        }
    };
    send_file(state, &sock, peer, &req, bytes).await
}

/// The bytes of the firmware file `file` names, if TFTP may serve it to `access` (see
/// [`phones::tftp_firmware`]); `None` when it is no such file.
async fn firmware_bytes(
    state: &AppState,
    peer: SocketAddr,
    access: &Access,
    file: &str,
) -> std::result::Result<Option<Arc<[u8]>>, String> {
    let Some(fw) = phones::tftp_firmware(&state.store, &state.config, access, file)
        .await
        .map_err(|e| format!("firmware lookup failed: {e}"))?
    else {
        return Ok(None);
    };
    let path = state
        .services
        .files
        .path_of(&fw.file.id)
        .map_err(|e| e.to_string())?;
    let data = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("the file store cannot read it: {e}"))?;
    tracing::info!(%peer, file = %file, firmware_of = %fw.reason, "TFTP serves a firmware file");
    Ok(Some(Arc::from(data)))
}

/// Send `bytes` as the answer to `req` over the transfer's socket.
async fn send_file(
    state: &AppState,
    sock: &UdpSocket,
    peer: SocketAddr,
    req: &codec::Request,
    bytes: Arc<[u8]>,
) -> std::io::Result<()> {
    let cfg = &state.config;
    let bytes: Arc<[u8]> = match req.mode {
        codec::Mode::Octet => bytes,
        codec::Mode::Netascii => Arc::from(codec::to_netascii(&bytes)),
    };
    let n = codec::negotiate(req, bytes.len() as u64, cfg.tftp.max_blksize);
    let timeout = Duration::from_secs(u64::from(
        n.timeout
            .unwrap_or(u8::try_from(cfg.tftp.timeout_secs).unwrap_or(2)),
    ));
    let mut sender = codec::Sender::new(bytes, &n);
    let mut out = sender.start();
    let mut buf = vec![0u8; 2048];
    let mut retries = 0u32;
    sock.send(&out).await?;
    loop {
        match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
            Err(_) => {
                retries += 1;
                if retries > cfg.tftp.retries {
                    tracing::info!(%peer, file = %req.filename, blocks = sender.acked(), "TFTP transfer abandoned: no answer");
                    return Ok(());
                }
                out = sender.retransmit();
                sock.send(&out).await?;
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(len)) => match sender.on_packet(&buf[..len]) {
                Step::Send(p) => {
                    retries = 0;
                    sock.send(&p).await?;
                }
                Step::Wait => {}
                Step::Done => return Ok(()),
                Step::Abort(reply) => {
                    if let Some(r) = reply {
                        sock.send(&r).await?;
                    }
                    return Ok(());
                }
            },
        }
    }
}
