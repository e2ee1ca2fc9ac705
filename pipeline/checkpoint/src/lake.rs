//! Opening the lake: a URL (`file:///abs/path`, `file://./relative`,
//! `s3://bucket/prefix`) becomes an object store plus the root path inside it.
//!
//! S3 settings come from the standard AWS variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...) unless
//! [`S3Options`] overrides them. Plain `http://` endpoints are allowed for loopback
//! hosts (moto, LocalStack on this machine); elsewhere set `AWS_ALLOW_HTTP=true`.
//! Conditional puts (`If-None-Match: *`) are always enabled, because the checkpoint
//! store's fencing relies on them.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::{CheckpointError, Result};

const URL_HELP: &str = "use file:///absolute/path, file://./relative/path or s3://bucket/prefix";

/// Explicit S3 settings; each `None` falls back to the standard AWS variable.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// Endpoint such as `http://127.0.0.1:5000` (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION` / `AWS_DEFAULT_REGION`; object_store defaults to us-east-1).
    pub region: Option<String>,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
}

/// An opened lake: the object store and the root path every table and
/// `_playlake/` prefix hangs under.
#[derive(Clone, Debug)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl Lake {
    /// Opens `url` with S3 settings from the environment.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &S3Options::default())
    }

    /// Opens `url`; `s3` overrides the environment's S3 settings.
    pub fn open_with(url: &str, s3: &S3Options) -> Result<Self> {
        let invalid = |reason: String| CheckpointError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("file://") {
            let dir =
                file_dir(rest).ok_or_else(|| invalid(format!("no path given; {URL_HELP}")))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| invalid(format!("cannot open {}: {e}", dir.display())))?
                .with_automatic_cleanup(true);
            return Ok(Self {
                store: Arc::new(store),
                root: Path::default(),
                url: url.to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(format!("the bucket name is missing; {URL_HELP}")));
            }
            let root = Path::parse(prefix.trim_end_matches('/'))
                .map_err(|e| invalid(format!("bad prefix: {e}; {URL_HELP}")))?;
            let store = s3_builder(bucket, s3)
                .build()
                .map_err(|e| invalid(format!("cannot configure S3: {e}")))?;
            return Ok(Self {
                store: Arc::new(store),
                root,
                url: url.to_string(),
            });
        }
        Err(invalid(format!("unsupported scheme; {URL_HELP}")))
    }

    /// Wraps an existing store, e.g. `object_store::memory::InMemory` in tests.
    pub fn from_store(store: Arc<dyn ObjectStore>, root: Path, url: impl Into<String>) -> Self {
        Self {
            store,
            root,
            url: url.into(),
        }
    }

    /// The object store holding the lake.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The lake's root inside [`Lake::store`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL the lake was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `file://` remainder to a directory: `/abs` stays, `./rel` or `rel` is relative to
/// the working directory.
fn file_dir(rest: &str) -> Option<PathBuf> {
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with('/') {
        return Some(PathBuf::from(rest));
    }
    let relative = rest.strip_prefix("./").unwrap_or(rest);
    let cwd = std::env::current_dir().ok()?;
    Some(cwd.join(relative))
}

fn s3_builder(bucket: &str, s3: &S3Options) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    } else if std::env::var_os("AWS_REGION").is_none() {
        if let Ok(region) = std::env::var("AWS_DEFAULT_REGION") {
            builder = builder.with_region(region);
        }
    }
    if let Some(key) = &s3.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    let endpoint = s3.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    });
    if let Some(endpoint) = endpoint {
        if is_loopback_http(&endpoint) {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_endpoint(endpoint);
    }
    builder.with_conditional_put(S3ConditionalPut::ETagMatch)
}

fn is_loopback_http(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_resolve_absolute_and_relative() {
        assert_eq!(file_dir("/tmp/lake"), Some(PathBuf::from("/tmp/lake")));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(file_dir("./lake"), Some(cwd.join("lake")));
        assert_eq!(file_dir(""), None);
    }

    #[test]
    fn unsupported_urls_say_how_to_fix_them() {
        for url in ["lake", "gs://bucket/x", "s3:///prefix", "file://"] {
            let err = Lake::open(url).unwrap_err();
            assert!(
                matches!(err, CheckpointError::InvalidUrl { .. }),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("file:///absolute/path"), "{err}");
        }
    }

    #[test]
    fn http_is_allowed_only_for_loopback() {
        assert!(is_loopback_http("http://127.0.0.1:5000"));
        assert!(is_loopback_http("http://localhost:4566"));
        assert!(is_loopback_http("http://[::1]:4566"));
        assert!(!is_loopback_http("http://localstack:4566"));
        assert!(!is_loopback_http("https://127.0.0.1:5000"));
    }

    #[test]
    fn s3_urls_keep_the_prefix_as_root() {
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        };
        let lake = Lake::open_with("s3://bucket/some/prefix/", &s3).unwrap();
        assert_eq!(lake.root().as_ref(), "some/prefix");
        let lake = Lake::open_with("s3://bucket", &s3).unwrap();
        assert_eq!(lake.root().as_ref(), "");
    }
}
