//! Webhooks: one JSON `POST` to a URL an operator configured (a campaign's state changes).
//!
//! The URL comes from an operator, so it gets the connection requests' guards against
//! server-side request forgery:
//!
//! 1. The URL must be `http` or `https` with a host and no credentials in it.
//! 2. The host is resolved once and every address is checked against the [`TargetPolicy`]
//!    (`api.connection_request_allow_networks` / `deny_networks`, this process's own
//!    listeners refused); the connection goes only to those checked addresses.
//! 3. Redirects are not followed (a `3xx` is a failure), so an allowed host cannot bounce
//!    the request to a refused one.
//! 4. One deadline covers DNS, connect, TLS, the request and the response head; the head is
//!    capped at 16 KiB and 100 headers, and the response body is never read.
//!
//! Only a `2xx` status is a delivery. Nothing the receiver sends reaches the outcome but
//! its status code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::http::{parse_url, Url};
use super::policy::{resolve_checked, TargetPolicy};

const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// Deadline of one webhook POST.
pub const TIMEOUT_MS: u64 = 5_000;

/// Sends webhook POSTs.
#[derive(Clone)]
pub struct WebhookSender {
    /// Deadline for the whole exchange.
    pub timeout: Duration,
    pub tls_config: Arc<rustls::ClientConfig>,
    pub policy: Arc<TargetPolicy>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Check a webhook URL as an operator wrote it; the error says what is wrong.
pub fn check_url(raw: &str) -> Result<(), String> {
    if raw.len() > 2000 {
        return Err("at most 2000 characters".into());
    }
    let url = parse_url(raw)?;
    let authority = raw
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    if authority.contains('@') {
        return Err(
            "credentials in the URL are not allowed: give the receiver a secret path or query instead"
                .into(),
        );
    }
    if url.host.is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(())
}

impl WebhookSender {
    /// POST `body` (JSON) to `url`; `Ok(status)` for a `2xx`, otherwise why it failed.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<u16, String> {
        check_url(url)?;
        let url = parse_url(url)?;
        match tokio::time::timeout(self.timeout, self.run(&url, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn run(&self, url: &Url, body: Vec<u8>) -> Result<u16, String> {
        let addrs = match resolve_checked(&self.policy, &url.host, url.port).await {
            Ok(a) => a,
            Err(Ok(refusal)) => {
                return Err(format!(
                    "refused by the target policy ({refusal}); see api.connection_request_allow_networks"
                ))
            }
            Err(Err(why)) => return Err(why),
        };
        let tcp = TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = hyper::Request::post(url.target.as_str())
            .header(HOST, url.host_header())
            .header(USER_AGENT, concat!("ferroacs/", env!("CARGO_PKG_VERSION")))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let status = if url.tls {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| format!("invalid TLS server name: {e}"))?;
            let tls = TlsConnector::from(Arc::clone(&self.tls_config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            exchange(TokioIo::new(tls), request).await?
        } else {
            exchange(TokioIo::new(tcp), request).await?
        };
        match status {
            200..=299 => Ok(status),
            300..=399 => Err(format!(
                "HTTP status {status}: redirects are not followed, configure the final URL"
            )),
            _ => Err(format!("HTTP status {status}")),
        }
    }
}

async fn exchange<T>(io: T, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .handshake(io)
        .await
        .map_err(|e| format!("HTTP set-up failed: {e}"))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("invalid or no HTTP response: {e}"))?;
        // The body is never read: the status says it all, and the connection closes.
        Ok(response.status().as_u16())
    }
    .await;
    task.abort();
    result
}
