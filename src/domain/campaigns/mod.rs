//! Campaigns: one action (firmware per model, or any task) rolled out to many devices in
//! waves, inside maintenance windows, paced, with stop rules.
//!
//! - [`CampaignSpec`] is what an operator writes (JSON); [`validate`] checks it and names the
//!   field at fault.
//! - [`plan`] holds the decisions as pure functions (wave sizes, judging a device, stop
//!   rules, the next step).
//! - [`run`] is the scheduler's side: one [`run::advance`] per campaign and tick.
//! - The functions here are the operator actions (create, dry run, start, pause, resume,
//!   approve, abort, retry failed, clone, reverse), each audited as `campaign.<action>` on
//!   target `campaign/<id>`; the API and the CLI call them alike.
//!
//! Overlapping campaigns are **refused**: a device may be an open member (pending or in
//! progress) of one running or paused campaign at a time; creating or starting a campaign
//! whose target includes such a device fails with a 400 on `target`, naming the device and
//! the campaign holding it.

pub mod plan;
pub mod run;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::cron::CronWindow;
use crate::domain::tasks::TaskSpec;
use crate::error::{Error, Result};
pub use crate::store::campaigns::{CampaignRow, EventRow, MemberRow};
use crate::store::campaigns::{CampaignUpdate, NewCampaign};
use crate::store::devices::DeviceRow;
use crate::store::Store;

/// Campaign states.
pub const DRAFT: &str = "draft";
pub const RUNNING: &str = "running";
pub const PAUSED: &str = "paused";
pub const COMPLETED: &str = "completed";
pub const ABORTED: &str = "aborted";

/// Member states.
pub const PENDING: &str = "pending";
pub const IN_PROGRESS: &str = "in_progress";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED_CONFIRMED: &str = "failed_confirmed";
pub const FAILED_UNCONFIRMED: &str = "failed_unconfirmed";
pub const SKIPPED: &str = "skipped";
pub const MEMBER_STATES: [&str; 6] = [
    PENDING,
    IN_PROGRESS,
    SUCCEEDED,
    FAILED_CONFIRMED,
    FAILED_UNCONFIRMED,
    SKIPPED,
];

/// How a finished device ended, for stop rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Confirmed,
    Unconfirmed,
}

impl Outcome {
    pub fn of_state(s: &str) -> Option<Outcome> {
        match s {
            SUCCEEDED => Some(Outcome::Succeeded),
            FAILED_CONFIRMED => Some(Outcome::Confirmed),
            FAILED_UNCONFIRMED => Some(Outcome::Unconfirmed),
            _ => None,
        }
    }
}

/// A wave size: a number of devices, a cumulative percentage of all devices (`"10%"`), or
/// `"rest"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Count(u64),
    Percent(f64),
    Rest,
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Size::Count(n) => s.serialize_u64(*n),
            Size::Percent(p) => s.serialize_str(&format!("{p}%")),
            Size::Rest => s.serialize_str("rest"),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size::Count(n)),
            Raw::S(s) if s.trim() == "rest" => Ok(Size::Rest),
            Raw::S(s) => {
                let p = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| *p > 0.0 && *p <= 100.0);
                match p {
                    Some(p) => Ok(Size::Percent(p)),
                    None => Err(serde::de::Error::custom(format!(
                        "wave size {s:?}: give a number of devices, a percentage like \"10%\" or \"rest\""
                    ))),
                }
            }
        }
    }
}

/// Which devices a campaign addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Target {
    /// A device query (the language of `GET /api/v1/devices?q=`), evaluated at start.
    pub query: Option<String>,
    /// Explicit device ids (e.g. from an uploaded CSV).
    pub devices: Vec<String>,
    /// Device ids never to touch.
    pub exclude: Vec<String>,
}

/// One firmware image for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub oui: String,
    pub product_class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_version: Option<String>,
    /// A stored file (`POST /api/v1/files`).
    pub file_id: String,
    /// The SoftwareVersion the device must report afterwards; default: the file's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Only devices on one of these versions get the image (empty = any other version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_versions: Vec<String>,
}

impl Image {
    fn matches(&self, d: &DeviceRow) -> bool {
        self.oui.eq_ignore_ascii_case(&d.oui)
            && self.product_class == d.product_class
            && self
                .hardware_version
                .as_ref()
                .is_none_or(|h| *h == d.hardware_version)
    }

    fn model_key(&self) -> String {
        match &self.hardware_version {
            Some(h) => format!("{}/{}/{h}", self.oui, self.product_class),
            None => format!("{}/{}", self.oui, self.product_class),
        }
    }
}

/// What a campaign does to each device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A firmware image per model; success needs the new SoftwareVersion reported.
    Firmware { images: Vec<Image> },
    /// Any task (config Download, SetParameterValues, Reboot, FactoryReset, Upload, ...);
    /// success = the task is done.
    Task { task: TaskSpec },
}

impl Action {
    /// Firmware, reboots and factory resets interrupt service.
    pub fn disruptive(&self) -> bool {
        match self {
            Action::Firmware { .. } => true,
            Action::Task { task } => matches!(
                task,
                TaskSpec::Reboot {} | TaskSpec::FactoryReset {} | TaskSpec::Download { .. }
            ),
        }
    }
}

/// A maintenance window: opens at each fire time of a 6-field cron expression (seconds
/// first) in an IANA time zone, stays open `duration_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub cron: String,
    pub duration_secs: u64,
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// How the scheduler gets devices to their session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// Send a connection request when a device is started.
    ConnectionRequest,
    /// Wait for the device's own periodic Inform.
    #[default]
    Inform,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Nothing starts before (ms since the epoch).
    pub start_at: Option<i64>,
    /// Nothing starts after; the campaign completes when its running devices finished.
    pub end_at: Option<i64>,
    /// Maintenance windows; none = always open.
    pub windows: Vec<Window>,
    /// Separate windows for disruptive actions (firmware, reboot, factory reset, download);
    /// none = `windows`.
    pub disruptive_windows: Vec<Window>,
    pub wake: Wake,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    pub max_in_flight: u64,
    pub max_starts_per_minute: u64,
    /// A started device that has no verdict after this long is an unconfirmed failure.
    pub confirm_timeout_secs: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            max_in_flight: 50,
            max_starts_per_minute: 60,
            confirm_timeout_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Waves {
    pub canary: Option<Size>,
    pub sizes: Vec<Size>,
    /// Share of a finished wave's devices that must have succeeded for the next to start.
    pub success_ratio: f64,
    /// Wait this long after a wave's last device finished before the next wave.
    pub soak_secs: u64,
    /// Wait for `POST /campaigns/{id}/approve` between waves.
    pub manual_approval: bool,
}

impl Default for Waves {
    fn default() -> Self {
        Waves {
            canary: None,
            sizes: Vec::new(),
            success_ratio: 0.95,
            soak_secs: 0,
            manual_approval: false,
        }
    }
}

/// Which failures a stop rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopScope {
    Any,
    Confirmed,
    Unconfirmed,
}

/// Pause when `failures` devices failed, in total (`of_last` unset) or among the last
/// `of_last` finished devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRule {
    pub scope: StopScope,
    pub failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of_last: Option<u64>,
}

/// What an operator writes to create a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    pub target: Target,
    pub action: Action,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub pacing: Pacing,
    #[serde(default)]
    pub waves: Waves,
    #[serde(default)]
    pub stop_rules: Vec<StopRule>,
}

impl CampaignSpec {
    pub fn parse(json: &str) -> Result<CampaignSpec> {
        serde_json::from_str(json).map_err(|e| Error::invalid("body", e.to_string()))
    }

    /// The windows that apply to this campaign's action.
    pub fn windows(&self) -> &[Window] {
        if self.action.disruptive() && !self.schedule.disruptive_windows.is_empty() {
            &self.schedule.disruptive_windows
        } else {
            &self.schedule.windows
        }
    }

    pub fn limits(&self) -> plan::PacingLimits {
        plan::PacingLimits {
            max_in_flight: self.pacing.max_in_flight,
            max_starts_per_minute: self.pacing.max_starts_per_minute,
            success_ratio: self.waves.success_ratio,
            soak_ms: (self.waves.soak_secs as i64).saturating_mul(1000),
            manual_approval: self.waves.manual_approval,
        }
    }
}

/// The compiled windows of a spec (checked by [`validate`]).
pub fn compile_windows(spec: &CampaignSpec) -> Result<Vec<CronWindow>> {
    let field = if spec.action.disruptive() && !spec.schedule.disruptive_windows.is_empty() {
        "schedule.disruptive_windows"
    } else {
        "schedule.windows"
    };
    spec.windows()
        .iter()
        .enumerate()
        .map(|(i, w)| {
            CronWindow::new(&w.cron, &w.time_zone, w.duration_secs)
                .map_err(|(part, msg)| Error::invalid(format!("{field}[{i}].{part}"), msg))
        })
        .collect()
}

/// An image with its expected version resolved.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub image: Image,
    pub version: String,
}

/// Check a spec; every error names the field. Returns the firmware images with their
/// expected versions (from the spec or the stored file).
pub async fn validate(store: &Store, spec: &CampaignSpec) -> Result<Vec<ResolvedImage>> {
    if spec.name.trim().is_empty() || spec.name.len() > 200 {
        return Err(Error::invalid("name", "give a name of 1 to 200 characters"));
    }
    let t = &spec.target;
    match (&t.query, t.devices.is_empty()) {
        (Some(q), true) => {
            if q.trim().is_empty() {
                return Err(Error::invalid(
                    "target.query",
                    "is empty; to address every device say so: id LIKE \"*\"",
                ));
            }
            crate::domain::devices::parse_query(q)
                .map_err(|e| Error::invalid("target.query", e.to_string()))?;
        }
        (None, false) => {
            if t.devices.len() > 1_000_000 {
                return Err(Error::invalid(
                    "target.devices",
                    "at most 1,000,000 devices",
                ));
            }
        }
        (Some(_), false) => {
            return Err(Error::invalid(
                "target",
                "give either a query or a device list, not both",
            ))
        }
        (None, true) => {
            return Err(Error::invalid(
                "target",
                "is empty: give target.query (a device query) or target.devices (device ids)",
            ))
        }
    }
    compile_windows(spec)?;
    if let (Some(s), Some(e)) = (spec.schedule.start_at, spec.schedule.end_at) {
        if e <= s {
            return Err(Error::invalid("schedule.end_at", "must be after start_at"));
        }
    }
    if spec.pacing.max_in_flight == 0 {
        return Err(Error::invalid("pacing.max_in_flight", "must be at least 1"));
    }
    if spec.pacing.max_starts_per_minute == 0 {
        return Err(Error::invalid(
            "pacing.max_starts_per_minute",
            "must be at least 1",
        ));
    }
    if spec.pacing.confirm_timeout_secs < 60 {
        return Err(Error::invalid(
            "pacing.confirm_timeout_secs",
            "must be at least 60 (a device needs time to download, reboot and inform)",
        ));
    }
    if !(0.0..=1.0).contains(&spec.waves.success_ratio) {
        return Err(Error::invalid(
            "waves.success_ratio",
            "must be between 0 and 1 (e.g. 0.95)",
        ));
    }
    for (i, r) in spec.stop_rules.iter().enumerate() {
        if r.failures == 0 {
            return Err(Error::invalid(
                format!("stop_rules[{i}].failures"),
                "must be at least 1",
            ));
        }
        if r.of_last.is_some_and(|n| n < r.failures) {
            return Err(Error::invalid(
                format!("stop_rules[{i}].of_last"),
                "must be at least `failures`",
            ));
        }
    }
    let mut resolved = Vec::new();
    match &spec.action {
        Action::Firmware { images } => {
            if images.is_empty() {
                return Err(Error::invalid(
                    "action.images",
                    "give at least one image (oui, product_class, file_id)",
                ));
            }
            for (i, img) in images.iter().enumerate() {
                if img.oui.is_empty() || img.product_class.is_empty() {
                    return Err(Error::invalid(
                        format!("action.images[{i}]"),
                        "oui and product_class are required",
                    ));
                }
                let fid = img.file_id.clone();
                let file = store.run(move |s| s.get_file(&fid)).await?;
                let Some(file) = file else {
                    return Err(Error::invalid(
                        format!("action.images[{i}].file_id"),
                        format!(
                            "no stored file has id {}; upload it with POST /api/v1/files first",
                            img.file_id
                        ),
                    ));
                };
                let version = img
                    .version
                    .clone()
                    .filter(|v| !v.is_empty())
                    .unwrap_or(file.version);
                if version.is_empty() {
                    return Err(Error::invalid(
                        format!("action.images[{i}].version"),
                        "the file has no version; give the SoftwareVersion the device reports after the upgrade",
                    ));
                }
                resolved.push(ResolvedImage {
                    image: img.clone(),
                    version,
                });
            }
        }
        Action::Task { task } => {
            task.check().map_err(|e| match e {
                Error::Invalid { field, message } => {
                    Error::invalid(format!("action.task.{field}"), message)
                }
                other => other,
            })?;
            if let TaskSpec::Download {
                file_id: Some(fid), ..
            } = task
            {
                let f = fid.clone();
                if store.run(move |s| s.get_file(&f)).await?.is_none() {
                    return Err(Error::invalid(
                        "action.task.file_id",
                        format!("no stored file has id {fid}"),
                    ));
                }
            }
        }
    }
    Ok(resolved)
}

/// What the campaign would do to one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Class {
    Eligible {
        model: String,
        from: String,
        target: String,
    },
    Compliant {
        model: String,
    },
    Skipped {
        model: String,
        reason: String,
    },
}

/// Classify one device (pure).
pub fn classify(action: &Action, images: &[ResolvedImage], d: &DeviceRow) -> Class {
    let device_model = format!("{}/{}", d.oui, d.product_class);
    match action {
        Action::Task { .. } => Class::Eligible {
            model: device_model,
            from: d.software_version.clone(),
            target: String::new(),
        },
        Action::Firmware { .. } => {
            let Some(r) = images.iter().find(|r| r.image.matches(d)) else {
                return Class::Skipped {
                    model: device_model,
                    reason: format!(
                        "no image for OUI {} product class {} hardware {}",
                        d.oui, d.product_class, d.hardware_version
                    ),
                };
            };
            let model = r.image.model_key();
            if d.software_version == r.version {
                Class::Compliant { model }
            } else if !r.image.from_versions.is_empty()
                && !r.image.from_versions.contains(&d.software_version)
            {
                Class::Skipped {
                    model,
                    reason: format!(
                        "runs version {:?}, not one the image upgrades from ({})",
                        d.software_version,
                        r.image.from_versions.join(", ")
                    ),
                }
            } else {
                Class::Eligible {
                    model,
                    from: d.software_version.clone(),
                    target: r.version.clone(),
                }
            }
        }
    }
}

/// Dry-run counts of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelCounts {
    pub matching: u64,
    pub compliant: u64,
    pub eligible: u64,
    pub skipped: u64,
}

/// What a campaign would address.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DryRun {
    pub matching: u64,
    pub compliant: u64,
    pub eligible: u64,
    pub skipped: u64,
    pub models: BTreeMap<String, ModelCounts>,
    /// Eligible devices already in another running or paused campaign (device, campaign).
    pub overlapping: Vec<(String, i64)>,
    pub waves: Vec<u64>,
}

/// Every target device with its class, in id order.
async fn evaluate(
    store: &Store,
    spec: &CampaignSpec,
    images: &[ResolvedImage],
) -> Result<Vec<(DeviceRow, Class)>> {
    let exclude: std::collections::HashSet<&str> =
        spec.target.exclude.iter().map(String::as_str).collect();
    let mut devices: Vec<DeviceRow> = Vec::new();
    if let Some(q) = &spec.target.query {
        let filter = crate::domain::devices::parse_query(q)
            .map_err(|e| Error::invalid("target.query", e.to_string()))?;
        let mut cursor: Option<String> = None;
        loop {
            let (f, cur) = (filter.clone(), cursor.clone());
            let page = store
                .run(move |s| s.search_devices(&f, cur.as_deref(), 1000))
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id.clone());
            let n = page.len();
            devices.extend(page);
            if n < 1000 {
                break;
            }
        }
    } else {
        let ids = spec.target.devices.clone();
        let mut found = store.run(move |s| s.devices_by_ids(&ids)).await?;
        if found.len() < spec.target.devices.len() {
            let known: std::collections::HashSet<&str> =
                found.iter().map(|d| d.id.as_str()).collect();
            if let Some(missing) = spec
                .target
                .devices
                .iter()
                .find(|id| !known.contains(id.as_str()))
            {
                return Err(Error::invalid(
                    "target.devices",
                    format!("no device has id {missing}"),
                ));
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        devices = found;
    }
    Ok(devices
        .into_iter()
        .filter(|d| !exclude.contains(d.id.as_str()))
        .map(|d| {
            let c = classify(&spec.action, images, &d);
            (d, c)
        })
        .collect())
}

fn summarize(spec: &CampaignSpec, classes: &[(DeviceRow, Class)]) -> DryRun {
    let mut out = DryRun::default();
    for (_, c) in classes {
        out.matching += 1;
        let (model, which) = match c {
            Class::Eligible { model, .. } => (model, 0),
            Class::Compliant { model } => (model, 1),
            Class::Skipped { model, .. } => (model, 2),
        };
        let e = out.models.entry(model.clone()).or_default();
        e.matching += 1;
        match which {
            0 => {
                e.eligible += 1;
                out.eligible += 1
            }
            1 => {
                e.compliant += 1;
                out.compliant += 1
            }
            _ => {
                e.skipped += 1;
                out.skipped += 1
            }
        }
    }
    out.waves = plan::wave_sizes(out.eligible, spec.waves.canary, &spec.waves.sizes);
    out
}

async fn overlapping(store: &Store, classes: &[(DeviceRow, Class)]) -> Result<Vec<(String, i64)>> {
    let ids: Vec<String> = classes
        .iter()
        .filter(|(_, c)| matches!(c, Class::Eligible { .. }))
        .map(|(d, _)| d.id.clone())
        .collect();
    store
        .run(move |s| s.devices_in_active_campaigns(&ids))
        .await
}

fn overlap_error(o: &[(String, i64)]) -> Error {
    let (dev, camp) = &o[0];
    Error::invalid(
        "target",
        format!(
            "{} device(s) are already in a running or paused campaign (e.g. {dev} in campaign {camp}); \
             overlapping campaigns are refused: exclude them or finish/abort that campaign first",
            o.len()
        ),
    )
}

/// What a campaign would address, per model, without writing anything.
pub async fn dry_run(store: &Store, spec: &CampaignSpec) -> Result<DryRun> {
    let images = validate(store, spec).await?;
    let classes = evaluate(store, spec, &images).await?;
    let mut out = summarize(spec, &classes);
    out.overlapping = overlapping(store, &classes).await?;
    Ok(out)
}

/// Create a campaign (state `draft`). Refuses a target that matches no device and devices
/// already in another active campaign.
pub async fn create(
    store: &Store,
    actor: &str,
    now: i64,
    spec: &CampaignSpec,
) -> Result<(CampaignRow, DryRun)> {
    let dry = dry_run(store, spec).await?;
    if dry.matching == 0 {
        return Err(Error::invalid("target", "matches no device"));
    }
    if !dry.overlapping.is_empty() {
        return Err(overlap_error(&dry.overlapping));
    }
    let new = NewCampaign {
        name: spec.name.trim().to_string(),
        state: DRAFT.into(),
        spec: serde_json::to_string(spec)?,
        created_by: actor.to_string(),
        created_at: now,
        updated_at: now,
    };
    let detail = format!(
        "by {actor}: {} devices match, {} eligible, {} compliant",
        dry.matching, dry.eligible, dry.compliant
    );
    let actor = actor.to_string();
    let row = store
        .run(move |s| {
            let row = s.insert_campaign(&new, &detail)?;
            s.audit(
                now,
                &actor,
                "campaign.create",
                &format!("campaign/{}", row.id),
                Some(&row.name),
            )?;
            Ok(row)
        })
        .await?;
    Ok((row, dry))
}

/// The stored spec of a campaign.
pub fn spec_of(row: &CampaignRow) -> Result<CampaignSpec> {
    serde_json::from_str(&row.spec)
        .map_err(|e| Error::internal(format!("campaign {} has an unreadable spec: {e}", row.id)))
}

/// Device counts per state of each running or paused campaign: (id, name, campaign state,
/// member state, count).
pub async fn active_counts(store: &Store) -> Result<Vec<(i64, String, String, String, i64)>> {
    store.run(|s| s.active_campaign_counts()).await
}

/// Whether `node` holds the scheduler lease now.
pub async fn leads(store: &Store, node: &str, now: i64) -> Result<bool> {
    let node = node.to_string();
    let holder = store.run(|s| s.lease_holder("scheduler")).await?;
    Ok(holder.is_some_and(|(owner, until)| owner == node && until >= now))
}

/// One campaign.
pub async fn get(store: &Store, id: i64) -> Result<CampaignRow> {
    load(store, id).await
}

/// Campaigns, newest first, before the id `cursor`.
pub async fn list(store: &Store, cursor: Option<i64>, limit: i64) -> Result<Vec<CampaignRow>> {
    store.run(move |s| s.list_campaigns(cursor, limit)).await
}

/// A campaign's devices in start order after `cursor`, optionally in one state.
pub async fn members(
    store: &Store,
    id: i64,
    state: Option<String>,
    cursor: Option<i32>,
    limit: i64,
) -> Result<Vec<MemberRow>> {
    if let Some(s) = &state {
        if !MEMBER_STATES.contains(&s.as_str()) {
            return Err(Error::invalid(
                "state",
                format!("one of {}", MEMBER_STATES.join(", ")),
            ));
        }
    }
    load(store, id).await?;
    store
        .run(move |s| s.list_members(id, state.as_deref(), cursor, limit))
        .await
}

/// A campaign's timeline, oldest first, after the id `cursor`; optionally of one device.
pub async fn events(
    store: &Store,
    id: i64,
    device_id: Option<String>,
    cursor: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    load(store, id).await?;
    store
        .run(move |s| s.campaign_events(id, device_id.as_deref(), cursor, limit))
        .await
}

async fn load(store: &Store, id: i64) -> Result<CampaignRow> {
    store
        .run(move |s| s.get_campaign(id))
        .await?
        .ok_or_else(|| Error::not_found(format!("campaign {id}")))
}

/// A stable shuffle key, so each wave mixes models and the order survives restarts.
fn shuffle_key(campaign: i64, device: &str) -> [u8; 8] {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{campaign}/{device}").as_bytes());
    let mut k = [0u8; 8];
    k.copy_from_slice(&h[..8]);
    k
}

/// Start a draft campaign: freeze its members (eligible devices in waves, the rest skipped
/// with the reason) and let the scheduler pace it.
pub async fn start(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    if row.state != DRAFT {
        return Err(Error::Conflict(format!(
            "campaign {id} is {}; only a draft campaign can be started (clone it to run it again)",
            row.state
        )));
    }
    let spec = spec_of(&row)?;
    let images = validate(store, &spec).await?;
    let classes = evaluate(store, &spec, &images).await?;
    let over = overlapping(store, &classes).await?;
    if !over.is_empty() {
        return Err(overlap_error(&over));
    }
    let dry = summarize(&spec, &classes);
    let mut eligible: Vec<(&DeviceRow, &Class)> = classes
        .iter()
        .filter(|(_, c)| matches!(c, Class::Eligible { .. }))
        .map(|(d, c)| (d, c))
        .collect();
    eligible.sort_by_key(|(d, _)| shuffle_key(id, &d.id));
    let waves = plan::wave_of_each(&dry.waves);
    let mut members = Vec::with_capacity(classes.len());
    for (seq, ((d, c), wave)) in eligible.iter().zip(waves.iter()).enumerate() {
        if let Class::Eligible {
            model,
            from,
            target,
        } = c
        {
            members.push(MemberRow {
                campaign_id: id,
                device_id: d.id.clone(),
                model: model.clone(),
                wave: *wave,
                seq: seq as i32,
                state: PENDING.into(),
                attempts: 0,
                task_id: None,
                from_version: from.clone(),
                target_version: target.clone(),
                started_at: None,
                finished_at: None,
                last_error: None,
            });
        }
    }
    let mut seq = members.len() as i32;
    for (d, c) in &classes {
        let (model, reason) = match c {
            Class::Eligible { .. } => continue,
            Class::Compliant { model } => (model, "already compliant".to_string()),
            Class::Skipped { model, reason } => (model, reason.clone()),
        };
        members.push(MemberRow {
            campaign_id: id,
            device_id: d.id.clone(),
            model: model.clone(),
            wave: 0,
            seq,
            state: SKIPPED.into(),
            attempts: 0,
            task_id: None,
            from_version: d.software_version.clone(),
            target_version: String::new(),
            started_at: None,
            finished_at: Some(now),
            last_error: Some(reason),
        });
        seq += 1;
    }
    let update = CampaignUpdate {
        state: Some(RUNNING.into()),
        current_wave: Some(0),
        wave_started_at: Some(Some(now)),
        counted_since: Some(now),
        reason: Some(None),
        started_at: Some(Some(now)),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    let detail = format!(
        "by {actor}: {} devices in {} waves {:?}, {} compliant, {} skipped",
        dry.eligible,
        dry.waves.len(),
        dry.waves,
        dry.compliant,
        dry.skipped
    );
    let actor = actor.to_string();
    let started = store
        .run(move |s| {
            let ok = s.start_campaign(id, &members, &update, &detail, now)?;
            if ok {
                s.audit(
                    now,
                    &actor,
                    "campaign.start",
                    &format!("campaign/{id}"),
                    Some(&detail),
                )?;
            }
            Ok(ok)
        })
        .await?;
    if !started {
        return Err(Error::Conflict(format!(
            "campaign {id} was started meanwhile"
        )));
    }
    load(store, id).await
}

/// One state change of a campaign by an operator (or the scheduler), audited.
#[allow(clippy::too_many_arguments)]
async fn control(
    store: &Store,
    actor: &str,
    now: i64,
    id: i64,
    action: &'static str,
    from: &'static [&'static str],
    update: CampaignUpdate,
    detail: String,
) -> Result<CampaignRow> {
    let a = actor.to_string();
    let kind = action.trim_start_matches("campaign.").to_string();
    let row = store
        .run(move |s| {
            let ev = format!("by {a}: {detail}");
            let row = s.transition_campaign(id, from, &update, Some((&kind, &ev)), now)?;
            if row.is_some() {
                s.audit(now, &a, action, &format!("campaign/{id}"), Some(&detail))?;
            }
            Ok(row)
        })
        .await?;
    match row {
        Some(r) => Ok(r),
        None => {
            let cur = load(store, id).await?;
            Err(Error::Conflict(format!(
                "campaign {id} is {}; {} needs it to be {}",
                cur.state,
                action,
                from.join(" or ")
            )))
        }
    }
}

/// Replace the action of a draft or paused campaign (e.g. a fixed image for one model). Devices
/// started from now on get the new action; `retry_failed` re-queues those that failed.
pub async fn replace_action(
    store: &Store,
    actor: &str,
    now: i64,
    id: i64,
    action: Action,
) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    let mut spec = spec_of(&row)?;
    if std::mem::discriminant(&spec.action) != std::mem::discriminant(&action) {
        return Err(Error::invalid(
            "action.type",
            "a campaign keeps its kind of action (firmware or task); create a new campaign instead",
        ));
    }
    spec.action = action;
    validate(store, &spec).await?;
    let update = CampaignUpdate {
        spec: Some(serde_json::to_string(&spec)?),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.update",
        &[DRAFT, PAUSED],
        update,
        "action replaced".into(),
    )
    .await
}

/// Pause: nothing new starts; devices already started finish.
pub async fn pause(
    store: &Store,
    actor: &str,
    now: i64,
    id: i64,
    reason: &str,
) -> Result<CampaignRow> {
    let reason = if reason.trim().is_empty() {
        format!("paused by {actor}")
    } else {
        reason.trim().to_string()
    };
    let update = CampaignUpdate {
        state: Some(PAUSED.into()),
        reason: Some(Some(reason.clone())),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.pause",
        &[RUNNING],
        update,
        reason,
    )
    .await
}

/// Resume a paused campaign. Stop rules count again from now (the failures that paused it
/// are not counted twice).
pub async fn resume(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let update = CampaignUpdate {
        state: Some(RUNNING.into()),
        reason: Some(None),
        counted_since: Some(now),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.resume",
        &[PAUSED],
        update,
        "resumed".into(),
    )
    .await
}

/// Approve the next wave of a campaign waiting for it.
pub async fn approve(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    if row.awaiting_approval == 0 {
        return Err(Error::Conflict(format!(
            "campaign {id} is not waiting for approval of a wave"
        )));
    }
    let next = row.current_wave + 1;
    let update = CampaignUpdate {
        current_wave: Some(next),
        wave_started_at: Some(Some(now)),
        awaiting_approval: Some(0),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.approve",
        &[RUNNING, PAUSED],
        update,
        format!("wave {next} approved"),
    )
    .await
}

/// Abort: nothing new starts; transfers already running complete and are still judged.
pub async fn abort(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let update = CampaignUpdate {
        state: Some(ABORTED.into()),
        reason: Some(Some(format!("aborted by {actor}"))),
        finished_at: Some(Some(now)),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.abort",
        &[DRAFT, RUNNING, PAUSED],
        update,
        "aborted".into(),
    )
    .await
}

/// Put every failed device back in the queue and run the campaign again.
pub async fn retry_failed(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    if !matches!(row.state.as_str(), RUNNING | PAUSED | COMPLETED) {
        return Err(Error::Conflict(format!(
            "campaign {id} is {}; retry needs a running, paused or completed campaign",
            row.state
        )));
    }
    let n = store.run(move |s| s.reset_failed_members(id)).await?;
    let update = CampaignUpdate {
        state: Some(RUNNING.into()),
        reason: Some(None),
        counted_since: Some(now),
        finished_at: Some(None),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    control(
        store,
        actor,
        now,
        id,
        "campaign.retry_failed",
        &[RUNNING, PAUSED, COMPLETED],
        update,
        format!("{n} failed devices queued again"),
    )
    .await
}

/// A new draft with the same specification.
pub async fn clone(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    let mut spec = spec_of(&row)?;
    spec.name = format!("{} (copy)", spec.name);
    let (new, _) = create_audited(store, actor, now, &spec, "campaign.clone", id).await?;
    Ok(new)
}

async fn create_audited(
    store: &Store,
    actor: &str,
    now: i64,
    spec: &CampaignSpec,
    action: &'static str,
    source: i64,
) -> Result<(CampaignRow, DryRun)> {
    let (row, dry) = create(store, actor, now, spec).await?;
    let (a, nid) = (actor.to_string(), row.id);
    store
        .run(move |s| {
            s.audit(
                now,
                &a,
                action,
                &format!("campaign/{nid}"),
                Some(&format!("from campaign/{source}")),
            )
        })
        .await?;
    Ok((row, dry))
}

/// A draft pushing each model's previous image back to the devices that got the new one.
/// Every previous version needs a stored firmware file of that version (its `version`
/// metadata); the new draft names them per model.
pub async fn reverse(store: &Store, actor: &str, now: i64, id: i64) -> Result<CampaignRow> {
    let row = load(store, id).await?;
    let spec = spec_of(&row)?;
    let Action::Firmware { images } = &spec.action else {
        return Err(Error::invalid(
            "action",
            "only firmware campaigns can be reversed",
        ));
    };
    let upgraded = store
        .run(move |s| s.members_in(id, SUCCEEDED, 1_000_000))
        .await?;
    if upgraded.is_empty() {
        return Err(Error::invalid(
            "target",
            "no device of this campaign succeeded; nothing to reverse",
        ));
    }
    // model -> previous version (the most common one the upgraded devices came from).
    let mut previous: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for m in &upgraded {
        *previous
            .entry(m.model.clone())
            .or_default()
            .entry(m.from_version.clone())
            .or_default() += 1;
    }
    let files = store.run(|s| s.list_files(None, 10_000)).await?;
    let mut back = Vec::new();
    for img in images {
        let key = img.model_key();
        let Some(froms) = previous.get(&key) else {
            continue;
        };
        let Some((from, _)) = froms.iter().max_by_key(|(_, n)| **n) else {
            continue;
        };
        let Some(file) = files
            .iter()
            .find(|f| f.version == *from && f.device_id.is_none() && f.file_type.starts_with("1 "))
        else {
            return Err(Error::invalid(
                "action.images",
                format!(
                    "no stored firmware file has version {from} (the previous image of {key}); upload it first"
                ),
            ));
        };
        back.push(Image {
            oui: img.oui.clone(),
            product_class: img.product_class.clone(),
            hardware_version: img.hardware_version.clone(),
            file_id: file.id.clone(),
            version: Some(from.clone()),
            from_versions: Vec::new(),
        });
    }
    let rev = CampaignSpec {
        name: format!("{} (reverse)", spec.name),
        target: Target {
            query: None,
            devices: upgraded.into_iter().map(|m| m.device_id).collect(),
            exclude: Vec::new(),
        },
        action: Action::Firmware { images: back },
        ..spec.clone()
    };
    let (new, _) = create_audited(store, actor, now, &rev, "campaign.reverse", id).await?;
    Ok(new)
}

/// Counts per state, overall, per wave and per model, with rate and estimated end.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub totals: BTreeMap<String, i64>,
    pub waves: BTreeMap<i32, BTreeMap<String, i64>>,
    pub models: BTreeMap<String, BTreeMap<String, i64>>,
    /// Devices finished per minute since the start.
    pub rate_per_minute: f64,
    /// Estimated end (ms since the epoch) at that rate, while devices remain.
    pub eta: Option<i64>,
}

pub async fn progress(store: &Store, row: &CampaignRow, now: i64) -> Result<Progress> {
    let id = row.id;
    let (by_wave, by_model) = store
        .run(move |s| Ok((s.member_counts_by_wave(id)?, s.member_counts_by_model(id)?)))
        .await?;
    let zero =
        || -> BTreeMap<String, i64> { MEMBER_STATES.iter().map(|s| (s.to_string(), 0)).collect() };
    let mut totals = zero();
    let mut waves: BTreeMap<i32, BTreeMap<String, i64>> = BTreeMap::new();
    for (w, s, n) in by_wave {
        *totals.entry(s.clone()).or_default() += n;
        if s != SKIPPED {
            *waves.entry(w).or_insert_with(zero).entry(s).or_default() += n;
        }
    }
    let mut models: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (m, s, n) in by_model {
        *models.entry(m).or_insert_with(zero).entry(s).or_default() += n;
    }
    let finished = totals[SUCCEEDED] + totals[FAILED_CONFIRMED] + totals[FAILED_UNCONFIRMED];
    let remaining = totals[PENDING] + totals[IN_PROGRESS];
    let minutes = row
        .started_at
        .map(|s| ((now - s).max(1) as f64) / 60_000.0)
        .unwrap_or(0.0);
    let rate = if minutes > 0.0 {
        finished as f64 / minutes
    } else {
        0.0
    };
    let eta = (rate > 0.0 && remaining > 0 && row.state == RUNNING)
        .then(|| now + ((remaining as f64 / rate) * 60_000.0) as i64);
    Ok(Progress {
        totals,
        waves,
        models,
        rate_per_minute: rate,
        eta,
    })
}
