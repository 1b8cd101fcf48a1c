//! The values a CWMP session carries from one HTTP request to the next (and, when a
//! connection drops, through the database to any node): what was planned and why, the
//! business state of the session, and the line and preset convergence state.
//!
//! Definitions only, no behaviour: [`crate::domain::session`] drives a session and
//! [`crate::domain::converge`] plans lines and presets inside it; both work on these
//! values, so neither has to import the other's types and the modules form no cycle
//! (`session` → `converge` → `session_state`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::cwmp::AcsRequest;
use crate::domain::params::ParamTree;
use crate::domain::presets::{DeviceState, PresetSpec};
use crate::domain::services::Services;
use crate::domain::voip::Account;
use crate::store::Store;

/// Why a request was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// Settings ferroacs gives every device at BOOTSTRAP (periodic inform, CR credentials).
    Bootstrap {
        cr_username: Option<String>,
        cr_password: Option<String>,
    },
    /// Discovery step 1: the names of the whole tree.
    DiscoverNames,
    /// Discovery fallback: the values of the whole tree in one request.
    DiscoverAllValues,
    /// Discovery step 2: values of a batch of names.
    DiscoverValues { last: bool },
    /// Refresh of an object just created.
    Refresh,
    /// An operator's task.
    Task { id: i64 },
    /// Line provisioning or preset convergence.
    Converge(Step),
    /// One batch of a large GetParameterValues task; `last` completes the task.
    TaskBatch { id: i64, last: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub origin: Origin,
    pub request: AcsRequest,
}

/// One session of one device, from Inform to the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSession {
    pub device_id: String,
    /// The lock owner written into the device row.
    pub owner: String,
    pub started_at: i64,
    pub lock_until: i64,
    pub source_ip: String,
    pub root: String,
    pub events: Vec<String>,
    pub rpcs: Vec<String>,
    pub faults: Vec<String>,
    pub work_epoch: i64,
    /// Tasks were loaded this session; at the end the work epoch may be marked seen.
    pub tasks_checked: bool,
    /// Task ids still pending after this session (deferred by backoff or not reached).
    pub tasks_left: bool,
    pub queue: VecDeque<Planned>,
    pub current: Option<Planned>,
    /// Parameters learnt this session, merged into the stored tree at the end.
    #[serde(skip)]
    pub learnt: ParamTree,
    /// Encoded form of `learnt` when the session is saved mid-way.
    pub learnt_blob: Option<Vec<u8>>,
    pub subtrees_removed: Vec<String>,
    pub discovered: bool,
    pub created: bool,
    /// Lines and presets still to plan this session.
    #[serde(default)]
    pub converge: Option<Converge>,
    /// The stored parameter tree, once loaded for convergence.
    #[serde(skip)]
    pub known: Option<ParamTree>,
    /// Signature of the searchable values stored before this session.
    #[serde(default)]
    pub search_sig: i64,
    /// The Inform's parameters (name, value), for the searchable values.
    #[serde(default)]
    pub inform_values: Vec<(String, String)>,
    /// Values gathered so far by a batched GetParameterValues task.
    #[serde(default)]
    pub batch_values: Vec<serde_json::Value>,
}

/// Everything the domain needs from the outside.
pub struct Env<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub now: i64,
    /// Base URL (no trailing slash) devices use to reach the file server.
    pub files_base_url: String,
    /// URL signing and task notifications; `None` where no task can progress.
    pub services: Option<&'a Services>,
}

/// A line of the device to push or to read the status of.
#[derive(Clone, Serialize, Deserialize)]
pub struct LineWork {
    pub id: i64,
    pub line: u32,
    pub revision: i64,
    pub account: Account,
    pub password: Option<String>,
    /// The account changed since the device last accepted it.
    pub push: bool,
    /// Where the status is read (known once mapped).
    pub status_path: Option<String>,
    /// Nothing more to do this session.
    pub done: bool,
    /// AddObject rounds spent on this line.
    pub adds: u32,
}

/// A preset as carried through a session (serialisable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresetData {
    pub name: String,
    pub filter: String,
    pub priority: i32,
    pub events: Vec<String>,
    pub spec: PresetSpec,
    pub revision: i64,
}

/// Preset work of one session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresetWork {
    pub presets: Vec<PresetData>,
    /// Preset events this Inform carries.
    pub events: Vec<String>,
    pub state: DeviceState,
    pub dirty: bool,
    /// Names of the presets to converge this session (None: not evaluated yet).
    pub applicable: Option<Vec<String>>,
    /// Union of the events of the presets matching the device.
    pub events_union: String,
    pub old_events: String,
    /// Parameters already asked for this session.
    pub refreshed: BTreeSet<String>,
    /// Tables whose AddObject failed this session.
    pub failed_adds: BTreeSet<String>,
    pub adds: u32,
    pub pushed: bool,
}

/// Convergence state of one session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Converge {
    pub rounds: u32,
    pub root_model: String,
    pub identity: BTreeMap<String, String>,
    pub lines: Vec<LineWork>,
    pub presets: Option<PresetWork>,
    pub inform_values: Vec<(String, String, String)>,
    /// The device's tree was discovered before (a parameter missing from it does not exist).
    pub known_tree: bool,
}

/// One request of the convergence, for filing its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    AddObject {
        line: Option<i64>,
    },
    Refresh,
    LineSet {
        lines: Vec<(i64, i64, String)>,
    },
    LineStatus {
        lines: Vec<(i64, String)>,
    },
    PresetRefresh,
    PresetSet {
        values: Vec<(String, String, String, i64)>,
    },
    Firmware {
        preset: String,
    },
}
