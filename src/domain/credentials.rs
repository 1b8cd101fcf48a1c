//! Trust on first use: per-device CWMP credentials issued to a device that logs in with the
//! shared default ones (`cwmp.issue_credentials`, on by default).
//!
//! The rule, per device:
//! 1. A session opened with the shared credentials, by a device that has none of its own,
//!    carries a random `ManagementServer.Password` in the session's own bootstrap
//!    SetParameterValues (with the periodic-inform and connection-request settings when
//!    there are any; never as a task). `ManagementServer.Username` is set too unless the CPE
//!    already logged in with a name of its own (the TR-069 §3.4.4 `OUI-[ProductClass-]Serial`
//!    or the device id), since a shared username cannot say which device is logging in.
//!    The HA1 of the new pair is stored sealed as *issued* before the request goes out, so a
//!    device that applied it but whose answer was lost still gets in with it.
//! 2. Until the device logs in with the issued pair, the shared credentials keep opening it
//!    (a CPE that ignores or refuses the change keeps working).
//! 3. The first login with the issued pair *confirms* it: it becomes the device's own
//!    credentials, and from then on the shared ones no longer open that device id.
//! 4. A device that refuses the parameters (a fault naming them, or one naming nothing that
//!    comes back when the write is sent again; not a transient one) is not asked again; one that
//!    keeps logging in with the shared credentials is given up on after [`MAX_ATTEMPTS`]
//!    issues. Both are recorded (`issued_credentials.state = gave_up`, with the reason).
//! 5. An operator's reset (`usecases::devices::reset_credentials`) forgets both, so a
//!    factory-reset device is admitted with the shared credentials again.
//!
//! The rule is pure, in two halves: `decide_fresh` (what a device that logged in with the
//! shared credentials gets) and `after_previous` (what was issued to it before makes of
//! that); the rest moves values between them and the store.

use crate::config::{Config, CpeAuth};
use crate::cwmp::{self, Inform, ParameterValue};
use crate::domain::session_state::{CpeLogin, Env};
use crate::error::{Error, Result};
use crate::secrets::purpose;
use crate::store::credentials::{IssuedRow, UsernameOwner, CONFIRMED, GAVE_UP, ISSUED};
use crate::store::Store;

/// Issues of credentials a device may ignore before ferroacs stops issuing them.
pub const MAX_ATTEMPTS: i32 = 3;

/// What to do about a device's CWMP credentials at the start of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Issue a new password; `username`: the username to set with it, or `None` to keep
    /// the one the CPE logged in with.
    Issue {
        username: Option<String>,
    },
    /// The device kept ignoring what was issued: stop.
    GiveUp,
}

/// The usernames by which a CPE identifies itself alone: TR-069 §3.4.4 names and the
/// device id.
fn own_usernames(inform: &Inform) -> [String; 3] {
    let d = &inform.device_id;
    [
        cwmp::cpe_username(&d.oui, &d.product_class, &d.serial_number),
        cwmp::cpe_username(&d.oui, "", &d.serial_number),
        cwmp::device_id(&d.oui, &d.product_class, &d.serial_number),
    ]
}

/// The rule (see the module documentation). `previous`: what was issued to the device
/// before, if anything. A session applies its two halves on either side of the database
/// read: `decide_fresh` before ([`prepare`]), `after_previous` with the row ([`record`]).
#[cfg(test)]
fn decide(
    cfg: &Config,
    login: &CpeLogin,
    inform: &Inform,
    previous: Option<&IssuedRow>,
) -> Decision {
    after_previous(decide_fresh(cfg, login, inform), previous)
}

/// The rule for a device nothing was issued to yet.
fn decide_fresh(cfg: &Config, login: &CpeLogin, inform: &Inform) -> Decision {
    let CpeLogin::Shared { username } = login else {
        return Decision::Nothing;
    };
    if !cfg.cwmp.issue_credentials || cfg.cwmp.auth == CpeAuth::None {
        return Decision::Nothing;
    }
    let names = own_usernames(inform);
    let shared_name = cfg.cwmp.default_username.as_deref() == Some(username.as_str());
    if !shared_name && names.iter().any(|n| n == username) {
        Decision::Issue { username: None }
    } else {
        Decision::Issue {
            username: Some(names[0].clone()),
        }
    }
}

/// What was issued before makes of a fresh decision: nothing once given up, giving up
/// after too many ignored issues.
fn after_previous(fresh: Decision, previous: Option<&IssuedRow>) -> Decision {
    if fresh == Decision::Nothing {
        return fresh;
    }
    match previous {
        Some(p) if p.state == GAVE_UP => Decision::Nothing,
        Some(p) if p.state == ISSUED && p.attempts >= MAX_ATTEMPTS => Decision::GiveUp,
        _ => fresh,
    }
}

/// What [`record`] did in the Inform's hand-off.
#[derive(Debug)]
pub enum Recorded {
    Nothing,
    GaveUp,
    /// Issued; the attempts so far.
    Issued(i32),
    /// The issued credentials became the device's own.
    Confirmed,
}

/// The credentials' part of a session's start, prepared on the request's thread (the
/// rule's first half, the new password and its sealed HA1) so that what runs in the
/// Inform's hand-off to the database needs no configuration, randomness or hashing.
#[derive(Debug, Clone)]
pub enum AtInform {
    Nothing,
    /// The device logged in with the shared credentials and gets its own, unless what was
    /// issued to it before says otherwise.
    Issue(Issue),
    /// The device logged in with credentials issued to it: they become its own.
    Confirm,
}

/// New credentials for a device, ready to record and send.
#[derive(Clone)]
pub struct Issue {
    /// The username the credentials open.
    user: String,
    /// The username to set on the device, when it is not the one it logged in with.
    new_name: Option<String>,
    password: String,
    sealed_ha1: String,
}

impl std::fmt::Debug for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issue")
            .field("user", &self.user)
            .field("new_name", &self.new_name)
            .finish_non_exhaustive()
    }
}

fn random_password() -> String {
    let mut b = [0u8; 18];
    rand::fill(&mut b);
    hex::encode(b)
}

/// Before the Inform's hand-off: what a session opened with `login` does about the
/// device's credentials.
pub fn prepare(env: &Env<'_>, login: &CpeLogin, inform: &Inform) -> Result<AtInform> {
    match login {
        CpeLogin::Issued => Ok(AtInform::Confirm),
        CpeLogin::Shared { username } => {
            // What would be issued were nothing issued before; what was issued before can
            // only turn that into nothing or giving up (`record`).
            let fresh = decide_fresh(env.config, login, inform);
            let Decision::Issue { username: new_name } = fresh.clone() else {
                return Ok(AtInform::Nothing);
            };
            let password = random_password();
            let user = new_name.clone().unwrap_or_else(|| username.clone());
            let ha1 = crate::auth::digest::ha1(&user, &env.config.cwmp.realm, &password);
            let sealed_ha1 = env.store.keyring().seal(purpose::ISSUED_HA1, &ha1)?;
            Ok(AtInform::Issue(Issue {
                user,
                new_name,
                password,
                sealed_ha1,
            }))
        }
        CpeLogin::Own | CpeLogin::NotRequired => Ok(AtInform::Nothing),
    }
}

/// In the Inform's hand-off, once the session holds the device's lock: record what
/// `what` says with what was issued to the device before (the rule's second half).
pub fn record(st: &Store, device_id: &str, what: &AtInform, now: i64) -> Result<Recorded> {
    match what {
        AtInform::Nothing => Ok(Recorded::Nothing),
        AtInform::Issue(issue) => {
            let previous = st.issued_credentials(device_id)?;
            let fresh = Decision::Issue {
                username: issue.new_name.clone(),
            };
            match after_previous(fresh, previous.as_ref()) {
                Decision::Nothing => Ok(Recorded::Nothing),
                Decision::GiveUp => {
                    let reason = format!(
                        "ignored: the device kept logging in with the shared credentials after {MAX_ATTEMPTS} issues"
                    );
                    st.give_up_issuing(device_id, &reason)?;
                    Ok(Recorded::GaveUp)
                }
                Decision::Issue { .. } => Ok(Recorded::Issued(st.record_issued(
                    device_id,
                    &issue.user,
                    &issue.sealed_ha1,
                    now,
                )?)),
            }
        }
        AtInform::Confirm => {
            let Some(row) = st.issued_credentials(device_id)? else {
                return Ok(Recorded::Nothing);
            };
            let Some(sealed) = row.ha1.filter(|_| row.state == ISSUED) else {
                return Ok(Recorded::Nothing);
            };
            let k = st.keyring();
            let ha1 = k.seal(purpose::DEVICE_HA1, &k.open(purpose::ISSUED_HA1, &sealed)?)?;
            Ok(if st.confirm_issued(device_id, &ha1, now)? {
                Recorded::Confirmed
            } else {
                Recorded::Nothing
            })
        }
    }
}

/// After the hand-off: the parameters to add to the session's bootstrap
/// SetParameterValues (empty: none), and the log lines of what was recorded.
pub fn settings(
    device_id: &str,
    root: &str,
    what: AtInform,
    recorded: Recorded,
) -> Vec<ParameterValue> {
    match (what, recorded) {
        (AtInform::Issue(issue), Recorded::Issued(attempt)) => {
            tracing::info!(device = %device_id, username = %issue.user, attempt, "issuing the device its own CWMP credentials");
            let ms = format!("{root}.ManagementServer.");
            let mut params = Vec::new();
            if let Some(n) = issue.new_name {
                params.push(ParameterValue::string(format!("{ms}Username"), n));
            }
            params.push(ParameterValue::string(
                format!("{ms}Password"),
                issue.password,
            ));
            params
        }
        (_, Recorded::GaveUp) => {
            tracing::warn!(
                device = %device_id,
                "the device does not adopt the CWMP password issued to it; it keeps the shared credentials (reset its credentials to try again)"
            );
            Vec::new()
        }
        (_, Recorded::Confirmed) => {
            tracing::info!(
                device = %device_id,
                "the device logged in with the CWMP credentials issued to it; the shared credentials no longer open it"
            );
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// A device back from a factory reset that ferroacs ordered (a FactoryReset task sent and
/// not confirmed yet) logs in with the shared credentials and `0 BOOTSTRAP`: the
/// credentials ferroacs issued it are gone from the device, so they are forgotten here too
/// (provisioned ones are kept) and new ones are issued in this session. Returns whether
/// that happened.
pub async fn factory_reset_ordered(env: &Env<'_>, device_id: &str) -> Result<bool> {
    let id = device_id.to_string();
    let now = env.now;
    let reset = env
        .store
        .run(move |s| {
            let ordered = s
                .device_tasks_in(&id, &[crate::domain::tasks::TaskStatus::Running])?
                .iter()
                .any(|t| t.rpc == "FactoryReset");
            let issued = s.issued_credentials(&id)?;
            let own = s.get_device(&id)?.and_then(|d| d.cwmp_username);
            let was_issued = issued.is_some_and(|r| {
                r.state == CONFIRMED && own.as_deref() == Some(r.username.as_str())
            });
            if ordered && was_issued {
                s.reset_cwmp_credentials(&id, now)?;
                return Ok(true);
            }
            Ok(false)
        })
        .await?;
    if reset {
        tracing::info!(
            device = %device_id,
            "the device is back from the factory reset ferroacs ordered: its issued CWMP credentials are forgotten and new ones issued"
        );
    }
    Ok(reset)
}

/// The device refused its issued credentials (`plan::after_bootstrap_fault`: a fault naming
/// them, or a permanent fault naming nothing that came back to the write sent again): it is
/// not asked again (until an operator resets its credentials). The reason keeps the fault's
/// code and the per-parameter codes.
pub async fn refused(env: &Env<'_>, device_id: &str, fault: &cwmp::CwmpFault) -> Result<()> {
    let code = fault.code;
    tracing::warn!(
        device = %device_id,
        code,
        "the device refused the CWMP credentials issued to it; it keeps the shared credentials"
    );
    let id = device_id.to_string();
    let mut reason = format!("refused: the device answered with fault {code}");
    for f in &fault.set_parameter_values_faults {
        reason.push_str(&format!("; {}: {}", f.parameter_name, f.code));
    }
    env.store
        .run(move |s| s.give_up_issuing(&id, &reason))
        .await
}

/// Whose credentials a CWMP username opens (CPE authentication): `(device id, HA1,
/// issued)`, the device's own credentials first, else credentials issued to a device and
/// not used yet (`issued`).
pub async fn username_owner(
    store: &crate::store::Store,
    username: &str,
) -> Result<Option<(String, String, bool)>> {
    let user = username.to_string();
    let owner = store.run_short(move |s| s.username_owner(&user)).await?;
    Ok(match owner {
        None => None,
        Some(UsernameOwner::Own {
            device_id,
            sealed_ha1,
        }) => {
            // Opened in memory only, at a cache miss: the look-up is cached by username.
            let ha1 = store
                .keyring()
                .open(purpose::DEVICE_HA1, &sealed_ha1)
                .map_err(|e| Error::internal(format!("cannot open CWMP credentials: {e}")))?;
            Some((device_id, ha1, false))
        }
        Some(UsernameOwner::Issued {
            device_id,
            sealed_ha1,
        }) => {
            let ha1 = store
                .keyring()
                .open(purpose::ISSUED_HA1, &sealed_ha1)
                .map_err(|e| {
                    Error::internal(format!("cannot open issued CWMP credentials: {e}"))
                })?;
            Some((device_id, ha1, true))
        }
    })
}

/// What an operator may know of a device's CWMP credentials (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `own` (its own credentials: confirmed after being issued, or provisioned), `issued`
    /// (issued, the device has not logged in with them yet: the shared ones still open
    /// it), `gave_up` (the device refused or ignored them: the shared ones open it) or
    /// `shared` (nothing issued yet).
    pub state: &'static str,
    /// The username of its own or issued credentials.
    pub username: Option<String>,
    /// The credentials were issued by ferroacs (false: provisioned by an operator).
    pub issued: bool,
    pub attempts: i32,
    pub reason: String,
    pub issued_at: Option<i64>,
    pub confirmed_at: Option<i64>,
}

/// The state of a device's CWMP credentials; `None` when the device does not exist.
pub async fn status(store: &crate::store::Store, device_id: &str) -> Result<Option<Status>> {
    let id = device_id.to_string();
    store
        .run(move |s| {
            let Some(dev) = s.get_device(&id)? else {
                return Ok(None);
            };
            let row = s.issued_credentials(&id)?;
            let (issued_at, confirmed_at, attempts, reason) = row
                .as_ref()
                .map(|r| {
                    (
                        Some(r.issued_at),
                        r.confirmed_at,
                        r.attempts,
                        r.reason.clone(),
                    )
                })
                .unwrap_or((None, None, 0, String::new()));
            let state = match (&dev.cwmp_username, row.as_ref().map(|r| r.state.as_str())) {
                (Some(_), _) => "own",
                (None, Some(ISSUED)) => "issued",
                (None, Some(GAVE_UP)) => "gave_up",
                (None, _) => "shared",
            };
            let issued = row.as_ref().is_some_and(|r| {
                r.state == ISSUED
                    || (r.state == CONFIRMED
                        && dev.cwmp_username.as_deref() == Some(r.username.as_str()))
            });
            let username = dev.cwmp_username.clone().or_else(|| {
                row.as_ref()
                    .filter(|r| r.state == ISSUED)
                    .map(|r| r.username.clone())
            });
            Ok(Some(Status {
                state,
                username,
                issued,
                attempts,
                reason,
                issued_at,
                confirmed_at,
            }))
        })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cwmp::DeviceIdStruct;

    fn inform() -> Inform {
        Inform {
            device_id: DeviceIdStruct {
                manufacturer: "Acme".into(),
                oui: "00D09E".into(),
                product_class: "IGD".into(),
                serial_number: "S1".into(),
            },
            ..Inform::default()
        }
    }

    fn shared(u: &str) -> CpeLogin {
        CpeLogin::Shared { username: u.into() }
    }

    fn row(state: &str, attempts: i32) -> IssuedRow {
        IssuedRow {
            device_id: "00D09E-IGD-S1".into(),
            username: "00D09E-IGD-S1".into(),
            ha1: None,
            state: state.into(),
            attempts,
            reason: String::new(),
            issued_at: 0,
            confirmed_at: None,
        }
    }

    #[test]
    fn a_device_logging_in_with_its_own_name_gets_a_password_only() {
        let cfg = Config::default();
        let i = inform();
        for name in ["00D09E-IGD-S1", "00D09E-S1"] {
            assert_eq!(
                decide(&cfg, &shared(name), &i, None),
                Decision::Issue { username: None }
            );
        }
    }

    #[test]
    fn a_shared_or_foreign_username_is_replaced_by_the_device_name() {
        let mut cfg = Config::default();
        let i = inform();
        let want = Decision::Issue {
            username: Some("00D09E-IGD-S1".into()),
        };
        assert_eq!(decide(&cfg, &shared("cpe"), &i, None), want);
        assert_eq!(decide(&cfg, &shared("00D09E-IGD-S2"), &i, None), want);
        // The configured shared username is never a device's own, whatever it looks like.
        cfg.cwmp.default_username = Some("00D09E-IGD-S1".into());
        assert_eq!(decide(&cfg, &shared("00D09E-IGD-S1"), &i, None), want);
    }

    #[test]
    fn only_shared_logins_are_issued_credentials_and_only_when_enabled() {
        let mut cfg = Config::default();
        let i = inform();
        for login in [CpeLogin::Own, CpeLogin::Issued, CpeLogin::NotRequired] {
            assert_eq!(decide(&cfg, &login, &i, None), Decision::Nothing);
        }
        cfg.cwmp.issue_credentials = false;
        assert_eq!(decide(&cfg, &shared("cpe"), &i, None), Decision::Nothing);
        cfg.cwmp.issue_credentials = true;
        cfg.cwmp.auth = CpeAuth::None;
        assert_eq!(decide(&cfg, &shared("cpe"), &i, None), Decision::Nothing);
    }

    #[test]
    fn issuing_stops_after_the_bounded_number_of_ignored_attempts() {
        let cfg = Config::default();
        let i = inform();
        let login = shared("cpe");
        for n in 1..MAX_ATTEMPTS {
            assert!(matches!(
                decide(&cfg, &login, &i, Some(&row(ISSUED, n))),
                Decision::Issue { .. }
            ));
        }
        assert_eq!(
            decide(&cfg, &login, &i, Some(&row(ISSUED, MAX_ATTEMPTS))),
            Decision::GiveUp
        );
        assert_eq!(
            decide(&cfg, &login, &i, Some(&row(GAVE_UP, 1))),
            Decision::Nothing
        );
    }
}
