//! Publishing finished files to the lake so that readers never see half a file.
//!
//! Data flow: [`crate::pool::WriterPool`] returns a [`FinishedFile`]; the sink records
//! it in its manifest and calls [`LakeStore::publish`], which puts it at
//! `<root>/<table>/<partition directory>/<name>`. Small files go up in one PUT, large
//! ones with a multipart upload (`put_multipart`, parts of
//! [`LakeStore::part_bytes`]). Both are atomic on S3: the object appears at its name
//! only when the PUT or the CompleteMultipartUpload succeeds. On a local filesystem
//! ([`PublishMode::StageThenRename`]) the file is first written under
//! `<root>/_playlake/staging/` and then renamed into place, so no partial or staging
//! file is ever listed inside a table directory. Publishing the same file twice
//! writes the same bytes under the same name, so a replay after a crash is harmless.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::{LakeError, Result};
use crate::file::FinishedFile;

/// S3's smallest part (except the last) is 5 MiB; 16 MiB parts keep the part count of
/// a 128 MiB file low.
pub const DEFAULT_PART_BYTES: usize = 16 * 1024 * 1024;

/// How a file becomes visible under its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// PUT or multipart upload straight to the final name (S3: atomic).
    Direct,
    /// Write under `_playlake/staging/`, then rename (a local filesystem).
    StageThenRename,
}

impl PublishMode {
    /// The mode for a lake URL: staging for `file://`, direct otherwise.
    pub fn for_url(url: &str) -> Self {
        if url.starts_with("file://") {
            PublishMode::StageThenRename
        } else {
            PublishMode::Direct
        }
    }
}

/// The lake's object store, where finished files go.
#[derive(Debug, Clone)]
pub struct LakeStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    mode: PublishMode,
    part_bytes: usize,
    multipart_threshold: usize,
}

impl LakeStore {
    /// A store publishing under `root`; multipart above [`DEFAULT_PART_BYTES`].
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, mode: PublishMode) -> Self {
        Self {
            store,
            root,
            mode,
            part_bytes: DEFAULT_PART_BYTES,
            multipart_threshold: DEFAULT_PART_BYTES,
        }
    }

    /// Uses multipart uploads with `part_bytes` parts for files larger than
    /// `threshold` bytes. S3 needs parts of at least 5 MiB (the last may be smaller).
    pub fn with_multipart(mut self, threshold: usize, part_bytes: usize) -> Result<Self> {
        if part_bytes == 0 {
            return Err(LakeError::config("part_bytes", "must be greater than 0"));
        }
        self.part_bytes = part_bytes;
        self.multipart_threshold = threshold;
        Ok(self)
    }

    /// Size of a multipart upload's parts.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where `relative` (a path under the lake root) lives in the store.
    pub fn object_path(&self, relative: &str) -> Result<Path> {
        let text = if self.root.as_ref().is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{}", self.root, relative)
        };
        Path::parse(&text).map_err(|source| LakeError::InvalidPath { path: text, source })
    }

    /// Writes `file` under its final name, atomically; returns the object path.
    pub async fn publish(&self, file: &FinishedFile) -> Result<Path> {
        let target = self.object_path(&file.relative_path())?;
        match self.mode {
            PublishMode::Direct => self.upload(&target, file).await?,
            PublishMode::StageThenRename => {
                let digest = Sha256::digest(target.as_ref().as_bytes());
                let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
                let staging = self.object_path(&format!("_playlake/staging/{hex}.parquet"))?;
                self.upload(&staging, file).await?;
                self.store
                    .rename(&staging, &target)
                    .await
                    .map_err(|e| LakeError::storage("rename into place", &target, e))?;
            }
        }
        tracing::debug!(path = %target, rows = file.rows, bytes = file.bytes.len(), "published");
        Ok(target)
    }

    async fn upload(&self, path: &Path, file: &FinishedFile) -> Result<()> {
        if file.bytes.len() <= self.multipart_threshold {
            let payload: PutPayload = file.bytes.chunks().iter().cloned().collect();
            self.store
                .put(path, payload)
                .await
                .map_err(|e| LakeError::storage("put", path, e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| LakeError::storage("start a multipart upload of", path, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
        for chunk in file.bytes.chunks() {
            let mut rest = chunk.clone();
            while !rest.is_empty() {
                let piece = rest.split_to(rest.len().min(self.part_bytes));
                if let Err(e) = writer.wait_for_capacity(4).await {
                    // Nothing became visible; a failed abort only leaves parts for
                    // the bucket's lifecycle rule to clean up.
                    let _ = writer.abort().await;
                    return Err(LakeError::storage("upload a part of", path, e));
                }
                // The writer gathers pieces into parts of `part_bytes`.
                writer.put(piece);
            }
        }
        writer
            .finish()
            .await
            .map_err(|e| LakeError::storage("complete the multipart upload of", path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;
    use crate::file::SourcePartition;
    use crate::partition::PartitionPath;

    /// A file of `len` bytes, written the way the encoder writes one: in pieces
    /// into a [`crate::filebuf::FileBuffer`], so a file over 64 KiB has several
    /// chunks.
    fn file(len: usize) -> FinishedFile {
        use std::io::Write;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut buffer = crate::filebuf::FileBuffer::default();
        for piece in data.chunks(10_000) {
            buffer.write_all(piece).unwrap();
        }
        FinishedFile {
            path: PartitionPath::new(playlake_schemas::Table::Daily, &[Some("2025-06-01")])
                .unwrap(),
            source: SourcePartition {
                topic: "playback.daily".into(),
                partition: 1,
            },
            name: "part-x.zstd.parquet".into(),
            first_offset: 0,
            last_offset: 9,
            rows: 10,
            bytes: buffer.finish(),
        }
    }

    async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Bytes {
        store.get(path).await.unwrap().bytes().await.unwrap()
    }

    #[tokio::test]
    async fn small_and_multipart_files_arrive_whole_under_the_root() {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = LakeStore::new(
            memory.clone(),
            Path::from("lake/prefix"),
            PublishMode::Direct,
        )
        .with_multipart(1024, 300)
        .unwrap();
        for len in [10, 1024, 1025, 5_000, 150_000] {
            let f = file(len);
            assert_eq!(f.bytes.chunks().len() > 1, len > 65_536, "{len}");
            let path = store.publish(&f).await.unwrap();
            assert_eq!(
                path.as_ref(),
                "lake/prefix/daily/dt=2025-06-01/part-x.zstd.parquet"
            );
            assert_eq!(read(&memory, &path).await, f.bytes.to_bytes(), "{len}");
        }
        assert!(store.clone().with_multipart(1, 0).is_err());
    }

    #[tokio::test]
    async fn local_files_are_staged_outside_the_tables_and_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let store = LakeStore::new(
            local.clone(),
            Path::default(),
            PublishMode::for_url("file://x"),
        )
        .with_multipart(100_000, 30_000)
        .unwrap();
        // One PUT of one chunk, one PUT of several chunks, a multipart upload.
        for len in [100, 90_000, 150_000] {
            let f = file(len);
            let path = store.publish(&f).await.unwrap();
            assert_eq!(read(&local, &path).await, f.bytes.to_bytes());
            // Publishing again (a replay) leaves the same single file.
            store.publish(&f).await.unwrap();
            let table_dir = dir.path().join("daily/dt=2025-06-01");
            let names: Vec<_> = std::fs::read_dir(&table_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["part-x.zstd.parquet"]);
            let staging = std::fs::read_dir(dir.path().join("_playlake/staging")).unwrap();
            assert_eq!(staging.count(), 0);
        }
        assert_eq!(PublishMode::for_url("s3://b/p"), PublishMode::Direct);
    }

    #[test]
    fn storage_errors_say_whether_retrying_helps() {
        let denied = LakeError::storage(
            "put",
            "x",
            object_store::Error::PermissionDenied {
                path: "x".into(),
                source: "no".into(),
            },
        );
        assert!(!denied.is_transient());
        let outage = LakeError::storage(
            "put",
            "x",
            object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        );
        assert!(outage.is_transient());
        assert!(std::error::Error::source(&outage).is_some());
        assert!(!LakeError::config("x", "y").is_transient());
    }
}
