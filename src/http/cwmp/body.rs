//! Reading a request body: gzip/deflate decoding and size limits (applied to the decoded
//! size, so a compression bomb stops at the limit).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

/// Read the whole body, at most `limit` bytes after decoding.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(
        encoding.as_str(),
        "" | "identity" | "gzip" | "x-gzip" | "deflate"
    ) {
        return Err(HttpResponse::build(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "unsupported Content-Encoding \"{encoding}\"; use gzip, deflate or none\n"
            )));
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if encoding.is_empty() && len > limit {
            return Err(too_large(limit));
        }
    }
    let mut stream =
        actix_http::encoding::Decoder::from_headers(payload.into_inner(), req.headers());
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            HttpResponse::build(StatusCode::BAD_REQUEST)
                .content_type("text/plain; charset=utf-8")
                .body(format!("cannot read the request body: {e}\n"))
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn too_large(limit: usize) -> HttpResponse {
    HttpResponse::build(StatusCode::PAYLOAD_TOO_LARGE)
        .insert_header((header::CONNECTION, "close"))
        .content_type("text/plain; charset=utf-8")
        .body(format!("request body larger than {limit} bytes\n"))
}
