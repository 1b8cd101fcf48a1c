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
use crate::store::tasks::TaskRow;
use crate::store::Store;

/// Why a request was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// Settings ferroacs gives every device at BOOTSTRAP (periodic inform, CR credentials).
    Bootstrap {
        cr_username: Option<String>,
        cr_password: Option<String>,
        /// The request also carries CWMP credentials issued to the device
        /// (`domain::credentials`); a fault is answered by sending the rest without them.
        #[serde(default)]
        acs_credentials: bool,
    },
    /// Discovery step 1: the names of the whole tree.
    DiscoverNames,
    /// Discovery fallback: the values of the whole tree in one request.
    DiscoverAllValues,
    /// Discovery step 2: values of a batch of names. `last`: the last batch as first cut;
    /// discovery completes once no batch is left (a faulted batch is asked again in halves,
    /// `plan::after_discovery_fault`), not when this one is answered.
    DiscoverValues { last: bool },
    /// Refresh of an object just created.
    Refresh,
    /// An operator's task.
    Task { id: i64 },
    /// Line provisioning or preset convergence.
    Converge(Step),
    /// One batch of a large GetParameterValues task; `last` completes the task.
    TaskBatch { id: i64, last: bool },
    /// The transfer task `id` was sent in an earlier session and never answered: does the
    /// device hold it (Get[All]QueuedTransfers)? If so the resend queued after this is
    /// dropped (`domain::session`, "sent, unconfirmed").
    ConfirmTransfer { id: i64 },
    /// TR-111 STUN settings (`domain::tr111::stun_settings`); the credentials are stored once
    /// the device accepts them.
    StunSettings {
        username: Option<String>,
        password: Option<String>,
    },
    /// TR-111 Part 1: a gateway's ManageableDevice table read again because its Inform said
    /// it changed (`domain::tr111::table_reread`); the answer replaces the stored rows.
    GatewayTable,
    /// TR-111 Part 1: active notification on the parameters announcing a change of the
    /// device–gateway association (`domain::tr111::gateway_notifications`).
    GatewayNotify,
    /// ferroacs's bare JID added to ConnReqAllowedJabberIDs
    /// (`domain::tr111::xmpp_allowed_jids`).
    XmppAllowedJids,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub origin: Origin,
    pub request: AcsRequest,
}

/// `DeviceSession::current` as saved: its origin, or the whole planned request that copies
/// saved before kept there (the request is the engine's copy's twin and is dropped).
fn current_origin<'de, D>(d: D) -> std::result::Result<Option<Origin>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Planned {
            origin: Origin,
            #[allow(dead_code)]
            request: serde::de::IgnoredAny,
        },
        Origin(Origin),
    }
    Ok(Option::<Saved>::deserialize(d)?.map(|c| match c {
        Saved::Planned { origin, .. } | Saved::Origin(origin) => origin,
    }))
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
    /// Why the request awaiting its answer was sent. The request itself is the protocol
    /// engine's (`cwmp::Session` keeps it and hands it back with the answer): a discovery's
    /// lists of names, or a task's values, are not held twice.
    #[serde(default, deserialize_with = "current_origin")]
    pub current: Option<Origin>,
    /// Parameters learnt this session, merged into the stored tree at the end.
    #[serde(skip)]
    pub learnt: ParamTree,
    /// Encoded form of `learnt` when the session is saved mid-way (base64 in the saved
    /// copy: a JSON array of numbers would take about three times the room).
    #[serde(default, with = "blob_base64")]
    pub learnt_blob: Option<Vec<u8>>,
    /// The device's stored delta (see `store::params`) as of the session's last write of
    /// the tree: the end lays what was learnt over it.
    #[serde(default, with = "blob_base64")]
    pub params_delta: Option<Vec<u8>>,
    pub subtrees_removed: Vec<String>,
    pub discovered: bool,
    /// Extra GetParameterValues the discovery may still spend on halving faulted batches
    /// (`plan::discovery_split_budget`).
    #[serde(default)]
    pub discovery_splits_left: u32,
    /// Names the discovery dropped because reading them alone still faulted (name, fault
    /// code): not in the tree it stores, and reported in one fault when it ends.
    #[serde(default)]
    pub discovery_dropped: Vec<(String, u32)>,
    /// The bootstrap settings were sent again after a fault (at most once a session).
    #[serde(default)]
    pub bootstrap_resent: bool,
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
    /// The CPE opened the session with the shared default credentials (false: its own, a
    /// client certificate, or none required). Decides which fresh credentials may continue
    /// the session on another connection.
    #[serde(default)]
    pub opened_with_default: bool,
    /// The CWMP version of the session (`cwmp-1-0`, `cwmp-1-4`, ...).
    #[serde(default)]
    pub cwmp_version: String,
    /// Tasks the device carried out whose results are readable only once what the session
    /// learnt is stored: they become `done` in the same transaction as the stored tree,
    /// before the next request goes to the device or at the end of the session.
    #[serde(default)]
    pub tasks_done: Vec<DoneTask>,
    /// The task rows this session read, as of their last transition (no read again when
    /// the device answers); not saved with the session (read again after a resume).
    #[serde(skip)]
    pub task_rows: Vec<TaskRow>,
    /// A task moved to `running` with the Inform and not sent yet: it is not moved again
    /// when it goes out (`plan::starts_with_inform`).
    #[serde(default)]
    pub started: Option<i64>,
    /// The device row's identity columns as the Inform left them: the end writes only
    /// those that what the session learnt changes (`None`: unknown, every learnt one).
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// A device row's identity columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub manufacturer: String,
    pub model_name: String,
    pub software_version: String,
    pub hardware_version: String,
}

/// A task the device carried out, waiting for the transaction that makes it `done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneTask {
    pub id: i64,
    /// The task's result (JSON text).
    pub result: String,
}

/// How the CPE that opened a session logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpeLogin {
    /// No HTTP authentication required (`cwmp.auth = "none"`) or a verified client
    /// certificate.
    NotRequired,
    /// The shared default credentials, with the username the CPE gave.
    Shared { username: String },
    /// The device's own credentials.
    Own,
    /// Credentials ferroacs issued to the device and it has not used before.
    Issued,
}

impl CpeLogin {
    /// The session was opened with the shared default credentials.
    pub fn shared(&self) -> bool {
        matches!(self, CpeLogin::Shared { .. })
    }
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

/// `Option<Vec<u8>>` as a base64 string; a JSON array of numbers (copies saved by earlier
/// versions) is read too.
mod blob_base64 {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&STANDARD_NO_PAD.encode(b)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<Stored>::deserialize(d)? {
            None => Ok(None),
            Some(Stored::Bytes(b)) => Ok(Some(b)),
            Some(Stored::Text(t)) => STANDARD_NO_PAD
                .decode(t.trim_end_matches('='))
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A session as a node saves it, with `current` as given (absent when `None`).
    fn saved(current: Option<serde_json::Value>) -> DeviceSession {
        let mut json = serde_json::json!({
            "device_id": "00D09E-Box-1", "owner": "node:7547/s1", "started_at": 1,
            "lock_until": 2, "source_ip": "192.0.2.1", "root": "Device",
            "events": ["2 PERIODIC"], "rpcs": [], "faults": [], "work_epoch": 0,
            "tasks_checked": false, "tasks_left": false, "queue": [],
            "subtrees_removed": [], "discovered": false, "created": false,
        });
        if let Some(c) = current {
            json["current"] = c;
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_saved_current_request_reads_as_its_origin_in_either_form() {
        let origin = Origin::Task { id: 7 };
        let planned = Planned {
            origin: origin.clone(),
            request: AcsRequest::GetParameterValues(crate::cwmp::GetParameterValues {
                parameter_names: vec!["Device.DeviceInfo.".into()],
            }),
        };
        // Saved by an older node (the whole planned request), and as saved now.
        for json in [serde_json::json!(planned), serde_json::json!(origin)] {
            assert_eq!(saved(Some(json)).current, Some(origin.clone()));
        }
        let unit = serde_json::json!(Origin::DiscoverNames);
        assert_eq!(saved(Some(unit)).current, Some(Origin::DiscoverNames));
        assert_eq!(saved(Some(serde_json::Value::Null)).current, None);
        assert_eq!(saved(None).current, None);
        // What a node saves now reads back the same.
        let mut s = saved(None);
        s.current = Some(origin.clone());
        let again: DeviceSession =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(again.current, Some(origin));
    }
}
