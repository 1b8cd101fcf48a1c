//! `/api/v1/phones...` and `/api/v1/phone_profiles...`: phones that fetch configuration
//! files (MAC, vendor, model, profile, settings), their lines (the lines of their device,
//! `phone:<mac>`; passwords write-only), their fetch log, their provisioning URL (operator:
//! it holds the phone's secret token), CSV import, and re-provision now (SIP NOTIFY
//! check-sync). A malformed MAC anywhere is a 400 naming what is wrong.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_limit, read_csv_body, Caller, ImportQuery};
use crate::domain::lines::LineInput;
use crate::domain::phones::{self, PhoneInput};
use crate::domain::usecases::{self, phones::MAX_CSV_BYTES};
use crate::http::error::ApiError;
use crate::phones::Settings;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

fn mac(s: &str) -> Result<crate::phones::Mac, ApiError> {
    Ok(phones::parse_mac("mac", s)?)
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(mac(c)?.lower()),
    };
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let items = phones::list(&state.store, cursor, limit).await?;
    let next = if items.len() as i64 == limit {
        items.last().map(|p| p.mac.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": next })))
}

pub async fn get(state: web::Data<AppState>, m: web::Path<String>) -> ApiResult {
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let view = phones::get(&state.store, mac(&m)?).await?;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<PhoneInput>,
) -> ApiResult {
    let view =
        usecases::phones::create(&state.ctx(), &caller.as_actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    m: web::Path<String>,
    body: web::Json<PhoneInput>,
) -> ApiResult {
    let (view, created) =
        usecases::phones::put(&state.ctx(), &caller.as_actor(), &m, body.into_inner()).await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

pub async fn delete(state: web::Data<AppState>, caller: Caller, m: web::Path<String>) -> ApiResult {
    usecases::phones::delete(&state.ctx(), &caller.as_actor(), &m).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<i64>,
}

pub async fn fetches(
    state: web::Data<AppState>,
    m: web::Path<String>,
    q: web::Query<LimitQuery>,
) -> ApiResult {
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let items = phones::fetches(&state.store, mac(&m)?, page_limit(q.limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": null })))
}

#[derive(Deserialize)]
pub struct SourceQuery {
    source: Option<String>,
    limit: Option<i64>,
}

pub async fn fetches_from(state: web::Data<AppState>, q: web::Query<SourceQuery>) -> ApiResult {
    let Some(source) = q.source.as_deref() else {
        return Err(crate::error::Error::invalid(
            "source",
            "give the source address: /api/v1/phone_fetches?source=192.0.2.7",
        )
        .into());
    };
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let items = phones::fetches_from(&state.store, source, page_limit(q.limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": null })))
}

pub async fn url(state: web::Data<AppState>, m: web::Path<String>) -> ApiResult {
    let urls = phones::urls(
        &state.store,
        &state.config,
        &state.services.phones,
        mac(&m)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(urls))
}

pub async fn activation_code(
    state: web::Data<AppState>,
    caller: Caller,
    m: web::Path<String>,
) -> ApiResult {
    let code = usecases::phones::activation_code(&state.ctx(), &caller.as_actor(), &m).await?;
    Ok(HttpResponse::Created().json(code))
}

#[derive(Deserialize)]
pub struct ResyncQuery {
    #[serde(default)]
    reboot: bool,
}

pub async fn resync(
    state: web::Data<AppState>,
    caller: Caller,
    m: web::Path<String>,
    q: web::Query<ResyncQuery>,
) -> ApiResult {
    let r = usecases::phones::resync(&state.ctx(), &caller.as_actor(), &m, q.reboot).await?;
    Ok(HttpResponse::Ok().json(r))
}

// A phone's lines are its device's lines: the line routes of `voip` on `phone:<mac>`.

pub async fn list_lines(state: web::Data<AppState>, m: web::Path<String>) -> ApiResult {
    let dev = phones::device_id(&mac(&m)?.lower());
    super::voip::lines_of(&state, &dev).await
}

pub async fn put_line(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i32)>,
    body: web::Json<LineInput>,
) -> ApiResult {
    let (m, n) = path.into_inner();
    let mac = mac(&m)?;
    // 404 for a phone that does not exist (its device row would be taken for a CPE's).
    phones::get(&state.store, mac).await?;
    let dev = phones::device_id(&mac.lower());
    super::voip::assign(&state, &caller, &dev, n, body.into_inner(), false).await
}

pub async fn delete_line(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i32)>,
) -> ApiResult {
    let (m, n) = path.into_inner();
    let dev = phones::device_id(&mac(&m)?.lower());
    super::voip::remove(&state, &caller, &dev, n).await
}

pub async fn import(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ImportQuery>,
    payload: web::Payload,
) -> ApiResult {
    let body = read_csv_body(payload, MAX_CSV_BYTES).await?;
    let report =
        usecases::phones::import(&state.ctx(), &caller.as_actor(), &body, q.dry_run).await?;
    Ok(HttpResponse::Ok().json(json!({
        "dry_run": q.dry_run,
        "imported": report.imported,
        "rejected": report.rejected,
        "errors": report.errors,
    })))
}

pub async fn list_profiles(state: web::Data<AppState>) -> ApiResult {
    let items = phones::list_profiles(&state.store).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": null })))
}

pub async fn put_profile(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: web::Json<Settings>,
) -> ApiResult {
    let (view, created) =
        usecases::phones::put_profile(&state.ctx(), &caller.as_actor(), &name, body.into_inner())
            .await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

pub async fn delete_profile(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    usecases::phones::delete_profile(&state.ctx(), &caller.as_actor(), &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list_model_firmware(state: web::Data<AppState>) -> ApiResult {
    let items = phones::list_model_firmware(&state.store).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": null })))
}

pub async fn put_model_firmware(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<phones::ModelFirmwareInput>,
) -> ApiResult {
    let (vendor, model) = path.into_inner();
    let (view, created) = usecases::phones::put_model_firmware(
        &state.ctx(),
        &caller.as_actor(),
        &vendor,
        &model,
        body.into_inner(),
    )
    .await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

pub async fn delete_model_firmware(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (vendor, model) = path.into_inner();
    usecases::phones::delete_model_firmware(&state.ctx(), &caller.as_actor(), &vendor, &model)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The OpenAPI schemas of these routes.
pub(super) fn schemas(put: &mut impl FnMut(&str, Value)) {
    let s = || json!({"type": "string"});
    let ns = || json!({"type": "string", "nullable": true});
    let i = || json!({"type": "integer", "format": "int64"});
    let ni = || json!({"type": "integer", "format": "int64", "nullable": true});
    let obj = |props: Value| json!({"type": "object", "properties": props});
    let vendor = json!({"type": "string", "enum": ["polycom", "yealink", "grandstream", "cisco", "snom", "gigaset"]});
    put(
        "PhoneSettings",
        obj(json!({
            "ntp_server": s(),
            "time_zone": {"type": "string", "description": "IANA zone, e.g. Europe/Berlin"},
            "language": {"type": "string", "description": "ISO 639-1 code, e.g. en"},
            "codecs": {"type": "array", "items": {"type": "string", "enum": ["PCMA", "PCMU", "G722", "G729", "opus"]}},
            "firmware_version": s(),
            "firmware_file": s(),
            "encryption_digest": {"type": "string", "enum": ["sha256", "md5"]},
            "vendor": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Keys of the vendor's own format (Grandstream P30, Yealink local_time.date_format, ...)"}
        })),
    );
    put(
        "PhoneInput",
        obj(json!({
            "mac": {"type": "string", "description": "Any case, with :, -, . or no separators (POST only)"},
            "vendor": vendor.clone(),
            "model": s(),
            "profile": s(),
            "settings": {"$ref": "#/components/schemas/PhoneSettings"},
            "tags": {"type": "array", "items": s()},
            "file_password": {"type": "string", "writeOnly": true, "description": "Write-only: encrypts its Grandstream file; empty clears it"},
            "contact": {"type": "string", "description": "host:port for SIP NOTIFY; empty clears it"},
            "digest_user": {"type": "string", "description": "HTTP Digest user of the phone for /prov/auth/ (with digest_password); empty removes its credentials"},
            "digest_password": {"type": "string", "writeOnly": true, "description": "8 to 64 characters; sealed at rest, never returned"}
        })),
    );
    put(
        "Phone",
        obj(json!({
            "mac": s(), "device_id": s(), "vendor": vendor, "model": s(), "profile": ns(),
            "settings": {"$ref": "#/components/schemas/PhoneSettings"},
            "file_password_set": {"type": "boolean"}, "digest_user": ns(),
            "activation_pending": {"type": "boolean"}, "contact": ns(), "lock_network": ns(),
            "revision": i(), "auto_registered": {"type": "boolean"},
            "last_seen": ni(), "last_source": ns(), "last_user_agent": ns(), "firmware": ns(),
            "last_file": ns(), "created_at": i(), "updated_at": i()
        })),
    );
    put(
        "PhoneFetch",
        obj(
            json!({"at": i(), "file": s(), "source": s(), "protocol": s(), "user_agent": s(), "status": i(), "firmware": ns(),
                "mac": ns(), "bytes": {"type": "integer", "nullable": true}}),
        ),
    );
    put(
        "PhoneUrls",
        obj(
            json!({"mac": s(), "vendor": s(), "url": s(), "first_file": s(),
            "dhcp": {"type": "array", "items": s()}, "tftp": ns(), "digest_url": ns(), "cert_url": ns()}),
        ),
    );
    put(
        "PhoneModelFirmwareInput",
        json!({"type": "object", "required": ["file_id"],
            "description": "a file of the file store for every phone of the model (its profile and own settings override); version defaults to the file's",
            "properties": {"file_id": s(), "version": s()}}),
    );
    put(
        "PhoneModelFirmware",
        obj(
            json!({"vendor": s(), "model": s(), "file_id": s(), "file_name": ns(), "version": s(), "updated_at": i()}),
        ),
    );
    put(
        "PhoneActivationCode",
        obj(
            json!({"mac": s(), "code": s(), "url": s(), "expires_at": i(), "gigaset_code": s(), "gigaset_url": s()}),
        ),
    );
    put(
        "PhoneResync",
        obj(
            json!({"target": s(), "outcome": {"type": "string", "enum": ["answered", "sent", "refused"]}, "status": ni()}),
        ),
    );
    put(
        "PhoneImportReport",
        obj(
            json!({"dry_run": {"type": "boolean"}, "imported": i(), "rejected": i(),
            "errors": {"type": "array", "items": obj(json!({"row": i(), "mac": ns(), "field": s(), "message": s()}))}}),
        ),
    );
    put(
        "PhoneProfile",
        obj(
            json!({"name": s(), "settings": {"$ref": "#/components/schemas/PhoneSettings"}, "revision": i(), "updated_at": i()}),
        ),
    );
    for (page, item) in [
        ("PhonePage", "Phone"),
        ("PhoneFetchPage", "PhoneFetch"),
        ("PhoneProfilePage", "PhoneProfile"),
        ("PhoneModelFirmwarePage", "PhoneModelFirmware"),
    ] {
        put(
            page,
            json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
                "next_cursor": ns()
            }}),
        );
    }
}
