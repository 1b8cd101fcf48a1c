//! Files devices download: upload (streamed to disk and hashed on the way) and delete.

use futures_util::{Stream, StreamExt};

use super::{audit_with, Actor, Ctx, Op, Target};
use crate::domain::files::{self, NewFileMeta};
use crate::error::{Error, Result};
use crate::store::files::FileRow;

/// What an uploaded file is.
#[derive(Debug, Clone, Default)]
pub struct FileUpload {
    pub name: String,
    /// The TR-069 FileType; default `1 Firmware Upgrade Image`.
    pub file_type: Option<String>,
    pub version: Option<String>,
}

/// The FileType a file gets when none is given.
pub const DEFAULT_FILE_TYPE: &str = "1 Firmware Upgrade Image";

fn check(u: &FileUpload) -> Result<NewFileMeta> {
    if u.name.is_empty() || u.name.len() > 256 || u.name.contains(['/', '\\']) {
        return Err(Error::invalid(
            "name",
            "give a file name (no slashes, at most 256 characters)",
        ));
    }
    let file_type = u
        .file_type
        .clone()
        .unwrap_or_else(|| DEFAULT_FILE_TYPE.to_string());
    if file_type.len() > 64 {
        return Err(Error::invalid(
            "file_type",
            "at most 64 characters, e.g. \"1 Firmware Upgrade Image\"",
        ));
    }
    Ok(NewFileMeta {
        name: u.name.clone(),
        file_type,
        version: u.version.clone().unwrap_or_default(),
        device_id: None,
    })
}

/// Store a file from a stream of chunks (at most `files.max_upload_bytes`).
pub async fn upload<S, B, E>(
    ctx: &Ctx<'_>,
    actor: &Actor,
    upload: &FileUpload,
    mut body: S,
) -> Result<FileRow>
where
    S: Stream<Item = std::result::Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    actor.require(Op::FileUpload)?;
    let meta = check(upload)?;
    let mut w = ctx.services.files.writer().await?;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                w.abort().await;
                return Err(Error::invalid(
                    "body",
                    format!("the upload was interrupted: {e}"),
                ));
            }
        };
        if let Err(e) = w.write(chunk.as_ref()).await {
            w.abort().await;
            return Err(e);
        }
    }
    let (id, size, sha) = w.finish(&ctx.services.files).await?;
    let detail = format!(
        "{} ({}, {size} bytes, sha256 {sha})",
        meta.name, meta.file_type
    );
    let now = ctx.now();
    let row = files::register(ctx.store, meta, id.clone(), size, sha, now).await?;
    ctx.audit(actor, Op::FileUpload, Target::File(id), Some(detail))
        .await?;
    Ok(row)
}

/// Delete a stored file (its record and its contents).
pub async fn delete(ctx: &Ctx<'_>, actor: &Actor, id: &str) -> Result<()> {
    actor.require(Op::FileDelete)?;
    let i = id.to_string();
    let row = ctx
        .store
        .run(move |s| s.get_file(&i))
        .await?
        .ok_or_else(|| Error::not_found(format!("file {id}")))?;
    let (i, who, now) = (row.id.clone(), actor.name.clone(), ctx.now());
    let detail = format!("{} ({} bytes)", row.name, row.size);
    ctx.store
        .run(move |s| {
            // A model's firmware: its phones' files name it, and would send them to a 404.
            if let Some(m) = s
                .list_model_firmware()?
                .into_iter()
                .find(|m| m.file_id == i)
            {
                return Err(Error::Conflict(format!(
                    "file {i} is the firmware of the phone model {} {}: give that model another \
                     firmware or clear it (/api/v1/phone_models/{}/{}/firmware) first",
                    m.vendor, m.model, m.vendor, m.model
                )));
            }
            s.delete_file(&i)?;
            audit_with(
                s,
                now,
                &who,
                Op::FileDelete,
                &Target::File(i),
                Some(&detail),
            )
        })
        .await?;
    ctx.services.files.remove(&row.id).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_types_are_checked() {
        let ok = FileUpload {
            name: "fw.bin".into(),
            ..FileUpload::default()
        };
        assert_eq!(check(&ok).unwrap().file_type, DEFAULT_FILE_TYPE);
        for bad in ["", "a/b", "..\\x"] {
            let u = FileUpload {
                name: bad.into(),
                ..FileUpload::default()
            };
            assert!(check(&u).is_err(), "{bad:?}");
        }
        let long_type = FileUpload {
            name: "x".into(),
            file_type: Some("t".repeat(65)),
            version: None,
        };
        assert!(check(&long_type)
            .unwrap_err()
            .to_string()
            .starts_with("file_type"));
    }
}
