//! The CWMP session state machine (TR-069 §3.7), as a plain serialisable value.
//!
//! One [`Session`] covers one CPE-initiated session: the HTTP layer decodes
//! each POST, feeds it to [`Session::receive`], acts on the returned [`Step`]
//! and answers with exactly one of [`Session::inform_response`],
//! [`Session::respond`] / [`Session::respond_fault`],
//! [`Session::send_request`] or [`Session::finish`]. The session never does
//! I/O and never reads a clock: callers pass `now_ms`.
//!
//! ```text
//! AwaitInform --Inform / InformResponse--> CpeRequests
//! CpeRequests --CPE request / response-->  CpeRequests
//! CpeRequests --empty POST-->              AcsRequests
//! AcsRequests --response|fault / request-> AcsRequests
//! AcsRequests --finish() = HTTP 204-->     Done
//! ```
//!
//! Rules implemented:
//! * Exactly one Inform, first. A first POST that is not an Inform, a second
//!   Inform, a CPE request after the CPE's empty POST, and a response when no
//!   ACS request is outstanding are [`ProtocolError`]s answered with HTTP 400;
//!   they end the session.
//! * A response is correlated with "the one outstanding request": a missing,
//!   constant or wrong `cwmp:ID` is tolerated and only reported through
//!   `id_matched`. A response of the wrong method becomes a per-request fault
//!   outcome ([`CwmpFault::UNEXPECTED_RESPONSE`]); the session goes on.
//! * An empty POST while a request is outstanding means the envelope carrying
//!   it never reached the CPE (the HTTP response was lost, e.g. the node
//!   serving it died and the CPE's client sent its empty POST again through a
//!   balancer): the same envelope is sent once more ([`Step::Resend`]). A
//!   second empty POST for the same request is its outcome, fault
//!   [`CwmpFault::NO_RESPONSE`]; the session goes on.
//!   A CWMP fault from the CPE is the outcome of the outstanding request.
//! * `HoldRequests`: the ACS may set it on any envelope it sends. It applies
//!   to the CPE's next POST only. If that POST is nevertheless a request, it is
//!   answered with fault 8001 (and the hold is repeated); the session goes on.
//!   An empty POST sent while held does not mean the CPE has no requests
//!   left: when the ACS later calls [`Session::finish`] (HTTP 204) the session
//!   returns to `CpeRequests`, the CPE may send its requests, and its next
//!   empty POST moves to `AcsRequests` again ([`Step::ReadyForRequest`]); the
//!   ACS may send more requests or finish, which then ends the session. An
//!   empty POST sent while not held ends the CPE's requests for good.
//! * `UseCWMPVersion` or `HoldRequests` sent by the CPE on a request is
//!   answered with fault 8003 (the session goes on). The same headers on
//!   responses and faults are ignored.
//! * An unknown method from the CPE is answered with fault 8000.
//! * An empty POST before any Inform or after the end gets HTTP 204
//!   ([`Step::SessionOver`]).
//! * If the caller never produced a reply (lost connection, crashed node) and
//!   the CPE repeats itself, the repeated message is accepted: the reply that
//!   was due is dropped.

use serde::{Deserialize, Serialize};

use super::encode::{encode, encode_request};
use super::fault::CwmpFault;
use super::types::*;

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for (or answering) the Inform.
    AwaitInform,
    /// The CPE may send requests until its empty POST.
    CpeRequests,
    /// The ACS sends requests and the CPE answers them.
    AcsRequests,
    /// The session is over.
    Done,
}

/// What the HTTP layer must do after [`Session::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The CPE's Inform: record it, then answer with
    /// [`Session::inform_response`].
    Inform(Inform, Header),
    /// A CPE request: answer with [`Session::respond`] or
    /// [`Session::respond_fault`] (e.g. 8000 for an unsupported method).
    CpeRequest(CpeRequest),
    /// The CPE has sent its empty POST: answer with
    /// [`Session::send_request`] or [`Session::finish`].
    ReadyForRequest,
    /// The outcome of the outstanding ACS request: record it, then answer with
    /// [`Session::send_request`] or [`Session::finish`].
    Result {
        /// The request that was outstanding.
        request: AcsRequest,
        /// The CPE's response, or its fault (or a local 88xx fault when the CPE
        /// answered with the wrong method or with an empty POST).
        outcome: Result<CpeResponse, CwmpFault>,
        /// Whether the CPE echoed the request's `cwmp:ID` (worth a log line
        /// when false; correlation does not depend on it).
        id_matched: bool,
    },
    /// The CPE sent an empty POST while an ACS request was outstanding: the
    /// envelope carrying the request never reached it. Send this envelope (the
    /// same request and `cwmp:ID`) again. Only once per request: a second empty
    /// POST is a [`Step::Result`] with fault [`CwmpFault::NO_RESPONSE`].
    Resend(Outgoing),
    /// Nothing to do: answer with [`Session::finish`] (HTTP 204).
    SessionOver,
}

/// What to send back on the HTTP connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outgoing {
    /// HTTP 200, `Content-Type: text/xml; charset="utf-8"`, this body.
    Envelope(String),
    /// HTTP 204 No Content, empty body.
    Empty,
}

impl Outgoing {
    /// The envelope text, if any.
    pub fn envelope(&self) -> Option<&str> {
        match self {
            Outgoing::Envelope(s) => Some(s),
            Outgoing::Empty => None,
        }
    }
}

/// How the HTTP layer answers a [`ProtocolError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply<'a> {
    /// HTTP 400 with the error's `Display` text; the session is over.
    BadRequest,
    /// HTTP 200 with this SOAP fault envelope; the session goes on.
    Fault(&'a str),
}

/// A CPE message that breaks the session rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The first message of the session is not an Inform.
    #[error("bad session state: a CWMP session must start with an Inform, but the CPE sent {got}")]
    ExpectedInform {
        /// What was received.
        got: String,
    },
    /// A second Inform in one session.
    #[error("bad session state: the CPE sent a second Inform in the same session")]
    DuplicateInform,
    /// A CPE request after the CPE's empty POST.
    #[error("bad session state: the CPE sent a {method} request after its empty POST, while the ACS had the turn")]
    RequestOutOfTurn {
        /// The request's method.
        method: String,
    },
    /// A response or fault while no ACS request was outstanding.
    #[error("bad session state: the CPE sent {got} but no ACS request was outstanding")]
    UnexpectedResponse {
        /// What was received.
        got: String,
    },
    /// A message after the session ended.
    #[error("bad session state: the session has ended but the CPE sent {got}; a new session must start with an Inform")]
    SessionEnded {
        /// What was received.
        got: String,
    },
    /// The CPE sent an ACS-only header on a request (fault 8003).
    #[error("the CPE sent the {header} header on {method}, but only the ACS may send it; answered with fault 8003")]
    ForbiddenHeader {
        /// `"HoldRequests"` or `"UseCWMPVersion"`.
        header: &'static str,
        /// The request's method.
        method: String,
        /// The fault envelope to send.
        reply: String,
    },
    /// The CPE sent a request although the ACS held requests (fault 8001).
    #[error("the CPE sent a {method} request although the ACS had set HoldRequests; answered with fault 8001")]
    RequestWhileHeld {
        /// The request's method.
        method: String,
        /// The fault envelope to send.
        reply: String,
    },
    /// The CPE called a method this module does not know (fault 8000).
    #[error(
        "the CPE called {method}, which this ACS does not implement; answered with fault 8000"
    )]
    MethodNotSupported {
        /// The element name.
        method: String,
        /// The fault envelope to send.
        reply: String,
    },
}

impl ProtocolError {
    /// How to answer on HTTP.
    pub fn reply(&self) -> ErrorReply<'_> {
        match self {
            ProtocolError::ForbiddenHeader { reply, .. }
            | ProtocolError::RequestWhileHeld { reply, .. }
            | ProtocolError::MethodNotSupported { reply, .. } => ErrorReply::Fault(reply),
            _ => ErrorReply::BadRequest,
        }
    }

    /// Whether the error ended the session (every HTTP 400 case).
    pub fn ends_session(&self) -> bool {
        matches!(self.reply(), ErrorReply::BadRequest)
    }
}

/// A reply method was called when the session was not expecting that reply:
/// a bug in the caller, not in the CPE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// `inform_response` without a pending Inform.
    #[error("no Inform is waiting for an InformResponse")]
    NoInformPending,
    /// `respond`/`respond_fault` without a pending CPE request.
    #[error("no CPE request is waiting for a response")]
    NoCpeRequestPending,
    /// `respond` with the response of another method.
    #[error("the pending CPE request is {expected}; it cannot be answered with {got}")]
    WrongResponse {
        /// The pending request's method.
        expected: String,
        /// The response given.
        got: &'static str,
    },
    /// `send_request` when the CPE has not handed the turn to the ACS.
    #[error("the ACS cannot send a request now (phase {phase:?})")]
    NotAcsTurn {
        /// The current phase.
        phase: Phase,
    },
}

/// The reply the session owes the CPE for the last message received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum ReplyDue {
    /// Nothing (waiting for the CPE).
    Nothing,
    /// InformResponse (or fault 8006).
    Inform {
        id: Option<String>,
        supported_versions: Option<String>,
    },
    /// The response to a CPE request.
    CpeRequest { id: Option<String>, method: String },
    /// An ACS request or 204.
    AcsTurn,
}

/// The ACS request waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Outstanding {
    id: String,
    request: AcsRequest,
    /// The request's envelope was sent a second time after an empty POST.
    #[serde(default)]
    resent: bool,
}

/// One CWMP session. Serialise it (serde) to continue the session on another
/// node or after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    phase: Phase,
    ns: CwmpNs,
    cwmp_version: Option<CwmpVersion>,
    reply_due: ReplyDue,
    outstanding: Option<Outstanding>,
    id_prefix: String,
    next_id: u64,
    /// The last envelope sent carried `HoldRequests` true.
    held: bool,
    /// The CPE sent an empty POST while not held: it has no requests left.
    cpe_done: bool,
    /// The ACS answered 204 while the CPE could still have requests.
    acs_done: bool,
    cpe_session_timeout: Option<u32>,
    started_ms: i64,
    last_activity_ms: i64,
}

fn describe(msg: &Option<Envelope>) -> String {
    match msg {
        None => "an empty POST".to_owned(),
        Some(env) => env.body.name().to_owned(),
    }
}

impl Session {
    /// A session waiting for its Inform.
    pub fn new(now_ms: i64) -> Session {
        Session {
            phase: Phase::AwaitInform,
            ns: CwmpNs::V1_0,
            cwmp_version: None,
            reply_due: ReplyDue::Nothing,
            outstanding: None,
            id_prefix: format!("acs-{now_ms:x}"),
            next_id: 1,
            held: false,
            cpe_done: false,
            acs_done: false,
            cpe_session_timeout: None,
            started_ms: now_ms,
            last_activity_ms: now_ms,
        }
    }

    /// Feeds one HTTP POST from the CPE (`None` for an empty POST).
    pub fn receive(&mut self, msg: Option<Envelope>, now_ms: i64) -> Result<Step, ProtocolError> {
        self.last_activity_ms = now_ms;
        let was_held = std::mem::take(&mut self.held);
        match self.phase {
            Phase::Done => match msg {
                None => Ok(Step::SessionOver),
                Some(_) => Err(self.abort_with(ProtocolError::SessionEnded {
                    got: describe(&msg),
                })),
            },
            Phase::AwaitInform => self.receive_inform(msg),
            Phase::CpeRequests => self.receive_cpe_turn(msg, was_held),
            Phase::AcsRequests => self.receive_acs_turn(msg, was_held),
        }
    }

    fn receive_inform(&mut self, msg: Option<Envelope>) -> Result<Step, ProtocolError> {
        let Some(env) = msg else {
            self.phase = Phase::Done;
            return Ok(Step::SessionOver);
        };
        match env.body {
            IncomingBody::Request(CpeRequest::Inform(inform)) => {
                self.ns = env.ns;
                self.check_request_header(&env.header, "Inform", false)?;
                self.reply_due = ReplyDue::Inform {
                    id: env.header.id.clone(),
                    supported_versions: env.header.supported_cwmp_versions.clone(),
                };
                self.cpe_session_timeout = env.header.session_timeout;
                Ok(Step::Inform(inform, env.header))
            }
            other => Err(self.abort_with(ProtocolError::ExpectedInform {
                got: other.name().to_owned(),
            })),
        }
    }

    fn receive_cpe_turn(
        &mut self,
        msg: Option<Envelope>,
        was_held: bool,
    ) -> Result<Step, ProtocolError> {
        let Some(env) = msg else {
            self.cpe_done = !was_held;
            self.phase = Phase::AcsRequests;
            self.reply_due = ReplyDue::AcsTurn;
            return Ok(Step::ReadyForRequest);
        };
        match env.body {
            IncomingBody::Request(CpeRequest::Inform(_)) => {
                Err(self.abort_with(ProtocolError::DuplicateInform))
            }
            IncomingBody::Request(req) => {
                self.check_request_header(&env.header, req.name(), was_held)?;
                if was_held {
                    let reply = self.fault_reply(env.header.id, CwmpFault::request_denied(), true);
                    return Err(ProtocolError::RequestWhileHeld {
                        method: req.name().to_owned(),
                        reply,
                    });
                }
                self.reply_due = ReplyDue::CpeRequest {
                    id: env.header.id,
                    method: req.name().to_owned(),
                };
                Ok(Step::CpeRequest(req))
            }
            IncomingBody::UnknownMethod(method) => {
                self.reply_due = ReplyDue::Nothing;
                let reply =
                    self.fault_reply(env.header.id, CwmpFault::method_not_supported(), was_held);
                Err(ProtocolError::MethodNotSupported { method, reply })
            }
            IncomingBody::Response(_) | IncomingBody::Fault(_) => {
                Err(self.abort_with(ProtocolError::UnexpectedResponse {
                    got: env.body.name().to_owned(),
                }))
            }
        }
    }

    fn receive_acs_turn(
        &mut self,
        msg: Option<Envelope>,
        was_held: bool,
    ) -> Result<Step, ProtocolError> {
        if let Some(Envelope {
            body: IncomingBody::Request(req),
            ..
        }) = &msg
        {
            return Err(self.abort_with(match req {
                CpeRequest::Inform(_) => ProtocolError::DuplicateInform,
                other => ProtocolError::RequestOutOfTurn {
                    method: other.name().to_owned(),
                },
            }));
        }
        let Some(out) = self.outstanding.take() else {
            return match msg {
                // The reply to the previous message was never delivered and the
                // CPE repeated its empty POST: the turn is still the ACS's.
                None => {
                    self.reply_due = ReplyDue::AcsTurn;
                    Ok(Step::ReadyForRequest)
                }
                Some(_) => Err(self.abort_with(ProtocolError::UnexpectedResponse {
                    got: describe(&msg),
                })),
            };
        };
        let Some(env) = msg else {
            if !out.resent {
                // The envelope with the request was lost on its way: the same again.
                self.held = was_held;
                let text = self.request_envelope(&out.id, was_held, &out.request);
                self.outstanding = Some(Outstanding {
                    resent: true,
                    ..out
                });
                return Ok(Step::Resend(Outgoing::Envelope(text)));
            }
            self.reply_due = ReplyDue::AcsTurn;
            let fault = CwmpFault::new(
                CwmpFault::NO_RESPONSE,
                format!(
                    "the CPE sent an empty POST instead of {}",
                    out.request.response_name()
                ),
            );
            return Ok(Step::Result {
                request: out.request,
                outcome: Err(fault),
                id_matched: false,
            });
        };
        self.reply_due = ReplyDue::AcsTurn;
        let id_matched = env.header.id.as_deref() == Some(out.id.as_str());
        let outcome = match env.body {
            IncomingBody::Response(resp) if resp.matches(&out.request) => Ok(resp),
            IncomingBody::Fault(fault) => Err(fault),
            other => Err(CwmpFault::new(
                CwmpFault::UNEXPECTED_RESPONSE,
                format!(
                    "expected {} but the CPE sent {}",
                    out.request.response_name(),
                    other.name()
                ),
            )),
        };
        Ok(Step::Result {
            request: out.request,
            outcome,
            id_matched,
        })
    }

    /// Rejects ACS-only headers on a CPE request with fault 8003.
    fn check_request_header(
        &mut self,
        header: &Header,
        method: &str,
        was_held: bool,
    ) -> Result<(), ProtocolError> {
        let forbidden = if header.use_cwmp_version.is_some() {
            "UseCWMPVersion"
        } else if header.hold_requests.is_some() {
            "HoldRequests"
        } else {
            return Ok(());
        };
        self.reply_due = ReplyDue::Nothing;
        let reply = self.fault_reply(header.id.clone(), CwmpFault::invalid_arguments(), was_held);
        Err(ProtocolError::ForbiddenHeader {
            header: forbidden,
            method: method.to_owned(),
            reply,
        })
    }

    fn abort_with(&mut self, err: ProtocolError) -> ProtocolError {
        self.phase = Phase::Done;
        self.reply_due = ReplyDue::Nothing;
        self.outstanding = None;
        err
    }

    fn envelope(
        &self,
        id: Option<String>,
        hold: bool,
        use_version: Option<CwmpVersion>,
        body: &OutgoingBody,
    ) -> String {
        let header = Header {
            id,
            hold_requests: hold.then_some(true),
            use_cwmp_version: use_version.map(|v| v.as_str().to_owned()),
            ..Header::default()
        };
        encode(self.ns, &header, body)
    }

    fn fault_reply(&mut self, id: Option<String>, fault: CwmpFault, hold: bool) -> String {
        self.held = hold;
        self.envelope(id, hold, None, &OutgoingBody::Fault(fault))
    }

    /// Answers the Inform: `InformResponse` with `MaxEnvelopes` 1, the
    /// Inform's `cwmp:ID` echoed, `HoldRequests` when `hold_requests`, and
    /// `UseCWMPVersion` (highest common of 1.0-1.4) when the CPE sent
    /// `SupportedCWMPVersions`. Without a common version the answer is fault
    /// 8006 and the session is over ([`Session::is_done`]).
    pub fn inform_response(&mut self, hold_requests: bool) -> Result<Outgoing, UsageError> {
        let ReplyDue::Inform {
            id,
            supported_versions,
        } = std::mem::replace(&mut self.reply_due, ReplyDue::Nothing)
        else {
            return Err(UsageError::NoInformPending);
        };
        let offered = supported_versions.filter(|s| !s.trim().is_empty());
        if let Some(offered) = offered {
            match CwmpVersion::negotiate(&offered) {
                Some(version) => self.cwmp_version = Some(version),
                None => {
                    self.phase = Phase::Done;
                    let body = OutgoingBody::Fault(CwmpFault::version_incompatible());
                    return Ok(Outgoing::Envelope(self.envelope(id, false, None, &body)));
                }
            }
        }
        self.phase = Phase::CpeRequests;
        self.held = hold_requests;
        let body = OutgoingBody::Response(AcsResponse::Inform { max_envelopes: 1 });
        Ok(Outgoing::Envelope(self.envelope(
            id,
            hold_requests,
            self.cwmp_version,
            &body,
        )))
    }

    /// Answers the pending CPE request (its `cwmp:ID` is echoed).
    pub fn respond(
        &mut self,
        response: AcsResponse,
        hold_requests: bool,
    ) -> Result<Outgoing, UsageError> {
        let ReplyDue::CpeRequest { method, .. } = &self.reply_due else {
            return Err(UsageError::NoCpeRequestPending);
        };
        if response.name().strip_suffix("Response") != Some(method.as_str()) {
            return Err(UsageError::WrongResponse {
                expected: method.clone(),
                got: response.name(),
            });
        }
        self.answer_cpe_request(OutgoingBody::Response(response), hold_requests)
    }

    /// Answers the pending CPE request with a fault (e.g.
    /// [`CwmpFault::method_not_supported`]).
    pub fn respond_fault(
        &mut self,
        fault: CwmpFault,
        hold_requests: bool,
    ) -> Result<Outgoing, UsageError> {
        if !matches!(self.reply_due, ReplyDue::CpeRequest { .. }) {
            return Err(UsageError::NoCpeRequestPending);
        }
        self.answer_cpe_request(OutgoingBody::Fault(fault), hold_requests)
    }

    fn answer_cpe_request(
        &mut self,
        body: OutgoingBody,
        hold: bool,
    ) -> Result<Outgoing, UsageError> {
        let ReplyDue::CpeRequest { id, .. } =
            std::mem::replace(&mut self.reply_due, ReplyDue::Nothing)
        else {
            return Err(UsageError::NoCpeRequestPending);
        };
        self.held = hold;
        Ok(Outgoing::Envelope(self.envelope(id, hold, None, &body)))
    }

    /// The envelope carrying ACS request `request` with `cwmp:ID` `id`.
    fn request_envelope(&self, id: &str, hold_requests: bool, request: &AcsRequest) -> String {
        let header = Header {
            id: Some(id.to_owned()),
            hold_requests: hold_requests.then_some(true),
            ..Header::default()
        };
        encode_request(self.ns, &header, request)
    }

    /// Sends the next ACS request with a fresh `cwmp:ID`. Allowed after
    /// [`Step::ReadyForRequest`] and [`Step::Result`].
    pub fn send_request(
        &mut self,
        request: AcsRequest,
        hold_requests: bool,
    ) -> Result<Outgoing, UsageError> {
        if self.reply_due != ReplyDue::AcsTurn {
            return Err(UsageError::NotAcsTurn { phase: self.phase });
        }
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        self.next_id += 1;
        self.reply_due = ReplyDue::Nothing;
        self.held = hold_requests;
        let text = self.request_envelope(&id, hold_requests, &request);
        self.outstanding = Some(Outstanding {
            id,
            request,
            resent: false,
        });
        Ok(Outgoing::Envelope(text))
    }

    /// Answers with HTTP 204. Normally this ends the session. If the CPE's
    /// empty POST was sent while requests were held, the CPE may still have
    /// requests: the session returns to [`Phase::CpeRequests`] instead (see the
    /// module documentation). Called at any other point it aborts the session.
    pub fn finish(&mut self) -> Outgoing {
        let acs_turn = self.phase == Phase::AcsRequests && self.reply_due == ReplyDue::AcsTurn;
        self.held = false;
        self.reply_due = ReplyDue::Nothing;
        self.outstanding = None;
        if acs_turn && !self.cpe_done {
            self.phase = Phase::CpeRequests;
            self.acs_done = true;
        } else {
            self.phase = Phase::Done;
        }
        Outgoing::Empty
    }

    /// Ends the session without a reply (e.g. after a decode error answered
    /// with HTTP 400).
    pub fn abort(&mut self) {
        self.phase = Phase::Done;
        self.reply_due = ReplyDue::Nothing;
        self.outstanding = None;
        self.held = false;
    }

    /// Whether the session is over.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the session may end without any further message: it is over,
    /// or the ACS has answered 204 and only a CPE that was released from a
    /// hold might still send requests. A new Inform from the device may
    /// replace such a session.
    pub fn is_quiescent(&self) -> bool {
        self.phase == Phase::Done
            || (self.phase == Phase::CpeRequests
                && self.acs_done
                && self.reply_due == ReplyDue::Nothing)
    }

    /// Whether the session has been idle for longer than `timeout_ms`.
    pub fn is_idle_expired(&self, now_ms: i64, timeout_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_activity_ms) > timeout_ms
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The `cwmp` namespace of the session (from the Inform; cwmp-1-0 before).
    pub fn ns(&self) -> CwmpNs {
        self.ns
    }

    /// The version announced with `UseCWMPVersion`, if negotiated.
    pub fn cwmp_version(&self) -> Option<CwmpVersion> {
        self.cwmp_version
    }

    /// The ACS request waiting for its response.
    pub fn outstanding_request(&self) -> Option<&AcsRequest> {
        self.outstanding.as_ref().map(|o| &o.request)
    }

    /// Whether the last envelope sent asked the CPE to hold its requests.
    pub fn holds_requests(&self) -> bool {
        self.held
    }

    /// The `SessionTimeout` (seconds) the CPE announced in its Inform.
    pub fn cpe_session_timeout(&self) -> Option<u32> {
        self.cpe_session_timeout
    }

    /// When the session started.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// When the last message was received.
    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity_ms
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::decode::parse_outgoing;
    use crate::testdata;

    const T0: i64 = 1_700_000_000_000;

    fn env(id: Option<&str>, body: IncomingBody) -> Option<Envelope> {
        Some(Envelope {
            ns: CwmpNs::V1_0,
            header: Header {
                id: id.map(str::to_owned),
                ..Header::default()
            },
            body,
        })
    }

    fn inform_msg(id: Option<&str>) -> Option<Envelope> {
        env(
            id,
            IncomingBody::Request(testdata::cpe_requests().remove(0)),
        )
    }

    fn request(req: CpeRequest, id: &str) -> Option<Envelope> {
        env(Some(id), IncomingBody::Request(req))
    }

    fn response(resp: CpeResponse, id: Option<&str>) -> Option<Envelope> {
        env(id, IncomingBody::Response(resp))
    }

    fn transfer_complete() -> CpeRequest {
        testdata::cpe_requests().remove(1)
    }

    fn gpv() -> AcsRequest {
        testdata::acs_requests().remove(2)
    }

    fn gpv_response() -> CpeResponse {
        testdata::cpe_responses().remove(2)
    }

    /// Parses what the session sent.
    fn sent(out: &Outgoing) -> OutgoingEnvelope {
        parse_outgoing(out.envelope().expect("an envelope"))
            .unwrap()
            .unwrap()
    }

    fn sent_id(out: &Outgoing) -> String {
        sent(out).header.id.unwrap()
    }

    /// A session that has answered the Inform.
    fn informed(hold: bool) -> Session {
        let mut s = Session::new(T0);
        assert!(matches!(
            s.receive(inform_msg(Some("inf-1")), T0).unwrap(),
            Step::Inform(..)
        ));
        s.inform_response(hold).unwrap();
        s
    }

    /// A session where the CPE has handed the turn to the ACS.
    fn acs_turn() -> Session {
        let mut s = informed(false);
        assert_eq!(s.receive(None, T0 + 1).unwrap(), Step::ReadyForRequest);
        s
    }

    #[test]
    fn inform_is_answered_with_echoed_id() {
        let mut s = Session::new(T0);
        assert_eq!(s.phase(), Phase::AwaitInform);
        let Step::Inform(inform, header) = s.receive(inform_msg(Some("inf-1")), T0).unwrap() else {
            panic!("expected Inform");
        };
        assert_eq!(inform.device_id.oui, "00D09E");
        assert_eq!(header.id.as_deref(), Some("inf-1"));
        let out = s.inform_response(false).unwrap();
        let e = sent(&out);
        assert_eq!(e.header.id.as_deref(), Some("inf-1"));
        assert_eq!(e.header.hold_requests, None);
        assert_eq!(e.header.use_cwmp_version, None);
        assert_eq!(
            e.body,
            OutgoingBody::Response(AcsResponse::Inform { max_envelopes: 1 })
        );
        assert_eq!(s.phase(), Phase::CpeRequests);
        assert_eq!(s.inform_response(false), Err(UsageError::NoInformPending));
    }

    #[test]
    fn inform_without_id_is_answered_without_id() {
        let mut s = Session::new(T0);
        s.receive(inform_msg(None), T0).unwrap();
        let out = s.inform_response(false).unwrap();
        assert_eq!(sent(&out).header, Header::default());
    }

    #[test]
    fn session_namespace_follows_the_inform() {
        let mut s = Session::new(T0);
        let mut msg = inform_msg(Some("1")).unwrap();
        msg.ns = CwmpNs::V1_4;
        s.receive(Some(msg), T0).unwrap();
        assert_eq!(s.ns(), CwmpNs::V1_4);
        let out = s.inform_response(false).unwrap();
        assert!(out
            .envelope()
            .unwrap()
            .contains("xmlns:cwmp=\"urn:dslforum-org:cwmp-1-4\""));
    }

    #[test]
    fn version_negotiation() {
        let mut s = Session::new(T0);
        let mut msg = inform_msg(Some("1")).unwrap();
        msg.ns = CwmpNs::V1_2;
        msg.header.supported_cwmp_versions = Some("1.0,1.1,1.2,1.3,1.4".into());
        msg.header.session_timeout = Some(45);
        s.receive(Some(msg), T0).unwrap();
        let out = s.inform_response(true).unwrap();
        let e = sent(&out);
        assert_eq!(e.header.use_cwmp_version.as_deref(), Some("1.4"));
        assert_eq!(e.header.hold_requests, Some(true));
        assert_eq!(s.cwmp_version(), Some(CwmpVersion::V1_4));
        assert_eq!(s.cpe_session_timeout(), Some(45));
        assert!(s.holds_requests());
    }

    #[test]
    fn no_common_version_gives_fault_8006_and_ends() {
        let mut s = Session::new(T0);
        let mut msg = inform_msg(Some("1")).unwrap();
        msg.ns = CwmpNs::V1_2;
        msg.header.supported_cwmp_versions = Some("2.0".into());
        s.receive(Some(msg), T0).unwrap();
        let out = s.inform_response(false).unwrap();
        let e = sent(&out);
        assert_eq!(e.header.id.as_deref(), Some("1"));
        assert_eq!(
            e.body,
            OutgoingBody::Fault(CwmpFault::version_incompatible())
        );
        assert!(s.is_done());
    }

    #[test]
    fn first_post_must_be_an_inform() {
        let mut s = Session::new(T0);
        let err = s
            .receive(request(transfer_complete(), "1"), T0)
            .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::ExpectedInform {
                got: "TransferComplete".into()
            }
        );
        assert_eq!(err.reply(), ErrorReply::BadRequest);
        assert!(err.ends_session());
        assert!(err.to_string().contains("must start with an Inform"));
        assert!(s.is_done());
    }

    #[test]
    fn empty_post_without_session_gets_204() {
        let mut s = Session::new(T0);
        assert_eq!(s.receive(None, T0).unwrap(), Step::SessionOver);
        assert!(s.is_done());
        assert_eq!(s.finish(), Outgoing::Empty);
        assert_eq!(s.receive(None, T0).unwrap(), Step::SessionOver);
    }

    #[test]
    fn repeated_inform_before_reply_is_accepted() {
        let mut s = Session::new(T0);
        s.receive(inform_msg(Some("1")), T0).unwrap();
        // The InformResponse was never sent; the CPE tries again.
        assert!(matches!(
            s.receive(inform_msg(Some("2")), T0 + 5).unwrap(),
            Step::Inform(..)
        ));
        assert_eq!(sent_id(&s.inform_response(false).unwrap()), "2");
    }

    #[test]
    fn cpe_request_is_answered_with_its_id() {
        let mut s = informed(false);
        let step = s
            .receive(request(transfer_complete(), "tc-9"), T0 + 1)
            .unwrap();
        assert_eq!(step, Step::CpeRequest(transfer_complete()));
        assert_eq!(
            s.respond(
                AcsResponse::Kicked {
                    next_url: "x".into()
                },
                false
            ),
            Err(UsageError::WrongResponse {
                expected: "TransferComplete".into(),
                got: "KickedResponse"
            })
        );
        let out = s.respond(AcsResponse::TransferComplete, false).unwrap();
        let e = sent(&out);
        assert_eq!(e.header.id.as_deref(), Some("tc-9"));
        assert_eq!(
            e.body,
            OutgoingBody::Response(AcsResponse::TransferComplete)
        );
        assert_eq!(s.phase(), Phase::CpeRequests);
        assert_eq!(
            s.respond(AcsResponse::TransferComplete, false),
            Err(UsageError::NoCpeRequestPending)
        );
    }

    #[test]
    fn cpe_request_can_be_refused_with_a_fault() {
        let mut s = informed(false);
        s.receive(request(CpeRequest::Kicked(Kicked::default()), "k"), T0)
            .unwrap();
        let out = s
            .respond_fault(CwmpFault::method_not_supported(), false)
            .unwrap();
        let e = sent(&out);
        assert_eq!(e.header.id.as_deref(), Some("k"));
        assert_eq!(
            e.body,
            OutgoingBody::Fault(CwmpFault::method_not_supported())
        );
        assert_eq!(
            s.respond_fault(CwmpFault::method_not_supported(), false),
            Err(UsageError::NoCpeRequestPending)
        );
    }

    #[test]
    fn unknown_cpe_method_gets_fault_8000_and_session_continues() {
        let mut s = informed(false);
        let err = s
            .receive(
                env(Some("u1"), IncomingBody::UnknownMethod("X_Foo".into())),
                T0,
            )
            .unwrap_err();
        let ErrorReply::Fault(xml) = err.reply() else {
            panic!("expected a fault reply");
        };
        let e = parse_outgoing(xml).unwrap().unwrap();
        assert_eq!(e.header.id.as_deref(), Some("u1"));
        assert_eq!(
            e.body,
            OutgoingBody::Fault(CwmpFault::method_not_supported())
        );
        assert!(!err.ends_session());
        assert_eq!(s.phase(), Phase::CpeRequests);
        assert_eq!(s.receive(None, T0).unwrap(), Step::ReadyForRequest);
    }

    #[test]
    fn acs_only_headers_from_the_cpe_get_fault_8003() {
        let mut s = informed(false);
        let mut msg = request(transfer_complete(), "h1").unwrap();
        msg.header.hold_requests = Some(false);
        let err = s.receive(Some(msg), T0).unwrap_err();
        assert!(matches!(
            &err,
            ProtocolError::ForbiddenHeader {
                header: "HoldRequests",
                ..
            }
        ));
        let ErrorReply::Fault(xml) = err.reply() else {
            panic!("expected a fault reply");
        };
        let e = parse_outgoing(xml).unwrap().unwrap();
        assert_eq!(e.header.id.as_deref(), Some("h1"));
        assert_eq!(e.body, OutgoingBody::Fault(CwmpFault::invalid_arguments()));
        assert_eq!(s.phase(), Phase::CpeRequests);

        let mut s = Session::new(T0);
        let mut msg = inform_msg(Some("1")).unwrap();
        msg.header.use_cwmp_version = Some("1.4".into());
        assert!(matches!(
            s.receive(Some(msg), T0),
            Err(ProtocolError::ForbiddenHeader {
                header: "UseCWMPVersion",
                ..
            })
        ));
        assert_eq!(s.phase(), Phase::AwaitInform);
        assert_eq!(s.inform_response(false), Err(UsageError::NoInformPending));
    }

    #[test]
    fn acs_only_headers_on_responses_are_ignored() {
        let mut s = acs_turn();
        s.send_request(gpv(), false).unwrap();
        let mut msg = response(gpv_response(), None).unwrap();
        msg.header.hold_requests = Some(true);
        assert!(matches!(
            s.receive(Some(msg), T0).unwrap(),
            Step::Result { outcome: Ok(_), .. }
        ));
    }

    #[test]
    fn second_inform_is_a_bad_request() {
        let mut s = informed(false);
        assert_eq!(
            s.receive(inform_msg(Some("x")), T0),
            Err(ProtocolError::DuplicateInform)
        );
        assert!(s.is_done());
        let mut s = acs_turn();
        s.send_request(gpv(), false).unwrap();
        assert_eq!(
            s.receive(inform_msg(Some("x")), T0),
            Err(ProtocolError::DuplicateInform)
        );
        assert!(s.is_done());
    }

    #[test]
    fn response_during_cpe_turn_is_a_bad_request() {
        let mut s = informed(false);
        let err = s
            .receive(response(gpv_response(), Some("1")), T0)
            .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::UnexpectedResponse {
                got: "GetParameterValuesResponse".into()
            }
        );
        assert!(err.ends_session());
        assert!(s.is_done());
    }

    #[test]
    fn acs_requests_get_fresh_ids_and_correlate_responses() {
        let mut s = acs_turn();
        assert_eq!(s.phase(), Phase::AcsRequests);
        let out = s.send_request(gpv(), false).unwrap();
        let e = sent(&out);
        assert_eq!(e.body, OutgoingBody::Request(gpv()));
        let id1 = e.header.id.unwrap();
        assert_eq!(s.outstanding_request(), Some(&gpv()));
        assert_eq!(
            s.send_request(gpv(), false),
            Err(UsageError::NotAcsTurn {
                phase: Phase::AcsRequests
            })
        );

        let step = s
            .receive(response(gpv_response(), Some(&id1)), T0 + 2)
            .unwrap();
        assert_eq!(
            step,
            Step::Result {
                request: gpv(),
                outcome: Ok(gpv_response()),
                id_matched: true
            }
        );
        assert_eq!(s.outstanding_request(), None);

        let reboot = AcsRequest::Reboot(Reboot {
            command_key: "rb".into(),
        });
        let id2 = sent_id(&s.send_request(reboot.clone(), false).unwrap());
        assert_ne!(id1, id2);
        // A constant or missing ID is tolerated.
        let step = s
            .receive(response(CpeResponse::Reboot, Some("constant")), T0)
            .unwrap();
        assert_eq!(
            step,
            Step::Result {
                request: reboot,
                outcome: Ok(CpeResponse::Reboot),
                id_matched: false
            }
        );
    }

    #[test]
    fn cpe_fault_is_the_outcome_of_the_outstanding_request() {
        let mut s = acs_turn();
        let spv = testdata::acs_requests().remove(3);
        let id = sent_id(&s.send_request(spv.clone(), false).unwrap());
        let step = s
            .receive(
                env(Some(&id), IncomingBody::Fault(testdata::cpe_spv_fault())),
                T0,
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Result {
                request: spv,
                outcome: Err(testdata::cpe_spv_fault()),
                id_matched: true
            }
        );
        assert_eq!(s.phase(), Phase::AcsRequests);
    }

    #[test]
    fn mismatched_response_is_a_per_request_fault() {
        let mut s = acs_turn();
        s.send_request(gpv(), false).unwrap();
        let Step::Result { outcome, .. } =
            s.receive(response(CpeResponse::Reboot, None), T0).unwrap()
        else {
            panic!("expected a result");
        };
        let fault = outcome.unwrap_err();
        assert_eq!(fault.code, CwmpFault::UNEXPECTED_RESPONSE);
        assert!(fault.string.contains("GetParameterValuesResponse"));
        assert!(fault.string.contains("RebootResponse"));
        // The session goes on.
        assert!(s.send_request(gpv(), false).is_ok());
        let Step::Result { outcome, .. } = s
            .receive(env(None, IncomingBody::UnknownMethod("X_Odd".into())), T0)
            .unwrap()
        else {
            panic!("expected a result");
        };
        assert_eq!(outcome.unwrap_err().code, CwmpFault::UNEXPECTED_RESPONSE);
    }

    #[test]
    fn empty_post_instead_of_a_response() {
        let mut s = acs_turn();
        let Outgoing::Envelope(sent) = s.send_request(gpv(), false).unwrap() else {
            panic!("expected an envelope");
        };
        // The first empty POST: the envelope never arrived; the same one again.
        let Step::Resend(Outgoing::Envelope(again)) = s.receive(None, T0).unwrap() else {
            panic!("expected the request again");
        };
        assert_eq!(again, sent, "same request, same cwmp:ID");
        assert_eq!(s.outstanding_request(), Some(&gpv()));
        // A second one: the CPE does not answer it.
        let Step::Result {
            request, outcome, ..
        } = s.receive(None, T0).unwrap()
        else {
            panic!("expected a result");
        };
        assert_eq!(request, gpv());
        assert_eq!(outcome.unwrap_err().code, CwmpFault::NO_RESPONSE);
        assert_eq!(s.finish(), Outgoing::Empty);
        assert!(s.is_done());
    }

    #[test]
    fn cpe_request_during_acs_turn_is_a_bad_request() {
        let mut s = acs_turn();
        s.send_request(gpv(), false).unwrap();
        let err = s
            .receive(request(transfer_complete(), "1"), T0)
            .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::RequestOutOfTurn {
                method: "TransferComplete".into()
            }
        );
        assert!(s.is_done());
        assert_eq!(s.outstanding_request(), None);
    }

    #[test]
    fn response_with_nothing_outstanding_is_a_bad_request() {
        let mut s = acs_turn();
        let err = s.receive(response(gpv_response(), None), T0).unwrap_err();
        assert!(matches!(err, ProtocolError::UnexpectedResponse { .. }));
        assert!(s.is_done());
    }

    #[test]
    fn finish_ends_the_session_and_strays_get_204() {
        let mut s = acs_turn();
        assert_eq!(s.finish(), Outgoing::Empty);
        assert!(s.is_done());
        assert!(s.is_quiescent());
        assert_eq!(s.receive(None, T0 + 9).unwrap(), Step::SessionOver);
        assert_eq!(s.finish(), Outgoing::Empty);
        let err = s.receive(inform_msg(Some("new")), T0 + 10).unwrap_err();
        assert!(matches!(err, ProtocolError::SessionEnded { ref got } if got == "Inform"));
        assert_eq!(err.reply(), ErrorReply::BadRequest);
    }

    #[test]
    fn repeated_empty_post_keeps_the_acs_turn() {
        let mut s = acs_turn();
        // The reply to the empty POST got lost and the CPE posts again.
        assert_eq!(s.receive(None, T0 + 3).unwrap(), Step::ReadyForRequest);
        assert!(s.send_request(gpv(), false).is_ok());
    }

    #[test]
    fn send_request_only_on_the_acs_turn() {
        let mut s = informed(false);
        assert_eq!(
            s.send_request(gpv(), false),
            Err(UsageError::NotAcsTurn {
                phase: Phase::CpeRequests
            })
        );
    }

    #[test]
    fn held_cpe_request_gets_fault_8001_and_stays_held() {
        let mut s = informed(true);
        let err = s
            .receive(request(transfer_complete(), "t1"), T0)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::RequestWhileHeld { .. }));
        let ErrorReply::Fault(xml) = err.reply() else {
            panic!("expected a fault reply");
        };
        let e = parse_outgoing(xml).unwrap().unwrap();
        assert_eq!(e.header.id.as_deref(), Some("t1"));
        assert_eq!(e.header.hold_requests, Some(true));
        assert_eq!(e.body, OutgoingBody::Fault(CwmpFault::request_denied()));
        assert!(s.holds_requests());
        assert_eq!(s.phase(), Phase::CpeRequests);
    }

    #[test]
    fn hold_release_lets_the_cpe_send_requests_after_the_acs_finishes() {
        // InformResponse with HoldRequests: the CPE must send an empty POST.
        let mut s = informed(true);
        assert_eq!(s.receive(None, T0 + 1).unwrap(), Step::ReadyForRequest);
        assert!(!s.holds_requests());
        let id = sent_id(&s.send_request(gpv(), true).unwrap());
        assert!(matches!(
            s.receive(response(gpv_response(), Some(&id)), T0 + 2)
                .unwrap(),
            Step::Result { outcome: Ok(_), .. }
        ));
        // The ACS is done; the CPE was held, so it gets its turn back.
        assert_eq!(s.finish(), Outgoing::Empty);
        assert_eq!(s.phase(), Phase::CpeRequests);
        assert!(!s.is_done());
        assert!(s.is_quiescent());
        let step = s
            .receive(request(transfer_complete(), "tc"), T0 + 3)
            .unwrap();
        assert_eq!(step, Step::CpeRequest(transfer_complete()));
        assert!(!s.is_quiescent());
        s.respond(AcsResponse::TransferComplete, false).unwrap();
        // Its empty POST hands the turn back to the ACS, which may finish.
        assert_eq!(s.receive(None, T0 + 4).unwrap(), Step::ReadyForRequest);
        assert_eq!(s.finish(), Outgoing::Empty);
        assert!(s.is_done());
    }

    #[test]
    fn hold_set_on_a_cpe_response_applies_to_the_next_post() {
        let mut s = informed(false);
        s.receive(request(transfer_complete(), "1"), T0).unwrap();
        let out = s.respond(AcsResponse::TransferComplete, true).unwrap();
        assert_eq!(sent(&out).header.hold_requests, Some(true));
        assert!(matches!(
            s.receive(request(transfer_complete(), "2"), T0),
            Err(ProtocolError::RequestWhileHeld { .. })
        ));
        // Empty POST while held, then the ACS finishes: CPE turn again.
        assert_eq!(s.receive(None, T0).unwrap(), Step::ReadyForRequest);
        s.finish();
        assert_eq!(s.phase(), Phase::CpeRequests);
        assert_eq!(s.receive(None, T0).unwrap(), Step::ReadyForRequest);
        s.finish();
        assert!(s.is_done());
    }

    #[test]
    fn finish_without_hold_ends_even_after_cpe_requests() {
        let mut s = informed(false);
        s.receive(request(transfer_complete(), "1"), T0).unwrap();
        s.respond(AcsResponse::TransferComplete, false).unwrap();
        s.receive(None, T0).unwrap();
        s.finish();
        assert!(s.is_done());
    }

    #[test]
    fn finish_mid_request_aborts() {
        let mut s = acs_turn();
        s.send_request(gpv(), false).unwrap();
        assert_eq!(s.finish(), Outgoing::Empty);
        assert!(s.is_done());
        assert_eq!(s.outstanding_request(), None);
        let mut s = informed(false);
        s.abort();
        assert!(s.is_done());
    }

    #[test]
    fn idle_timeout() {
        let mut s = Session::new(T0);
        assert!(!s.is_idle_expired(T0 + 30_000, 30_000));
        assert!(s.is_idle_expired(T0 + 30_001, 30_000));
        s.receive(inform_msg(Some("1")), T0 + 20_000).unwrap();
        assert_eq!(s.last_activity_ms(), T0 + 20_000);
        assert_eq!(s.started_ms(), T0);
        assert!(!s.is_idle_expired(T0 + 40_000, 30_000));
    }

    #[test]
    fn session_survives_a_json_round_trip_mid_request() {
        let mut s = acs_turn();
        let spv = testdata::acs_requests().remove(3);
        let id = sent_id(&s.send_request(spv.clone(), true).unwrap());
        let json = serde_json::to_string(&s).unwrap();
        let mut restored: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, s);
        let step = restored
            .receive(
                response(CpeResponse::SetParameterValues { status: 0 }, Some(&id)),
                T0,
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Result {
                request: spv,
                outcome: Ok(CpeResponse::SetParameterValues { status: 0 }),
                id_matched: true
            }
        );
        let next = sent_id(&restored.send_request(gpv(), false).unwrap());
        assert_ne!(next, id);
    }
}
