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
//! - The secrets of a task action (as [`crate::domain::tasks::for_each_secret`] finds them)
//!   are sealed in the stored spec (`campaigns.spec`); [`spec_of`] opens them for the tasks
//!   the campaign queues, which seal them again. Given back as `***`
//!   ([`replace_action`]), they keep the stored values.
//!
//! Overlapping campaigns are **refused**: a device may be an open member (pending or in
//! progress) of one running or paused campaign at a time; creating or starting a campaign
//! whose target includes such a device fails with a 400 on `target`, naming the device and
//! the campaign holding it.

pub mod notify;
pub mod plan;
pub mod run;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::cron::CronWindow;
use crate::domain::tasks::{keep_stored_secrets, open_json, seal_json, TaskSpec};
use crate::error::{Error, Result};
use crate::secrets::{purpose, Keyring};
pub use crate::store::campaigns::{CampaignRow, EventRow, MemberRow};
use crate::store::campaigns::{CampaignUpdate, NewCampaign};
use crate::store::devices::DeviceRow;
use crate::store::Store;

/// Campaign states, one definition with the store's queries.
pub use crate::store::campaigns::campaign_state::{ABORTED, COMPLETED, DRAFT, PAUSED, RUNNING};
/// Member states, one definition with the store's queries.
pub use crate::store::campaigns::member_state::{
    FAILED_CONFIRMED, FAILED_UNCONFIRMED, IN_PROGRESS, PENDING, SKIPPED, SUCCEEDED,
};
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
    /// Evaluate the query again each time a wave opens ([`reevaluate`]) instead of
    /// freezing the members at start (the default).
    pub reevaluate: bool,
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
    /// Intermediate images (stepping stones), in upgrade order: a device on a version one
    /// of them applies from gets that one first, then each following one, then this image,
    /// every step confirmed by the version the device reports at its next Inform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// One intermediate image on the way to a model's final image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A stored file (`POST /api/v1/files`).
    pub file_id: String,
    /// The SoftwareVersion the device reports after this step; default: the file's version
    /// (written into the stored specification when the campaign is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The versions this step applies from (at least one).
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

/// The firmware one phone model should run (phones provisioned by file fetch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneImage {
    /// `polycom`, `yealink`, `grandstream`, `cisco` or `snom`.
    pub vendor: String,
    /// The phone model as registered (`vvx400`, `t46u`, ...).
    pub model: String,
    /// The firmware file the configuration names (a URL, or a name relative to the
    /// provisioning URL); written into each phone's own settings (`firmware_file`).
    pub firmware_file: String,
    /// The firmware version the phone reports once upgraded (User-Agent or `fw=`).
    pub version: String,
    /// Only phones reporting one of these versions are upgraded (empty = any other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_versions: Vec<String>,
}

impl PhoneImage {
    fn model_key(&self) -> String {
        format!(
            "{}/{}",
            self.vendor.to_ascii_lowercase(),
            self.model.to_ascii_lowercase()
        )
    }
}

/// What a campaign does to each device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A firmware image per model; success needs the new SoftwareVersion reported.
    Firmware { images: Vec<Image> },
    /// Phones (provisioned by file fetch, not TR-069): each started phone's own settings
    /// name the firmware of its model (`firmware_file`, `firmware_version`); success is
    /// that version reported by a later fetch of the phone.
    PhoneFirmware { images: Vec<PhoneImage> },
    /// Any task (config Download, SetParameterValues, Reboot, FactoryReset, Upload, ...);
    /// success = the task is done.
    Task { task: TaskSpec },
}

impl Action {
    /// Firmware, reboots and factory resets interrupt service.
    pub fn disruptive(&self) -> bool {
        match self {
            Action::Firmware { .. } | Action::PhoneFirmware { .. } => true,
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
    /// Further attempts per device after a failure that may pass on a later try: no answer
    /// in time, or a fault the task fault policy retries (not a permanent code; never a
    /// device that came back on the wrong version). Backoff 1, 2, 4, ... minutes.
    pub retries: u32,
    /// Start each device at a random time inside what remains of the open window (or until
    /// `end_at`) instead of as fast as the limits allow, so a region's devices do not all
    /// reach the file server at the window's opening. The time is drawn from a hash of the
    /// campaign and the device ([`plan::jitter_seed`]): every node agrees, nothing is
    /// stored per device. The in-flight and per-minute limits still hold.
    pub spread: bool,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            max_in_flight: 50,
            max_starts_per_minute: 60,
            confirm_timeout_secs: 3600,
            retries: 0,
            spread: false,
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
    /// Where to POST the campaign's state changes (see [`notify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// An HTTP(S) URL that receives a JSON POST for every state change of the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
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
    /// The versions of `image.steps`, resolved, in order.
    pub steps: Vec<String>,
}

impl ResolvedImage {
    /// Links of the model's upgrade path: the steps, then the final image.
    pub fn links(&self) -> usize {
        self.steps.len() + 1
    }

    /// The version a device reports after link `k` (the last link = the final image).
    pub fn version_of(&self, k: usize) -> &str {
        self.steps
            .get(k)
            .map_or(self.version.as_str(), |v| v.as_str())
    }

    /// The first link a device on `current` gets: the step that applies from its version,
    /// else the final image if it applies from it (an image without `from_versions` applies
    /// from any version); `None` when nothing does. A device already on the final version
    /// is compliant (the caller checks that first).
    pub fn entry(&self, current: &str) -> Option<usize> {
        if let Some(k) = self
            .image
            .steps
            .iter()
            .position(|s| s.from_versions.iter().any(|v| v == current))
        {
            return Some(k);
        }
        let f = &self.image.from_versions;
        (f.is_empty() || f.iter().any(|v| v == current)).then_some(self.steps.len())
    }
}

/// The link of a model's path (of `links`) a member runs now: its own path has `hops`
/// links, ending with the final image, and `done` of them are confirmed.
pub fn link_of(links: usize, hops: i32, done: i32) -> usize {
    let hops = (hops.max(1) as usize).min(links);
    (links - hops + done.max(0) as usize).min(links - 1)
}

/// A member's progress along an upgrade path with intermediate images, for people:
/// "step 2 of 3: 1.5" (the image it runs or waits for next), "3 of 3 steps" once it
/// succeeded; empty for a path of one image.
pub fn step_label(m: &MemberRow) -> String {
    if m.steps <= 1 {
        return String::new();
    }
    if m.state == SUCCEEDED {
        return format!("{0} of {0} steps", m.steps);
    }
    let version = if m.step_version.is_empty() {
        &m.target_version
    } else {
        &m.step_version
    };
    format!("step {} of {}: {version}", m.step + 1, m.steps)
}

/// Check a model's upgrade path (pure): the final image's version and `from_versions`,
/// and each step's (version, from versions) in order. In this order:
///
/// 1. every step applies from at least one version, never from the final version (a
///    device on it is compliant);
/// 2. no version is applied from by two links (which one would the device get?);
/// 3. no cycle: a step never leads to a version that it or an earlier step applies from,
///    nor to an earlier step's version, nor (before the last step) to the final version;
/// 4. no unreachable link: each step's version is one the next link applies from (the
///    final image applies from any version when its `from_versions` is empty).
///
/// The error is (field under the image, message).
pub fn check_path(
    final_version: &str,
    final_from: &[String],
    steps: &[(String, Vec<String>)],
) -> std::result::Result<(), (String, String)> {
    let mut applies: BTreeMap<&str, String> = BTreeMap::new();
    for (j, (_, from)) in steps.iter().enumerate() {
        if from.is_empty() {
            return Err((
                format!("steps[{j}].from_versions"),
                "give the versions this step applies from (e.g. [\"1.0\"])".into(),
            ));
        }
        for v in from {
            if v == final_version {
                return Err((
                    format!("steps[{j}].from_versions"),
                    format!("lists {v:?}, the final version: a device on it is already compliant"),
                ));
            }
            if let Some(other) = applies.insert(v, format!("steps[{j}]")) {
                if other != format!("steps[{j}]") {
                    return Err((
                        format!("steps[{j}].from_versions"),
                        format!(
                            "{other} already applies from {v:?}: a version may start one step only"
                        ),
                    ));
                }
            }
        }
    }
    for v in final_from {
        if let Some(step) = applies.get(v.as_str()) {
            return Err((
                "from_versions".into(),
                format!("{step} already applies from {v:?}: a device on it gets that step first, so leave {v:?} out here"),
            ));
        }
    }
    for (j, (version, _)) in steps.iter().enumerate() {
        for (k, (earlier, from)) in steps[..=j].iter().enumerate() {
            if from.iter().any(|v| v == version) {
                return Err((
                    format!("steps[{j}].version"),
                    format!(
                        "leads to {version:?}, which steps[{k}] applies from: the path would loop"
                    ),
                ));
            }
            if k < j && earlier == version {
                return Err((
                    format!("steps[{j}].version"),
                    format!("leads to {version:?} like steps[{k}]: the path would loop"),
                ));
            }
        }
        if version == final_version {
            return Err((
                format!("steps[{j}].version"),
                format!("is the final version {version:?}: a step leads to an intermediate version; leave the final image out of the steps"),
            ));
        }
    }
    for (j, (version, _)) in steps.iter().enumerate() {
        let (next, next_from) = match steps.get(j + 1) {
            Some((_, from)) => (format!("steps[{}]", j + 1), from.as_slice()),
            None => ("the final image".to_string(), final_from),
        };
        let reaches = next_from.iter().any(|v| v == version)
            || (j + 1 == steps.len() && final_from.is_empty());
        if !reaches {
            return Err((
                format!("steps[{j}].version"),
                format!(
                    "a device on {version:?} after this step has no next image: {next} does not apply from {version:?}, so it is unreachable from here (add {version:?} to its from_versions)"
                ),
            ));
        }
    }
    Ok(())
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
    if t.reevaluate && t.query.is_none() {
        return Err(Error::invalid(
            "target.reevaluate",
            "only a query can be evaluated again; a device list is fixed",
        ));
    }
    compile_windows(spec)?;
    if let Some(w) = &spec.webhook {
        crate::connreq::webhook::check_url(&w.url).map_err(|e| Error::invalid("webhook.url", e))?;
    }
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
    if spec.pacing.retries > 10 {
        return Err(Error::invalid(
            "pacing.retries",
            "at most 10 further attempts",
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
                if img.steps.len() > 8 {
                    return Err(Error::invalid(
                        format!("action.images[{i}].steps"),
                        "at most 8 intermediate images",
                    ));
                }
                let mut steps = Vec::with_capacity(img.steps.len());
                for (j, st) in img.steps.iter().enumerate() {
                    let fid = st.file_id.clone();
                    let Some(file) = store.run(move |s| s.get_file(&fid)).await? else {
                        return Err(Error::invalid(
                            format!("action.images[{i}].steps[{j}].file_id"),
                            format!(
                                "no stored file has id {}; upload it with POST /api/v1/files first",
                                st.file_id
                            ),
                        ));
                    };
                    let v = st
                        .version
                        .clone()
                        .filter(|v| !v.is_empty())
                        .unwrap_or(file.version);
                    if v.is_empty() {
                        return Err(Error::invalid(
                            format!("action.images[{i}].steps[{j}].version"),
                            "the file has no version; give the SoftwareVersion the device reports after this step",
                        ));
                    }
                    steps.push((v, st.from_versions.clone()));
                }
                check_path(&version, &img.from_versions, &steps).map_err(|(field, msg)| {
                    Error::invalid(format!("action.images[{i}].{field}"), msg)
                })?;
                resolved.push(ResolvedImage {
                    image: img.clone(),
                    version,
                    steps: steps.into_iter().map(|(v, _)| v).collect(),
                });
            }
        }
        Action::PhoneFirmware { images } => {
            if images.is_empty() {
                return Err(Error::invalid(
                    "action.images",
                    "give at least one image (vendor, model, firmware_file, version)",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, img) in images.iter().enumerate() {
                let field = |f: &str| format!("action.images[{i}].{f}");
                if crate::phones::Vendor::parse(&img.vendor).is_none() {
                    return Err(Error::invalid(
                        field("vendor"),
                        format!(
                            "{:?} is not a phone vendor: polycom, yealink, grandstream, cisco or snom",
                            img.vendor
                        ),
                    ));
                }
                if img.model.trim().is_empty() {
                    return Err(Error::invalid(field("model"), "give the phone model"));
                }
                if img.version.trim().is_empty() {
                    return Err(Error::invalid(
                        field("version"),
                        "give the firmware version the phone reports once upgraded",
                    ));
                }
                if img.firmware_file.trim().is_empty() {
                    return Err(Error::invalid(
                        field("firmware_file"),
                        "give the firmware file (a URL or a name relative to the provisioning URL)",
                    ));
                }
                let settings = crate::phones::Settings {
                    firmware_version: Some(img.version.clone()),
                    firmware_file: Some(img.firmware_file.clone()),
                    ..crate::phones::Settings::default()
                };
                settings
                    .validate(None)
                    .map_err(|(f, m)| Error::invalid(field(&f), m))?;
                if !seen.insert(img.model_key()) {
                    return Err(Error::invalid(
                        field("model"),
                        format!("{} has an image already", img.model_key()),
                    ));
                }
            }
        }
        Action::Task { task } => crate::domain::taskops::check_template(store, task).await?,
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
        /// The version the first image of its path leads to (= `target` without steps).
        first: String,
        /// Images on its path, the final one included.
        hops: i32,
    },
    Compliant {
        model: String,
    },
    Skipped {
        model: String,
        reason: String,
    },
}

/// The member row of a device the campaign skips, and why.
fn skipped_member(
    campaign_id: i64,
    d: &DeviceRow,
    model: &str,
    seq: i32,
    now: i64,
    reason: String,
) -> MemberRow {
    MemberRow {
        campaign_id,
        device_id: d.id.clone(),
        model: model.to_string(),
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
        step: 0,
        steps: 1,
        step_version: String::new(),
    }
}

/// The pending member row of an eligible device.
fn pending_member(
    campaign_id: i64,
    d: &DeviceRow,
    c: &Class,
    wave: i32,
    seq: i32,
) -> Option<MemberRow> {
    let Class::Eligible {
        model,
        from,
        target,
        first,
        hops,
    } = c
    else {
        return None;
    };
    Some(MemberRow {
        campaign_id,
        device_id: d.id.clone(),
        model: model.clone(),
        wave,
        seq,
        state: PENDING.into(),
        attempts: 0,
        task_id: None,
        from_version: from.clone(),
        target_version: target.clone(),
        started_at: None,
        finished_at: None,
        last_error: None,
        step: 0,
        steps: *hops,
        step_version: first.clone(),
    })
}

/// Classify one device (pure).
pub fn classify(action: &Action, images: &[ResolvedImage], d: &DeviceRow) -> Class {
    let device_model = format!("{}/{}", d.oui, d.product_class);
    match action {
        Action::Task { .. } => Class::Eligible {
            model: device_model,
            from: d.software_version.clone(),
            target: String::new(),
            first: String::new(),
            hops: 1,
        },
        Action::PhoneFirmware { .. } => Class::Skipped {
            model: device_model,
            reason: "not a phone: a phone firmware campaign upgrades phones only".into(),
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
                return Class::Compliant { model };
            }
            match r.entry(&d.software_version) {
                Some(k) => Class::Eligible {
                    model,
                    from: d.software_version.clone(),
                    target: r.version.clone(),
                    first: r.version_of(k).to_string(),
                    hops: (r.links() - k) as i32,
                },
                None => {
                    let from: Vec<&str> = r
                        .image
                        .steps
                        .iter()
                        .flat_map(|s| s.from_versions.iter())
                        .chain(r.image.from_versions.iter())
                        .map(String::as_str)
                        .collect();
                    Class::Skipped {
                        model,
                        reason: format!(
                            "runs version {:?}, not one the image upgrades from ({})",
                            d.software_version,
                            from.join(", ")
                        ),
                    }
                }
            }
        }
    }
}

/// What a phone the store knows (vendor, model, the firmware it last reported) would get
/// from a phone firmware campaign (pure).
pub fn classify_phone(images: &[PhoneImage], vendor: &str, model: &str, firmware: &str) -> Class {
    let key = format!(
        "{}/{}",
        vendor.to_ascii_lowercase(),
        model.to_ascii_lowercase()
    );
    let Some(img) = images.iter().find(|i| i.model_key() == key) else {
        return Class::Skipped {
            model: key,
            reason: format!("no image for phone model {vendor} {model}"),
        };
    };
    if firmware == img.version {
        return Class::Compliant { model: key };
    }
    if !img.from_versions.is_empty() && !img.from_versions.iter().any(|v| v == firmware) {
        return Class::Skipped {
            model: key,
            reason: format!(
                "reports firmware {firmware:?}, not one the image upgrades from ({})",
                img.from_versions.join(", ")
            ),
        };
    }
    Class::Eligible {
        model: key,
        from: firmware.to_string(),
        target: img.version.clone(),
        first: img.version.clone(),
        hops: 1,
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
    let devices: Vec<DeviceRow> = devices
        .into_iter()
        .filter(|d| !exclude.contains(d.id.as_str()))
        .collect();
    if let Action::PhoneFirmware { images } = &spec.action {
        let ids: Vec<String> = devices
            .iter()
            .filter(|d| d.id.starts_with("phone:"))
            .map(|d| d.id.clone())
            .collect();
        let phones: std::collections::HashMap<String, (String, String, String)> = store
            .run(move |s| s.phones_of_devices(&ids))
            .await?
            .into_iter()
            .map(|p| (p.0, (p.1, p.2, p.3.unwrap_or_default())))
            .collect();
        return Ok(devices
            .into_iter()
            .map(|d| {
                let c = match phones.get(&d.id) {
                    Some((vendor, model, fw)) => classify_phone(images, vendor, model, fw),
                    None => classify(&spec.action, &[], &d),
                };
                (d, c)
            })
            .collect());
    }
    Ok(devices
        .into_iter()
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
    Ok(dry_run_resolved(store, spec).await?.0)
}

async fn dry_run_resolved(
    store: &Store,
    spec: &CampaignSpec,
) -> Result<(DryRun, Vec<ResolvedImage>)> {
    let images = validate(store, spec).await?;
    let classes = evaluate(store, spec, &images).await?;
    let mut out = summarize(spec, &classes);
    out.overlapping = overlapping(store, &classes).await?;
    Ok((out, images))
}

/// The spec as stored: every intermediate image names the version it leads to (resolved
/// from its file when the operator left it out), so the scheduler judges each step
/// without reading files.
fn with_step_versions(spec: &CampaignSpec, images: &[ResolvedImage]) -> CampaignSpec {
    let mut out = spec.clone();
    if let Action::Firmware { images: imgs } = &mut out.action {
        for (img, r) in imgs.iter_mut().zip(images) {
            for (st, v) in img.steps.iter_mut().zip(&r.steps) {
                st.version = Some(v.clone());
            }
        }
    }
    out
}

/// Create a campaign (state `draft`). Refuses a target that matches no device and devices
/// already in another active campaign.
pub async fn create(
    store: &Store,
    actor: &str,
    now: i64,
    spec: &CampaignSpec,
) -> Result<(CampaignRow, DryRun)> {
    // A new campaign has no stored secret a mask could keep.
    keep_stored_secrets(&mut serde_json::to_value(&spec.action)?, None).map_err(in_action)?;
    let (dry, images) = dry_run_resolved(store, spec).await?;
    if dry.matching == 0 {
        return Err(Error::invalid("target", "matches no device"));
    }
    if !dry.overlapping.is_empty() {
        return Err(overlap_error(&dry.overlapping));
    }
    let new = NewCampaign {
        name: spec.name.trim().to_string(),
        state: DRAFT.into(),
        spec: sealed(&store.keyring(), &with_step_versions(spec, &images))?,
        created_by: actor.to_string(),
        created_at: now,
        updated_at: now,
    };
    let detail = format!(
        "by {actor}: {} devices match, {} eligible, {} compliant",
        dry.matching, dry.eligible, dry.compliant
    );
    let actor = actor.to_string();
    let hooked = spec.webhook.is_some();
    let row = store
        .run(move |s| {
            let row = s.insert_campaign(&new, &detail)?;
            if hooked {
                s.add_campaign_webhook(row.id)?;
            }
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

/// The stored spec of a campaign, the secrets of its task opened (the tasks it queues carry
/// them).
pub fn spec_of(k: &Keyring, row: &CampaignRow) -> Result<CampaignSpec> {
    let clear = open_json(k, purpose::CAMPAIGN_SPEC, &row.spec).map_err(|e| {
        Error::internal(format!(
            "campaign {} has a spec that does not open: {e}",
            row.id
        ))
    })?;
    serde_json::from_str(&clear)
        .map_err(|e| Error::internal(format!("campaign {} has an unreadable spec: {e}", row.id)))
}

/// A spec as stored: every secret of its task sealed.
fn sealed(k: &Keyring, spec: &CampaignSpec) -> Result<String> {
    seal_json(k, purpose::CAMPAIGN_SPEC, &serde_json::to_string(spec)?)
}

/// A field of the action, named as the API takes it.
fn in_action(e: Error) -> Error {
    match e {
        Error::Invalid { field, message } if field.starts_with("task") => {
            Error::invalid(format!("action.{field}"), message)
        }
        other => other,
    }
}

/// Device counts per state of each running or paused campaign: (id, name, campaign state,
/// member state, count).
pub async fn active_counts(store: &Store) -> Result<Vec<(i64, String, String, String, i64)>> {
    store.run(|s| s.active_campaign_counts()).await
}

/// Member counts per state of each of `ids` (campaign id -> state -> count).
pub async fn counts_of(
    store: &Store,
    ids: Vec<i64>,
) -> Result<BTreeMap<i64, BTreeMap<String, i64>>> {
    let rows = store.run(move |s| s.member_counts_of(&ids)).await?;
    let mut out: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for (id, state, n) in rows {
        *out.entry(id).or_default().entry(state).or_default() += n;
    }
    Ok(out)
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
    let spec = spec_of(&store.keyring(), &row)?;
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
        members.extend(pending_member(id, d, c, *wave, seq as i32));
    }
    let mut seq = members.len() as i32;
    for (d, c) in &classes {
        let (model, reason) = match c {
            Class::Eligible { .. } => continue,
            Class::Compliant { model } => (model, "already compliant".to_string()),
            Class::Skipped { model, reason } => (model, reason.clone()),
        };
        members.push(skipped_member(id, d, model, seq, now, reason));
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

/// A wave opened on a campaign with `target.reevaluate`: evaluate the query again. Devices
/// that match now and are not members yet join the campaign's last wave (eligible ones
/// pending, in the campaign's random order; compliant, unmatched models and devices held by
/// another running or paused campaign as skipped, with the reason); pending members of waves
/// from `wave` on that no longer match, or are no longer eligible, are skipped with the
/// reason. Started and finished members are never touched. Returns (joined, dropped).
pub async fn reevaluate(
    store: &Store,
    spec: &CampaignSpec,
    id: i64,
    wave: i32,
    now: i64,
) -> Result<(usize, usize)> {
    use std::collections::HashMap;
    let images = validate(store, spec).await?;
    let classes = evaluate(store, spec, &images).await?;
    let index = store.run(move |s| s.member_index(id)).await?;
    let last_wave = index
        .iter()
        .filter(|r| r.1 != SKIPPED)
        .map(|r| r.2)
        .max()
        .unwrap_or(wave)
        .max(wave);
    let mut seq = index.iter().map(|r| r.3).max().unwrap_or(-1) + 1;
    let known: HashMap<&str, (&str, i32)> = index
        .iter()
        .map(|(d, st, w, _)| (d.as_str(), (st.as_str(), *w)))
        .collect();
    let now_class: HashMap<&str, &Class> =
        classes.iter().map(|(d, c)| (d.id.as_str(), c)).collect();
    let mut dropped: Vec<(String, String)> = Vec::new();
    for (d, (st, w)) in &known {
        if *st != PENDING || *w < wave {
            continue;
        }
        let why = match now_class.get(d) {
            None => "no longer matches the target query".to_string(),
            Some(Class::Eligible { .. }) => continue,
            Some(Class::Compliant { .. }) => "already compliant".to_string(),
            Some(Class::Skipped { reason, .. }) => reason.clone(),
        };
        dropped.push((d.to_string(), why));
    }
    let mut fresh: Vec<(&DeviceRow, &Class)> = classes
        .iter()
        .filter(|(d, _)| !known.contains_key(d.id.as_str()))
        .map(|(d, c)| (d, c))
        .collect();
    fresh.sort_by_key(|(d, _)| shuffle_key(id, &d.id));
    let ids: Vec<String> = fresh
        .iter()
        .filter(|(_, c)| matches!(c, Class::Eligible { .. }))
        .map(|(d, _)| d.id.clone())
        .collect();
    let busy: HashMap<String, i64> = store
        .run(move |s| s.devices_in_active_campaigns(&ids))
        .await?
        .into_iter()
        .collect();
    let mut added = Vec::with_capacity(fresh.len());
    let mut joined = 0;
    for (d, c) in fresh {
        let skip = |model: &String, reason: String| skipped_member(id, d, model, seq, now, reason);
        added.push(match c {
            Class::Eligible { model, .. } if busy.contains_key(&d.id) => skip(
                model,
                format!(
                    "in campaign {}, which is running or paused",
                    busy.get(&d.id).copied().unwrap_or_default()
                ),
            ),
            Class::Eligible { model, .. } => match pending_member(id, d, c, last_wave, seq) {
                Some(row) => {
                    joined += 1;
                    row
                }
                None => skip(model, "not eligible".into()),
            },
            Class::Compliant { model } => skip(model, "already compliant".into()),
            Class::Skipped { model, reason } => skip(model, reason.clone()),
        });
        seq += 1;
    }
    let detail = format!(
        "target query evaluated again for wave {wave}: {joined} device(s) joined wave {last_wave}, \
         {} new device(s) skipped, {} pending device(s) dropped",
        added.len() - joined,
        dropped.len()
    );
    let n_dropped = dropped.len();
    store
        .run(move |s| s.rejoin_members(id, &added, &dropped, wave, &detail, now))
        .await?;
    Ok((joined, n_dropped))
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
    let k = store.keyring();
    let mut spec = spec_of(&k, &row)?;
    if std::mem::discriminant(&spec.action) != std::mem::discriminant(&action) {
        return Err(Error::invalid(
            "action.type",
            "a campaign keeps its kind of action (firmware or task); create a new campaign instead",
        ));
    }
    // Secrets given back as shown (`***`) keep the stored ones.
    let mut given = serde_json::to_value(&action)?;
    keep_stored_secrets(&mut given, Some(&serde_json::to_value(&spec.action)?))
        .map_err(in_action)?;
    spec.action =
        serde_json::from_value(given).map_err(|e| Error::invalid("action", e.to_string()))?;
    let images = validate(store, &spec).await?;
    let update = CampaignUpdate {
        spec: Some(sealed(&k, &with_step_versions(&spec, &images))?),
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
    let mut spec = spec_of(&store.keyring(), &row)?;
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
    let spec = spec_of(&store.keyring(), &row)?;
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
            steps: Vec::new(),
        });
    }
    let rev = CampaignSpec {
        name: format!("{} (reverse)", spec.name),
        target: Target {
            query: None,
            devices: upgraded.into_iter().map(|m| m.device_id).collect(),
            exclude: Vec::new(),
            reevaluate: false,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod path_tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    fn step(version: &str, from: &[&str]) -> (String, Vec<String>) {
        (version.to_string(), v(from))
    }

    /// 0.9 → 1.2 → 1.5 → 2.0; 1.0 enters at the 1.5 step, 1.6 gets 2.0 at once.
    fn resolved() -> ResolvedImage {
        ResolvedImage {
            image: Image {
                oui: "0A0001".into(),
                product_class: "GwA".into(),
                hardware_version: None,
                file_id: "f20".into(),
                version: Some("2.0".into()),
                from_versions: v(&["1.5", "1.6"]),
                steps: vec![
                    Step {
                        file_id: "f12".into(),
                        version: Some("1.2".into()),
                        from_versions: v(&["0.9"]),
                    },
                    Step {
                        file_id: "f15".into(),
                        version: Some("1.5".into()),
                        from_versions: v(&["1.0", "1.2"]),
                    },
                ],
            },
            version: "2.0".into(),
            steps: v(&["1.2", "1.5"]),
        }
    }

    #[test]
    fn a_device_enters_the_path_at_the_step_that_applies_from_its_version() {
        let r = resolved();
        assert_eq!(r.links(), 3);
        assert_eq!(r.entry("0.9"), Some(0));
        assert_eq!(r.entry("1.0"), Some(1));
        assert_eq!(r.entry("1.2"), Some(1));
        assert_eq!(r.entry("1.6"), Some(2));
        assert_eq!(r.entry("0.1"), None);
        assert_eq!(r.version_of(0), "1.2");
        assert_eq!(r.version_of(2), "2.0");
        // A device entering at link 1 has 2 images on its path; after one it is on the last.
        assert_eq!(link_of(3, 2, 0), 1);
        assert_eq!(link_of(3, 2, 1), 2);
        assert_eq!(link_of(3, 3, 0), 0);
        // Rows written before paths existed (1 of 1) run the final image; nothing overflows.
        assert_eq!(link_of(1, 1, 0), 0);
        assert_eq!(link_of(2, 9, 9), 1);
        assert_eq!(link_of(2, 0, -1), 1);
    }

    #[test]
    fn upgrade_paths_are_checked_for_cycles_ambiguity_and_unreachable_steps() {
        let ok = [step("1.2", &["0.9"]), step("1.5", &["1.0", "1.2"])];
        assert_eq!(check_path("2.0", &v(&["1.5"]), &ok), Ok(()));
        // The final image may apply from any version.
        assert_eq!(check_path("2.0", &[], &ok), Ok(()));
        let field = |r: std::result::Result<(), (String, String)>| r.unwrap_err().0;
        // A step applying from nothing.
        assert_eq!(
            field(check_path("2.0", &[], &[step("1.5", &[])])),
            "steps[0].from_versions"
        );
        // Loops: back to a version it or an earlier step applies from, two steps to one
        // version, a step to the final version.
        let (f, msg) =
            check_path("2.0", &[], &[step("1.5", &["1.0"]), step("1.0", &["1.5"])]).unwrap_err();
        assert_eq!(f, "steps[1].version");
        assert!(msg.contains("loop"), "{msg}");
        assert_eq!(
            field(check_path("2.0", &[], &[step("1.0", &["1.0"])])),
            "steps[0].version"
        );
        assert_eq!(
            field(check_path(
                "2.0",
                &[],
                &[step("1.5", &["1.0"]), step("1.5", &["1.2"])]
            )),
            "steps[1].version"
        );
        assert_eq!(
            field(check_path("2.0", &[], &[step("2.0", &["1.0"])])),
            "steps[0].version"
        );
        assert_eq!(
            field(check_path("2.0", &[], &[step("1.5", &["2.0"])])),
            "steps[0].from_versions"
        );
        // Two links applying from one version.
        assert_eq!(
            field(check_path(
                "2.0",
                &[],
                &[step("1.2", &["1.0"]), step("1.5", &["1.0", "1.2"])]
            )),
            "steps[1].from_versions"
        );
        assert_eq!(
            field(check_path(
                "2.0",
                &v(&["1.0", "1.5"]),
                &[step("1.5", &["1.0"])]
            )),
            "from_versions"
        );
        // Unreachable: the next link does not apply from where a step leads.
        let (f, msg) =
            check_path("2.0", &[], &[step("1.2", &["1.0"]), step("1.5", &["1.1"])]).unwrap_err();
        assert_eq!(f, "steps[0].version");
        assert!(msg.contains("unreachable"), "{msg}");
        assert_eq!(
            field(check_path("2.0", &v(&["1.6"]), &[step("1.5", &["1.0"])])),
            "steps[0].version"
        );
    }

    #[test]
    fn step_progress_reads_for_people() {
        let mut m = MemberRow {
            campaign_id: 1,
            device_id: "d".into(),
            model: "m".into(),
            wave: 0,
            seq: 0,
            state: IN_PROGRESS.into(),
            attempts: 1,
            task_id: None,
            from_version: "1.0".into(),
            target_version: "2.0".into(),
            started_at: None,
            finished_at: None,
            last_error: None,
            step: 0,
            steps: 2,
            step_version: "1.5".into(),
        };
        assert_eq!(step_label(&m), "step 1 of 2: 1.5");
        m.step = 1;
        m.step_version = "2.0".into();
        assert_eq!(step_label(&m), "step 2 of 2: 2.0");
        m.state = SUCCEEDED.into();
        assert_eq!(step_label(&m), "2 of 2 steps");
        m.steps = 1;
        assert_eq!(step_label(&m), "");
    }
}
