//! What object_store leaves to its user: the shared credentials file, and turning its errors
//! into walship's, with a message that says what was wrong (a wrong key, a wrong secret, a
//! skewed clock, missing permissions) and never holds a secret.

use crate::error::{Error, Kind, Result};

/// The shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`),
/// profile `AWS_PROFILE` (default `default`): `aws_access_key_id`, `aws_secret_access_key`,
/// `aws_session_token`. `None` when there is no such file or profile.
pub(super) fn shared_credentials() -> Result<Option<(String, String, Option<String>)>> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => crate::os::home_dir().join(".aws/credentials"),
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let mut section = String::new();
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().trim_start_matches("profile ").to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(k), Some(s)) => Ok(Some((k, s, token))),
        (None, None) => Ok(None),
        _ => Err(Error::usage(format!(
            "{}: profile [{profile}] needs both aws_access_key_id and aws_secret_access_key",
            path.display()
        ))),
    }
}

/// An object_store error as walship's: absent is the caller's business (never from here),
/// throttling and server errors that outlived the retries are "unavailable", and a refusal says
/// which (wrong key, wrong secret, clock skew, permissions). The message never holds a secret:
/// object_store's errors name the request, not its signature.
pub fn s3_error(what: &str, doing: &str, e: object_store::Error) -> Error {
    let text = e.to_string();
    let has = |s: &str| text.contains(s);
    let (kind, hint) = if has("RequestTimeTooSkewed") || has("RequestExpired") {
        (
            Kind::Unavailable,
            "The store says this host's clock is too far from its own (more than 15 minutes): fix the \
             clock (chrony, systemd-timesyncd); SigV4 signatures carry the time.",
        )
    } else if has("SignatureDoesNotMatch") {
        (
            Kind::Usage,
            "The secret access key does not match the access key id: check AWS_SECRET_ACCESS_KEY or the \
             credentials file.",
        )
    } else if has("InvalidAccessKeyId") || has("NotSignedUp") {
        (
            Kind::Usage,
            "The store does not know this access key id: check AWS_ACCESS_KEY_ID, AWS_PROFILE or the \
             credentials file.",
        )
    } else if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) {
        (
            Kind::Unavailable,
            "The store refused access. walship needs s3:GetObject, s3:PutObject, s3:DeleteObject and \
             s3:ListBucket on the repository's prefix; without s3:ListBucket, S3 answers a missing object \
             with 403, which walship never takes for \"not in the archive\".",
        )
    } else if has("NoSuchBucket") {
        (
            Kind::Unavailable,
            "The bucket does not exist: create it, or fix `repo`.",
        )
    } else {
        (
            Kind::Unavailable,
            "The store did not answer, or answered with an error, after retries with backoff; the next \
             attempt may succeed.",
        )
    };
    Error::new(kind, format!("{doing} {what}: {text}")).with_hint(hint)
}
