//! The file server devices use, on the CWMP listener: `GET /files/{id}` for Download and
//! ScheduleDownload (signed, expiring URLs; `Range`, `ETag`, `If-None-Match`), and
//! `PUT`/`POST /uploads/{device}` for Upload (signed; size-capped; the file is attached to
//! the device). Routes are registered before the CWMP catch-all.

use std::io::SeekFrom;

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::domain::files::{self, NewFileMeta};
use crate::domain::tasks;
use crate::state::AppState;
use crate::store::files::FileRow;

/// The routes share the CWMP listener, whose endpoint is the default service: each sits in a
/// scope with a static prefix, so a CPE's POST is turned away by a prefix comparison, not by
/// matching every dynamic pattern's regex in turn. A request a scope takes but none of its
/// routes accepts (another method, more segments) still reaches the default service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `route` puts the method on the resource: another method falls through, as before.
    cfg.service(
        web::scope("/files")
            .route("/{id}", web::get().to(download))
            .route("/{id}", web::head().to(download)),
    )
    .service(
        web::scope("/uploads")
            .route("/{device}", web::put().to(upload))
            .route("/{device}", web::post().to(upload)),
    );
}

#[derive(Deserialize)]
pub struct Signed {
    d: Option<String>,
    e: Option<i64>,
    /// Nonce of a single-use (upload) link.
    n: Option<String>,
    s: Option<String>,
}

fn plain(status: StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{msg}\n"))
}

/// Parse a single `bytes=` range against `len`. `Ok(None)`: no (usable) Range header.
fn parse_range(h: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: serve the whole file, which RFC 9110 allows.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    })
}

async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<Signed>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let now_secs = state.now() / 1000;
    let (Some(d), Some(e), Some(s)) = (&q.d, q.e, &q.s) else {
        return plain(
            StatusCode::FORBIDDEN,
            "this file needs a signed link (the Download URL ferroacs gives a device)",
        );
    };
    if !state.services.signer.check_download(&id, d, e, s, now_secs) {
        return plain(StatusCode::FORBIDDEN, "invalid or expired link");
    }
    let fid = id.clone();
    let row = match state.store.run(move |st| st.get_file(&fid)).await {
        Ok(Some(r)) => r,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => {
            tracing::warn!(error = %e, "file lookup failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    };
    serve_file(&req, &state, &row).await
}

/// Stream a stored file with ETag, If-None-Match and single-range support.
pub async fn serve_file(req: &HttpRequest, state: &AppState, row: &FileRow) -> HttpResponse {
    let etag = format!("\"{}\"", row.sha256);
    let inm = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if etag_matches(inm, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    let Ok(p) = state.services.files.path_of(&row.id) else {
        return plain(StatusCode::NOT_FOUND, "no such file");
    };
    let mut file = match tokio::fs::File::open(&p).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %row.id, path = %p.display(), error = %e, "stored file is missing");
            return plain(StatusCode::NOT_FOUND, "the file's contents are missing");
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file"),
    };
    let range_h = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, count) = match parse_range(range_h, len) {
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        Ok(None) => (StatusCode::OK, 0, len),
        Err(()) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish()
        }
    };
    let mut b = HttpResponse::build(status);
    b.insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                row.name.replace(['"', '\\', '\r', '\n'], "_")
            ),
        ));
    if status == StatusCode::PARTIAL_CONTENT {
        b.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        ));
    }
    if req.method() == Method::HEAD {
        // The length of what GET would send: actix writes Content-Length from the body's
        // declared size (and sends no body for HEAD), so declare it without any bytes.
        let nothing = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        return b.body(SizedStream::new(count, nothing));
    }
    if start > 0 && file.seek(SeekFrom::Start(start)).await.is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
    }
    let stream = futures_util::stream::unfold((file, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    b.body(SizedStream::new(count, stream))
}

async fn upload(
    path: web::Path<String>,
    q: web::Query<Signed>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let device_id = path.into_inner();
    let now = state.now();
    let (Some(e), Some(s)) = (q.e, &q.s) else {
        return plain(
            StatusCode::FORBIDDEN,
            "uploads need a signed link (the Upload URL ferroacs gives a device)",
        );
    };
    let nonce = q.n.clone().unwrap_or_default();
    if !state
        .services
        .signer
        .check_upload(&device_id, e, &nonce, s, now / 1000)
    {
        return plain(StatusCode::FORBIDDEN, "invalid or expired link");
    }
    // A link is good for one upload, on whichever node it arrives: claim it first.
    let link = format!("upload:{s}");
    let (l, expires_ms) = (link.clone(), e.saturating_mul(1000));
    match state
        .store
        .run(move |st| st.claim_link(&l, expires_ms, now))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(device = %device_id, "a used upload link was presented again");
            return plain(StatusCode::FORBIDDEN, "this upload link was used already");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record an upload link");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    }
    let resp = receive_upload(&state, &device_id, payload, now).await;
    if !resp.status().is_success() && resp.status() != StatusCode::NOT_FOUND {
        // Nothing was stored: the device may try again with the same link.
        let l = link.clone();
        if let Err(e) = state.store.run(move |st| st.release_link(&l)).await {
            tracing::warn!(error = %e, "cannot release an upload link");
        }
    }
    resp
}

async fn receive_upload(
    state: &AppState,
    device_id: &str,
    mut payload: web::Payload,
    now: i64,
) -> HttpResponse {
    let device_id = device_id.to_string();
    let mut w = match state.services.files.writer().await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot store an upload");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file");
        }
    };
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                w.abort().await;
                if crate::http::limits::is_timeout(&e) {
                    return crate::http::limits::body_timeout_response();
                }
                return plain(StatusCode::BAD_REQUEST, "the upload was interrupted");
            }
        };
        if let Err(e) = w.write(&chunk).await {
            w.abort().await;
            return match e {
                crate::error::Error::Invalid { message, .. } => {
                    plain(StatusCode::PAYLOAD_TOO_LARGE, &message)
                }
                _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file"),
            };
        }
    }
    let (id, size, sha) = match w.finish(&state.services.files).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "cannot store an upload");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file");
        }
    };
    // The file type of the Upload task in progress, when there is one.
    let dev = device_id.clone();
    let file_type = state
        .store
        .run(move |st| st.device_tasks_in(&dev, &[tasks::TaskStatus::Running]))
        .await
        .ok()
        .and_then(|rows| {
            rows.into_iter()
                .filter(|r| r.rpc == "Upload")
                .find_map(|r| match serde_json::from_str(&r.args) {
                    Ok(tasks::TaskSpec::Upload { file_type, .. }) => Some(file_type),
                    _ => None,
                })
        })
        .unwrap_or_else(|| "upload".to_string());
    let meta = NewFileMeta {
        name: format!("{device_id}-{now}"),
        file_type,
        version: String::new(),
        device_id: Some(device_id.clone()),
    };
    match files::register(&state.store, meta, id.clone(), size, sha, now).await {
        Ok(_) => {
            tracing::info!(device = %device_id, file = %id, size, "device upload stored");
            HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body("stored\n")
        }
        Err(e) => {
            let _ = state.services.files.remove(&id).await;
            tracing::warn!(device = %device_id, error = %e, "cannot record a device upload");
            plain(StatusCode::NOT_FOUND, "unknown device")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert!(etag_matches(Some("W/\"a\", \"b\""), "\"b\""));
        assert!(!etag_matches(Some("\"a\""), "\"b\""));
    }
}
