//! The provisioning server for phones, on the CWMP listener under `/prov/`:
//! `GET`/`HEAD /prov/{token}/{file}` serves a phone's file (the token is the phone's own
//! secret, a one-time activation code, or the site token of `phones.site_token`; the
//! literal `auth` asks for the phone's HTTP Digest credentials instead, and `cert` for the
//! phone's TLS client certificate, classified per connection in `http::cwmp::on_connect`),
//! `PUT /prov/{token}/{file}` (or `/prov/auth/{file}`, `/prov/cert/{file}`) takes the
//! override and log files Polycom phones upload (size-capped, stored with the phone, only
//! for the phone's own MAC). What is served and refused is decided in `domain::phones`;
//! this module moves bytes.
//! Responses carry `Cache-Control: no-store`: files with passwords must not sit in proxies.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use crate::domain::phones::{self, Access, CertIdentity, FetchRequest, Fetched};
use crate::state::AppState;

/// In a scope with a static prefix, like the file server's routes (see `fileserver`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/prov")
            .route("/{token}/{file}", web::get().to(get))
            .route("/{token}/{file}", web::head().to(get))
            .route("/{token}/{file}", web::put().to(put)),
    );
}

/// The answer on `/prov/cert/` without a phone certificate that names a MAC.
const CERT_REQUIRED: &str =
    "this URL needs the phone's client certificate (HTTPS, signed by a CA of \
     phones.client_ca, naming the phone's MAC)";

fn plain(status: StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!("{msg}\n"))
}

fn request(state: &AppState, req: &HttpRequest, token: &str, file: &str) -> FetchRequest {
    let conn = req.connection_info();
    let base_url = format!(
        "{}://{}{}/{}",
        conn.scheme(),
        conn.host(),
        phones::PREFIX,
        token
    );
    let tls = conn.scheme() == "https";
    drop(conn);
    let access = if token == phones::DIGEST_SEGMENT {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::auth::digest::parse_authorization(v).ok())
            .and_then(|a| match a {
                crate::auth::digest::Authorization::Digest(d) => Some(Box::new(d)),
                crate::auth::digest::Authorization::Basic { .. } => None,
            });
        Access::Digest {
            auth,
            method: req.method().as_str().to_string(),
            uri: req.uri().to_string(),
        }
    } else if token == phones::CERT_SEGMENT {
        use crate::http::tls::ClientCert;
        let id = match req.conn_data::<ClientCert>() {
            Some(ClientCert::Phone(Ok(mac))) => CertIdentity::Mac(*mac),
            Some(ClientCert::Phone(Err(e))) => CertIdentity::NoMac(e.to_string()),
            _ => CertIdentity::Missing,
        };
        Access::Certificate(id)
    } else {
        Access::Token(token.to_string())
    };
    FetchRequest {
        access,
        file: file.to_string(),
        source: req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        protocol: if tls { "https" } else { "http" },
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        query_firmware: crate::phones::firmware_from_query(req.query_string()),
        base_url,
        now: state.now(),
    }
}

async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (token, file) = path.into_inner();
    let r = request(&state, &req, &token, &file);
    let fetched = match phones::fetch(&state.store, &state.config, &state.services.phones, r).await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "phone fetch failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    match fetched {
        Fetched::File(f) => HttpResponse::Ok()
            .content_type(f.content_type)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(f.bytes.clone()),
        Fetched::Upload(data) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(data),
        Fetched::BadName(why) => plain(StatusCode::BAD_REQUEST, why),
        Fetched::NotFound => plain(StatusCode::NOT_FOUND, "no such file"),
        Fetched::Forbidden => plain(
            StatusCode::FORBIDDEN,
            "this phone's files are served to the network of its first fetch only",
        ),
        Fetched::Unauthorized { stale } => HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                state.services.phones.challenge(state.now(), stale),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body("this URL needs the phone's HTTP Digest credentials\n"),
        Fetched::CertificateRequired => plain(StatusCode::FORBIDDEN, CERT_REQUIRED),
        Fetched::TooManyFailures => HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "60"))
            .content_type("text/plain; charset=utf-8")
            .body("too many failed requests from this address; try again later\n"),
    }
}

async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    mut payload: web::Payload,
) -> HttpResponse {
    let (token, file) = path.into_inner();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let r = request(&state, &req, &token, &file);
    // Read only once the phone is known (its token, Digest credentials or certificate):
    // too large, nothing is stored and the domain records the refusal.
    let read = |max: usize| async move {
        if declared.is_some_and(|n| n > max as u64) {
            return phones::UploadBody::TooLarge;
        }
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let Ok(chunk) = chunk else {
                return phones::UploadBody::Broken;
            };
            if body.len() + chunk.len() > max {
                return phones::UploadBody::TooLarge;
            }
            body.extend_from_slice(&chunk);
        }
        phones::UploadBody::Whole(body)
    };
    let up = match phones::upload(
        &state.store,
        &state.config,
        &state.services.phones,
        &r,
        read,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "phone upload failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    match up.status {
        201 => plain(StatusCode::CREATED, "stored"),
        400 => plain(StatusCode::BAD_REQUEST, "bad file name"),
        401 => HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                state.services.phones.challenge(state.now(), up.stale),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body("this URL needs the phone's HTTP Digest credentials\n"),
        403 => plain(StatusCode::FORBIDDEN, CERT_REQUIRED),
        405 => plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "phones upload only their override and log files",
        ),
        408 => plain(StatusCode::REQUEST_TIMEOUT, "the upload was interrupted"),
        413 => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "larger than phones.max_upload_bytes ({})",
                state.config.phones.max_upload_bytes
            ),
        ),
        429 => plain(StatusCode::TOO_MANY_REQUESTS, "too many failed requests"),
        _ => plain(StatusCode::NOT_FOUND, "no such phone"),
    }
}
