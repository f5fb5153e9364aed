//! The S3 blob store against a real S3 API (moto's server on a loopback port): what the
//! narration role writes, the API reads (ranges, presigned URLs) and the check lists.

use anyhow::Result;
use futures::TryStreamExt as _;
use notesaga_blob::{BlobStore as _, Blobs, S3BlobStore, S3Config};
use notesaga_testkit::{moto::MotoServer, random_name};

async fn store(moto: &MotoServer, staging: &std::path::Path) -> Result<Blobs> {
    let bucket = random_name("audio").to_lowercase();
    moto.create_bucket(&bucket).await?;
    let config = S3Config {
        endpoint: Some(moto.endpoint().to_owned()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..S3Config::from_url(&format!("s3://{bucket}/prefix")).map_err(anyhow::Error::msg)?
    };
    Ok(S3BlobStore::new(&config, staging)?.into())
}

async fn put(blobs: &Blobs, key: &str, bytes: &[u8]) -> Result<()> {
    let staging = blobs.staging_path(key)?;
    std::fs::write(&staging, bytes)?;
    blobs.commit(&staging, key).await?;
    assert!(
        !staging.exists(),
        "the staging copy is removed once uploaded"
    );
    Ok(())
}

async fn read(
    blobs: &Blobs,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Option<Vec<u8>>> {
    let Some(stream) = blobs.read(key, range).await? else {
        return Ok(None);
    };
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(Some(chunks.concat()))
}

#[tokio::test]
async fn s3_store_writes_reads_ranges_lists_presigns_and_deletes() -> Result<()> {
    let moto = tokio::task::spawn_blocking(MotoServer::start).await??;
    let staging = tempfile::tempdir()?;
    let blobs = store(&moto, staging.path()).await?;
    let (one, two, other) = (
        "narrations/n1/1.wav",
        "narrations/n1/2.wav",
        "narrations/n2/1.wav",
    );
    assert_eq!(blobs.size(one).await?, None);
    assert_eq!(read(&blobs, one, None).await?, None);
    put(&blobs, one, b"0123456789").await?;
    put(&blobs, two, b"abc").await?;
    put(&blobs, other, b"xyz").await?;

    assert_eq!(blobs.size(one).await?, Some(10));
    assert_eq!(
        read(&blobs, one, None).await?.as_deref(),
        Some(&b"0123456789"[..])
    );
    assert_eq!(
        read(&blobs, one, Some(2..5)).await?.as_deref(),
        Some(&b"234"[..])
    );
    assert_eq!(
        blobs.keys("narrations").await?,
        vec![one.to_owned(), two.to_owned(), other.to_owned()]
    );
    let local = blobs.local_file(one).await?.expect("downloaded");
    assert_eq!(std::fs::read(local.path())?, b"0123456789");
    let path = local.path().to_owned();
    drop(local);
    assert!(!path.exists(), "the download is temporary");

    // Anyone holding the presigned URL can GET the object, for the API's redirect.
    let url = blobs
        .presigned_url(one, std::time::Duration::from_secs(60))
        .await?
        .expect("S3 presigns");
    let fetched = reqwest::get(&url)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert_eq!(&fetched[..], b"0123456789");

    assert!(blobs.delete(one).await?);
    assert!(
        !blobs.delete(one).await?,
        "a redelivered delete succeeds with nothing"
    );
    assert_eq!(blobs.delete_all("narrations/n1").await?, 1);
    assert_eq!(blobs.delete_all("narrations/n1").await?, 0);
    assert_eq!(blobs.keys("narrations").await?, vec![other.to_owned()]);
    Ok(())
}
