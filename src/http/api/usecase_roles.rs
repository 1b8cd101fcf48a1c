//! The route table and the use cases agree on roles: every route that changes something
//! calls one use case, and the route's role is the one the use case requires.

use super::{Role, ROUTES};
use crate::domain::usecases::Op;

/// The use case behind each changing route.
const WRITES: &[(&str, &str, Op)] = &[
    ("put", "/devices/{id}", Op::DeviceProvision),
    ("delete", "/devices/{id}", Op::DeviceDelete),
    ("post", "/devices/{id}/tasks", Op::TaskCreate),
    (
        "delete",
        "/devices/{id}/credentials",
        Op::DeviceCredentialsReset,
    ),
    (
        "post",
        "/devices/{id}/connection_request",
        Op::DeviceConnectionRequest,
    ),
    ("put", "/devices/{id}/tags/{tag}", Op::DeviceTag),
    ("delete", "/devices/{id}/tags/{tag}", Op::DeviceUntag),
    ("put", "/devices/{id}/lines/{n}", Op::LineAssign),
    ("delete", "/devices/{id}/lines/{n}", Op::LineDelete),
    ("post", "/lines/import", Op::LineImport),
    ("post", "/presets", Op::PresetCreate),
    ("put", "/presets/{name}", Op::PresetUpdate),
    ("delete", "/presets/{name}", Op::PresetDelete),
    ("post", "/phones", Op::PhoneCreate),
    ("post", "/phones/import", Op::PhoneImport),
    ("put", "/phones/{mac}", Op::PhoneUpdate),
    ("delete", "/phones/{mac}", Op::PhoneDelete),
    ("post", "/phones/{mac}/resync", Op::PhoneResync),
    (
        "post",
        "/phones/{mac}/activation_code",
        Op::PhoneActivationCode,
    ),
    ("put", "/phones/{mac}/lines/{n}", Op::LineAssign),
    ("delete", "/phones/{mac}/lines/{n}", Op::LineDelete),
    ("put", "/phone_profiles/{name}", Op::PhoneProfileSave),
    ("delete", "/phone_profiles/{name}", Op::PhoneProfileDelete),
    (
        "put",
        "/phone_models/{vendor}/{model}/firmware",
        Op::PhoneModelFirmwareSave,
    ),
    (
        "delete",
        "/phone_models/{vendor}/{model}/firmware",
        Op::PhoneModelFirmwareDelete,
    ),
    ("post", "/tasks", Op::TaskCreateBulk),
    ("delete", "/tasks/{id}", Op::TaskCancel),
    ("delete", "/faults", Op::FaultClear),
    ("post", "/files", Op::FileUpload),
    ("delete", "/files/{id}", Op::FileDelete),
    ("post", "/tokens", Op::TokenCreate),
    ("delete", "/tokens/{id}", Op::TokenRevoke),
    ("post", "/users", Op::UserCreate),
    ("delete", "/users/{username}", Op::UserDelete),
    ("put", "/users/{username}/password", Op::UserPassword),
    ("post", "/users/{username}/disable", Op::UserDisable),
    ("post", "/users/{username}/enable", Op::UserEnable),
];

/// Campaign controls are operations of `domain::campaigns` (each audited there as
/// `campaign.<action>` on `campaign/ID`); their roles are those of the route table.
/// Scheduled jobs and backup restores likewise (`schedule.<action>` on `schedule/ID`,
/// `backup.restore` on `device/ID`).
fn is_campaign_route(path: &str) -> bool {
    path == "/campaigns"
        || path.starts_with("/campaigns/")
        || path == "/schedules"
        || path.starts_with("/schedules/")
        || path.starts_with("/devices/{id}/backups/")
}

#[test]
fn every_changing_route_has_the_role_of_its_use_case() {
    for r in ROUTES
        .iter()
        .filter(|r| r.method != "get" && !is_campaign_route(r.path))
    {
        let op = WRITES
            .iter()
            .find(|(m, p, _)| *m == r.method && *p == r.path)
            .map(|(_, _, op)| *op);
        let Some(op) = op else {
            panic!(
                "{} {} changes something but names no use case here",
                r.method, r.path
            );
        };
        assert_eq!(r.role, op.role(), "{} {}", r.method, r.path);
    }
    for (m, p, _) in WRITES {
        assert!(
            ROUTES.iter().any(|r| r.method == *m && r.path == *p),
            "{m} {p} is no route"
        );
    }
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
}
