//! Limits that keep one peer from holding a listener's connections or memory, on both
//! listeners:
//!
//! * **Connections per source.** Every accepted connection counts against its source
//!   address (an IPv4 address, or an IPv6 /64) until it closes. Above
//!   `max_connections_per_source` the connection's requests are answered 503 with
//!   `Connection: close` before anything is read; a connection that sends nothing is closed
//!   by the request-head timeout. Networks in `connection_limit_exempt` (e.g. a reverse proxy
//!   that all traffic comes through) are not counted. Loopback is counted like anything else.
//! * **Body timeout.** A request body must keep arriving: when no byte of it comes for
//!   `body_timeout_secs`, reading fails, the request gets 408 and the connection is closed.
//!   The CWMP endpoint also bounds the whole body of a session-opening request by that time.
//! * **Request-head timeout and keep-alive** are actix settings (see `http::build_servers`).
//!
//! Connection state lives in the connection's extensions ([`on_connect`]) and is released
//! when actix drops the connection.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse};
use dashmap::DashMap;
use futures_util::Stream;

use crate::config::IpNet;

/// The limits of one listener and its open connections per source.
pub struct ConnLimits {
    max_per_source: usize,
    exempt: Vec<IpNet>,
    body_timeout: Duration,
    open: DashMap<IpAddr, usize>,
    /// Connections refused for being over the per-source limit.
    pub refused: AtomicU64,
    /// Requests whose body timed out.
    pub body_timeouts: AtomicU64,
}

impl ConnLimits {
    /// `max_per_source` 0 means no limit.
    pub fn new(max_per_source: usize, exempt: Vec<IpNet>, body_timeout: Duration) -> Arc<Self> {
        Arc::new(ConnLimits {
            max_per_source,
            exempt,
            body_timeout,
            open: DashMap::new(),
            refused: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
        })
    }

    /// Open connections counted for `ip`'s source.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.get(&source_of(ip)).map(|v| *v).unwrap_or(0)
    }

    /// Count a new connection from `ip`; the slot says whether it is over the limit.
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> ConnSlot {
        let counted =
            ip.filter(|ip| self.max_per_source > 0 && !self.exempt.iter().any(|n| n.contains(*ip)));
        let Some(ip) = counted else {
            return ConnSlot {
                limits: self.clone(),
                source: None,
                over: false,
            };
        };
        let key = source_of(ip);
        let n = {
            let mut e = self.open.entry(key).or_insert(0);
            *e += 1;
            *e
        };
        let over = n > self.max_per_source;
        if over {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ConnSlot {
            limits: self.clone(),
            source: Some(key),
            over,
        }
    }
}

/// IPv4 addresses count alone (IPv4-mapped IPv6 too), IPv6 by /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One open connection's place in [`ConnLimits`]; released when the connection closes.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    source: Option<IpAddr>,
    over: bool,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(key) = self.source {
            self.limits.open.remove_if_mut(&key, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

/// Count a new connection (called by actix's `on_connect` for both listeners).
pub fn on_connect(limits: &Arc<ConnLimits>, conn: &dyn Any, ext: &mut Extensions) {
    let peer = if let Some(s) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        s.peer_addr().ok()
    } else if let Some(s) = conn
        .downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
    {
        s.get_ref().0.peer_addr().ok()
    } else {
        None
    };
    ext.insert(Arc::new(limits.admit(peer.map(|a| a.ip()))));
}

/// Middleware for both listeners: refuse requests of connections over their source's
/// limit, and put the body timeout on every request body.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let slot = req.conn_data::<Arc<ConnSlot>>().cloned();
    if let Some(slot) = &slot {
        if slot.over {
            // The body stays unread but alive until the answer is out, so the connection is
            // closed rather than drained (see `WithUnread`).
            let unread = req.take_payload();
            let (r, _) = req.into_parts();
            let resp = HttpResponse::ServiceUnavailable()
                .force_close()
                .insert_header((header::RETRY_AFTER, "10"))
                .content_type("text/plain; charset=utf-8")
                .body("too many connections from this address; close some and retry\n");
            return Ok(ServiceResponse::new(r, resp).map_body(|_, body| {
                BoxBody::new(WithUnread {
                    body,
                    _unread: unread,
                })
            }));
        }
        if has_body(&req) {
            let shared = Rc::new(Shared {
                inner: RefCell::new(Some(req.take_payload())),
                ended: Cell::new(false),
            });
            let timed = TimedPayload {
                shared: shared.clone(),
                idle: slot.limits.body_timeout,
                sleep: Box::pin(tokio::time::sleep(slot.limits.body_timeout)),
                limits: slot.limits.clone(),
                started: None,
                received: 0,
            };
            let boxed: actix_http::BoxedPayloadStream = Box::pin(timed);
            req.set_payload(Payload::from(boxed));
            let res = next.call(req).await?.map_into_boxed_body();
            if !shared.ended.get() {
                // The body was not read to its end (refused early, or it stopped arriving).
                // Keep its receiving end alive until the answer is written: actix then
                // closes the connection instead of draining a chunked body that may never end.
                if let Some(unread) = shared.inner.borrow_mut().take() {
                    return Ok(res.map_body(|_, body| {
                        BoxBody::new(WithUnread {
                            body,
                            _unread: unread,
                        })
                    }));
                }
            }
            return Ok(res);
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// A response body that holds the request's unread body until it has been sent (see
/// [`middleware`]).
struct WithUnread {
    body: BoxBody,
    _unread: Payload,
}

impl MessageBody for WithUnread {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

struct Shared {
    inner: RefCell<Option<Payload>>,
    /// The body was read to its end (or failed).
    ended: Cell<bool>,
}

fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
}

/// Below this average a body is being trickled, not sent: every real client's link is
/// faster by orders of magnitude (8 kbit/s).
const MIN_BODY_BYTES_PER_SEC: u64 = 1024;

/// A request body that fails when no byte arrives for `idle`, or when, once `idle` (at least
/// ten seconds) has passed, it has arrived at less than [`MIN_BODY_BYTES_PER_SEC`] on
/// average: a byte now and then must not hold a connection and its buffer for hours.
struct TimedPayload {
    shared: Rc<Shared>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limits: Arc<ConnLimits>,
    /// When the handler first asked for the body (it may wait before it reads).
    started: Option<tokio::time::Instant>,
    received: u64,
}

impl TimedPayload {
    fn too_slow(&self) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        let elapsed = started.elapsed();
        elapsed > self.idle.max(Duration::from_secs(10))
            && self.received < MIN_BODY_BYTES_PER_SEC.saturating_mul(elapsed.as_secs())
    }

    fn timed_out(&self, why: &'static str) -> Poll<Option<Result<Bytes, PayloadError>>> {
        // Not `ended`: the unread rest keeps the connection from being reused.
        self.limits.body_timeouts.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            why,
        )))))
    }
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.shared.ended.get() {
            return Poll::Ready(None);
        }
        if self.started.is_none() {
            self.started = Some(tokio::time::Instant::now());
        }
        let polled = match self.shared.inner.borrow_mut().as_mut() {
            Some(inner) => Pin::new(inner).poll_next(cx),
            None => Poll::Ready(None),
        };
        match polled {
            Poll::Ready(Some(Ok(b))) => {
                self.received = self.received.saturating_add(b.len() as u64);
                if self.too_slow() {
                    return self.timed_out("the request body arrives too slowly");
                }
                let deadline = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(other) => {
                self.shared.ended.set(true);
                Poll::Ready(other)
            }
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.timed_out("the request body stopped arriving")
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// Whether reading a body failed because it stopped arriving.
pub fn is_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// 408 and close: the body did not arrive in time.
pub fn body_timeout_response() -> HttpResponse {
    HttpResponse::build(StatusCode::REQUEST_TIMEOUT)
        .force_close()
        .content_type("text/plain; charset=utf-8")
        .body("the request body did not arrive in time\n")
}

/// The answer to a body that could not be read: 408 for a timeout, 400 otherwise.
pub fn payload_error_response(e: &PayloadError) -> HttpResponse {
    if is_timeout(e) {
        return body_timeout_response();
    }
    HttpResponse::build(StatusCode::BAD_REQUEST)
        .force_close()
        .content_type("text/plain; charset=utf-8")
        .body(format!("cannot read the request body: {e}\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_counted_and_released() {
        let l = ConnLimits::new(2, vec![], Duration::from_secs(1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = l.admit(Some(a));
        let s2 = l.admit(Some(a));
        let s3 = l.admit(Some(a));
        assert!(!s1.over && !s2.over && s3.over);
        assert_eq!(l.open_from(a), 3);
        // Another source is unaffected.
        assert!(!l.admit(Some("192.0.2.2".parse().unwrap())).over);
        drop(s3);
        drop(s2);
        assert_eq!(l.open_from(a), 1);
        assert!(!l.admit(Some(a)).over);
        drop(s1);
        assert_eq!(l.open_from(a), 0);
        assert!(l.open.is_empty());
    }

    #[test]
    fn ipv6_counts_by_prefix_and_exempt_networks_are_not_counted() {
        let l = ConnLimits::new(
            1,
            vec![IpNet::parse("10.0.0.0/8").unwrap()],
            Duration::from_secs(1),
        );
        let _a = l.admit(Some("2001:db8::1".parse().unwrap()));
        assert!(l.admit(Some("2001:db8::2".parse().unwrap())).over);
        assert!(!l.admit(Some("2001:db8:0:1::2".parse().unwrap())).over);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| l.admit(Some(proxy))).collect();
        assert!(held.iter().all(|s| !s.over));
        assert_eq!(l.open_from(proxy), 0);
        // Loopback is counted unless exempted.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let _b = l.admit(Some(lo));
        assert!(l.admit(Some(lo)).over);
        let unlimited = ConnLimits::new(0, vec![], Duration::from_secs(1));
        let held: Vec<_> = (0..10).map(|_| unlimited.admit(Some(lo))).collect();
        assert!(held.iter().all(|s| !s.over));
    }
}
