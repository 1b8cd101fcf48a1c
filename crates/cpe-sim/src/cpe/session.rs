//! The CWMP session runner: Inform, the CPE's own requests, the empty POST, then the ACS's
//! requests until HTTP 204, followed by what the device does after the session (reboot,
//! factory reset, file transfers, software-module changes).
//!
//! Every POST/response pair is recorded in a [`SessionReport`]. Deviations the simulator
//! tolerates but a conformant ACS would not produce are listed in [`SessionReport::notes`].

use std::time::{Duration, Instant};

use super::device::{AfterAction, CpeRequest, Device, Event};
use super::http::HttpClient;
use super::rpc;
use super::transfer::{self, DownloadedFile, TransferResult};
use super::xml;
use super::SimError;

/// Upper bound on POSTs in one session.
const MAX_MESSAGES: usize = 100_000;

/// One POST and the ACS's answer to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    /// What the CPE sent: `Inform`, a CPE request name, `""` for the empty POST, an RPC
    /// response name (`GetParameterValuesResponse`) or `Fault`.
    pub sent: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Local name of the Body element of the answer (`InformResponse`,
    /// `GetParameterValues`, `Fault`...), `None` for an empty answer.
    pub acs_rpc: Option<String>,
    /// `cwmp:ID` of the answer.
    pub cwmp_id: Option<String>,
    /// Fault code the CPE sent in this POST, if it was a fault.
    pub fault_code: Option<u32>,
}

/// What happened in one session.
#[derive(Debug, Clone, Default)]
pub struct SessionReport {
    /// Every POST and its answer, in order.
    pub exchanges: Vec<Exchange>,
    /// HTTP status of the last answer (204 for a properly ended session).
    pub final_status: u16,
    /// TCP connections opened for the session.
    pub connections: usize,
    /// Requests re-sent because a kept-alive connection had been closed by the ACS.
    pub reconnects: usize,
    /// HTTP 401 answers received.
    pub auth_challenges: usize,
    /// Events sent in the Inform.
    pub events: Vec<Event>,
    /// Parameter names sent in the Inform's ParameterList.
    pub inform_params: Vec<String>,
    /// UseCWMPVersion from the InformResponse.
    pub use_cwmp_version: Option<String>,
    /// Whether any answer carried HoldRequests=true.
    pub hold_requests: bool,
    /// ACS request names in the order received.
    pub acs_methods: Vec<String>,
    /// Parameters written by SetParameterValues: (name, stored value).
    pub params_set: Vec<(String, String)>,
    /// Faults the CPE answered with: (ACS method, fault code).
    pub faults_sent: Vec<(String, u32)>,
    /// CPE requests the ACS acknowledged (`TransferComplete`...).
    pub cpe_requests: Vec<String>,
    /// Transfers performed right after the session.
    pub transfers: Vec<TransferResult>,
    /// Deviations noticed in ACS messages (wrong namespace, arrayType mismatch, ...).
    pub notes: Vec<String>,
    /// Wall time of the session (including the transfers after it).
    pub elapsed: Duration,
}

impl SessionReport {
    /// Names of the ACS requests executed, in order.
    pub fn acs_rpcs(&self) -> Vec<&str> {
        self.acs_methods.iter().map(String::as_str).collect()
    }

    /// Whether the session ended with HTTP 204.
    pub fn ended_cleanly(&self) -> bool {
        self.final_status == 204
    }
}

/// How [`Device::resume_session`] continues after an injected drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMode {
    /// Send the message whose answer was lost again.
    Resend,
    /// Send an empty POST instead (not possible before the InformResponse: the Inform is re-sent).
    EmptyPost,
}

enum Outgoing {
    Inform {
        xml: String,
        id: String,
    },
    Request {
        xml: String,
        name: &'static str,
        index: usize,
    },
    Empty,
    Reply {
        xml: String,
        name: String,
        fault: Option<u32>,
    },
}

/// A session in progress (kept in the device while suspended).
pub(super) struct SessionCtx {
    pub(super) client: HttpClient,
    report: SessionReport,
    next: Outgoing,
    msg_index: usize,
    cpe_cursor: usize,
    started: Instant,
    inform_built: Instant,
}

impl Device {
    /// Runs one session against `acs_url`, adding `events` (e.g. `("6 CONNECTION REQUEST", "")`
    /// or `("2 PERIODIC", "")`) to the events the device owes anyway (bootstrap, boot after a
    /// reboot, transfer completion, due ScheduleInform, value change).
    ///
    /// Events passed here are not retried if the session fails; events owed by the device
    /// are kept until an InformResponse arrives. Returns the report of a session that ended
    /// with HTTP 204 (or an empty 200, noted). On failure `RetryCount` grows and the partial
    /// report is kept in [`super::DeviceState::last_failure`].
    pub async fn run_session(
        &mut self,
        acs_url: &str,
        events: &[(&str, &str)],
    ) -> Result<SessionReport, SimError> {
        self.suspended = None;
        let mut early = SessionReport::default();
        self.run_due_transfers_into(&mut early).await;
        let inform_built = Instant::now();
        let ev = self.inform_events(events);
        let id = self.next_id();
        let xml = self.inform_envelope(&ev, &id);
        let mut inform_params: Vec<String> = self.forced_names().to_vec();
        for c in &self.state.value_changes {
            if !inform_params.contains(c) && self.model.contains_key(c) {
                inform_params.push(c.clone());
            }
        }
        let client = self.http_client(acs_url)?;
        let report = SessionReport {
            events: ev,
            inform_params,
            transfers: early.transfers,
            ..SessionReport::default()
        };
        let ctx = SessionCtx {
            client,
            report,
            next: Outgoing::Inform { xml, id },
            msg_index: 0,
            cpe_cursor: 0,
            started: inform_built,
            inform_built,
        };
        self.drive(Box::new(ctx)).await
    }

    /// Continues a session cut by [`super::FaultInjection::drop_after_message`] on a new
    /// connection, with the same cookies and credentials.
    pub async fn resume_session(&mut self, mode: ResumeMode) -> Result<SessionReport, SimError> {
        let mut ctx = self.suspended.take().ok_or(SimError::NothingToResume)?;
        if mode == ResumeMode::EmptyPost && !matches!(ctx.next, Outgoing::Inform { .. }) {
            ctx.next = Outgoing::Empty;
        }
        self.drive(ctx).await
    }

    /// Performs the queued transfers that are due (all of them unless
    /// `Behavior::honor_delays`), queueing TransferComplete for the next session.
    pub async fn run_due_transfers(&mut self) -> Vec<TransferResult> {
        let mut r = SessionReport::default();
        self.run_due_transfers_into(&mut r).await;
        r.transfers
    }

    /// Does what the device does once a session is over, for requests executed with
    /// [`Device::respond_to`] outside [`Device::run_session`]: due transfers, reboot, factory
    /// reset, software-module results. Returns the transfers performed.
    pub async fn finish_actions(&mut self) -> Vec<TransferResult> {
        let mut r = SessionReport::default();
        self.after_session(&mut r).await;
        r.transfers
    }

    /// When the earliest queued transfer is due.
    pub fn next_transfer_due(&self) -> Option<Instant> {
        self.state.queued_transfers.iter().map(|q| q.due).min()
    }

    async fn drive(&mut self, mut ctx: Box<SessionCtx>) -> Result<SessionReport, SimError> {
        loop {
            if ctx.msg_index >= MAX_MESSAGES {
                return self.fail(ctx, SimError::SessionTooLong(MAX_MESSAGES)).await;
            }
            ctx.msg_index += 1;
            let n = ctx.msg_index;
            if let Some((at, pause)) = self.faults.pause_before_message {
                if at == n {
                    self.faults.pause_before_message = None;
                    tokio::time::sleep(pause).await;
                }
            }
            let out = std::mem::replace(&mut ctx.next, Outgoing::Empty);
            let mut executed_reply = None;
            if let Outgoing::Reply {
                name, fault: None, ..
            } = &out
            {
                let changes_state = matches!(
                    name.as_str(),
                    "RebootResponse"
                        | "DownloadResponse"
                        | "SetParameterValuesResponse"
                        | "FactoryResetResponse"
                        | "AddObjectResponse"
                        | "DeleteObjectResponse"
                );
                if changes_state && !self.behavior.reply_delay.is_zero() {
                    tokio::time::sleep(self.behavior.reply_delay).await;
                }
                if changes_state {
                    executed_reply = Some(name.trim_end_matches("Response").to_string());
                }
            }
            let (sent, body, fault_code): (String, Option<&str>, Option<u32>) = match &out {
                Outgoing::Inform { xml, .. } => ("Inform".into(), Some(xml), None),
                Outgoing::Request { xml, name, .. } => ((*name).into(), Some(xml), None),
                Outgoing::Empty => (String::new(), None, None),
                Outgoing::Reply { xml, name, fault } => (name.clone(), Some(xml), *fault),
            };
            if let Outgoing::Reply { name, .. } = &out {
                let method = name.strip_suffix("Response").unwrap_or(name);
                if self.faults.close_instead_of_answering.as_deref() == Some(method)
                    && self.faults.close_after_answering > 0
                {
                    self.faults.close_after_answering -= 1;
                } else if self.faults.close_instead_of_answering.as_deref() == Some(method) {
                    self.faults.close_instead_of_answering = None;
                    ctx.client.close();
                    return self.fail(ctx, SimError::InjectedDrop(n)).await;
                }
            }
            if self.faults.drop_after_message == Some(n) {
                self.faults.drop_after_message = None;
                if let Err(e) = ctx.client.post_and_drop(body).await {
                    return self.fail(ctx, e).await;
                }
                ctx.msg_index -= 1;
                ctx.next = out;
                self.suspended = Some(ctx);
                return Err(SimError::InjectedDrop(n));
            }
            let resp = match body {
                Some(x) => ctx.client.post_soap(x).await,
                None => ctx.client.post_empty().await,
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    if let Some(rpc) = executed_reply {
                        self.state.interrupted.push(rpc);
                    }
                    return self.fail(ctx, e).await;
                }
            };
            let parsed = if resp.status == 200 && resp.has_content() {
                match xml::parse_soap(&resp.body_text()) {
                    Ok(m) => Some(m),
                    Err(e) => return self.fail(ctx, SimError::BadXml(e)).await,
                }
            } else {
                None
            };
            ctx.report.final_status = resp.status;
            ctx.report.exchanges.push(Exchange {
                sent: sent.clone(),
                status: resp.status,
                acs_rpc: parsed
                    .as_ref()
                    .and_then(|m| m.rpc_name().map(str::to_string)),
                cwmp_id: parsed.as_ref().and_then(|m| m.id.clone()),
                fault_code,
            });
            let hold = parsed
                .as_ref()
                .and_then(|m| m.hold_requests)
                .unwrap_or(false);
            ctx.report.hold_requests |= hold;
            if let Some(m) = &parsed {
                ctx.report.notes.extend(m.notes.iter().cloned());
                if let Some(b) = &m.body {
                    if b.name != "Fault" && b.ns != self.cwmp_ns {
                        ctx.report.notes.push(format!(
                            "{} in namespace {:?}, session speaks {:?}",
                            b.name, b.ns, self.cwmp_ns
                        ));
                    }
                }
            }
            let unexpected =
                |resp: &super::http::HttpResponse, sent: &str| SimError::UnexpectedStatus {
                    status: resp.status,
                    sent: if sent.is_empty() {
                        "the empty POST".into()
                    } else {
                        sent.to_string()
                    },
                    body: resp.body_text().chars().take(300).collect(),
                };
            match out {
                Outgoing::Inform { id, .. } => {
                    if resp.status == 401 {
                        let e = SimError::AuthFailed {
                            user: self.acs_auth.username.clone(),
                        };
                        return self.fail(ctx, e).await;
                    }
                    if resp.status != 200 {
                        let e = unexpected(&resp, "Inform");
                        return self.fail(ctx, e).await;
                    }
                    let Some(m) = parsed else {
                        let e = SimError::Protocol("empty HTTP 200 answer to the Inform".into());
                        return self.fail(ctx, e).await;
                    };
                    match m.body.as_ref() {
                        Some(b) if b.name == "InformResponse" => {
                            let max = b.child_text("MaxEnvelopes").map(str::trim);
                            if max.and_then(|v| v.parse::<u32>().ok()).is_none() {
                                ctx.report
                                    .notes
                                    .push(format!("InformResponse MaxEnvelopes is {max:?}"));
                            }
                        }
                        Some(b) => {
                            let e = SimError::Protocol(match m.fault_code() {
                                Some(c) => format!("the ACS answered the Inform with fault {c}"),
                                None => format!("the ACS answered the Inform with {}", b.name),
                            });
                            return self.fail(ctx, e).await;
                        }
                        None => {
                            let e = SimError::Protocol(
                                "InformResponse envelope has an empty Body".into(),
                            );
                            return self.fail(ctx, e).await;
                        }
                    }
                    if m.id.as_deref() != Some(id.as_str()) {
                        ctx.report.notes.push(format!(
                            "InformResponse cwmp:ID {:?} does not echo the Inform's {id:?}",
                            m.id
                        ));
                    }
                    ctx.report.use_cwmp_version = m.use_cwmp_version.clone();
                    self.inform_acknowledged(&ctx);
                    ctx.next = self.next_cpe_request(&mut ctx, hold);
                }
                Outgoing::Request { name, index, .. } => {
                    if resp.status == 204 {
                        ctx.report.notes.push(format!(
                            "the ACS ended the session with 204 instead of answering {name}"
                        ));
                        return self.finish(ctx).await;
                    }
                    if resp.status != 200 {
                        let e = unexpected(&resp, name);
                        return self.fail(ctx, e).await;
                    }
                    let got = parsed.as_ref().and_then(|m| m.rpc_name()).unwrap_or("");
                    if got == format!("{name}Response") {
                        if index < self.state.pending_requests.len() {
                            self.state.pending_requests.remove(index);
                        }
                        ctx.report.cpe_requests.push(name.to_string());
                    } else if got == "Fault" {
                        let code = parsed.as_ref().and_then(|m| m.fault_code());
                        ctx.report
                            .notes
                            .push(format!("the ACS answered {name} with fault {code:?}"));
                        ctx.cpe_cursor = index + 1;
                    } else {
                        let e = SimError::Protocol(format!(
                            "the ACS answered {name} with {:?}",
                            if got.is_empty() { "an empty body" } else { got }
                        ));
                        return self.fail(ctx, e).await;
                    }
                    ctx.next = self.next_cpe_request(&mut ctx, hold);
                }
                Outgoing::Empty | Outgoing::Reply { .. } => {
                    match resp.status {
                        204 => return self.finish(ctx).await,
                        200 => {
                            let Some(m) = parsed else {
                                ctx.report.notes.push(
                                    "the ACS ended the session with an empty 200 instead of 204"
                                        .into(),
                                );
                                return self.finish(ctx).await;
                            };
                            let name = m.rpc_name().unwrap_or("").to_string();
                            if name.is_empty() || name == "Fault" || name.ends_with("Response") {
                                let e =
                                    SimError::Protocol(format!(
                                "the ACS sent {:?} where a request or HTTP 204 was expected",
                                if name.is_empty() { "an empty Body" } else { &name }
                            ));
                                return self.fail(ctx, e).await;
                            }
                            let reply = rpc::execute(self, &m, &mut ctx.report);
                            if let Some(code) = reply.fault {
                                ctx.report.faults_sent.push((name, code));
                            }
                            ctx.next = Outgoing::Reply {
                                xml: reply.xml,
                                name: reply.name,
                                fault: reply.fault,
                            };
                        }
                        _ => {
                            let e = unexpected(&resp, &sent);
                            return self.fail(ctx, e).await;
                        }
                    }
                }
            }
        }
    }

    fn next_cpe_request(&mut self, ctx: &mut SessionCtx, hold: bool) -> Outgoing {
        if hold {
            return Outgoing::Empty;
        }
        let index = ctx.cpe_cursor;
        let Some(req) = self.state.pending_requests.get(index).cloned() else {
            return Outgoing::Empty;
        };
        let id = self.next_id();
        Outgoing::Request {
            xml: req.envelope(&self.cwmp_ns, &id),
            name: req.name(),
            index,
        }
    }

    fn inform_acknowledged(&mut self, ctx: &SessionCtx) {
        self.state.bootstrapped = true;
        self.state.pending_events.clear();
        self.state.value_changes.clear();
        let built = ctx.inform_built;
        self.state.scheduled_informs.retain(|(due, _)| *due > built);
        self.state
            .use_cwmp_version
            .clone_from(&ctx.report.use_cwmp_version);
    }

    async fn fail(
        &mut self,
        mut ctx: Box<SessionCtx>,
        e: SimError,
    ) -> Result<SessionReport, SimError> {
        self.state.retry_count += 1;
        self.after_session(&mut ctx.report).await;
        ctx.report.connections = ctx.client.connections_opened;
        ctx.report.reconnects = ctx.client.reconnects;
        ctx.report.auth_challenges = ctx.client.challenges;
        ctx.report.elapsed = ctx.started.elapsed();
        ctx.report.notes.push(format!("session failed: {e}"));
        self.state.last_failure = Some(ctx.report);
        Err(e)
    }

    async fn finish(&mut self, mut ctx: Box<SessionCtx>) -> Result<SessionReport, SimError> {
        ctx.client.close();
        self.state.retry_count = 0;
        self.state.sessions_completed += 1;
        self.after_session(&mut ctx.report).await;
        ctx.report.connections = ctx.client.connections_opened;
        ctx.report.reconnects = ctx.client.reconnects;
        ctx.report.auth_challenges = ctx.client.challenges;
        ctx.report.elapsed = ctx.started.elapsed();
        Ok(ctx.report)
    }

    async fn after_session(&mut self, report: &mut SessionReport) {
        let actions = std::mem::take(&mut self.state.after_session);
        self.run_due_transfers_into(report).await;
        for a in actions {
            match a {
                AfterAction::Reboot(key) => {
                    self.state.reboots += 1;
                    self.state.value_changes.clear();
                    self.state.pending_events.push(Event::new("1 BOOT", ""));
                    if !self.behavior.omit_m_reboot {
                        self.state.pending_events.push(Event::new("M Reboot", key));
                    }
                }
                AfterAction::FactoryReset => self.factory_reset(),
                AfterAction::DuChange(command_key, results) => {
                    self.state
                        .pending_requests
                        .push(CpeRequest::DuStateChangeComplete {
                            command_key,
                            results,
                        });
                }
            }
        }
    }

    async fn run_due_transfers_into(&mut self, report: &mut SessionReport) {
        if self.state.queued_transfers.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.queued_transfers)
            .into_iter()
            .partition(|q| q.due <= now);
        self.state.queued_transfers = later;
        let timeout = self.client.timeout;
        for q in due {
            let start = xml::now_utc(self.behavior.millis);
            let mut moved: Vec<u8> = Vec::new();
            let outcome = if q.is_download {
                match self.behavior.download_fault {
                    Some(code) => Err((code, xml::fault_text(code).to_string())),
                    None => transfer::download(&q, timeout, self.behavior.check_file_size)
                        .await
                        .map(|b| moved = b),
                }
            } else {
                match self.behavior.upload_fault {
                    Some(code) => Err((code, xml::fault_text(code).to_string())),
                    None => {
                        let content = self.behavior.upload_content.clone();
                        let method = self.behavior.upload_method.clone();
                        let r = transfer::upload(&q, &content, &method, timeout).await;
                        if r.is_ok() {
                            moved = content;
                        }
                        r
                    }
                }
            };
            let (fault_code, fault_string) = outcome.err().unwrap_or((0, String::new()));
            let sha = transfer::sha256_hex(&moved);
            let result = TransferResult {
                command_key: q.command_key.clone(),
                is_download: q.is_download,
                url: q.url.clone(),
                file_type: q.file_type.clone(),
                fault_code,
                fault_string: fault_string.chars().take(256).collect(),
                start,
                complete: xml::now_utc(self.behavior.millis),
                bytes: moved.len(),
                sha256: sha.clone(),
            };
            if q.is_download && fault_code == 0 {
                if q.file_type.starts_with("1 ") {
                    let version = self
                        .behavior
                        .next_software_version
                        .take()
                        .or_else(|| version_from_image(&moved));
                    if let Some(v) = version {
                        let name = self.path("DeviceInfo.SoftwareVersion");
                        self.set_value(&name, &v);
                    }
                    if self.behavior.reboot_after_firmware {
                        self.state.reboots += 1;
                        self.state.pending_events.push(Event::new("1 BOOT", ""));
                    }
                }
                self.state.downloads.push(DownloadedFile {
                    command_key: q.command_key.clone(),
                    file_type: q.file_type.clone(),
                    url: q.url.clone(),
                    target_file_name: q.target_file_name.clone(),
                    size: moved.len(),
                    sha256: sha,
                    bytes: if self.behavior.keep_download_bytes {
                        moved
                    } else {
                        Vec::new()
                    },
                });
            }
            self.state.transfers.push(result.clone());
            report.transfers.push(result.clone());
            self.state
                .pending_requests
                .push(CpeRequest::TransferComplete {
                    result,
                    method_event: q.method_event.clone(),
                });
        }
    }
}

/// Finds `SoftwareVersion=<v>` on a line in the first 4 KiB of a firmware image.
fn version_from_image(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("SoftwareVersion="))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}
