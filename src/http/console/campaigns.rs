//! Campaigns in the console: the list with progress bars, the create form (target, action,
//! window, pacing, waves, stop rules) that shows the dry run before anything is created, and
//! the detail page (state, controls, progress per wave and per model, the device table, the
//! timeline). The live part of the detail page polls a fragment every 2 s until the campaign
//! is final with nothing in flight.
//!
//! Every control calls the same `domain::campaigns` function as the API (which checks the
//! state, writes the campaign event and the audit entry `campaign.<action>`); handlers need
//! the operator role, as the API's routes do.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::devices::device_href;
use super::session::{urlencode, Ctx, Operator, Viewer};
use super::view::{ago, utc};
use super::{render, ConsoleError, Layout};
use crate::domain::campaigns::{
    self, Action, CampaignRow, CampaignSpec, DryRun, Image, Pacing, Progress, Schedule, Size, Step,
    StopRule, StopScope, Target, Wake, Waves, Webhook, Window, MEMBER_STATES,
};
use crate::domain::tasks::TaskSpec;
use crate::error::Error;
use crate::state::AppState;

const PAGE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns", web::get().to(list))
        .route("/campaigns/new", web::get().to(new_form))
        .route("/campaigns/new", web::post().to(submit))
        .route("/campaigns/{id}", web::get().to(detail))
        .route("/campaigns/{id}/live", web::get().to(live))
        .route("/campaigns/{id}/{action}", web::post().to(control));
}

// ---------------------------------------------------------------------------------------
// Shared view pieces

/// A campaign state as words and a symbol (the class only adds colour).
pub fn state_view(state: &str, awaiting: bool) -> (&'static str, String) {
    match state {
        campaigns::RUNNING if awaiting => ("warn", "running, waiting for approval".into()),
        campaigns::RUNNING => ("running", "running".into()),
        campaigns::PAUSED => ("paused", "paused".into()),
        campaigns::COMPLETED => ("done", "completed".into()),
        campaigns::ABORTED => ("bad", "aborted".into()),
        campaigns::DRAFT => ("draft", "draft (not started)".into()),
        other => ("", other.to_string()),
    }
}

/// One member state with its label and mark (so no state is told by colour alone).
pub struct Segment {
    pub state: &'static str,
    pub label: &'static str,
    pub mark: &'static str,
    pub count: i64,
    /// Offset and width in the 0..1000 bar.
    pub x: i64,
    pub w: i64,
}

fn label_of(state: &str) -> (&'static str, &'static str) {
    match state {
        campaigns::SUCCEEDED => ("succeeded", "✔"),
        campaigns::FAILED_CONFIRMED => ("failed", "✖"),
        campaigns::FAILED_UNCONFIRMED => ("unconfirmed", "?"),
        campaigns::IN_PROGRESS => ("in progress", "▶"),
        campaigns::PENDING => ("pending", "…"),
        campaigns::SKIPPED => ("skipped", "–"),
        _ => ("other", "·"),
    }
}

/// Progress of one group of members (a campaign, a wave, a model): the stacked bar's
/// segments and the summary in words.
pub struct Bar {
    pub segments: Vec<Segment>,
    pub finished: i64,
    /// Members that are not skipped.
    pub total: i64,
    pub percent: i64,
    pub summary: String,
}

impl Bar {
    pub fn new(counts: &BTreeMap<String, i64>) -> Bar {
        let order = [
            campaigns::SUCCEEDED,
            campaigns::FAILED_CONFIRMED,
            campaigns::FAILED_UNCONFIRMED,
            campaigns::IN_PROGRESS,
            campaigns::PENDING,
        ];
        let get = |s: &str| counts.get(s).copied().unwrap_or(0);
        let total: i64 = order.iter().map(|s| get(s)).sum();
        let finished = get(campaigns::SUCCEEDED)
            + get(campaigns::FAILED_CONFIRMED)
            + get(campaigns::FAILED_UNCONFIRMED);
        let mut x = 0;
        let mut segments = Vec::new();
        for s in order.iter().chain(std::iter::once(&campaigns::SKIPPED)) {
            let n = get(s);
            let (label, mark) = label_of(s);
            let w = if *s == campaigns::SKIPPED || total == 0 {
                0
            } else {
                n * 1000 / total
            };
            segments.push(Segment {
                state: s,
                label,
                mark,
                count: n,
                x,
                w,
            });
            x += w;
        }
        let percent = if total > 0 { finished * 100 / total } else { 0 };
        let summary = segments
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| format!("{} {} {}", s.mark, s.count, s.label))
            .collect::<Vec<_>>()
            .join(" · ");
        Bar {
            segments,
            finished,
            total,
            percent,
            summary,
        }
    }
}

// ---------------------------------------------------------------------------------------
// List

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<i64>,
}

pub struct ListRow {
    pub id: i64,
    pub name: String,
    pub class: &'static str,
    pub state: String,
    pub reason: String,
    pub bar: Bar,
    pub created: String,
    pub created_by: String,
}

#[derive(askama::Template)]
#[template(path = "console/campaigns.html")]
struct ListPage {
    ctx: Layout,
    rows: Vec<ListRow>,
    next: Option<String>,
}

async fn list(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let rows = campaigns::list(&state.store, q.cursor, PAGE).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let counts = campaigns::counts_of(&state.store, ids).await?;
    let now = state.now();
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| format!("/campaigns?cursor={}", r.id)))
        .flatten();
    let rows = rows
        .into_iter()
        .map(|r| {
            let (class, label) = state_view(&r.state, r.awaiting_approval != 0);
            let c = counts.get(&r.id).cloned().unwrap_or_default();
            ListRow {
                id: r.id,
                name: r.name,
                class,
                state: label,
                reason: r.reason.unwrap_or_default(),
                bar: Bar::new(&c),
                created: ago(now, Some(r.created_at)),
                created_by: r.created_by,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            ctx: ctx.layout("campaigns"),
            rows,
            next,
        },
    )
}

// ---------------------------------------------------------------------------------------
// The create form

/// The form as typed: every field a string, so a bad one is shown back as it was.
#[derive(Deserialize, Clone)]
#[serde(default)]
pub struct CampaignForm {
    pub name: String,
    /// `query` or `list`.
    pub target_kind: String,
    pub query: String,
    pub devices: String,
    pub exclude: String,
    /// `firmware`, `reboot`, `factory_reset` or `task`.
    pub action_kind: String,
    pub images: String,
    pub task_json: String,
    pub window_cron: String,
    pub window_minutes: String,
    pub window_tz: String,
    pub wake: String,
    pub max_in_flight: String,
    pub max_starts_per_minute: String,
    pub confirm_timeout_minutes: String,
    pub canary: String,
    pub wave_sizes: String,
    pub success_percent: String,
    pub soak_minutes: String,
    pub manual_approval: Option<String>,
    pub spread: Option<String>,
    pub reevaluate: Option<String>,
    pub stop_rules: String,
    pub webhook_url: String,
    /// `dry_run` or `create`.
    pub step: String,
    /// The signature of the spec whose dry run the operator saw.
    pub dry_sig: String,
}

impl Default for CampaignForm {
    fn default() -> Self {
        let p = Pacing::default();
        CampaignForm {
            name: String::new(),
            target_kind: "query".into(),
            query: String::new(),
            devices: String::new(),
            exclude: String::new(),
            action_kind: "firmware".into(),
            images: String::new(),
            task_json: String::new(),
            window_cron: String::new(),
            window_minutes: "240".into(),
            window_tz: "UTC".into(),
            wake: "inform".into(),
            max_in_flight: p.max_in_flight.to_string(),
            max_starts_per_minute: p.max_starts_per_minute.to_string(),
            confirm_timeout_minutes: (p.confirm_timeout_secs / 60).to_string(),
            canary: String::new(),
            wave_sizes: String::new(),
            success_percent: "95".into(),
            soak_minutes: "0".into(),
            manual_approval: None,
            spread: None,
            reevaluate: None,
            stop_rules: String::new(),
            webhook_url: String::new(),
            step: String::new(),
            dry_sig: String::new(),
        }
    }
}

/// Device ids from a text field: one per line, or separated by commas, semicolons or
/// blanks (a CSV's first column works); a header `device_id` or `id` is skipped.
pub fn parse_ids(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in s.lines() {
        let first = line
            .split([',', ';', '\t'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        for id in first.split_whitespace() {
            if out.is_empty() && (id == "device_id" || id == "id") {
                continue;
            }
            out.push(id.to_string());
        }
    }
    out
}

fn number(field: &str, s: &str, default: u64) -> Result<u64, Error> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(default);
    }
    s.parse::<u64>()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a whole number")))
}

fn size(field: &str, s: &str) -> Result<Size, Error> {
    let s = s.trim();
    let v = match s.parse::<u64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(s),
    };
    serde_json::from_value(v).map_err(|e| Error::invalid(field, e.to_string()))
}

/// One image per line: `OUI, ProductClass, HardwareVersion (may be empty), file id,
/// expected SoftwareVersion (empty: the file's), versions it upgrades from (separated by
/// |; empty: any)`. An image's intermediate images (stepping stones) follow its line, in
/// upgrade order, one per line: `step, file id, version (empty: the file's), versions it
/// applies from (separated by |)`. Blank lines and lines starting with `#` are ignored.
pub fn parse_images(s: &str) -> Result<Vec<Image>, Error> {
    let mut out: Vec<Image> = Vec::new();
    let split = |v: &str| -> Vec<String> {
        v.split('|')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    for (n, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f[0].eq_ignore_ascii_case("step") {
            let Some(img) = out.last_mut().filter(|_| f.len() == 4) else {
                return Err(Error::invalid(
                    "images",
                    format!(
                        "line {}: write step, file id, version (may be empty), from versions separated by | — after the line of the image it leads to",
                        n + 1
                    ),
                ));
            };
            img.steps.push(Step {
                file_id: f[1].to_string(),
                version: Some(f[2].to_string()).filter(|v| !v.is_empty()),
                from_versions: split(f[3]),
            });
            continue;
        }
        if f.len() < 4 || f.len() > 6 {
            return Err(Error::invalid(
                "images",
                format!(
                    "line {}: write OUI, ProductClass, HardwareVersion (may be empty), file id[, version[, from versions separated by |]]",
                    n + 1
                ),
            ));
        }
        let opt = |i: usize| f.get(i).map(|v| v.to_string()).filter(|v| !v.is_empty());
        out.push(Image {
            oui: f[0].to_string(),
            product_class: f[1].to_string(),
            hardware_version: opt(2),
            file_id: f[3].to_string(),
            version: opt(4),
            from_versions: opt(5).map(|v| split(&v)).unwrap_or_default(),
            steps: Vec::new(),
        });
    }
    Ok(out)
}

/// One stop rule per line: `any 5/100` (5 failures among the last 100 finished devices),
/// `confirmed 3` (3 confirmed failures in all), `unconfirmed 10/50`.
pub fn parse_stop_rules(s: &str) -> Result<Vec<StopRule>, Error> {
    let mut out = Vec::new();
    for (n, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            Error::invalid(
                "stop_rules",
                format!(
                    "line {}: write any|confirmed|unconfirmed FAILURES[/OF_LAST], e.g. \"any 5/100\"",
                    n + 1
                ),
            )
        };
        let mut parts = line.split_whitespace();
        let scope = match parts.next() {
            Some("any") => StopScope::Any,
            Some("confirmed") => StopScope::Confirmed,
            Some("unconfirmed") => StopScope::Unconfirmed,
            _ => return Err(bad()),
        };
        let counts = parts.next().ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        let (f, of) = match counts.split_once('/') {
            Some((f, of)) => (f, Some(of.parse::<u64>().map_err(|_| bad())?)),
            None => (counts, None),
        };
        out.push(StopRule {
            scope,
            failures: f.parse().map_err(|_| bad())?,
            of_last: of,
        });
    }
    Ok(out)
}

impl CampaignForm {
    /// The campaign the form describes; errors name the form field.
    pub fn spec(&self) -> Result<CampaignSpec, Error> {
        let target = if self.target_kind == "list" {
            Target {
                query: None,
                devices: parse_ids(&self.devices),
                exclude: parse_ids(&self.exclude),
                reevaluate: false,
            }
        } else {
            Target {
                query: Some(self.query.trim().to_string()),
                devices: Vec::new(),
                exclude: parse_ids(&self.exclude),
                reevaluate: self.reevaluate.is_some(),
            }
        };
        let action = match self.action_kind.as_str() {
            "firmware" => Action::Firmware {
                images: parse_images(&self.images)?,
            },
            "reboot" => Action::Task {
                task: TaskSpec::Reboot {},
            },
            "factory_reset" => Action::Task {
                task: TaskSpec::FactoryReset {},
            },
            "task" => Action::Task {
                task: serde_json::from_str(&self.task_json).map_err(|e| {
                    Error::invalid(
                        "task_json",
                        format!("not a task (e.g. {{\"rpc\": \"Reboot\"}}): {e}"),
                    )
                })?,
            },
            other => {
                return Err(Error::invalid(
                    "action_kind",
                    format!("{other:?}: choose firmware, reboot, factory reset or a task"),
                ))
            }
        };
        let windows = if self.window_cron.trim().is_empty() {
            Vec::new()
        } else {
            vec![Window {
                cron: self.window_cron.trim().to_string(),
                duration_secs: number("window_minutes", &self.window_minutes, 240)?
                    .saturating_mul(60),
                time_zone: match self.window_tz.trim() {
                    "" => "UTC".into(),
                    tz => tz.to_string(),
                },
            }]
        };
        let pd = Pacing::default();
        let success_percent = match self.success_percent.trim() {
            "" => 95.0,
            s => s.parse::<f64>().map_err(|_| {
                Error::invalid("success_percent", format!("{s:?} is not a percentage"))
            })?,
        };
        let canary = match self.canary.trim() {
            "" => None,
            s => Some(size("canary", s)?),
        };
        let sizes = self
            .wave_sizes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| size("wave_sizes", s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CampaignSpec {
            name: self.name.trim().to_string(),
            target,
            action,
            schedule: Schedule {
                windows,
                wake: if self.wake == "connection_request" {
                    Wake::ConnectionRequest
                } else {
                    Wake::Inform
                },
                ..Schedule::default()
            },
            pacing: Pacing {
                max_in_flight: number("max_in_flight", &self.max_in_flight, pd.max_in_flight)?,
                max_starts_per_minute: number(
                    "max_starts_per_minute",
                    &self.max_starts_per_minute,
                    pd.max_starts_per_minute,
                )?,
                confirm_timeout_secs: number(
                    "confirm_timeout_minutes",
                    &self.confirm_timeout_minutes,
                    pd.confirm_timeout_secs / 60,
                )?
                .saturating_mul(60),
                retries: pd.retries,
                spread: self.spread.is_some(),
            },
            waves: Waves {
                canary,
                sizes,
                success_ratio: success_percent / 100.0,
                soak_secs: number("soak_minutes", &self.soak_minutes, 0)?.saturating_mul(60),
                manual_approval: self.manual_approval.is_some(),
            },
            stop_rules: parse_stop_rules(&self.stop_rules)?,
            webhook: Some(self.webhook_url.trim())
                .filter(|u| !u.is_empty())
                .map(|u| Webhook { url: u.to_string() }),
        })
    }
}

/// A signature of a spec: the create button only creates what the dry run showed.
fn signature(spec: &CampaignSpec) -> String {
    use sha2::Digest;
    let json = serde_json::to_string(spec).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(json.as_bytes())[..12])
}

pub struct DryModel {
    pub model: String,
    pub matching: u64,
    pub eligible: u64,
    pub compliant: u64,
    pub skipped: u64,
}

pub struct DryView {
    pub matching: u64,
    pub eligible: u64,
    pub compliant: u64,
    pub skipped: u64,
    pub models: Vec<DryModel>,
    pub waves: String,
    pub overlapping: usize,
    pub overlap_example: String,
}

impl From<&DryRun> for DryView {
    fn from(d: &DryRun) -> Self {
        DryView {
            matching: d.matching,
            eligible: d.eligible,
            compliant: d.compliant,
            skipped: d.skipped,
            models: d
                .models
                .iter()
                .map(|(m, c)| DryModel {
                    model: m.clone(),
                    matching: c.matching,
                    eligible: c.eligible,
                    compliant: c.compliant,
                    skipped: c.skipped,
                })
                .collect(),
            waves: d
                .waves
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            overlapping: d.overlapping.len(),
            overlap_example: d
                .overlapping
                .first()
                .map(|(dev, c)| format!("{dev} is in campaign {c}"))
                .unwrap_or_default(),
        }
    }
}

pub struct FileChoice {
    pub id: String,
    pub name: String,
    pub version: String,
}

#[derive(askama::Template)]
#[template(path = "console/campaign_new.html")]
struct NewPage {
    ctx: Layout,
    f: CampaignForm,
    error: Option<String>,
    note: Option<String>,
    dry: Option<DryView>,
    files: Vec<FileChoice>,
}

async fn firmware_files(state: &AppState) -> Result<Vec<FileChoice>, ConsoleError> {
    Ok(state
        .store
        .run(|s| s.list_files(None, 200))
        .await?
        .into_iter()
        .filter(|f| f.file_type.starts_with('1'))
        .map(|f| FileChoice {
            id: f.id,
            name: f.name,
            version: f.version,
        })
        .collect())
}

async fn new_form(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let page = NewPage {
        ctx: ctx.layout("campaigns"),
        f: CampaignForm::default(),
        error: None,
        note: None,
        dry: None,
        files: firmware_files(&state).await?,
    };
    render(StatusCode::OK, &page)
}

fn error_text(e: &Error) -> Option<String> {
    match e {
        Error::Invalid { field, message } => Some(format!("{field}: {message}")),
        Error::Conflict(m) => Some(m.clone()),
        Error::NotFound { what } => Some(format!("{what} not found")),
        _ => None,
    }
}

/// The dry run (shown with the form, nothing written) or, when the operator confirms the
/// spec whose dry run they saw, the creation (then to the new campaign's page).
async fn submit(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let mut f: CampaignForm = ctx.form()?;
    let mut page = NewPage {
        ctx: ctx.layout("campaigns"),
        f: f.clone(),
        error: None,
        note: None,
        dry: None,
        files: firmware_files(&state).await?,
    };
    let spec = match f.spec() {
        Ok(s) => s,
        Err(e) => {
            page.error = error_text(&e);
            page.f.dry_sig.clear();
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let sig = signature(&spec);
    if f.step == "create" && f.dry_sig == sig {
        return match campaigns::create(&state.store, &ctx.actor(), state.now(), &spec).await {
            Ok((row, _)) => Ok(see_other(&format!("/campaigns/{}", row.id))),
            Err(e) => match error_text(&e) {
                Some(m) => {
                    page.error = Some(m);
                    page.f.dry_sig.clear();
                    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
                }
                None => Err(e.into()),
            },
        };
    }
    if f.step == "create" {
        page.note = Some(
            "The form changed since the dry run: check this dry run, then create.".to_string(),
        );
    }
    crate::domain::phones::settle_fetch_log_quietly(&state.store, &state.services.phones).await;
    match campaigns::dry_run(&state.store, &spec).await {
        Ok(dry) => {
            f.dry_sig = sig;
            page.f = f;
            page.dry = Some(DryView::from(&dry));
            render(StatusCode::OK, &page)
        }
        Err(e) => match error_text(&e) {
            Some(m) => {
                page.error = Some(m);
                page.f.dry_sig.clear();
                render(StatusCode::UNPROCESSABLE_ENTITY, &page)
            }
            None => Err(e.into()),
        },
    }
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

// ---------------------------------------------------------------------------------------
// Detail

fn id_of(path: &str) -> Result<i64, ConsoleError> {
    path.parse::<i64>()
        .map_err(|_| ConsoleError::Domain(Error::not_found(format!("campaign {path}"))))
}

/// A control the current state allows: (path segment, label, whether it is destructive).
pub struct Control {
    pub action: &'static str,
    pub label: &'static str,
    pub danger: bool,
}

fn controls(row: &CampaignRow, failed: i64, firmware: bool) -> Vec<Control> {
    let c = |action, label, danger| Control {
        action,
        label,
        danger,
    };
    let mut out = Vec::new();
    match row.state.as_str() {
        campaigns::DRAFT => out.push(c("start", "Start", false)),
        campaigns::RUNNING => out.push(c("pause", "Pause", false)),
        campaigns::PAUSED => out.push(c("resume", "Resume", false)),
        _ => {}
    }
    if row.awaiting_approval != 0
        && matches!(row.state.as_str(), campaigns::RUNNING | campaigns::PAUSED)
    {
        out.push(c("approve", "Approve the next wave", false));
    }
    if failed > 0
        && matches!(
            row.state.as_str(),
            campaigns::RUNNING | campaigns::PAUSED | campaigns::COMPLETED
        )
    {
        out.push(c("retry_failed", "Retry failed devices", false));
    }
    out.push(c("clone", "Clone", false));
    if firmware && row.state != campaigns::DRAFT {
        out.push(c("reverse", "Reverse (push previous images)", false));
    }
    if matches!(
        row.state.as_str(),
        campaigns::DRAFT | campaigns::RUNNING | campaigns::PAUSED
    ) {
        out.push(c("abort", "Abort", true));
    }
    out
}

pub struct GroupRow {
    pub name: String,
    pub bar: Bar,
}

#[derive(askama::Template)]
#[template(path = "console/campaign_live.html")]
struct Live {
    ctx: Layout,
    id: i64,
    class: &'static str,
    state: String,
    reason: String,
    polling: bool,
    controls: Vec<Control>,
    bar: Bar,
    waves: Vec<GroupRow>,
    models: Vec<GroupRow>,
    current_wave: i32,
    rate: String,
    eta: String,
    started: String,
    finished: String,
}

async fn load_live(ctx: Layout, state: &AppState, id: i64) -> Result<Live, ConsoleError> {
    let row = campaigns::get(&state.store, id).await?;
    let now = state.now();
    let p: Progress = campaigns::progress(&state.store, &row, now).await?;
    let spec = campaigns::spec_of(&state.store.keyring(), &row).ok();
    let firmware = matches!(
        spec.as_ref().map(|s| &s.action),
        Some(Action::Firmware { .. })
    );
    let failed = p
        .totals
        .get(campaigns::FAILED_CONFIRMED)
        .copied()
        .unwrap_or(0)
        + p.totals
            .get(campaigns::FAILED_UNCONFIRMED)
            .copied()
            .unwrap_or(0);
    let in_flight = p.totals.get(campaigns::IN_PROGRESS).copied().unwrap_or(0);
    let final_state = matches!(
        row.state.as_str(),
        campaigns::COMPLETED | campaigns::ABORTED
    );
    let (class, label) = state_view(&row.state, row.awaiting_approval != 0);
    Ok(Live {
        controls: if ctx.can_operate() {
            controls(&row, failed, firmware)
        } else {
            Vec::new()
        },
        ctx,
        id,
        class,
        state: label,
        reason: row.reason.clone().unwrap_or_default(),
        polling: !(final_state && in_flight == 0),
        bar: Bar::new(&p.totals),
        waves: p
            .waves
            .iter()
            .map(|(w, c)| GroupRow {
                name: if *w == 0 {
                    "wave 1 (first)".into()
                } else {
                    format!("wave {}", w + 1)
                },
                bar: Bar::new(c),
            })
            .collect(),
        models: p
            .models
            .iter()
            .map(|(m, c)| GroupRow {
                name: m.clone(),
                bar: Bar::new(c),
            })
            .collect(),
        current_wave: row.current_wave + 1,
        rate: format!("{:.1}", p.rate_per_minute),
        eta: p.eta.map(utc).unwrap_or_else(|| "—".into()),
        started: row
            .started_at
            .map(|t| format!("{} ({})", ago(now, Some(t)), utc(t)))
            .unwrap_or_else(|| "not yet".into()),
        finished: row.finished_at.map(utc).unwrap_or_else(|| "—".into()),
    })
}

#[derive(Deserialize)]
struct DetailQuery {
    state: Option<String>,
    cursor: Option<i32>,
    events: Option<i64>,
}

pub struct MemberView {
    pub device_id: String,
    pub href: String,
    pub model: String,
    pub wave: i32,
    pub class: &'static str,
    pub state: String,
    pub attempts: i32,
    pub versions: String,
    /// Progress along an upgrade path with intermediate images; empty without.
    pub step: String,
    pub started: String,
    pub finished: String,
    pub error: String,
}

pub struct EventView {
    pub at: String,
    pub kind: String,
    pub device: String,
    pub href: String,
    pub detail: String,
}

#[derive(askama::Template)]
#[template(path = "console/campaign.html")]
struct DetailPage {
    ctx: Layout,
    id: i64,
    name: String,
    created_by: String,
    created: String,
    spec_json: String,
    live: Live,
    filter: String,
    states: Vec<(&'static str, &'static str)>,
    members: Vec<MemberView>,
    members_next: Option<String>,
    events: Vec<EventView>,
    events_next: Option<String>,
}

fn member_class(state: &str) -> &'static str {
    match state {
        campaigns::SUCCEEDED => "done",
        campaigns::FAILED_CONFIRMED => "fault",
        campaigns::FAILED_UNCONFIRMED => "warn",
        campaigns::IN_PROGRESS => "running",
        campaigns::PENDING => "pending",
        _ => "",
    }
}

async fn detail(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<DetailQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let id = id_of(&path)?;
    let row = campaigns::get(&state.store, id).await?;
    let live = load_live(ctx.layout("campaigns"), &state, id).await?;
    let now = state.now();
    let filter = q
        .state
        .clone()
        .filter(|s| MEMBER_STATES.contains(&s.as_str()))
        .unwrap_or_default();
    let st = (!filter.is_empty()).then(|| filter.clone());
    let members = campaigns::members(&state.store, id, st, q.cursor, PAGE).await?;
    let members_next = (members.len() as i64 == PAGE)
        .then(|| {
            members.last().map(|m| {
                format!(
                    "/campaigns/{id}?state={}&cursor={}#devices",
                    urlencode(&filter),
                    m.seq
                )
            })
        })
        .flatten();
    let events = campaigns::events(&state.store, id, None, q.events, PAGE).await?;
    let events_next = (events.len() as i64 == PAGE)
        .then(|| {
            events
                .last()
                .map(|e| format!("/campaigns/{id}?events={}#events", e.id))
        })
        .flatten();
    let mut spec: serde_json::Value = serde_json::from_str(&row.spec).unwrap_or_default();
    crate::domain::tasks::redact_secrets(&mut spec);
    let page = DetailPage {
        ctx: ctx.layout("campaigns"),
        id,
        name: row.name.clone(),
        created_by: row.created_by.clone(),
        created: utc(row.created_at),
        spec_json: serde_json::to_string_pretty(&spec).unwrap_or_default(),
        live,
        filter,
        states: MEMBER_STATES.iter().map(|s| (*s, label_of(s).0)).collect(),
        members: members
            .iter()
            .map(|m| MemberView {
                device_id: m.device_id.clone(),
                href: device_href(&m.device_id),
                model: m.model.clone(),
                wave: m.wave + 1,
                class: member_class(&m.state),
                state: label_of(&m.state).0.to_string(),
                attempts: m.attempts,
                versions: if m.target_version.is_empty() {
                    m.from_version.clone()
                } else {
                    format!("{} → {}", m.from_version, m.target_version)
                },
                step: campaigns::step_label(m),
                started: m.started_at.map(|t| ago(now, Some(t))).unwrap_or_default(),
                finished: m.finished_at.map(|t| ago(now, Some(t))).unwrap_or_default(),
                error: m.last_error.clone().unwrap_or_default(),
            })
            .collect(),
        members_next,
        events: events
            .iter()
            .map(|e| EventView {
                at: utc(e.at),
                kind: e.kind.clone(),
                device: e.device_id.clone().unwrap_or_default(),
                href: e.device_id.as_deref().map(device_href).unwrap_or_default(),
                detail: e.detail.clone(),
            })
            .collect(),
        events_next,
    };
    render(StatusCode::OK, &page)
}

async fn live(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let id = id_of(&path)?;
    render(
        StatusCode::OK,
        &load_live(ctx.layout("campaigns"), &state, id).await?,
    )
}

/// A control: the same domain function as the API's route, audited there.
async fn control(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, action) = path.into_inner();
    let id = id_of(&id)?;
    let (store, actor, now) = (&state.store, ctx.actor(), state.now());
    crate::domain::phones::settle_fetch_log_quietly(store, &state.services.phones).await;
    let row = match action.as_str() {
        "start" => campaigns::start(store, &actor, now, id).await?,
        "pause" => campaigns::pause(store, &actor, now, id, "paused from the console").await?,
        "resume" => campaigns::resume(store, &actor, now, id).await?,
        "approve" => campaigns::approve(store, &actor, now, id).await?,
        "abort" => campaigns::abort(store, &actor, now, id).await?,
        "retry_failed" => campaigns::retry_failed(store, &actor, now, id).await?,
        "clone" => campaigns::clone(store, &actor, now, id).await?,
        "reverse" => campaigns::reverse(store, &actor, now, id).await?,
        _ => return Err(Error::not_found(format!("campaign action {action}")).into()),
    };
    Ok(see_other(&format!("/campaigns/{}", row.id)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_lines_commas_and_a_csv_first_column() {
        assert_eq!(
            parse_ids("device_id,note\nA-B-1,x\n\"A-B-2\",y\n\nA-B-3 A-B-4"),
            vec!["A-B-1", "A-B-2", "A-B-3", "A-B-4"]
        );
        assert!(parse_ids("  \n").is_empty());
    }

    #[test]
    fn images_and_stop_rules_parse_and_name_the_line() {
        let imgs = parse_images("# model map\n0A0001, GwA, , f1, 2.0, 1.0|1.1\n0A0002,GwB,hw2,f2")
            .unwrap();
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[0].hardware_version, None);
        assert_eq!(imgs[0].from_versions, vec!["1.0", "1.1"]);
        assert_eq!(imgs[1].hardware_version.as_deref(), Some("hw2"));
        assert_eq!(imgs[1].version, None);
        // Intermediate images follow their image's line, in upgrade order.
        let imgs = parse_images(
            "0A0001, GwA, , f20, 2.0, 1.5\nstep, f12, , 1.0\nSTEP, f15, 1.5, 1.2 | 1.1",
        )
        .unwrap();
        assert_eq!(imgs.len(), 1);
        assert_eq!(imgs[0].steps.len(), 2);
        assert_eq!(imgs[0].steps[0].file_id, "f12");
        assert_eq!(imgs[0].steps[0].version, None);
        assert_eq!(imgs[0].steps[1].version.as_deref(), Some("1.5"));
        assert_eq!(imgs[0].steps[1].from_versions, vec!["1.2", "1.1"]);
        let e = parse_images("step, f12, , 1.0").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_images("0A0001,GwA").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");

        let r = parse_stop_rules("any 5/100\nconfirmed 3").unwrap();
        assert_eq!(r[0].of_last, Some(100));
        assert_eq!(r[1].scope, StopScope::Confirmed);
        assert!(parse_stop_rules("most 5").is_err());
        assert!(parse_stop_rules("any five").is_err());
    }

    #[test]
    fn the_form_becomes_a_spec() {
        let f = CampaignForm {
            name: "n".into(),
            query: "tag = lab".into(),
            action_kind: "reboot".into(),
            window_cron: "0 0 1 * * *".into(),
            window_minutes: "60".into(),
            canary: "10".into(),
            wave_sizes: "10%, rest".into(),
            success_percent: "90".into(),
            ..CampaignForm::default()
        };
        let s = f.spec().unwrap();
        assert_eq!(s.schedule.windows[0].duration_secs, 3600);
        assert_eq!(s.waves.canary, Some(Size::Count(10)));
        assert_eq!(s.waves.sizes, vec![Size::Percent(10.0), Size::Rest]);
        assert!((s.waves.success_ratio - 0.9).abs() < 1e-9);
        assert_eq!(s.target.query.as_deref(), Some("tag = lab"));
        let bad = CampaignForm {
            max_in_flight: "many".into(),
            ..f
        };
        let e = bad.spec().unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "max_in_flight"));
    }

    #[test]
    fn a_bar_tells_each_state_in_words() {
        let mut c = BTreeMap::new();
        c.insert(campaigns::SUCCEEDED.to_string(), 3);
        c.insert(campaigns::FAILED_CONFIRMED.to_string(), 1);
        c.insert(campaigns::PENDING.to_string(), 4);
        c.insert(campaigns::SKIPPED.to_string(), 2);
        let b = Bar::new(&c);
        assert_eq!((b.finished, b.total, b.percent), (4, 8, 50));
        assert_eq!(
            b.summary,
            "✔ 3 succeeded · ✖ 1 failed · … 4 pending · – 2 skipped"
        );
        assert_eq!(b.segments[0].w, 375);
    }
}
