//! The OpenAPI 3 document, generated from the route table ([`super::ROUTES`]), so it lists
//! exactly the routes the server registers.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use super::{RouteDoc, PREFIX, ROUTES};
use crate::domain::tasks::TASK_RPCS;

/// What a scheduled job's or a campaign's task does with its secrets.
const SEALED_TASK: &str = "The secrets of a task (a secret parameter's value, a username or password) are sealed at rest \
     and shown as \"***\"; \"***\" given back on an update keeps the stored one. The tasks queued get the real values.";

fn obj(props: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for (k, v) in props {
        m.insert((*k).to_string(), v.clone());
    }
    json!({ "type": "object", "properties": m })
}

fn s() -> Value {
    json!({ "type": "string" })
}
fn i() -> Value {
    json!({ "type": "integer", "format": "int64" })
}
fn ni() -> Value {
    json!({ "type": "integer", "format": "int64", "nullable": true })
}
fn b() -> Value {
    json!({ "type": "boolean" })
}
fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}
fn page(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": { "type": "array", "items": r(item) },
            "next_cursor": { "type": "string", "nullable": true,
                "description": "Pass as `cursor` for the next page; null on the last page." }
        }
    })
}

fn schemas() -> Value {
    let conn_req = obj(&[
        (
            "state",
            json!({"type": "string", "enum": ["sent", "scheduled", "joined_session"],
                "description": "sent: a request went out now (see outcome); scheduled: it goes out at scheduled_at (the device was asked moments ago or is in a session elsewhere), never dropped; joined_session: the device is in a session on this node, which runs the new tasks before it ends"}),
        ),
        ("at", i()),
        (
            "outcome",
            json!({"type": "string", "description": "for sent: ok, auth_failed, auth_unsupported, unreachable, busy, refused_by_policy, bad_url, bad_response, no_url; otherwise the state"}),
        ),
        ("message", s()),
        (
            "scheduled_at",
            json!({"type": "integer", "format": "int64", "description": "when a scheduled request goes out (UTC ms); absent otherwise"}),
        ),
        (
            "transport",
            json!({"type": "string", "enum": ["http", "udp"], "description": "for sent: the transport of the last attempt; absent otherwise"}),
        ),
    ]);
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put(
        "Error",
        json!({"type": "object", "properties": {"error": obj(&[("code", s()), ("message", s())])}}),
    );
    put("Empty", json!({"description": "no body"}));
    put("Binary", json!({"type": "string", "format": "binary"}));
    put("OpenApi", json!({"type": "object"}));
    put("ConnectionRequestResult", conn_req.clone());
    put("ClearedFaults", obj(&[("cleared", i())]));
    put(
        "DeviceCredentials",
        obj(&[
            ("state", s()),
            ("username", json!({"type": "string", "nullable": true})),
            ("issued", b()),
            ("attempts", i()),
            ("reason", s()),
            ("issued_at", ni()),
            ("confirmed_at", ni()),
        ]),
    );
    put(
        "Reachability",
        obj(&[
            (
                "stun",
                json!({"type": "object", "nullable": true, "description": "STUN credentials ferroacs gave the device (never the password) and the public binding of its authenticated Binding Requests",
                    "properties": {"username": s(), "binding": {"type": "string", "nullable": true}, "binding_at": ni(), "age_ms": ni(), "seen_at": ni()}}),
            ),
            (
                "xmpp",
                json!({"type": "object", "nullable": true, "description": "ferroacs's own XMPP connection for connection requests (null when [xmpp] is not configured)",
                    "properties": {"state": {"type": "string", "enum": ["connecting", "online", "offline"]}, "jid": s(), "bound_jid": {"type": "string", "nullable": true}, "since": i(), "tls": b(), "last_error": {"type": "string", "nullable": true}, "reconnects": i()}}),
            ),
            (
                "routes",
                json!({"type": "array", "description": "the transports a connection request would try now, in order",
                    "items": obj(&[("transport", s()), ("target", s())])}),
            ),
            (
                "attempts",
                json!({"type": "array", "description": "the latest attempts, newest first",
                    "items": obj(&[("at", i()), ("transport", s()), ("outcome", s()), ("message", s()), ("confirmed_at", ni())])}),
            ),
            (
                "behind_gateway",
                json!({"allOf": [r("GatewayLink")], "nullable": true, "description": "when no route reaches the device: the gateway it is behind (TR-111), if known"}),
            ),
        ]),
    );
    put(
        "GatewayLink",
        obj(&[
            ("id", s()),
            (
                "source",
                json!({"type": "string", "enum": ["confirmed", "gateway_table", "device_gateway_info"],
                    "description": "confirmed: the gateway's ManageableDevice table lists the device and the device's GatewayInfo names the gateway; gateway_table: only the table; device_gateway_info: only the device (not confirmed)"}),
            ),
            ("listed_at", ni()),
            ("claimed_at", ni()),
            ("last_seen", i()),
            ("managed", b()),
            ("host", s()),
        ]),
    );
    put(
        "GatewayAssociation",
        obj(&[
            (
                "gateway",
                json!({"allOf": [r("GatewayLink")], "nullable": true}),
            ),
            (
                "behind_gateway",
                json!({"type": "array", "items": r("GatewayLink")}),
            ),
        ]),
    );
    put(
        "Device",
        obj(&[
            ("id", s()),
            ("oui", s()),
            ("product_class", s()),
            ("serial_number", s()),
            ("manufacturer", s()),
            ("model_name", s()),
            ("software_version", s()),
            ("hardware_version", s()),
            ("root_model", s()),
            ("cwmp_version", s()),
            ("ip", s()),
            ("last_inform", ni()),
            ("last_boot", ni()),
            ("last_bootstrap", ni()),
            ("connection_request_url", s()),
            ("has_own_credentials", b()),
            ("provisioned", b()),
            ("in_session", b()),
            ("tags", json!({"type": "array", "items": s()})),
            ("connection_request", r("ConnectionRequestResult")),
            ("created_at", i()),
            ("updated_at", i()),
        ]),
    );
    put(
        "DeviceProvision",
        obj(&[
            ("oui", s()),
            ("product_class", s()),
            ("serial_number", s()),
            ("cwmp_username", s()),
            ("cwmp_password", s()),
            ("clear_credentials", b()),
            ("tags", json!({"type": "array", "items": s()})),
        ]),
    );
    put(
        "Parameter",
        obj(&[
            ("name", s()),
            ("value", json!({"type": "string", "nullable": true})),
            ("type", s()),
            ("writable", json!({"type": "boolean", "nullable": true})),
            ("object", b()),
            ("notification", ni()),
            (
                "access_list",
                json!({"type": "array", "items": s(), "nullable": true}),
            ),
            ("updated_at", i()),
        ]),
    );
    put(
        "TaskSpec",
        json!({
            "type": "object",
            "description": "One CWMP RPC and its arguments, e.g. {\"rpc\":\"GetParameterValues\",\"names\":[\"Device.DeviceInfo.\"]}, {\"rpc\":\"SetParameterValues\",\"values\":[{\"name\":\"…\",\"value\":\"…\",\"type\":\"xsd:string\"}]}, {\"rpc\":\"AddObject\",\"object\":\"X.Y.\"}, {\"rpc\":\"Download\",\"file_id\":\"…\",\"file_type\":\"1 Firmware Upgrade Image\"}, {\"rpc\":\"Reboot\"}.",
            "required": ["rpc"],
            "properties": { "rpc": { "type": "string", "enum": TASK_RPCS } },
            "additionalProperties": true
        }),
    );
    put(
        "Task",
        obj(&[
            ("id", i()),
            ("device_id", s()),
            ("rpc", s()),
            ("args", r("TaskSpec")),
            (
                "status",
                json!({"type": "string", "enum": ["pending", "running", "done", "fault", "expired", "cancelled"]}),
            ),
            ("result", json!({"type": "object", "nullable": true})),
            (
                "fault",
                json!({"type": "object", "nullable": true, "properties": {
                    "code": i(), "string": s(), "detail": {"type": "object", "nullable": true}}}),
            ),
            ("attempts", i()),
            ("command_key", s()),
            ("created_by", s()),
            ("created_at", i()),
            ("updated_at", i()),
            ("started_at", ni()),
            ("finished_at", ni()),
            ("expires_at", ni()),
            ("not_before", i()),
            ("connection_request", r("ConnectionRequestResult")),
        ]),
    );
    put(
        "BulkTask",
        json!({"type": "object", "required": ["q", "task"],
            "properties": {"q": s(), "task": r("TaskSpec")}}),
    );
    put(
        "BulkTaskResult",
        obj(&[
            ("count", i()),
            ("task_ids", json!({"type": "array", "items": i()})),
            ("truncated", b()),
        ]),
    );
    put(
        "Session",
        obj(&[
            ("id", i()),
            ("device_id", s()),
            ("started_at", i()),
            ("ended_at", i()),
            ("source_ip", s()),
            ("events", json!({"type": "array", "items": s()})),
            ("rpcs", json!({"type": "array", "items": s()})),
            ("faults", json!({"type": "array", "items": s()})),
            ("outcome", s()),
        ]),
    );
    put(
        "Fault",
        obj(&[
            ("id", i()),
            ("device_id", s()),
            ("task_id", ni()),
            ("code", i()),
            ("message", s()),
            ("detail", json!({"type": "object", "nullable": true})),
            ("created_at", i()),
        ]),
    );
    put(
        "File",
        obj(&[
            ("id", s()),
            ("name", s()),
            ("file_type", s()),
            ("version", s()),
            ("size", i()),
            ("sha256", s()),
            ("device_id", json!({"type": "string", "nullable": true})),
            ("created_at", i()),
            ("url", s()),
        ]),
    );
    let token = [
        ("id", i()),
        ("name", s()),
        ("role", s()),
        ("created_at", i()),
        ("last_used_at", ni()),
        ("revoked_at", ni()),
    ];
    put("Token", obj(&token));
    let mut created = token.to_vec();
    created.push(("token", s()));
    put("CreatedToken", obj(&created));
    put("NewToken", obj(&[("name", s()), ("role", s())]));
    put(
        "User",
        obj(&[
            ("id", i()),
            ("username", s()),
            ("role", s()),
            ("created_at", i()),
            ("disabled", b()),
        ]),
    );
    put(
        "NewUser",
        obj(&[("username", s()), ("password", s()), ("role", s())]),
    );
    put("NewPassword", obj(&[("password", s())]));
    put(
        "AuditEvent",
        obj(&[
            ("id", i()),
            ("at", i()),
            ("actor", s()),
            ("action", s()),
            ("target", s()),
            ("detail", json!({"type": "string", "nullable": true})),
        ]),
    );
    put(
        "Settings",
        obj(&[("config_toml", s()), ("database", s()), ("node", s())]),
    );
    put("Caller", obj(&[("actor", s()), ("role", s())]));
    let counts = json!({"type": "object", "additionalProperties": i(),
        "description": "devices per state: pending, in_progress, succeeded, failed_confirmed, failed_unconfirmed, skipped"});
    let size = json!({"oneOf": [{"type": "integer"}, {"type": "string", "description": "\"10%\" (cumulative share) or \"rest\""}]});
    let window = obj(&[
        (
            "cron",
            json!({"type": "string", "description": "6 fields, seconds first, e.g. \"0 0 1 * * *\""}),
        ),
        ("duration_secs", i()),
        (
            "time_zone",
            json!({"type": "string", "description": "IANA, e.g. Europe/Berlin"}),
        ),
    ]);
    put(
        "CampaignAction",
        json!({"description": SEALED_TASK, "oneOf": [
                {"type": "object", "required": ["type", "images"], "properties": {
                    "type": {"type": "string", "enum": ["firmware"]},
                    "images": {"type": "array", "items": obj(&[("oui", s()), ("product_class", s()),
                        ("hardware_version", s()), ("file_id", s()), ("version", s()),
                        ("from_versions", json!({"type": "array", "items": s()})),
                        ("steps", json!({"type": "array",
                            "description": "intermediate images (stepping stones) in upgrade order; a device on a version one applies from gets it first, then each following one, then this image, each confirmed by the version reported at the next Inform",
                            "items": {"type": "object", "required": ["file_id", "from_versions"], "properties": {
                                "file_id": s(), "version": s(),
                                "from_versions": {"type": "array", "items": s(), "minItems": 1}}}}))])}}},
                {"type": "object", "required": ["type", "images"], "properties": {
                    "type": {"type": "string", "enum": ["phone_firmware"]},
                    "images": {"type": "array", "items": {"type": "object",
                        "required": ["vendor", "model", "firmware_file", "version"],
                        "description": "phones of this vendor and model get firmware_file and version in their own settings; success = a later fetch reports version",
                        "properties": {"vendor": s(), "model": s(), "firmware_file": s(), "version": s(),
                            "from_versions": {"type": "array", "items": s()}}}}}},
                {"type": "object", "required": ["type", "task"], "properties": {
                    "type": {"type": "string", "enum": ["task"]}, "task": r("TaskSpec")}}]}),
    );
    put(
        "CampaignInput",
        json!({"type": "object", "required": ["name", "target", "action"], "properties": {
            "name": s(),
            "target": obj(&[("query", s()), ("devices", json!({"type": "array", "items": s()})),
                ("exclude", json!({"type": "array", "items": s()})), ("reevaluate", b())]),
            "action": r("CampaignAction"),
            "schedule": obj(&[("start_at", ni()), ("end_at", ni()),
                ("windows", json!({"type": "array", "items": window.clone()})),
                ("disruptive_windows", json!({"type": "array", "items": window})),
                ("wake", json!({"type": "string", "enum": ["inform", "connection_request"]}))]),
            "pacing": obj(&[("max_in_flight", i()), ("max_starts_per_minute", i()), ("confirm_timeout_secs", i()),
                ("retries", i()), ("spread", b())]),
            "waves": obj(&[("canary", size.clone()), ("sizes", json!({"type": "array", "items": size})),
                ("success_ratio", json!({"type": "number"})), ("soak_secs", i()), ("manual_approval", b())]),
            "stop_rules": json!({"type": "array", "items": obj(&[
                ("scope", json!({"type": "string", "enum": ["any", "confirmed", "unconfirmed"]})),
                ("failures", i()), ("of_last", ni())])}),
            "webhook": obj(&[("url", s())]),
        }}),
    );
    put(
        "CampaignDryRun",
        obj(&[
            ("matching", i()),
            ("compliant", i()),
            ("eligible", i()),
            ("skipped", i()),
            (
                "models",
                json!({"type": "object", "additionalProperties": obj(&[
                ("matching", i()), ("compliant", i()), ("eligible", i()), ("skipped", i())])}),
            ),
            (
                "overlapping",
                json!({"type": "array", "items": {"type": "array"}}),
            ),
            ("waves", json!({"type": "array", "items": i()})),
        ]),
    );
    put(
        "Campaign",
        obj(&[
            ("id", i()),
            ("name", s()),
            (
                "state",
                json!({"type": "string", "enum": ["draft", "running", "paused", "completed", "aborted"]}),
            ),
            ("reason", s()),
            ("current_wave", i()),
            ("awaiting_approval", b()),
            ("created_by", s()),
            ("created_at", i()),
            ("started_at", ni()),
            ("finished_at", ni()),
            ("spec", r("CampaignInput")),
            (
                "progress",
                obj(&[
                    ("totals", counts.clone()),
                    (
                        "waves",
                        json!({"type": "object", "additionalProperties": counts.clone()}),
                    ),
                    (
                        "models",
                        json!({"type": "object", "additionalProperties": counts}),
                    ),
                    ("rate_per_minute", json!({"type": "number"})),
                    ("eta", ni()),
                ]),
            ),
            ("dry_run", r("CampaignDryRun")),
        ]),
    );
    put("CampaignPage", page("Campaign"));
    put(
        "CampaignDevice",
        obj(&[
            ("device_id", s()),
            ("model", s()),
            ("wave", i()),
            ("state", s()),
            ("attempts", i()),
            ("task_id", ni()),
            ("from_version", s()),
            ("target_version", s()),
            ("started_at", ni()),
            ("finished_at", ni()),
            ("last_error", s()),
            ("step", i()),
            ("steps", i()),
            ("step_version", s()),
        ]),
    );
    put("CampaignDevicePage", page("CampaignDevice"));
    put(
        "CampaignEvent",
        obj(&[
            ("id", i()),
            ("at", i()),
            ("device_id", s()),
            ("kind", s()),
            ("detail", s()),
        ]),
    );
    put("CampaignEventPage", page("CampaignEvent"));
    put("CampaignControl", obj(&[("reason", s())]));
    put(
        "EventStream",
        json!({"type": "string", "description": "text/event-stream: `event: progress` with a Campaign as data"}),
    );
    put(
        "ScheduleInput",
        json!({"type": "object", "required": ["name", "query", "cron", "action"], "properties": {
            "name": s(),
            "query": json!({"type": "string", "description": "a device query, evaluated at each fire"}),
            "cron": json!({"type": "string", "description": "6 fields, seconds first, e.g. \"0 0 3 * * Sun\""}),
            "time_zone": json!({"type": "string", "description": "IANA, e.g. Europe/Berlin (default UTC)"}),
            "action": json!({"description": SEALED_TASK, "oneOf": [
                {"type": "object", "required": ["type", "task"], "properties": {
                    "type": {"type": "string", "enum": ["task"]}, "task": r("TaskSpec")}},
                {"type": "object", "required": ["type", "keep"], "properties": {
                    "type": {"type": "string", "enum": ["backup"]},
                    "file_type": {"type": "string", "description": "default \"1 Vendor Configuration File\""},
                    "keep": {"type": "integer", "description": "backups kept per device (1-1000)"}}}]}),
            "wake": json!({"type": "string", "enum": ["inform", "connection_request"]}),
            "expires_in_secs": json!({"type": "integer", "description": "task deadline; default: the next fire"}),
            "max_delay_secs": json!({"type": "integer", "description": "skip a fire later than this (default 3600)"}),
            "enabled": b(),
        }}),
    );
    put(
        "Schedule",
        obj(&[
            ("id", i()),
            ("name", s()),
            ("enabled", b()),
            ("next_fire_at", ni()),
            ("last_fire_at", ni()),
            ("last_result", s()),
            ("created_by", s()),
            ("created_at", i()),
            ("updated_at", i()),
            ("spec", r("ScheduleInput")),
        ]),
    );
    put("SchedulePage", page("Schedule"));
    put(
        "BackupDiff",
        obj(&[
            ("from", s()),
            ("to", s()),
            ("identical", b()),
            ("diff", s()),
        ]),
    );
    voip_schemas(&mut put);
    super::phones::schemas(&mut put);
    for (p, item) in [
        ("DevicePage", "Device"),
        ("ParameterPage", "Parameter"),
        ("TaskPage", "Task"),
        ("SessionPage", "Session"),
        ("FaultPage", "Fault"),
        ("FilePage", "File"),
        ("TokenPage", "Token"),
        ("UserPage", "User"),
        ("AuditPage", "AuditEvent"),
        ("LinePage", "Line"),
        ("PresetPage", "Preset"),
    ] {
        put(p, page(item));
    }
    Value::Object(m)
}

/// Schemas of VoIP lines and presets.
fn voip_schemas(put: &mut impl FnMut(&str, Value)) {
    let ns = || json!({"type": "string", "nullable": true});
    let account_fields = [
        ("enabled", b()),
        ("directory_number", s()),
        ("sip_user", s()),
        ("auth_user", s()),
        ("uri", s()),
        ("display_name", s()),
        ("registrar", s()),
        ("registrar_port", i()),
        ("proxy", s()),
        ("proxy_port", i()),
        ("outbound_proxy", s()),
        ("outbound_proxy_port", i()),
        (
            "transport",
            json!({"type": "string", "enum": ["UDP", "TCP", "TLS", "SCTP"]}),
        ),
        ("user_agent_domain", s()),
        ("user_agent_port", i()),
        ("codecs", json!({"type": "array", "items": s()})),
        (
            "dtmf_mode",
            json!({"type": "string", "enum": ["InBand", "RFC2833", "RFC4733", "SIPInfo"]}),
        ),
        ("voicemail_number", s()),
        ("register_expires", i()),
    ];
    put("Account", obj(&account_fields));
    let mut input = account_fields.to_vec();
    input.push((
        "password",
        json!({"type": "string", "writeOnly": true,
            "description": "Write-only: never returned. Absent on a replace: the stored one is kept."}),
    ));
    put("LineAccount", obj(&input));
    put(
        "Line",
        obj(&[
            ("device_id", s()),
            ("line", i()),
            ("account", r("Account")),
            ("password_set", b()),
            (
                "status",
                json!({"type": "string", "enum": ["pending", "applied", "registered", "registering", "error", "disabled", "unknown", "fault"]}),
            ),
            ("device_status", ns()),
            ("status_at", ni()),
            ("pending", b()),
            ("revision", i()),
            ("applied_revision", i()),
            ("layout", ns()),
            ("status_path", ns()),
            ("unmapped", json!({"type": "array", "items": s()})),
            ("mapping", json!({"type": "object", "nullable": true})),
            ("fault", ns()),
            ("updated_at", i()),
            ("connection_request", r("ConnectionRequestResult")),
        ]),
    );
    put(
        "Csv",
        json!({"type": "string", "description": "CSV text; first line is the header"}),
    );
    put(
        "LineImportReport",
        obj(&[
            ("dry_run", b()),
            ("imported", i()),
            (
                "rejected",
                json!({"type": "array", "items": obj(&[
                    ("line", i()),
                    ("field", s()),
                    ("message", s()),
                    ("device_id", ns()),
                    ("voip_line", ni()),
                ])}),
            ),
        ]),
    );
    let preset_fields = [
        ("name", s()),
        (
            "filter",
            json!({"type": "string", "description": "A device query, as q of GET /devices"}),
        ),
        ("priority", i()),
        (
            "events",
            json!({"type": "array", "items": {"type": "string", "enum": crate::domain::presets::EVENTS}}),
        ),
        (
            "values",
            json!({"type": "array", "items": obj(&[
                ("name", s()),
                ("value", json!({"type": "string", "description": "The value of a secret parameter (a password, key or passphrase) is sealed at rest and shown as \"***\"; \"***\" given back keeps the stored one"})),
                ("type", s()),
            ])}),
        ),
        (
            "lines",
            json!({"type": "array", "items": obj(&[("line", i()), ("account", r("Account"))])}),
        ),
        (
            "periodic_inform",
            obj(&[("enable", b()), ("interval", i())]),
        ),
        ("firmware", obj(&[("version", s()), ("file_id", s())])),
    ];
    put("PresetInput", obj(&preset_fields));
    let mut preset = preset_fields.to_vec();
    preset.extend([
        ("revision", i()),
        ("created_at", i()),
        ("updated_at", i()),
        ("connection_requests", i()),
    ]);
    put("Preset", obj(&preset));
    let masked = json!({"type": "string", "description": "\"***\" for a secret parameter"});
    let applied = obj(&[
        ("preset", s()),
        ("revision", i()),
        ("value", masked.clone()),
        ("at", i()),
    ]);
    let refused = obj(&[
        ("preset", s()),
        ("revision", i()),
        ("value", masked),
        ("code", i()),
        ("reason", s()),
        ("at", i()),
    ]);
    put(
        "DevicePresets",
        obj(&[
            ("device_id", s()),
            (
                "applied",
                json!({"type": "object", "additionalProperties": applied}),
            ),
            (
                "refused",
                json!({"type": "object", "additionalProperties": refused}),
            ),
            (
                "converged",
                json!({"type": "array", "items": obj(&[
                    ("name", s()),
                    ("converged_revision", i()),
                    ("current_revision", ni()),
                    ("up_to_date", b()),
                ])}),
            ),
            ("events", json!({"type": "array", "items": s()})),
        ]),
    );
}

fn content_of(schema: &str) -> Value {
    if schema == "Csv" {
        json!({ "text/csv": { "schema": r("Csv") } })
    } else if schema == "EventStream" {
        json!({ "text/event-stream": { "schema": r("EventStream") } })
    } else if schema == "Binary" {
        json!({ "application/octet-stream": { "schema": r("Binary") } })
    } else {
        json!({ "application/json": { "schema": r(schema) } })
    }
}

fn operation(rt: &RouteDoc) -> Value {
    let mut params = Vec::new();
    for seg in rt.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            params.push(json!({"name": name, "in": "path", "required": true, "schema": s()}));
        }
    }
    for q in rt.query {
        params.push(json!({"name": q, "in": "query", "required": false, "schema": s()}));
    }
    let err = |d: &str| json!({"description": d, "content": content_of("Error")});
    let mut responses = Map::new();
    if rt.response == "Empty" {
        responses.insert("204".into(), json!({"description": "done"}));
    } else {
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": content_of(rt.response)}),
        );
        if rt.method == "post" || rt.method == "put" {
            responses.insert(
                "201".into(),
                json!({"description": "created", "content": content_of(rt.response)}),
            );
            responses.insert(
                "202".into(),
                json!({"description": "accepted, not finished yet", "content": content_of(rt.response)}),
            );
        }
    }
    responses.insert("400".into(), err("invalid input"));
    responses.insert("401".into(), err("no or unknown token"));
    responses.insert("403".into(), err("the token's role is too low"));
    responses.insert("404".into(), err("not found"));
    let op_id = format!(
        "{}{}",
        rt.method,
        rt.path
            .split('/')
            .filter(|x| !x.is_empty())
            .map(|x| {
                let x = x.trim_matches(['{', '}']);
                let mut c = x.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
            .replace(['.', '_'], "")
    );
    let mut op = json!({
        "summary": rt.summary,
        "operationId": op_id,
        "parameters": params,
        "responses": responses,
        "security": [{ "bearer": [] }],
        "x-required-role": rt.role.as_str(),
    });
    if let Some(body) = rt.body {
        op["requestBody"] = json!({ "required": true, "content": content_of(body) });
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for rt in ROUTES {
        let entry = paths
            .entry(format!("{PREFIX}{}", rt.path))
            .or_insert_with(|| json!({}));
        entry[rt.method] = operation(rt);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ferroacs admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Devices, tasks (one CWMP RPC each), files, VoIP lines, presets, campaigns and administration. \
                Every request needs `Authorization: Bearer <token>`; roles: viewer < operator < admin."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        }
    })
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_reference_resolves() {
        let doc = document();
        for rt in ROUTES {
            let p = format!("{PREFIX}{}", rt.path);
            assert!(doc["paths"][&p][rt.method].is_object(), "{} {p}", rt.method);
        }
        let text = doc.to_string();
        let schemas = &doc["components"]["schemas"];
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                schemas[&name].is_object() || schemas[&name].is_string(),
                "{name}"
            );
        }
    }
}
