//! Blobs as objects of an S3-compatible bucket (AWS S3, MinIO, moto), through the
//! `object_store` crate. A narration is rendered into a local staging file, then
//! uploaded with one `PUT`, which S3 makes visible whole or not at all, so readers never
//! see half an object. Deleting lists the prefix and deletes what is there; S3's delete
//! of a missing object succeeds, so a redelivered delete answers success too.

use std::{
    io,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
    signer::Signer as _,
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload,
};

use crate::{check_key, BlobStore, ByteStream, LocalFile};

/// Where the bucket is and how to sign in to it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// A prefix for every key in the bucket (no leading or trailing `/`); may be empty.
    pub prefix: String,
    /// The endpoint of an S3-compatible server (`http://127.0.0.1:9000` for MinIO);
    /// `None` for AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unsure: MinIO and moto accept any).
    pub region: String,
    /// Access key id; `None` leaves it to the environment (`AWS_ACCESS_KEY_ID`, an
    /// instance role).
    pub access_key_id: Option<String>,
    /// Secret access key, with the id.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Config {
    /// `s3://BUCKET[/PREFIX]`, in the region `us-east-1`, credentials from the environment.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket (s3://BUCKET[/PREFIX])"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            region: "us-east-1".to_owned(),
            ..Self::default()
        })
    }
}

/// Blobs in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    /// Where renders are staged before upload.
    staging_dir: PathBuf,
}

fn other(err: object_store::Error) -> io::Error {
    match err {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, err),
        err => io::Error::other(err),
    }
}

impl S3BlobStore {
    /// A store for `config`, staging renders under `staging_dir` (created on demand).
    /// Nothing is contacted yet: the first request reports an unreachable server.
    pub fn new(config: &S3Config, staging_dir: impl Into<PathBuf>) -> io::Result<Self> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // MinIO and moto serve buckets under the path, not as host names.
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        Ok(Self {
            store: Arc::new(builder.build().map_err(other)?),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            staging_dir: staging_dir.into(),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn object(&self, key: &str) -> io::Result<ObjectPath> {
        check_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(full).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
    }

    /// The key of an object path (the prefix taken off).
    fn key_of(&self, path: &ObjectPath) -> String {
        let text = path.as_ref();
        match self.prefix.is_empty() {
            true => text.to_owned(),
            false => text
                .strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(text)
                .to_owned(),
        }
    }

    /// `range` of the object (all of it when `None`), or `None` when there is none.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.object(key)?, options).await {
            Ok(result) => Ok(Some(Box::pin(result.into_stream().map_err(other)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(other(err)),
        }
    }

    /// A presigned `GET` URL valid for `ttl`.
    pub async fn presigned_url(&self, key: &str, ttl: Duration) -> io::Result<String> {
        let url = self
            .store
            .signed_url(http::Method::GET, &self.object(key)?, ttl)
            .await
            .map_err(other)?;
        Ok(url.to_string())
    }

    /// Downloads the object into a temporary local file.
    pub async fn download(&self, key: &str) -> io::Result<Option<LocalFile>> {
        let Some(mut stream) = self.read(key, None).await? else {
            return Ok(None);
        };
        let path = self.staging_path(key)?;
        let file = LocalFile {
            path: path.clone(),
            temporary: true,
        };
        let mut out = tokio::fs::File::create(&path).await?;
        while let Some(chunk) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk?).await?;
        }
        // A tokio file hands writes to a thread: flush before anyone reads the path.
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        Ok(Some(file))
    }

    /// The keys of every object under `prefix/`, sorted.
    pub async fn keys(&self, prefix: &str) -> io::Result<Vec<String>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.object(prefix)?))
            .try_collect()
            .await
            .map_err(other)?;
        let mut keys: Vec<String> = listed
            .iter()
            .map(|meta| self.key_of(&meta.location))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl BlobStore for S3BlobStore {
    fn staging_path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        std::fs::create_dir_all(&self.staging_dir)?;
        let name = key.rsplit('/').next().unwrap_or("blob");
        Ok(self
            .staging_dir
            .join(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple())))
    }

    async fn commit(&self, staging: &Path, key: &str) -> io::Result<()> {
        let bytes = tokio::fs::read(staging).await?;
        self.store
            .put(&self.object(key)?, PutPayload::from(bytes))
            .await
            .map_err(other)?;
        // Uploaded: the staging copy has served its purpose.
        let _ = tokio::fs::remove_file(staging).await;
        Ok(())
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match self.store.head(&self.object(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(other(err)),
        }
    }

    async fn stored_at(&self, key: &str) -> io::Result<Option<i64>> {
        match self.store.head(&self.object(key)?).await {
            Ok(meta) => Ok(Some(meta.last_modified.timestamp_millis())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(other(err)),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        let existed = self.size(key).await?.is_some();
        match self.store.delete(&self.object(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(err) => Err(other(err)),
        }
    }

    async fn delete_all(&self, prefix: &str) -> io::Result<u32> {
        let mut removed = 0;
        for key in self.keys(prefix).await? {
            if self.delete(&key).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let config = S3Config::from_url("s3://audio/notesaga/prod/").unwrap();
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("audio", "notesaga/prod")
        );
        assert_eq!(S3Config::from_url("s3://audio").unwrap().prefix, "");
        assert!(S3Config::from_url("http://audio").is_err());
        assert!(S3Config::from_url("s3:///x").is_err());
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let config = S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            ..S3Config::from_url("s3://audio/p").unwrap()
        };
        let store = S3BlobStore::new(&config, std::env::temp_dir()).unwrap();
        let object = store.object("narrations/n/1.wav").unwrap();
        assert_eq!(object.as_ref(), "p/narrations/n/1.wav");
        assert_eq!(store.key_of(&object), "narrations/n/1.wav");
        assert!(store.object("../x").is_err());
        assert!(!format!("{config:?}").contains("\"b\""), "secret redacted");
    }
}
