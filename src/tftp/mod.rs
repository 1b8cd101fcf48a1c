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
//!
//! **Firmware files** of the file store (a model's firmware, `tftp.firmware_files`) are
//! streamed: the store keeps each file as a plain file on disk, so the transfer opens it,
//! answers `tsize` from its length and reads each block when the previous one is
//! acknowledged (the sender keeps only the last datagram for retransmission), whatever
//! the image's size. A file that shrinks during the transfer ends it with an error rather
//! than a wrong image. Netascii needs the converted size up front, so a store file asked
//! for in netascii mode (no phone does for firmware) is read whole and converted. Phone
//! configuration files are rendered in memory and sent from there.
//!
//! Every firmware transfer is recorded in the phone fetch log when it ends
//! ([`phones::record_tftp_firmware`]): under the phone whose token the name came through,
//! else under the source address only, with the status (200 complete, 408 the phone
//! stopped answering or its socket went away, 400 it ended the transfer, 500 the file could
//! not be read) and the bytes the phone acknowledged.

pub mod codec;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::config::IpNet;
use crate::domain::phones::{self, Access, FetchRequest, Fetched};
use crate::state::AppState;
use codec::{code, Packet};

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
    // allows): served from the file store, block by block. Names of phone files never
    // reach the store.
    if matches!(crate::phones::files::parse(&file), Ok(None)) {
        let started = state.now();
        match firmware_source(state, peer, &access, &file).await {
            Ok(Some((fw, source))) => {
                let outcome = send_file(state, &sock, peer, &req, source).await;
                let (status, bytes) = match &outcome {
                    Ok(o) => (o.status, o.bytes),
                    Err(_) => (500, 0),
                };
                phones::record_tftp_firmware(
                    &state.services.phones,
                    &fw,
                    &file,
                    peer.ip(),
                    status,
                    bytes,
                    started,
                );
                return outcome.map(|_| ());
            }
            Ok(None) => {}
            Err((fw, e)) => {
                tracing::error!(%peer, file = %file, error = %e, "TFTP firmware file not served");
                if let Some(fw) = fw {
                    phones::record_tftp_firmware(
                        &state.services.phones,
                        &fw,
                        &file,
                        peer.ip(),
                        500,
                        0,
                        started,
                    );
                }
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
    send_file(state, &sock, peer, &req, Source::Memory(bytes))
        .await
        .map(|_| ())
}

/// Where a transfer's bytes come from.
enum Source {
    /// A rendered phone file (small, made in memory).
    Memory(Arc<[u8]>),
    /// A file of the file store, read block by block as the client acknowledges.
    File { file: tokio::fs::File, size: u64 },
}

/// How a transfer ended, for the fetch log: `status` 200 (the last block acknowledged),
/// 408 (the client stopped answering), 400 (it ended the transfer with an error or broke
/// the protocol) or 500 (the file could not be read); `bytes` the client acknowledged.
struct Outcome {
    status: u16,
    bytes: u64,
}

/// The firmware file `file` names, opened, if TFTP may serve it to `access` (see
/// [`phones::tftp_firmware`]); `None` when it is no such file. Errors carry the firmware
/// when it was found (so the failure is recorded against it).
async fn firmware_source(
    state: &AppState,
    peer: SocketAddr,
    access: &Access,
    file: &str,
) -> std::result::Result<
    Option<(phones::TftpFirmware, Source)>,
    (Option<phones::TftpFirmware>, String),
> {
    let Some(fw) = phones::tftp_firmware(&state.store, &state.config, access, file)
        .await
        .map_err(|e| (None, format!("firmware lookup failed: {e}")))?
    else {
        return Ok(None);
    };
    let path = match state.services.files.path_of(&fw.file.id) {
        Ok(p) => p,
        Err(e) => return Err((Some(fw), e.to_string())),
    };
    let opened = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return Err((Some(fw), format!("the file store cannot open it: {e}"))),
    };
    let size = match opened.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return Err((Some(fw), format!("the file store cannot read it: {e}"))),
    };
    tracing::info!(%peer, file = %file, firmware_of = %fw.reason, bytes = size, "TFTP serves a firmware file");
    Ok(Some((fw, Source::File { file: opened, size })))
}

/// Read `len` bytes at `offset` of the source (fewer only at the end of a file that
/// shrank: then the transfer fails rather than send a wrong image).
async fn read_block(
    source: &mut Source,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    buf.clear();
    match source {
        Source::Memory(m) => buf.extend_from_slice(codec::slice(m, offset, len)),
        Source::File { file, .. } => {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            buf.resize(len, 0);
            file.read_exact(buf).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("the file changed during the transfer: {e}"),
                )
            })?;
        }
    }
    Ok(())
}

/// Send the source as the answer to `req` over the transfer's socket. Netascii needs the
/// converted size up front (tsize), so a store file asked for in netascii mode is read
/// whole and converted; octet transfers (every phone's firmware) are read block by block.
async fn send_file(
    state: &AppState,
    sock: &UdpSocket,
    peer: SocketAddr,
    req: &codec::Request,
    source: Source,
) -> std::io::Result<Outcome> {
    let cfg = &state.config;
    let mut source = match (req.mode, source) {
        (codec::Mode::Octet, s) => s,
        (codec::Mode::Netascii, Source::Memory(m)) => {
            Source::Memory(Arc::from(codec::to_netascii(&m)))
        }
        (codec::Mode::Netascii, Source::File { mut file, .. }) => {
            use tokio::io::AsyncReadExt;
            let mut all = Vec::new();
            file.read_to_end(&mut all).await?;
            Source::Memory(Arc::from(codec::to_netascii(&all)))
        }
    };
    let size = match &source {
        Source::Memory(m) => m.len() as u64,
        Source::File { size, .. } => *size,
    };
    let n = codec::negotiate(req, size, cfg.tftp.max_blksize);
    let timeout = Duration::from_secs(u64::from(
        n.timeout
            .unwrap_or(u8::try_from(cfg.tftp.timeout_secs).unwrap_or(2)),
    ));
    let mut sender = codec::Sender::new(size, &n);
    let transferred =
        transfer_blocks(cfg, sock, peer, req, &mut source, &mut sender, timeout).await;
    Ok(match transferred {
        Ok(o) => o,
        // The phone's socket is gone (ICMP port unreachable) or the network failed: like
        // a phone that stopped answering.
        Err(e) => {
            tracing::debug!(%peer, file = %req.filename, error = %e, "TFTP transfer broken off");
            Outcome {
                status: 408,
                bytes: sender.acked_bytes(false),
            }
        }
    })
}

/// The block loop of [`send_file`].
async fn transfer_blocks(
    cfg: &crate::config::Config,
    sock: &UdpSocket,
    peer: SocketAddr,
    req: &codec::Request,
    source: &mut Source,
    sender: &mut codec::Sender,
    timeout: Duration,
) -> std::io::Result<Outcome> {
    let mut block = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut retries = 0u32;
    let mut step = sender.start();
    loop {
        // Send what the step says, then wait for the answer.
        match step {
            codec::Step::Send(p) => {
                retries = 0;
                sock.send(&p).await?;
            }
            codec::Step::Read { offset, len } => {
                if let Err(e) = read_block(source, offset, len, &mut block).await {
                    tracing::error!(%peer, file = %req.filename, error = %e, "TFTP transfer failed");
                    sock.send(&codec::error(code::NOT_DEFINED, "the file cannot be read"))
                        .await?;
                    return Ok(Outcome {
                        status: 500,
                        bytes: sender.acked_bytes(false),
                    });
                }
                retries = 0;
                sock.send(&sender.fill(&block)).await?;
            }
            codec::Step::Wait => {}
            codec::Step::Done => {
                return Ok(Outcome {
                    status: 200,
                    bytes: sender.acked_bytes(true),
                })
            }
            codec::Step::Abort(reply) => {
                if let Some(r) = reply {
                    sock.send(&r).await?;
                }
                return Ok(Outcome {
                    status: 400,
                    bytes: sender.acked_bytes(false),
                });
            }
        }
        step = loop {
            match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
                Err(_) => {
                    retries += 1;
                    if retries > cfg.tftp.retries {
                        tracing::info!(%peer, file = %req.filename, blocks = sender.acked(), "TFTP transfer abandoned: no answer");
                        return Ok(Outcome {
                            status: 408,
                            bytes: sender.acked_bytes(false),
                        });
                    }
                    sock.send(&sender.retransmit()).await?;
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(len)) => break sender.on_packet(&buf[..len]),
            }
        };
    }
}
