//! Asking a device to start a session now: connection requests with the device's
//! credentials, a bound on how many run at once, a per-device minimum interval, and the
//! outcome recorded for operators.
//!
//! Targets are checked against the configured [`TargetPolicy`] before anything is sent,
//! and the recorded outcome is a fixed code and text: nothing the target answered is
//! stored or shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;

pub use crate::connreq::{parse_transports, Transport};
use crate::connreq::{ConnReqOutcome, ConnReqTarget, ConnectionRequester, TargetPolicy};
use crate::error::Result;
use crate::store::devices::DeviceRow;
use crate::store::search::ConnReqRow;
use crate::store::Store;

/// What became of a request to reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrState {
    /// A connection request was sent now; `outcome` says how it ended.
    Sent,
    /// The device was asked recently (or is in a session elsewhere): the request goes out at
    /// `scheduled_at`, together with any other asked for meanwhile.
    Scheduled,
    /// The device is in a session on this node: the session looks at its queue again before
    /// it ends, so the new work runs in it and no request is sent.
    JoinedSession,
}

impl CrState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Scheduled => "scheduled",
            Self::JoinedSession => "joined_session",
        }
    }
}

/// How a connection request ended, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrResult {
    pub state: CrState,
    /// When `state` is `sent`: `ok`, `auth_failed`, `auth_unsupported`, `unreachable`
    /// (refused, reset or timed out alike), `busy`, `refused_by_policy`, `bad_url`,
    /// `bad_response` or `no_url` (the device never reported a ConnectionRequestURL).
    /// Otherwise the state itself: `scheduled` or `joined_session`.
    pub outcome: &'static str,
    pub message: String,
    /// When `state` is `sent`: the transport of the last attempt (`http`, `udp`).
    pub transport: Option<&'static str>,
    pub at: i64,
    /// When a scheduled request goes out (UTC milliseconds).
    pub scheduled_at: Option<i64>,
}

/// The outcome code of a transport result.
pub fn outcome_code(o: &ConnReqOutcome) -> &'static str {
    o.code()
}

/// What the work behind a request needs from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// New tasks: a session in progress on this node picks them up before it ends.
    Tasks,
    /// A session of its own (lines, presets, an operator's explicit request): a session in
    /// progress does not replan them, so the request waits until it is over.
    Session,
}

/// A session in progress on this node, as seen by connection requests.
struct InSession {
    /// The session's lock owner (the device row names it while the session holds the lock).
    owner: String,
    /// Work was added since the session last looked at its queue.
    rung: bool,
}

/// Sends connection requests for the API, bulk jobs and campaigns, and never drops one: a
/// request inside the per-device interval, or for a device busy in a session, is kept and
/// sent as soon as it may be (several coalesce into one); new tasks for a device in session
/// on this node join that session.
///
/// Deferred requests live in this process's memory: when the process stops before sending
/// one, the tasks stay queued and run at the device's next session.
pub struct ConnReqService {
    requester: Arc<dyn ConnectionRequester>,
    /// TR-111 UDP connection requests, sent from the STUN server's socket once it listens.
    udp: std::sync::OnceLock<Arc<dyn ConnectionRequester>>,
    /// XMPP connection requests (TR-069 Annex K), when `[xmpp]` is configured.
    xmpp: std::sync::OnceLock<Arc<crate::connreq::xmpp::XmppClient>>,
    permits: tokio::sync::Semaphore,
    last: DashMap<String, i64>,
    min_interval_ms: i64,
    /// Devices in a session on this node.
    sessions: DashMap<String, InSession>,
    /// Deferred requests by device.
    pending: Mutex<HashMap<String, Deferred>>,
    /// Wakes [`ConnReqService::run_deferred`] when a request is deferred.
    deferred: tokio::sync::Notify,
    /// Outcomes of the requests sent, for /metrics.
    pub counters: crate::connreq::ConnReqCounters,
    /// Transports in the order they are tried.
    order: Vec<Transport>,
    /// How long a request may wait for its Inform before the next transport is tried.
    confirm_timeout_ms: i64,
    /// How old a STUN binding may be and still be used.
    binding_max_age_ms: i64,
    /// Devices whose last request was sent and not confirmed yet: how many of their routes
    /// the next (deferred) request skips. A session of the device clears it.
    fallback: Mutex<HashMap<String, usize>>,
    /// When each device last confirmed a request (its Inform may arrive before the attempt
    /// is recorded: the device answers the first UDP copy while the others are still sent).
    confirmations: DashMap<String, i64>,
}

/// A request kept for later.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    /// When to send it.
    at: i64,
    /// Send it only if the device still has work no session took: the check after new
    /// work rang a session, in case that session continued on another node, which did not
    /// hear the ring, and ended without it.
    unless_drained: bool,
}

/// How long a request for a device locked by another session waits before looking again
/// (at least; the per-device interval when longer).
const BUSY_RECHECK_MS: i64 = 500;

/// How often [`ConnReqService::run_deferred`] reads the clock while requests are deferred
/// (the clock may be an injected one that jumps).
const DEFERRED_POLL: Duration = Duration::from_millis(50);

impl ConnReqService {
    pub fn new(
        requester: Arc<dyn ConnectionRequester>,
        concurrency: usize,
        min_interval_ms: i64,
    ) -> ConnReqService {
        ConnReqService {
            requester,
            udp: std::sync::OnceLock::new(),
            xmpp: std::sync::OnceLock::new(),
            permits: tokio::sync::Semaphore::new(concurrency.max(1)),
            last: DashMap::new(),
            min_interval_ms,
            sessions: DashMap::new(),
            pending: Mutex::new(HashMap::new()),
            deferred: tokio::sync::Notify::new(),
            counters: Default::default(),
            order: vec![Transport::Xmpp, Transport::Udp, Transport::Http],
            confirm_timeout_ms: 10_000,
            binding_max_age_ms: 300_000,
            fallback: Mutex::new(HashMap::new()),
            confirmations: DashMap::new(),
        }
    }

    /// Try transports in `order`; wait `confirm_timeout_ms` for a session before the next;
    /// use STUN bindings confirmed within `binding_max_age_ms`.
    #[must_use]
    pub fn with_transports(
        mut self,
        order: Vec<Transport>,
        confirm_timeout_ms: i64,
        binding_max_age_ms: i64,
    ) -> Self {
        if !order.is_empty() {
            self.order = order;
        }
        self.confirm_timeout_ms = confirm_timeout_ms.max(1);
        self.binding_max_age_ms = binding_max_age_ms;
        self
    }

    /// Send UDP connection requests with `udp` (the STUN server's socket); set once.
    pub fn set_udp(&self, udp: Arc<dyn ConnectionRequester>) {
        let _ = self.udp.set(udp);
    }

    /// Send XMPP connection requests with `xmpp` (ferroacs's XMPP connection); set once.
    pub fn set_xmpp(&self, xmpp: Arc<crate::connreq::xmpp::XmppClient>) {
        let _ = self.xmpp.set(xmpp);
    }

    /// The XMPP client, when `[xmpp]` is configured.
    pub fn xmpp(&self) -> Option<&Arc<crate::connreq::xmpp::XmppClient>> {
        self.xmpp.get()
    }

    /// Ask `device_id` for a session of its own (see [`Wake::Session`]).
    pub async fn request(&self, store: &Store, device_id: &str, now: i64) -> Result<CrResult> {
        self.request_for(store, device_id, now, Wake::Session).await
    }

    /// Ask `device_id` for a session for `wake`: joined to the session in progress, sent
    /// now, or scheduled. Sent requests are recorded with their outcome.
    pub async fn request_for(
        &self,
        store: &Store,
        device_id: &str,
        now: i64,
        wake: Wake,
    ) -> Result<CrResult> {
        let id = device_id.to_string();
        let dev = store.run(move |s| s.get_device(&id)).await?;
        let Some(dev) = dev else {
            return Err(crate::error::Error::not_found(format!(
                "device {device_id}"
            )));
        };
        let locked = dev.session_expires.is_some_and(|until| until > now);
        if let (true, Some(owner)) = (locked, dev.session_owner.as_deref()) {
            if wake == Wake::Tasks && self.ring(device_id, owner) {
                // Should the session continue on another node, which does not know of the
                // ring, a request follows unless a session took the work by then.
                self.defer(
                    device_id,
                    now + self.min_interval_ms.max(BUSY_RECHECK_MS),
                    true,
                );
                return Ok(CrResult {
                    state: CrState::JoinedSession,
                    outcome: CrState::JoinedSession.as_str(),
                    message: "the device is in a session now; the new work runs in it".into(),
                    transport: None,
                    at: now,
                    scheduled_at: None,
                });
            }
            let at = self.defer(
                device_id,
                now + self.min_interval_ms.max(BUSY_RECHECK_MS),
                false,
            );
            return Ok(scheduled(
                now,
                at,
                "the device is in a session now; a connection request follows when it is over",
            ));
        }
        if let Some(prev) = self.last.get(device_id).map(|v| *v) {
            if now - prev < self.min_interval_ms {
                let at = self.defer(device_id, prev + self.min_interval_ms, false);
                return Ok(scheduled(
                    now,
                    at,
                    "a connection request was sent moments ago; the next goes out as soon as \
                     api.connection_request_min_interval_ms allows",
                ));
            }
        }
        self.last.insert(device_id.to_string(), now);
        if self.last.len() > 100_000 {
            let horizon = now - self.min_interval_ms;
            self.last.retain(|_, at| *at >= horizon);
        }
        let routes = self.routes_of(store, &dev, now).await?;
        let skip = {
            let mut f = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
            f.remove(device_id).unwrap_or(0)
        };
        let (outcome, message, transport) = if routes.is_empty() {
            (
                "no_url",
                "the device has not reported a ConnectionRequestURL (nor a UDP connection request \
                 address or ConnReqJabberID); it will run the task at its next periodic session"
                    .to_string(),
                None,
            )
        } else {
            let password = match &dev.cr_password {
                Some(sealed) => store
                    .keyring()
                    .open(crate::secrets::purpose::CR_PASSWORD, sealed)?,
                None => String::new(),
            };
            // After an unconfirmed attempt the next transport goes first; once every one
            // was tried, the order starts again.
            let start = if skip < routes.len() { skip } else { 0 };
            let mut last = (ConnReqOutcome::Unreachable(String::new()), Transport::Http);
            let mut sent_with = None;
            for (i, route) in routes.iter().enumerate().skip(start) {
                let target = ConnReqTarget {
                    url: route.target.clone(),
                    username: dev.cr_username.clone().unwrap_or_default(),
                    password: password.clone(),
                };
                let requester = match route.transport {
                    Transport::Http => Some(self.requester.clone()),
                    Transport::Udp => self.udp.get().cloned(),
                    Transport::Xmpp => self
                        .xmpp
                        .get()
                        .map(|x| x.clone() as Arc<dyn ConnectionRequester>),
                };
                let outcome = match (requester, self.permits.acquire().await) {
                    (Some(r), Ok(_permit)) => r.send(&target).await,
                    (None, _) => {
                        ConnReqOutcome::Unreachable("the transport is not configured".into())
                    }
                    (_, Err(_)) => {
                        ConnReqOutcome::Unreachable("connection requests are shutting down".into())
                    }
                };
                self.counters.record(&outcome);
                if let ConnReqOutcome::RefusedByPolicy(why) = &outcome {
                    tracing::warn!(device = %device_id, reason = %why, "connection request refused by the target policy");
                }
                let (d, t, code, msg) = (
                    device_id.to_string(),
                    route.transport.as_str(),
                    outcome.code(),
                    outcome.to_string(),
                );
                let ok = outcome.is_ok();
                let early = self
                    .confirmations
                    .get(device_id)
                    .map(|at| *at)
                    .filter(|at| ok && *at >= now);
                store
                    .run(move |s| {
                        s.record_attempt(&d, now, t, code, &msg)?;
                        if let Some(at) = early {
                            s.confirm_attempts(&d, now, at)?;
                        }
                        Ok(())
                    })
                    .await?;
                last = (outcome, route.transport);
                if ok {
                    sent_with = Some(i);
                    break;
                }
            }
            if let Some(i) = sent_with {
                if i + 1 < routes.len() {
                    // Not confirmed by a session within the timeout: the next transport.
                    self.fallback
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(device_id.to_string(), i + 1);
                    self.defer(device_id, now + self.confirm_timeout_ms, false);
                }
            }
            let (outcome, transport) = last;
            (
                outcome_code(&outcome),
                outcome.to_string(),
                Some(transport.as_str()),
            )
        };
        let result = CrResult {
            state: CrState::Sent,
            outcome,
            message,
            transport,
            at: now,
            scheduled_at: None,
        };
        let row = ConnReqRow {
            device_id: device_id.to_string(),
            at: now,
            outcome: result.outcome.to_string(),
            message: result.message.clone(),
            transport: result.transport.map(str::to_string),
        };
        store.run(move |s| s.record_connreq(&row)).await?;
        Ok(result)
    }

    /// Keep a request for `device_id` until `at` (or an earlier time already kept); returns
    /// when it goes out.
    fn defer(&self, device_id: &str, at: i64, unless_drained: bool) -> i64 {
        let at = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let d = p
                .entry(device_id.to_string())
                .or_insert(Deferred { at, unless_drained });
            d.at = d.at.min(at);
            d.unless_drained &= unless_drained;
            d.at
        };
        self.deferred.notify_one();
        at
    }

    /// When a deferred request for `device_id` goes out, if one is kept.
    pub fn deferred_until(&self, device_id: &str) -> Option<i64> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.get(device_id).map(|d| d.at)
    }

    /// Tell the session `owner` of `device_id` that it has new work; false when that session
    /// is not running on this node (or already decided to end).
    fn ring(&self, device_id: &str, owner: &str) -> bool {
        match self.sessions.get_mut(device_id) {
            Some(mut s) if s.owner == owner => {
                s.rung = true;
                true
            }
            _ => false,
        }
    }

    /// A session of `device_id` is starting on this node (before it reads the device's work):
    /// work added from now on is either read by it or rings it. A deferred request is dropped:
    /// the session reads everything queued before it started.
    pub fn session_opening(&self, device_id: &str, owner: &str) {
        self.sessions.insert(
            device_id.to_string(),
            InSession {
                owner: owner.to_string(),
                rung: false,
            },
        );
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.remove(device_id);
        drop(p);
        let mut f = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(device_id);
    }

    /// The device's Inform carries `6 CONNECTION REQUEST`: the attempts of the last
    /// confirmation timeout that went out are confirmed.
    pub async fn confirmed(&self, store: &Store, device_id: &str, now: i64) -> Result<()> {
        if self.confirmations.len() > 100_000 {
            self.confirmations.clear();
        }
        self.confirmations.insert(device_id.to_string(), now);
        let (id, since) = (device_id.to_string(), now - self.confirm_timeout_ms);
        store
            .run(move |s| s.confirm_attempts(&id, since, now))
            .await?;
        Ok(())
    }

    /// How `device_id` can be reached: its STUN binding and its age, the routes a request
    /// would take now, and the latest attempts with their outcome and confirmation.
    pub async fn reachability(
        &self,
        store: &Store,
        device_id: &str,
        now: i64,
    ) -> Result<Reachability> {
        let id = device_id.to_string();
        let dev = store.run(move |s| s.get_device(&id)).await?;
        let Some(dev) = dev else {
            return Err(crate::error::Error::not_found(format!(
                "device {device_id}"
            )));
        };
        let id = device_id.to_string();
        let (stun, attempts) = store
            .run(move |s| Ok((s.stun_of(&id)?, s.attempts_of(&id)?)))
            .await?;
        // The routes from the same STUN row as the binding shown.
        let routes = self
            .routes_with(store, &dev, Some(stun.clone()), now)
            .await?;
        Ok(Reachability {
            stun: stun.map(|r| StunBinding {
                username: r.username,
                binding: r.binding,
                binding_at: r.binding_at,
                seen_at: r.seen_at,
                age_ms: r.binding_at.map(|at| now - at),
            }),
            xmpp: self.xmpp.get().map(|x| x.status()),
            routes,
            attempts: attempts
                .into_iter()
                .map(|a| Attempt {
                    at: a.at,
                    transport: a.transport,
                    outcome: a.outcome,
                    message: a.message,
                    confirmed_at: a.confirmed_at,
                })
                .collect(),
        })
    }

    /// The ways to reach `dev`, in the configured order (see [`routes`]).
    async fn routes_of(&self, store: &Store, dev: &DeviceRow, now: i64) -> Result<Vec<Route>> {
        self.routes_with(store, dev, None, now).await
    }

    /// [`Self::routes_of`] with the device's STUN row when already read (`known`).
    async fn routes_with(
        &self,
        store: &Store,
        dev: &DeviceRow,
        known: Option<Option<crate::store::stun::StunRow>>,
        now: i64,
    ) -> Result<Vec<Route>> {
        let udp_on = self.udp.get().is_some() && self.order.contains(&Transport::Udp);
        let xmpp_on = self.xmpp.get().is_some() && self.order.contains(&Transport::Xmpp);
        let (mut udp_reported, mut nat_detected, mut binding) = (None, false, None);
        let mut jabber_id = None;
        if udp_on || xmpp_on {
            let id = dev.id.clone();
            let mut tree = store
                .run(move |s| crate::domain::params::read_tree(s, &id))
                .await?;
            if let Some(t) = dev
                .inform_params
                .as_deref()
                .and_then(|b| crate::domain::params::ParamTree::decode(b).ok())
            {
                tree.overlay(&t);
            }
            let ms = |leaf: &str| {
                ["InternetGatewayDevice", "Device"].iter().find_map(|root| {
                    tree.get(&format!("{root}.ManagementServer.{leaf}"))
                        .and_then(|e| e.value.clone())
                })
            };
            udp_reported = ms("UDPConnectionRequestAddress").filter(|v| !v.is_empty());
            nat_detected = ms("NATDetected").is_some_and(|v| v == "true" || v == "1");
            jabber_id = ms("ConnReqJabberID").filter(|v| !v.trim().is_empty());
        }
        if udp_on {
            let row = match known {
                Some(r) => r,
                None => {
                    let id = dev.id.clone();
                    store.run(move |s| s.stun_of(&id)).await?
                }
            };
            binding = row.and_then(|r| Some((r.binding?, r.seen_at?)));
        }
        Ok(routes(
            &self.order,
            &Reach {
                cr_url: &dev.connection_request_url,
                udp_reported: udp_reported.as_deref(),
                nat_detected,
                stun_binding: binding.as_ref().map(|(b, at)| (b.as_str(), *at)),
                udp_available: udp_on,
                jabber_id: jabber_id.as_deref().filter(|_| xmpp_on),
            },
            now,
            self.binding_max_age_ms,
        ))
    }

    /// The session is about to end (nothing left to send): true when work was added since it
    /// last looked, and it must look again before ending. When false, the session no longer
    /// takes new work: requests from now on are deferred until its lock is released.
    pub fn session_closing(&self, device_id: &str, owner: &str) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.sessions.entry(device_id.to_string()) {
            Entry::Occupied(mut e) if e.get().owner == owner => {
                if e.get().rung {
                    e.get_mut().rung = false;
                    true
                } else {
                    e.remove();
                    false
                }
            }
            _ => false,
        }
    }

    /// The session ended (or never started): forget it. Work it was told about but did not
    /// look at gets a connection request once the lock is released.
    pub fn session_gone(&self, device_id: &str, owner: &str, now: i64) {
        let removed = self.sessions.remove_if(device_id, |_, s| s.owner == owner);
        if let Some((_, s)) = removed {
            if s.rung {
                self.defer(device_id, now, false);
            }
        }
    }

    /// The session continues on another node (which took its saved copy): forget it here.
    /// Work it was told about gets a request unless a session takes it first.
    pub fn session_moved(&self, device_id: &str, owner: &str, now: i64) {
        let removed = self.sessions.remove_if(device_id, |_, s| s.owner == owner);
        if let Some((_, s)) = removed {
            if s.rung {
                self.defer(device_id, now + BUSY_RECHECK_MS, true);
            }
        }
    }

    /// Send deferred requests when they are due, until the process stops. `now` is the
    /// application's clock.
    pub async fn run_deferred(&self, store: &Store, now: impl Fn() -> i64) {
        use futures_util::StreamExt;
        loop {
            let t = now();
            let (due, waiting) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let due: Vec<(String, bool)> = p
                    .iter()
                    .filter(|(_, d)| d.at <= t)
                    .map(|(id, d)| (id.clone(), d.unless_drained))
                    .collect();
                for (d, _) in &due {
                    p.remove(d);
                }
                (due, !p.is_empty())
            };
            futures_util::stream::iter(due)
                .for_each_concurrent(self.permits.available_permits().max(1), |(d, check)| {
                    let t = now();
                    async move {
                        if check && !self.still_needed(store, &d, t).await {
                            return;
                        }
                        if let Err(e) = self.request_for(store, &d, t, Wake::Session).await {
                            tracing::warn!(device = %d, error = %e, "deferred connection request failed");
                        }
                    }
                })
                .await;
            if waiting {
                let _ = tokio::time::timeout(DEFERRED_POLL, self.deferred.notified()).await;
            } else {
                self.deferred.notified().await;
            }
        }
    }
}

/// How a device can be reached (see [`ConnReqService::reachability`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    pub stun: Option<StunBinding>,
    /// ferroacs's XMPP connection, when `[xmpp]` is configured.
    pub xmpp: Option<crate::connreq::xmpp::XmppStatus>,
    pub routes: Vec<Route>,
    /// Newest first.
    pub attempts: Vec<Attempt>,
}

/// A device's STUN credentials and binding (never its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunBinding {
    pub username: String,
    /// The public `address:port` of its connection-request socket.
    pub binding: Option<String>,
    /// When the binding took its value, and how long ago.
    pub binding_at: Option<i64>,
    pub age_ms: Option<i64>,
    /// When an authenticated Binding Request last confirmed it.
    pub seen_at: Option<i64>,
}

/// One connection-request attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: i64,
    pub transport: String,
    pub outcome: String,
    pub message: String,
    /// When the Inform with `6 CONNECTION REQUEST` confirmed it.
    pub confirmed_at: Option<i64>,
}

/// The `ManagementServer.` leaves by which a device tells how to reach it (kept in the
/// stored tree when an Inform reports them changed).
pub const REPORTED_REACH: [&str; 3] = [
    "ConnReqJabberID",
    "UDPConnectionRequestAddress",
    "NATDetected",
];

/// What a device reports about how to reach it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// ConnectionRequestURL (empty when none).
    pub cr_url: &'a str,
    /// UDPConnectionRequestAddress as the device reported it.
    pub udp_reported: Option<&'a str>,
    /// NATDetected: the ConnectionRequestURL is most likely not reachable.
    pub nat_detected: bool,
    /// The binding of the device's authenticated STUN requests and when it was last seen.
    pub stun_binding: Option<(&'a str, i64)>,
    /// UDP connection requests can be sent (the STUN server listens).
    pub udp_available: bool,
    /// ConnReqJabberID, when the device reported one and ferroacs has an XMPP connection.
    pub jabber_id: Option<&'a str>,
}

/// One way to reach a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub transport: Transport,
    /// URL for HTTP, `host:port` for UDP, the device's JID for XMPP.
    pub target: String,
}

/// The routes to a device, in `order`: HTTP when it reported a ConnectionRequestURL (moved
/// last when it reports NATDetected: its URL is a private address); UDP when the STUN server
/// runs and the device has a STUN binding seen within `binding_max_age_ms` (preferred: it
/// was authenticated and is the newest) or reported UDPConnectionRequestAddress; XMPP when
/// ferroacs has an XMPP connection and the device reported its ConnReqJabberID (an XMPP
/// session of its own reaches it through any NAT, so NATDetected does not move it).
pub fn routes(order: &[Transport], r: &Reach, now: i64, binding_max_age_ms: i64) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    for t in order {
        let target = match t {
            Transport::Http => (!r.cr_url.is_empty()).then(|| r.cr_url.to_string()),
            Transport::Udp if r.udp_available => r
                .stun_binding
                .filter(|(_, seen)| now - seen <= binding_max_age_ms)
                .map(|(b, _)| b)
                .or(r.udp_reported)
                .map(str::to_string),
            Transport::Udp => None,
            Transport::Xmpp => r.jabber_id.map(str::to_string),
        };
        if let Some(target) = target {
            out.push(Route {
                transport: *t,
                target,
            });
        }
    }
    if r.nat_detected {
        out.sort_by_key(|route| route.transport == Transport::Http);
    }
    out
}

impl ConnReqService {
    /// Whether a request kept `unless_drained` goes out now: the device still has work no
    /// session took and is not in a session. A device still in a session is looked at
    /// again later.
    async fn still_needed(&self, store: &Store, device_id: &str, now: i64) -> bool {
        let id = device_id.to_string();
        match store.run(move |s| s.get_device(&id)).await {
            Ok(Some(dev)) if dev.session_expires.is_some_and(|until| until > now) => {
                self.defer(device_id, now + BUSY_RECHECK_MS, true);
                false
            }
            Ok(Some(dev)) => dev.has_new_work(),
            Ok(None) => false,
            // Cannot tell: a request too many is harmless, a lost one is not.
            Err(_) => true,
        }
    }
}

fn scheduled(now: i64, at: i64, why: &str) -> CrResult {
    CrResult {
        state: CrState::Scheduled,
        outcome: CrState::Scheduled.as_str(),
        message: why.to_string(),
        transport: None,
        at: now,
        scheduled_at: Some(at),
    }
}

/// The target policy of the configuration, with this process's own listeners refused.
pub fn target_policy(
    config: &crate::config::Config,
    own: &[std::net::SocketAddr],
) -> Result<TargetPolicy> {
    TargetPolicy::new(
        &config.api.connection_request_allow_networks,
        &config.api.connection_request_deny_networks,
    )
    .map(|p| p.with_own_listeners(own))
    .map_err(|e| crate::error::Error::invalid("api.connection_request_allow_networks", e))
}

/// Build the HTTP connection-request client: system trust anchors for `https` URLs.
pub fn http_requester(
    timeout_ms: u64,
    allow_basic: bool,
    policy: TargetPolicy,
) -> Arc<dyn ConnectionRequester> {
    Arc::new(
        crate::connreq::HttpConnReq::new(
            Duration::from_millis(timeout_ms.max(100)),
            allow_basic,
            system_tls(),
        )
        .with_policy(Arc::new(policy)),
    )
}

/// The webhook sender: the connection requests' target policy, system trust anchors.
pub fn webhook_sender(
    timeout_ms: u64,
    policy: TargetPolicy,
) -> crate::connreq::webhook::WebhookSender {
    crate::connreq::webhook::WebhookSender {
        timeout: Duration::from_millis(timeout_ms.max(100)),
        tls_config: system_tls(),
        policy: Arc::new(policy),
    }
}

/// A TLS client configuration trusting the system's certificate authorities (none if the
/// system has no bundle, so `https` targets then fail their handshake).
fn system_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        use rustls_pki_types::pem::PemObject;
        if let Ok(iter) = rustls_pki_types::CertificateDer::pem_file_iter(path) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
            break;
        }
    }
    match crate::connreq::http::tls_config_with_roots(roots) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "TLS for connection requests unavailable");
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn kinds(r: &[Route]) -> Vec<(&'static str, &str)> {
        r.iter()
            .map(|r| (r.transport.as_str(), r.target.as_str()))
            .collect()
    }

    #[test]
    fn transports_parse_in_order_once_each() {
        assert_eq!(
            parse_transports("udp, http").unwrap(),
            vec![Transport::Udp, Transport::Http]
        );
        assert_eq!(parse_transports("http").unwrap(), vec![Transport::Http]);
        assert!(parse_transports("").is_err());
        assert!(parse_transports("http, http").is_err());
        assert_eq!(
            parse_transports("xmpp,http").unwrap(),
            vec![Transport::Xmpp, Transport::Http]
        );
        assert!(parse_transports("smtp").unwrap_err().contains("smtp"));
    }

    #[test]
    fn routes_follow_what_the_device_reports() {
        let order = [Transport::Udp, Transport::Http];
        let url = "http://10.0.0.5:7547/cr";
        // HTTP only: no UDP address, or the STUN server is off.
        let r = Reach {
            cr_url: url,
            udp_available: true,
            ..Reach::default()
        };
        assert_eq!(
            kinds(&routes(&order, &r, NOW, 300_000)),
            vec![("http", url)]
        );
        let r = Reach {
            cr_url: url,
            udp_reported: Some("203.0.113.9:4000"),
            ..Reach::default()
        };
        assert_eq!(
            kinds(&routes(&order, &r, NOW, 300_000)),
            vec![("http", url)]
        );
        // A reported UDP address; a fresh authenticated binding wins over it.
        let mut r = Reach {
            cr_url: url,
            udp_reported: Some("203.0.113.9:4000"),
            udp_available: true,
            ..Reach::default()
        };
        assert_eq!(
            kinds(&routes(&order, &r, NOW, 300_000)),
            vec![("udp", "203.0.113.9:4000"), ("http", url)]
        );
        r.stun_binding = Some(("203.0.113.9:5000", NOW - 1_000));
        assert_eq!(
            kinds(&routes(&order, &r, NOW, 300_000))[0],
            ("udp", "203.0.113.9:5000")
        );
        // A stale binding is not used.
        r.stun_binding = Some(("203.0.113.9:5000", NOW - 400_000));
        assert_eq!(
            kinds(&routes(&order, &r, NOW, 300_000))[0],
            ("udp", "203.0.113.9:4000")
        );
        // The configured order decides, except that NATDetected puts HTTP last.
        let http_first = [Transport::Http, Transport::Udp];
        assert_eq!(
            routes(&http_first, &r, NOW, 300_000)[0].transport,
            Transport::Http
        );
        r.nat_detected = true;
        assert_eq!(
            routes(&http_first, &r, NOW, 300_000)[0].transport,
            Transport::Udp
        );
        // Nothing reported: no route.
        assert!(routes(&order, &Reach::default(), NOW, 300_000).is_empty());
        // XMPP where ordered, when the device reported a ConnReqJabberID (and ferroacs has a
        // connection: `jabber_id` is set only then); NATDetected does not move it.
        let all = [Transport::Xmpp, Transport::Udp, Transport::Http];
        r.jabber_id = Some("cpe@xmpp.example.net/cwmp");
        assert_eq!(
            kinds(&routes(&all, &r, NOW, 300_000)),
            vec![
                ("xmpp", "cpe@xmpp.example.net/cwmp"),
                ("udp", "203.0.113.9:4000"),
                ("http", url)
            ]
        );
        assert_eq!(
            routes(&[Transport::Http, Transport::Xmpp], &r, NOW, 300_000)[0].transport,
            Transport::Xmpp
        );
        assert_eq!(kinds(&routes(&order, &r, NOW, 300_000)).len(), 2);
    }
}
