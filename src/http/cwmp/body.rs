//! Reading a request body in two steps, so that nothing is inflated for a peer that has not
//! proved who it is:
//!
//! 1. [`read_raw`]: the body as sent (compressed or not), at most `limit` bytes, within the
//!    body timeout. It is read even for a request that will be challenged, because a CPE
//!    resends on the same connection after a 401 and needs its first body consumed.
//! 2. [`decode`]: gzip/deflate decoded into a buffer that stops growing as soon as the
//!    decoded size passes `limit` (one [`CHUNK`] at most beyond it): a compression bomb costs
//!    `limit` + one chunk of memory and the CPU to inflate that much, never more.

use std::io::Read;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

/// Output is produced in chunks of this size.
pub const CHUNK: usize = 16 * 1024;

/// Bodies larger than this (compressed) are inflated on the blocking pool.
const INLINE_INFLATE: usize = 64 * 1024;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// zlib-wrapped deflate (RFC 9110 `deflate`).
    Deflate,
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded size passed the limit.
    TooLarge,
    /// Not valid gzip/deflate data.
    Corrupt(String),
}

/// The request's `Content-Encoding`; 415 for anything but gzip, deflate or none.
pub fn encoding(req: &HttpRequest) -> Result<Encoding, HttpResponse> {
    let value = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        other => Err(HttpResponse::build(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "unsupported Content-Encoding \"{other}\"; use gzip, deflate or none\n"
            ))),
    }
}

/// Read the body as sent, at most `limit` bytes, all of it within `timeout` when given
/// (every body also fails when it stops arriving for the listener's body timeout, see
/// `http::limits`).
pub async fn read_raw(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Option<std::time::Duration>,
) -> Result<Vec<u8>, HttpResponse> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    // Room for the announced body up front (a GetParameterNamesResponse is tens of KB),
    // but never more than PRESIZE_MAX on a sender's word alone.
    let presize = announced.map_or(0, |len| len.min(PRESIZE_MAX as u64) as usize);
    let Some(timeout) = timeout else {
        return collect(payload, limit, presize).await;
    };
    match tokio::time::timeout(timeout, collect(payload, limit, presize)).await {
        Ok(r) => r,
        Err(_) => Err(crate::http::limits::body_timeout_response()),
    }
}

/// The most [`read_raw`] reserves before the body's bytes arrive.
const PRESIZE_MAX: usize = 256 * 1024;

async fn collect(
    mut payload: web::Payload,
    limit: usize,
    presize: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let mut out = Vec::with_capacity(presize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| crate::http::limits::payload_error_response(&e))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decode `raw` (bounded by `limit` decoded bytes); large bodies off the async executor.
pub async fn decode(raw: Vec<u8>, enc: Encoding, limit: usize) -> Result<Vec<u8>, HttpResponse> {
    let result = if enc == Encoding::Identity {
        return if raw.len() > limit {
            Err(too_large(limit))
        } else {
            Ok(raw)
        };
    } else if raw.len() <= INLINE_INFLATE {
        inflate(&raw, enc, limit)
    } else {
        match web::block(move || inflate(&raw, enc, limit)).await {
            Ok(r) => r,
            Err(_) => Err(DecodeError::Corrupt("decoder stopped".into())),
        }
    };
    result.map_err(|e| match e {
        DecodeError::TooLarge => too_large(limit),
        DecodeError::Corrupt(why) => HttpResponse::build(StatusCode::BAD_REQUEST)
            .content_type("text/plain; charset=utf-8")
            .body(format!("cannot decode the {enc:?} request body: {why}\n")),
    })
}

/// Both steps for a request already authenticated (inside a session).
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let enc = encoding(req)?;
    let raw = read_raw(req, payload, limit, None).await?;
    decode(raw, enc, limit).await
}

/// Inflate `raw` into a vector that never holds more than `limit` + [`CHUNK`] bytes.
pub fn inflate(raw: &[u8], enc: Encoding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    inflate_into(raw, enc, limit, &mut out).map(|()| out)
}

/// [`inflate`] into `out`; on [`DecodeError::TooLarge`] `out` holds what was produced
/// before stopping (at most `limit` + [`CHUNK`] bytes).
pub fn inflate_into(
    raw: &[u8],
    enc: Encoding,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let mut reader: Box<dyn Read + '_> = match enc {
        Encoding::Identity => Box::new(raw),
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(raw)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(raw)),
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        };
        if out.capacity() < out.len() + n {
            // Grow geometrically, but never past limit + one chunk.
            let want = (out.capacity() * 2).clamp(CHUNK, limit.saturating_add(CHUNK));
            out.reserve_exact(want.max(out.len() + n) - out.len());
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > limit {
            return Err(DecodeError::TooLarge);
        }
    }
}

pub fn too_large(limit: usize) -> HttpResponse {
    HttpResponse::build(StatusCode::PAYLOAD_TOO_LARGE)
        .force_close()
        .content_type("text/plain; charset=utf-8")
        .body(format!("request body larger than {limit} bytes\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip stream of `mib` MiB of zeros, built by repeating one compressed block: cheap
    /// to make, about 1 KiB per MiB. The trailer is not valid (never reached).
    pub fn gzip_bomb(mib: usize) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        enc.flush().unwrap();
        let block = enc.get_ref().clone();
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for _ in 0..mib {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&[3, 0]);
        out.extend_from_slice(&[0; 8]);
        out
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip_bomb(1024);
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let limit = 256 * 1024;
        let mut out = Vec::new();
        assert_eq!(
            inflate_into(&bomb, Encoding::Gzip, limit, &mut out),
            Err(DecodeError::TooLarge)
        );
        // Bytes produced: just past the limit, never more than one chunk beyond.
        assert!(
            out.len() > limit && out.len() <= limit + CHUNK,
            "{}",
            out.len()
        );
        assert!(out.capacity() <= limit + CHUNK, "{}", out.capacity());
    }

    #[test]
    fn normal_bodies_decode() {
        let text = b"<soap:Envelope>hello</soap:Envelope>".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(inflate(&gz, Encoding::Gzip, 1 << 20).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(inflate(&z, Encoding::Deflate, 1 << 20).unwrap(), text);
        // Exactly at the limit is fine; one byte less is not.
        assert!(inflate(&gz, Encoding::Gzip, text.len()).is_ok());
        assert_eq!(
            inflate(&gz, Encoding::Gzip, text.len() - 1),
            Err(DecodeError::TooLarge)
        );
        assert!(matches!(
            inflate(b"not gzip", Encoding::Gzip, 100),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
