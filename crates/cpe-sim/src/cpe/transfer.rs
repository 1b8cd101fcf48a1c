//! File transfers ordered by Download, ScheduleDownload and Upload, performed with the
//! simulator's own HTTP client (Basic or Digest with the Username/Password of the RPC), and
//! the mapping of their failures to TransferComplete fault codes.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::device::QueuedTransfer;
use super::http::{ClientOptions, HttpClient};
use super::xml;
use super::SimError;

/// The outcome of one transfer, as reported in TransferComplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferResult {
    /// CommandKey of the RPC that ordered it.
    pub command_key: String,
    /// Download (true) or Upload.
    pub is_download: bool,
    /// The URL used.
    pub url: String,
    /// FileType.
    pub file_type: String,
    /// 0 on success, else a TransferComplete fault code (9010-9020).
    pub fault_code: u32,
    /// Fault string (empty on success).
    pub fault_string: String,
    /// StartTime.
    pub start: String,
    /// CompleteTime.
    pub complete: String,
    /// Bytes moved.
    pub bytes: usize,
    /// Hex SHA-256 of the bytes moved.
    pub sha256: String,
}

/// A downloaded file kept by the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    /// CommandKey of the Download.
    pub command_key: String,
    /// FileType.
    pub file_type: String,
    /// Source URL.
    pub url: String,
    /// TargetFileName.
    pub target_file_name: String,
    /// Size in bytes.
    pub size: usize,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// The content (empty when `Behavior::keep_download_bytes` is off).
    pub bytes: Vec<u8>,
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn client_for(
    url: &str,
    user: &str,
    pass: &str,
    timeout: Duration,
) -> Result<HttpClient, SimError> {
    let opts = ClientOptions {
        keep_alive: true,
        cookies: true,
        timeout,
        ..ClientOptions::default()
    };
    HttpClient::new(url, opts, user, pass)
}

fn fault_for(e: &SimError, general: u32) -> (u32, String) {
    match e {
        SimError::AuthFailed { .. } => (9012, xml::fault_text(9012).into()),
        SimError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            (9015, xml::fault_text(9015).into())
        }
        SimError::Timeout(..) | SimError::Io { .. } | SimError::Http { .. } => {
            (9017, format!("{}: {e}", xml::fault_text(9017)))
        }
        _ => (general, format!("{}: {e}", xml::fault_text(general))),
    }
}

/// Fetches the file of a Download. `Err` carries (fault code, fault string).
pub async fn download(
    q: &QueuedTransfer,
    timeout: Duration,
    check_size: bool,
) -> Result<Vec<u8>, (u32, String)> {
    let mut c =
        client_for(&q.url, &q.username, &q.password, timeout).map_err(|e| fault_for(&e, 9010))?;
    let resp = c.get(None).await.map_err(|e| fault_for(&e, 9010))?;
    match resp.status {
        200..=299 => {}
        401 => return Err((9012, xml::fault_text(9012).into())),
        s => {
            return Err((
                9016,
                format!("{}: HTTP {s} from {}", xml::fault_text(9016), q.url),
            ))
        }
    }
    if check_size && q.file_size > 0 && resp.body.len() as u64 != q.file_size {
        return Err((
            9018,
            format!(
                "{}: FileSize {} but {} bytes received",
                xml::fault_text(9018),
                q.file_size,
                resp.body.len()
            ),
        ));
    }
    Ok(resp.body)
}

/// Sends `content` for an Upload with `method` (PUT or POST).
pub async fn upload(
    q: &QueuedTransfer,
    content: &[u8],
    method: &str,
    timeout: Duration,
) -> Result<(), (u32, String)> {
    let mut c =
        client_for(&q.url, &q.username, &q.password, timeout).map_err(|e| fault_for(&e, 9011))?;
    let resp = c
        .request(
            method,
            None,
            &[("Content-Type", "application/octet-stream")],
            Some(content),
            false,
        )
        .await
        .map_err(|e| fault_for(&e, 9011))?;
    match resp.status {
        200..=299 => Ok(()),
        401 => Err((9012, xml::fault_text(9012).into())),
        s => Err((
            9011,
            format!("{}: HTTP {s} from {}", xml::fault_text(9011), q.url),
        )),
    }
}
