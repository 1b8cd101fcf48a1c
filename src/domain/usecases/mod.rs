//! The use cases: every operation an operator or a script performs, each exactly one function.
//!
//! The REST API, the CLI and the web console only parse input, call a function of this module
//! and render what it returns. Each function takes the [`Actor`] who asks and does, in this
//! order: the role check (the role each operation needs is declared once, in [`Op::role`]),
//! validation, the work, and one audit entry in one vocabulary: the action is [`Op::action`]
//! (`device.provision`, `token.create`, `user.create`, ...) and the target a [`Target`]
//! (`device/ID`, `task/ID`, `token/ID`, `user/NAME`, ...). So the CLI and the API cannot
//! write different audit entries for the same operation.
//!
//! Reads need no use case of their own: the route table of the API gates them by role, and
//! they call the domain's query functions.

pub mod admin;
pub mod devices;
pub mod faults;
pub mod files;
pub mod phones;
pub mod searches;
pub mod tasks;
pub mod voip;

use std::fmt;
use std::sync::Arc;

use crate::config::Config;
use crate::domain::services::Services;
use crate::error::{Error, Result};
use crate::store::Store;

/// Roles, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parse a role given as input (`field` names it in the error).
    pub fn from_input(field: &str, s: &str) -> Result<Role> {
        Role::parse(s).ok_or_else(|| Error::invalid(field, "one of viewer, operator, admin"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who performs an operation: its name as the audit log and `created_by` show it, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `token:<name>`, `user:<username>` or `cli`.
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// The command line, run by whoever can read the configuration and the database: admin.
    pub fn cli() -> Actor {
        Actor {
            name: "cli".into(),
            role: Role::Admin,
        }
    }

    /// A script calling the API with a bearer token.
    pub fn token(name: &str, role: Role) -> Actor {
        Actor {
            name: format!("token:{name}"),
            role,
        }
    }

    /// A person logged in (the web console).
    pub fn user(username: &str, role: Role) -> Actor {
        Actor {
            name: format!("user:{username}"),
            role,
        }
    }

    /// The username when the actor is a logged-in user.
    pub fn username(&self) -> Option<&str> {
        self.name.strip_prefix("user:")
    }

    /// Refuse unless the actor's role is at least the one `op` needs.
    pub fn require(&self, op: Op) -> Result<()> {
        if self.role >= op.role() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{} needs the {} role; {} has {}",
                op.action(),
                op.role(),
                self.name,
                self.role
            )))
        }
    }
}

/// Every operation that changes something: its audit action and the role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    DeviceProvision,
    DeviceDelete,
    DeviceConnectionRequest,
    DeviceTag,
    DeviceUntag,
    DeviceCredentialsReset,
    TaskCreate,
    TaskCreateBulk,
    TaskCancel,
    FaultClear,
    FileUpload,
    FileDelete,
    LineAssign,
    LineDelete,
    LineImport,
    PresetCreate,
    PresetUpdate,
    PresetDelete,
    PhoneCreate,
    PhoneUpdate,
    PhoneDelete,
    PhoneImport,
    PhoneResync,
    PhoneActivationCode,
    PhoneProfileSave,
    PhoneProfileDelete,
    PhoneModelFirmwareSave,
    PhoneModelFirmwareDelete,
    TokenCreate,
    TokenRevoke,
    UserCreate,
    UserDelete,
    UserPassword,
    UserDisable,
    UserEnable,
}

impl Op {
    pub const ALL: &'static [Op] = &[
        Op::DeviceProvision,
        Op::DeviceDelete,
        Op::DeviceConnectionRequest,
        Op::DeviceTag,
        Op::DeviceUntag,
        Op::DeviceCredentialsReset,
        Op::TaskCreate,
        Op::TaskCreateBulk,
        Op::TaskCancel,
        Op::FaultClear,
        Op::FileUpload,
        Op::FileDelete,
        Op::LineAssign,
        Op::LineDelete,
        Op::LineImport,
        Op::PresetCreate,
        Op::PresetUpdate,
        Op::PresetDelete,
        Op::PhoneCreate,
        Op::PhoneUpdate,
        Op::PhoneDelete,
        Op::PhoneImport,
        Op::PhoneResync,
        Op::PhoneActivationCode,
        Op::PhoneProfileSave,
        Op::PhoneProfileDelete,
        Op::PhoneModelFirmwareSave,
        Op::PhoneModelFirmwareDelete,
        Op::TokenCreate,
        Op::TokenRevoke,
        Op::UserCreate,
        Op::UserDelete,
        Op::UserPassword,
        Op::UserDisable,
        Op::UserEnable,
    ];

    /// The action as the audit log records it.
    pub const fn action(self) -> &'static str {
        match self {
            Op::DeviceProvision => "device.provision",
            Op::DeviceDelete => "device.delete",
            Op::DeviceConnectionRequest => "device.connection_request",
            Op::DeviceTag => "device.tag",
            Op::DeviceUntag => "device.untag",
            Op::DeviceCredentialsReset => "device.credentials_reset",
            Op::TaskCreate => "task.create",
            Op::TaskCreateBulk => "task.create_bulk",
            Op::TaskCancel => "task.cancel",
            Op::FaultClear => "fault.clear",
            Op::FileUpload => "file.upload",
            Op::FileDelete => "file.delete",
            Op::LineAssign => "line.assign",
            Op::LineDelete => "line.delete",
            Op::LineImport => "line.import",
            Op::PresetCreate => "preset.create",
            Op::PresetUpdate => "preset.update",
            Op::PresetDelete => "preset.delete",
            Op::PhoneCreate => "phone.create",
            Op::PhoneUpdate => "phone.update",
            Op::PhoneDelete => "phone.delete",
            Op::PhoneImport => "phone.import",
            Op::PhoneResync => "phone.resync",
            Op::PhoneActivationCode => "phone.activation_code",
            Op::PhoneProfileSave => "phone_profile.save",
            Op::PhoneProfileDelete => "phone_profile.delete",
            Op::PhoneModelFirmwareSave => "phone_model.firmware_save",
            Op::PhoneModelFirmwareDelete => "phone_model.firmware_delete",
            Op::TokenCreate => "token.create",
            Op::TokenRevoke => "token.revoke",
            Op::UserCreate => "user.create",
            Op::UserDelete => "user.delete",
            Op::UserPassword => "user.password",
            Op::UserDisable => "user.disable",
            Op::UserEnable => "user.enable",
        }
    }

    /// The lowest role allowed to perform it.
    pub const fn role(self) -> Role {
        match self {
            Op::DeviceProvision
            | Op::DeviceDelete
            | Op::DeviceConnectionRequest
            | Op::DeviceTag
            | Op::DeviceUntag
            | Op::DeviceCredentialsReset
            | Op::TaskCreate
            | Op::TaskCreateBulk
            | Op::TaskCancel
            | Op::FaultClear
            | Op::FileUpload
            | Op::FileDelete
            | Op::LineAssign
            | Op::LineDelete
            | Op::LineImport
            | Op::PresetCreate
            | Op::PresetUpdate
            | Op::PresetDelete
            | Op::PhoneCreate
            | Op::PhoneUpdate
            | Op::PhoneDelete
            | Op::PhoneImport
            | Op::PhoneResync
            | Op::PhoneActivationCode
            | Op::PhoneProfileSave
            | Op::PhoneProfileDelete
            | Op::PhoneModelFirmwareSave
            | Op::PhoneModelFirmwareDelete => Role::Operator,
            Op::TokenCreate
            | Op::TokenRevoke
            | Op::UserCreate
            | Op::UserDelete
            | Op::UserPassword
            | Op::UserDisable
            | Op::UserEnable => Role::Admin,
        }
    }
}

/// What an operation acted on, as the audit log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Device(String),
    Task(i64),
    /// Many tasks at once (bulk creation).
    Tasks,
    /// The faults a filter selects.
    Faults,
    File(String),
    Line(String, i32),
    /// Many lines at once (CSV import).
    Lines,
    Preset(String),
    /// A phone by MAC.
    Phone(String),
    /// Many phones at once (CSV import).
    Phones,
    PhoneProfile(String),
    /// A phone model (`vendor/model`).
    PhoneModel(String),
    Token(i64),
    User(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Device(id) => write!(f, "device/{id}"),
            Target::Task(id) => write!(f, "task/{id}"),
            Target::Tasks => f.write_str("tasks"),
            Target::Faults => f.write_str("faults"),
            Target::File(id) => write!(f, "file/{id}"),
            Target::Line(id, n) => write!(f, "device/{id}/line/{n}"),
            Target::Lines => f.write_str("lines"),
            Target::Preset(name) => write!(f, "preset/{name}"),
            Target::Phone(mac) => write!(f, "phone/{mac}"),
            Target::Phones => f.write_str("phones"),
            Target::PhoneProfile(name) => write!(f, "phone_profile/{name}"),
            Target::PhoneModel(name) => write!(f, "phone_model/{name}"),
            Target::Token(id) => write!(f, "token/{id}"),
            Target::User(name) => write!(f, "user/{name}"),
        }
    }
}

/// What the use cases need from the process that runs them besides the store.
pub trait Hooks: Send + Sync {
    /// The CWMP credentials of `username` changed: forget what is cached about them.
    fn credentials_changed(&self, username: &str);
    /// Send connection requests to these devices in the background.
    fn wake(&self, devices: Vec<String>);
}

/// Hooks of a process that serves no CPE (the CLI): nothing is cached, and connection requests
/// go out only from a running server.
pub struct NoServer;

impl Hooks for NoServer {
    fn credentials_changed(&self, _username: &str) {}

    fn wake(&self, devices: Vec<String>) {
        tracing::warn!(
            count = devices.len(),
            "connection requests are sent only by a running server; the devices will act at their next session"
        );
    }
}

/// Everything a use case works with.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub services: &'a Services,
    clock: &'a (dyn Fn() -> i64 + Send + Sync),
    hooks: Arc<dyn Hooks>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        store: &'a Store,
        config: &'a Config,
        services: &'a Services,
        clock: &'a (dyn Fn() -> i64 + Send + Sync),
        hooks: Arc<dyn Hooks>,
    ) -> Ctx<'a> {
        Ctx {
            store,
            config,
            services,
            clock,
            hooks,
        }
    }

    /// Now, in UTC milliseconds, from the injected clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    pub fn hooks(&self) -> &dyn Hooks {
        &*self.hooks
    }

    /// Record one audit entry.
    pub(crate) async fn audit(
        &self,
        actor: &Actor,
        op: Op,
        target: Target,
        detail: Option<String>,
    ) -> Result<()> {
        let (now, name) = (self.now(), actor.name.clone());
        self.store
            .run(move |s| audit_with(s, now, &name, op, &target, detail.as_deref()))
            .await
    }
}

/// An uploaded CSV file as text: refused (naming the limit) above `max` bytes, or when it
/// is not UTF-8. Every CSV import (lines, phones) takes its file through here.
pub(crate) fn csv_text(csv: &[u8], max: usize) -> Result<&str> {
    if csv.len() > max {
        return Err(Error::invalid(
            "csv",
            format!("the file is larger than {} MiB; split it", max >> 20),
        ));
    }
    std::str::from_utf8(csv)
        .map_err(|e| Error::invalid("csv", format!("the file is not UTF-8 text: {e}")))
}

/// Record one audit entry inside a store closure (to keep it with the change it records).
pub(crate) fn audit_with(
    s: &Store,
    now: i64,
    actor: &str,
    op: Op,
    target: &Target,
    detail: Option<&str>,
) -> Result<()> {
    s.audit(now, actor, op.action(), &target.to_string(), detail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_checked_per_operation() {
        let viewer = Actor::token("ro", Role::Viewer);
        let operator = Actor::token("ops", Role::Operator);
        for op in Op::ALL {
            assert!(viewer.require(*op).is_err(), "{op:?}");
            assert!(Actor::cli().require(*op).is_ok(), "{op:?}");
            assert_eq!(operator.require(*op).is_ok(), op.role() == Role::Operator);
        }
        let e = operator.require(Op::TokenCreate).unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)));
        assert_eq!(
            e.to_string(),
            "token.create needs the admin role; token:ops has operator"
        );
    }

    #[test]
    fn one_vocabulary_for_actions_and_targets() {
        let mut seen = std::collections::HashSet::new();
        for op in Op::ALL {
            let a = op.action();
            assert!(seen.insert(a), "{a} used twice");
            let (noun, verb) = a.split_once('.').unwrap_or_default();
            assert!(
                !noun.is_empty() && !verb.is_empty() && !verb.contains('.'),
                "{a}"
            );
        }
        assert_eq!(Target::Device("A-B-C".into()).to_string(), "device/A-B-C");
        assert_eq!(Target::Token(7).to_string(), "token/7");
        assert_eq!(Target::User("alice".into()).to_string(), "user/alice");
        assert_eq!(Target::Line("D".into(), 2).to_string(), "device/D/line/2");
        assert_eq!(Actor::user("bob", Role::Viewer).username(), Some("bob"));
        assert_eq!(Actor::cli().username(), None);
    }
}
