//! The admin REST API, JSON under `/api/v1`, on the admin listener.
//!
//! Every route is declared once, in [`ROUTES`] (via `api_routes!`): the same table registers
//! the actix routes, decides the role each route needs, and generates the OpenAPI document
//! served at `/api/v1/openapi.json`. Every request needs `Authorization: Bearer <token>`
//! (tokens from `ferroacs token create` or `POST /api/v1/tokens`): no or an unknown token
//! gives 401, a role below the route's gives 403, a path no route matches gives 404.
//!
//! Authentication and authorisation are two steps. The scope-wide [`auth`] middleware runs
//! before routing and only establishes who is calling (the [`Caller`]). The role check runs
//! after routing, in a middleware on each route's own resource ([`authorize`]), so the role
//! is the one of the route the router actually matched on the percent-decoded path; no
//! spelling of a path (`%74okens`, `%761`, `//`) can reach a handler with another route's
//! role, and an unmatched path reaches no handler at all. Roles: `viewer` reads; `operator` also acts
//! on devices, tasks, files, VoIP lines, presets and campaigns; `admin` also manages tokens, users and
//! reads the audit log.
//!
//! Errors are `{"error": {"code", "message"}}` (see `http::error`). Lists are pages
//! `{"items": [...], "next_cursor": ...}`: pass `cursor=<next_cursor>` for the next page.

mod admin;
mod campaigns;
mod devices;
pub mod dto;
mod files;
mod openapi;
mod phones;
mod schedules;
mod tasks;
#[cfg(test)]
mod usecase_roles;
mod voip;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::error::{json_error, ApiError};
use crate::state::AppState;

pub use openapi::document;

use crate::domain::usecases::Actor;
pub use crate::domain::usecases::Role;

/// One route of the API, as documented.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path below `/api/v1`, with `{name}` parameters.
    pub path: &'static str,
    pub role: Role,
    pub summary: &'static str,
    /// Query parameters it understands.
    pub query: &'static [&'static str],
    /// Name of the request body schema (see `openapi.rs`), if it takes one.
    pub body: Option<&'static str>,
    /// Name of the response schema.
    pub response: &'static str,
}

/// Prefix of every API path.
pub const PREFIX: &str = "/api/v1";

macro_rules! method_guard {
    (get) => {
        actix_web::guard::Get()
    };
    (post) => {
        actix_web::guard::Post()
    };
    (put) => {
        actix_web::guard::Put()
    };
    (delete) => {
        actix_web::guard::Delete()
    };
    (patch) => {
        actix_web::guard::Patch()
    };
}

macro_rules! api_routes {
    ($( $method:ident $path:literal $role:ident $handler:path,
        $summary:literal, query [$($q:literal),*], body $body:expr, response $resp:literal; )*) => {
        /// Every route of the API (the single source for routing, roles and OpenAPI).
        pub const ROUTES: &[RouteDoc] = &[ $( RouteDoc {
            method: stringify!($method),
            path: $path,
            role: Role::$role,
            summary: $summary,
            query: &[$($q),*],
            body: $body,
            response: $resp,
        } ),* ];

        /// Each route is its own resource, guarded by its method, with the role it needs
        /// checked by a middleware on that resource: the role comes from the route the
        /// router matched (on the decoded path), never from the raw request path.
        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.service(
                web::resource($path)
                    .guard(method_guard!($method))
                    .wrap(actix_web::middleware::from_fn(
                        |req: ServiceRequest, next: Next<actix_web::body::BoxBody>| {
                            authorize(Role::$role, req, next)
                        },
                    ))
                    .route(web::$method().to($handler)),
            ); )*
        }
    };
}

api_routes! {
    get "/devices" Viewer devices::list,
        "List devices matching a query", query ["q", "limit", "cursor"], body None, response "DevicePage";
    get "/devices/{id}" Viewer devices::get,
        "One device", query [], body None, response "Device";
    put "/devices/{id}" Operator devices::put,
        "Create or update a device before or after first contact (CWMP credentials, tags)",
        query [], body Some("DeviceProvision"), response "Device";
    delete "/devices/{id}" Operator devices::delete,
        "Delete a device and everything attached to it", query [], body None, response "Empty";
    get "/devices/{id}/parameters" Viewer devices::parameters,
        "The device's known parameters (stored tree overlaid with the latest Inform)",
        query ["prefix", "limit", "cursor"], body None, response "ParameterPage";
    get "/devices/{id}/tasks" Viewer devices::tasks,
        "The device's tasks, newest first", query ["status", "limit", "cursor"], body None, response "TaskPage";
    post "/devices/{id}/tasks" Operator devices::create_task,
        "Queue a task (one CWMP RPC); optionally send a connection request and wait for the result",
        query ["connection_request", "wait", "expires_in"], body Some("TaskSpec"), response "Task";
    post "/devices/{id}/connection_request" Operator devices::connection_request,
        "Ask the device to start a session now", query [], body None, response "ConnectionRequestResult";
    get "/devices/{id}/reachability" Viewer devices::reachability,
        "How connection requests reach the device: its STUN binding and age, the routes in the order they are tried, the latest attempts with their outcome and confirmation",
        query [], body None, response "Reachability";
    get "/devices/{id}/gateway" Viewer devices::gateway,
        "The device-gateway association (TR-111): the gateway the device is behind and the devices behind it, each with how it is known (confirmed, gateway_table, device_gateway_info), when last seen, and whether ferroacs manages it",
        query [], body None, response "GatewayAssociation";
    put "/devices/{id}/tags/{tag}" Operator devices::add_tag,
        "Add one tag to the device (nothing changes when it has it)", query [], body None, response "Empty";
    delete "/devices/{id}/tags/{tag}" Operator devices::remove_tag,
        "Remove one tag from the device", query [], body None, response "Empty";
    get "/devices/{id}/credentials" Viewer devices::credentials,
        "The state of the device's CWMP credentials: own, issued (not used yet), gave_up or shared; never a secret",
        query [], body None, response "DeviceCredentials";
    delete "/devices/{id}/credentials" Operator devices::reset_credentials,
        "Forget the device's CWMP credentials (own and issued), so the shared ones open it again (a factory-reset device); it is issued new ones at its next session",
        query [], body None, response "Empty";
    get "/devices/{id}/sessions" Viewer devices::sessions,
        "The device's session log, newest first", query ["limit", "cursor"], body None, response "SessionPage";
    get "/devices/{id}/lines" Viewer voip::list_lines,
        "The device's VoIP lines with their status (never their passwords)",
        query [], body None, response "LinePage";
    get "/devices/{id}/lines/{n}" Viewer voip::get_line,
        "VoIP line n: account, status read back from the device, pending or applied revision, unmapped fields, fault",
        query [], body None, response "Line";
    put "/devices/{id}/lines/{n}" Operator voip::put_line,
        "Assign or replace the SIP account of line n (password write-only); pushed in the next session, at once with connection_request=true",
        query ["connection_request"], body Some("LineAccount"), response "Line";
    delete "/devices/{id}/lines/{n}" Operator voip::delete_line,
        "Remove the account of line n", query [], body None, response "Empty";
    get "/devices/{id}/presets" Viewer voip::device_presets,
        "What presets did on the device: which preset set which value, refused values, converged revisions",
        query [], body None, response "DevicePresets";
    post "/lines/import" Operator voip::import_lines,
        "Import SIP accounts from CSV (header: device_id,line,password and account fields); bad rows are reported, never half-imported",
        query ["dry_run"], body Some("Csv"), response "LineImportReport";
    get "/presets" Viewer voip::list_presets,
        "Presets, by name", query [], body None, response "PresetPage";
    post "/presets" Operator voip::create_preset,
        "Create a preset (409 when the name exists); connection_request=true asks matching devices to converge now",
        query ["connection_request"], body Some("PresetInput"), response "Preset";
    get "/presets/{name}" Viewer voip::get_preset,
        "One preset", query [], body None, response "Preset";
    put "/presets/{name}" Operator voip::put_preset,
        "Create or replace a preset; connection_request=true asks matching devices to converge now",
        query ["connection_request"], body Some("PresetInput"), response "Preset";
    delete "/presets/{name}" Operator voip::delete_preset,
        "Delete a preset (values it set stay on the devices)", query [], body None, response "Empty";
    get "/phones" Viewer phones::list,
        "Phones that fetch configuration files, by MAC", query ["limit", "cursor"], body None, response "PhonePage";
    post "/phones" Operator phones::create,
        "Create a phone (MAC in any spelling; 400 names a malformed one, 409 when it exists)",
        query [], body Some("PhoneInput"), response "Phone";
    post "/phones/import" Operator phones::import,
        "Import phones from CSV (header: mac,vendor,model[,profile][,tags]); bad rows are reported, never half-imported",
        query ["dry_run"], body Some("Csv"), response "PhoneImportReport";
    get "/phones/{mac}" Viewer phones::get,
        "One phone: settings, last seen, firmware, last file served", query [], body None, response "Phone";
    put "/phones/{mac}" Operator phones::put,
        "Create or replace a phone", query [], body Some("PhoneInput"), response "Phone";
    delete "/phones/{mac}" Operator phones::delete,
        "Delete a phone with its lines, uploads and fetch log", query [], body None, response "Empty";
    get "/phones/{mac}/fetches" Viewer phones::fetches,
        "The phone's fetches, newest first (file, source, User-Agent, status)", query ["limit"], body None, response "PhoneFetchPage";
    get "/phones/{mac}/url" Operator phones::url,
        "The phone's provisioning URL (with its secret token) and the DHCP options for its vendor",
        query [], body None, response "PhoneUrls";
    post "/phones/{mac}/resync" Operator phones::resync,
        "Re-provision now: SIP NOTIFY check-sync to the phone's contact (or the source of its last fetch)",
        query ["reboot"], body None, response "PhoneResync";
    post "/phones/{mac}/activation_code" Operator phones::activation_code,
        "A new one-time activation code for the phone (shown once; replaces any earlier one): the phone uses /prov/<code>/ once, then for phones.activation_window_secs from the same address",
        query [], body None, response "PhoneActivationCode";
    get "/phones/{mac}/lines" Viewer phones::list_lines,
        "The phone's lines (never their passwords)", query [], body None, response "LinePage";
    put "/phones/{mac}/lines/{n}" Operator phones::put_line,
        "Assign or replace the SIP account of line n of the phone (password write-only); served at its next fetch",
        query [], body Some("LineAccount"), response "Line";
    delete "/phones/{mac}/lines/{n}" Operator phones::delete_line,
        "Remove the account of line n of the phone", query [], body None, response "Empty";
    get "/phone_fetches" Viewer phones::fetches_from,
        "The fetch log of one source address, newest first: its phones' fetches and those that named no known phone (unknown files, TFTP firmware without a token); source= an IP address", query ["source", "limit"], body None, response "PhoneFetchPage";
    get "/phone_profiles" Viewer phones::list_profiles,
        "Phone profiles (settings shared by a group of phones)", query [], body None, response "PhoneProfilePage";
    put "/phone_profiles/{name}" Operator phones::put_profile,
        "Create or replace a phone profile", query [], body Some("PhoneSettings"), response "PhoneProfile";
    delete "/phone_profiles/{name}" Operator phones::delete_profile,
        "Delete a phone profile (409 while phones use it)", query [], body None, response "Empty";
    get "/phone_models/firmware" Viewer phones::list_model_firmware,
        "The firmware file set per phone model", query [], body None, response "PhoneModelFirmwarePage";
    put "/phone_models/{vendor}/{model}/firmware" Operator phones::put_model_firmware,
        "Give every phone of a model a firmware file of the file store: its files carry the file's URL and version (profile and phone settings override)", query [], body Some("PhoneModelFirmwareInput"), response "PhoneModelFirmware";
    delete "/phone_models/{vendor}/{model}/firmware" Operator phones::delete_model_firmware,
        "Remove a model's firmware file", query [], body None, response "Empty";
    get "/tasks" Viewer tasks::list,
        "Tasks, newest first", query ["device_id", "status", "limit", "cursor"], body None, response "TaskPage";
    post "/tasks" Operator tasks::create_bulk,
        "Queue the same task for every device matching a query",
        query ["connection_request", "expires_in"], body Some("BulkTask"), response "BulkTaskResult";
    get "/tasks/{id}" Viewer tasks::get,
        "One task", query ["wait"], body None, response "Task";
    delete "/tasks/{id}" Operator tasks::cancel,
        "Cancel a pending or running task", query [], body None, response "Task";
    get "/faults" Viewer tasks::faults,
        "Faults devices returned, newest first", query ["device_id", "limit", "cursor"], body None, response "FaultPage";
    delete "/faults" Operator tasks::clear_faults,
        "Clear the faults matching every filter given (device_id, code, since and until in UTC ms); with no filter, all",
        query ["device_id", "code", "since", "until"], body None, response "ClearedFaults";
    post "/files" Operator files::upload,
        "Store a file (raw request body) for devices to download",
        query ["name", "file_type", "version"], body Some("Binary"), response "File";
    get "/files" Viewer files::list,
        "Stored files", query ["device_id", "limit", "cursor"], body None, response "FilePage";
    get "/files/{id}" Viewer files::get,
        "One stored file's metadata", query [], body None, response "File";
    get "/files/{id}/content" Operator files::content,
        "A stored file's contents (Range and If-None-Match supported); an operator's, since devices' uploads (configuration backups) hold their passwords", query [], body None, response "Binary";
    delete "/files/{id}" Operator files::delete,
        "Delete a stored file", query [], body None, response "Empty";
    get "/campaigns" Viewer campaigns::list,
        "Campaigns, newest first", query ["limit", "cursor"], body None, response "CampaignPage";
    post "/campaigns" Operator campaigns::create,
        "Create a campaign (draft), or with dry_run=true only count what it would address per model; 400 names the bad field, refuses overlapping campaigns",
        query ["dry_run"], body Some("CampaignInput"), response "Campaign";
    get "/campaigns/{id}" Viewer campaigns::get,
        "A campaign with its progress per state, wave and model, rate and estimated end",
        query [], body None, response "Campaign";
    post "/campaigns/{id}/start" Operator campaigns::start,
        "Start a draft: freeze its devices into waves and let the scheduler pace it", query [], body None, response "Campaign";
    post "/campaigns/{id}/pause" Operator campaigns::pause,
        "Pause: nothing new starts, running transfers finish", query [], body Some("CampaignControl"), response "Campaign";
    post "/campaigns/{id}/resume" Operator campaigns::resume,
        "Resume a paused campaign (stop rules count from now)", query [], body None, response "Campaign";
    post "/campaigns/{id}/approve" Operator campaigns::approve,
        "Open the next wave of a campaign waiting for approval", query [], body None, response "Campaign";
    post "/campaigns/{id}/abort" Operator campaigns::abort,
        "Abort: nothing new starts, running transfers complete", query [], body None, response "Campaign";
    post "/campaigns/{id}/retry_failed" Operator campaigns::retry_failed,
        "Queue the failed devices again and run the campaign", query [], body None, response "Campaign";
    put "/campaigns/{id}/action" Operator campaigns::replace_action,
        "Replace the action of a draft or paused campaign (e.g. a fixed image); devices started afterwards get it",
        query [], body Some("CampaignAction"), response "Campaign";
    post "/campaigns/{id}/clone" Operator campaigns::clone,
        "A new draft with the same specification", query [], body None, response "Campaign";
    post "/campaigns/{id}/reverse" Operator campaigns::reverse,
        "A new draft pushing each model's previous image to the devices that got the new one",
        query [], body None, response "Campaign";
    get "/campaigns/{id}/devices" Viewer campaigns::devices,
        "The campaign's devices with their state (format=csv for a CSV export)",
        query ["state", "format", "limit", "cursor"], body None, response "CampaignDevicePage";
    get "/campaigns/{id}/events" Viewer campaigns::events,
        "The campaign's timeline, oldest first (device_id= for one device's)",
        query ["device_id", "limit", "cursor"], body None, response "CampaignEventPage";
    get "/campaigns/{id}/stream" Viewer campaigns::stream,
        "Live progress as server-sent events (text/event-stream)", query [], body None, response "EventStream";
    get "/schedules" Viewer schedules::list,
        "Scheduled jobs (recurring tasks and config backups), by id", query ["limit", "cursor"], body None, response "SchedulePage";
    post "/schedules" Operator schedules::create,
        "Create a scheduled job: a task or a config backup for the devices a query matches, at each time of a cron expression in an IANA time zone; 400 names the bad field",
        query [], body Some("ScheduleInput"), response "Schedule";
    get "/schedules/{id}" Viewer schedules::get,
        "One scheduled job with its next and last fire time and what the last fire did", query [], body None, response "Schedule";
    put "/schedules/{id}" Operator schedules::put,
        "Replace a scheduled job (also to enable or disable it); its next fire is computed again",
        query [], body Some("ScheduleInput"), response "Schedule";
    delete "/schedules/{id}" Operator schedules::delete,
        "Delete a scheduled job (tasks it queued stay)", query [], body None, response "Empty";
    get "/devices/{id}/backups" Viewer schedules::backups,
        "The device's configuration backups (files it uploaded), newest first", query ["limit"], body None, response "FilePage";
    get "/devices/{id}/backups/diff" Operator schedules::diff,
        "A unified diff between two text configuration backups of the device (an operator's: backups hold the device's passwords)", query ["from", "to"], body None, response "BackupDiff";
    post "/devices/{id}/backups/{file_id}/restore" Operator schedules::restore,
        "Restore a backup: queue a Download of it (3 Vendor Configuration File) to the device",
        query ["connection_request"], body None, response "Task";
    get "/tokens" Admin admin::list_tokens,
        "API tokens (never their secret)", query ["limit", "cursor"], body None, response "TokenPage";
    post "/tokens" Admin admin::create_token,
        "Create an API token; the secret is in this answer only", query [], body Some("NewToken"), response "CreatedToken";
    delete "/tokens/{id}" Admin admin::revoke_token,
        "Revoke an API token", query [], body None, response "Empty";
    get "/users" Admin admin::list_users,
        "Operator accounts", query ["limit", "cursor"], body None, response "UserPage";
    post "/users" Admin admin::create_user,
        "Create an operator account", query [], body Some("NewUser"), response "User";
    delete "/users/{username}" Admin admin::delete_user,
        "Delete an operator account", query [], body None, response "Empty";
    post "/users/{username}/disable" Admin admin::disable_user,
        "Disable an account: it can no longer log in and its console sessions end", query [], body None, response "Empty";
    post "/users/{username}/enable" Admin admin::enable_user,
        "Enable a disabled account again, with the password it had", query [], body None, response "Empty";
    put "/users/{username}/password" Admin admin::set_password,
        "Set an operator account's password", query [], body Some("NewPassword"), response "Empty";
    get "/audit" Admin admin::audit,
        "The audit log, newest first", query ["limit", "cursor"], body None, response "AuditPage";
    get "/settings" Admin admin::settings,
        "The effective configuration, secrets hidden", query [], body None, response "Settings";
    get "/whoami" Viewer admin::whoami,
        "The caller's token name and role", query [], body None, response "Caller";
    get "/openapi.json" Viewer openapi::serve,
        "This API's OpenAPI 3 document", query [], body None, response "OpenApi";
}

/// Who is calling: set by the auth middleware for every API request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `token:<name>` (for the audit log).
    pub actor: String,
    pub role: Role,
}

impl Caller {
    /// The caller as the use cases see it.
    pub fn as_actor(&self) -> Actor {
        Actor {
            name: self.actor.clone(),
            role: self.role,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| ApiError(Error::Unauthorized("no credentials".into()))),
        )
    }
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    let v = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// Who is calling (before routing): 401 without a known token, else the [`Caller`] is
/// attached for [`authorize`] and the handlers.
async fn auth(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError("no state"));
    };
    let deny = |req: ServiceRequest, status: StatusCode, code: &str, msg: &str| {
        let (r, _) = req.into_parts();
        Ok(ServiceResponse::new(r, json_error(status, code, msg)))
    };
    // Request bodies are never inflated on this listener (no decompression bomb to defuse).
    let encoded = req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"));
    if encoded {
        return deny(
            req,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "send request bodies without Content-Encoding (compressed bodies are not accepted)",
        );
    }
    let Some(token) = bearer(&req) else {
        return deny(
            req,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (create one with `ferroacs token create`)",
        );
    };
    let hash = crate::auth::password::hash_token(&token);
    let row = match state.store.run(move |s| s.token_by_hash(&hash)).await {
        Ok(r) => r,
        Err(e) => {
            let api = ApiError(e);
            let (r, _) = req.into_parts();
            return Ok(ServiceResponse::new(
                r,
                actix_web::ResponseError::error_response(&api),
            ));
        }
    };
    let Some(row) = row else {
        return deny(
            req,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked token",
        );
    };
    let role = Role::parse(&row.role).unwrap_or(Role::Viewer);
    let now = state.now();
    if row.last_used_at.is_none_or(|t| now - t > 60_000) {
        let (store, id) = (state.store.clone(), row.id);
        actix_web::rt::spawn(async move {
            let _ = store.run(move |s| s.touch_token(id, now)).await;
        });
    }
    req.extensions_mut().insert(Caller {
        actor: Actor::token(&row.name, role).name,
        role,
    });
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The role check of one route, run after routing by the resource the router matched. A
/// request reaches a handler only through one of these; anything unmatched goes to
/// [`no_route`] (404 with a valid token; the scope's [`auth`] already answered 401 without).
async fn authorize(
    needed: Role,
    req: ServiceRequest,
    next: Next<actix_web::body::BoxBody>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let role = req.extensions().get::<Caller>().map(|c| c.role);
    let refuse = |req: ServiceRequest, status: StatusCode, code: &str, msg: &str| {
        let (r, _) = req.into_parts();
        Ok(ServiceResponse::new(r, json_error(status, code, msg)))
    };
    match role {
        None => refuse(
            req,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (create one with `ferroacs token create`)",
        ),
        Some(role) if role < needed => {
            let msg = format!(
                "this needs the {} role; the token has {}",
                needed.as_str(),
                role.as_str()
            );
            refuse(req, StatusCode::FORBIDDEN, "forbidden", &msg)
        }
        Some(_) => next.call(req).await,
    }
}

fn json_config_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    if let actix_web::error::JsonPayloadError::Payload(p) = &err {
        if crate::http::limits::is_timeout(p) {
            return actix_web::error::InternalError::from_response(
                "body timeout",
                crate::http::limits::body_timeout_response(),
            )
            .into();
        }
    }
    let msg = match &err {
        actix_web::error::JsonPayloadError::Deserialize(e) => format!("invalid JSON body: {e}"),
        actix_web::error::JsonPayloadError::ContentType => {
            "send the body as JSON with Content-Type: application/json".to_string()
        }
        other => format!("invalid JSON body: {other}"),
    };
    ApiError(Error::invalid("body", msg)).into()
}

fn query_config_error(
    err: actix_web::error::QueryPayloadError,
    _: &HttpRequest,
) -> actix_web::Error {
    ApiError(Error::invalid("query", err.to_string())).into()
}

fn path_config_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError(Error::invalid("path", err.to_string())).into()
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "no_route",
        &format!(
            "no API endpoint {} {}; see /api/v1/openapi.json",
            req.method(),
            req.path()
        ),
    )
}

/// Register the API under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .app_data(
                web::JsonConfig::default()
                    .limit(4 * 1024 * 1024)
                    .error_handler(json_config_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_config_error))
            .app_data(web::PathConfig::default().error_handler(path_config_error))
            .wrap(actix_web::middleware::from_fn(auth))
            .configure(register)
            .default_service(web::to(no_route)),
    );
}

/// `?dry_run=` of the CSV imports.
#[derive(serde::Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    pub dry_run: bool,
}

/// Read an uploaded CSV body, refusing it (naming the limit) beyond `max` bytes without
/// reading further. Shared by every CSV import route.
pub(crate) async fn read_csv_body(
    mut payload: web::Payload,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| Error::invalid("body", format!("the upload was interrupted: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(Error::invalid(
                "csv",
                format!("the file is larger than {} MiB; split it", max >> 20),
            )
            .into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Page size from `limit`: default 100, at most 1000.
pub(crate) fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 1000)
}

/// Parse a numeric cursor.
pub(crate) fn int_cursor(cursor: &Option<String>) -> Result<Option<i64>, ApiError> {
    match cursor.as_deref() {
        None | Some("") => Ok(None),
        Some(c) => c.parse::<i64>().map(Some).map_err(|_| {
            ApiError(Error::invalid(
                "cursor",
                "not a cursor of this list; pass next_cursor from the previous page",
            ))
        }),
    }
}
