//! The bytes of a Parquet file while it is encoded in memory, and once finished.
//!
//! Data flow: the encoder's `ArrowWriter` writes into a [`FileBuffer`]; when the
//! file rolls, [`FileBuffer::finish`] gives its [`FileBytes`], which
//! [`crate::store::LakeStore::publish`] uploads chunk by chunk (one PUT payload, or
//! the parts of a multipart upload).
//!
//! Why chunks and not one `Vec<u8>`: a file grows to the target size (128 MiB) in
//! memory, and a vector doubles its way there, copying everything into fresh memory
//! at each doubling. Fresh pages are the expensive part (the kernel zeroes each one
//! on first touch): on the sink benchmark the doublings of the output buffer were
//! about 5% of the sink's CPU time, half of it zeroing pages. Chunks never move, so
//! each byte is written once and a file touches about its own size of memory.

use std::io::{self, Write};

use bytes::Bytes;

/// The first chunk's capacity: small, so that a file of a quiet directory (one of
/// thousands open at once) holds little memory.
const FIRST_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks double up to this capacity, then stay there.
const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// A file's bytes as they are written: full chunks and the one being filled.
#[derive(Debug, Default)]
pub struct FileBuffer {
    full: Vec<Bytes>,
    current: Vec<u8>,
    full_bytes: usize,
}

impl FileBuffer {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.full_bytes + self.current.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the buffer holds (written bytes and the current chunk's spare room).
    pub fn capacity(&self) -> usize {
        self.full_bytes + self.current.capacity()
    }

    /// The written bytes, in chunks.
    pub fn finish(mut self) -> FileBytes {
        self.seal(0);
        FileBytes {
            chunks: self.full,
            len: self.full_bytes,
        }
    }

    /// Moves the current chunk (if any) to the full ones and starts one of
    /// `next_capacity` bytes.
    fn seal(&mut self, next_capacity: usize) {
        let chunk = std::mem::replace(&mut self.current, Vec::with_capacity(next_capacity));
        if !chunk.is_empty() {
            self.full_bytes += chunk.len();
            self.full.push(Bytes::from(chunk));
        }
    }
}

impl Write for FileBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let room = self.current.capacity() - self.current.len();
            if room == 0 {
                let next = (self.current.capacity() * 2).clamp(FIRST_CHUNK_BYTES, MAX_CHUNK_BYTES);
                self.seal(next);
                continue;
            }
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.current.extend_from_slice(now);
            buf = later;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A finished file's bytes, in the chunks they were written in. Cheap to clone
/// (the chunks are shared). Two values are equal when their bytes are, however
/// they are chunked.
#[derive(Debug, Clone, Default)]
pub struct FileBytes {
    chunks: Vec<Bytes>,
    len: usize,
}

impl FileBytes {
    /// Length of the file.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The bytes in one buffer (a copy unless there is a single chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        let chunks = if len == 0 {
            Vec::new()
        } else {
            vec![Bytes::from(bytes)]
        };
        Self { chunks, len }
    }
}

impl PartialEq for FileBytes {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .chunks
                .iter()
                .flat_map(|c| c.iter())
                .eq(other.chunks.iter().flat_map(|c| c.iter()))
    }
}

impl Eq for FileBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_any_size_come_back_whole_in_bounded_chunks() {
        let data: Vec<u8> = (0..3 * MAX_CHUNK_BYTES + 12_345)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut buffer = FileBuffer::default();
        let mut at = 0;
        // Small writes, one larger than a chunk, then the rest.
        for len in [1, 7, FIRST_CHUNK_BYTES, MAX_CHUNK_BYTES + 3, 100] {
            buffer.write_all(&data[at..at + len]).unwrap();
            at += len;
        }
        buffer.write_all(&data[at..]).unwrap();
        assert_eq!(buffer.len(), data.len());
        assert!(buffer.capacity() >= buffer.len());
        assert!(buffer.capacity() - buffer.len() <= MAX_CHUNK_BYTES);
        let bytes = buffer.finish();
        assert_eq!(bytes.len(), data.len());
        assert!(bytes.chunks().len() > 3, "{} chunks", bytes.chunks().len());
        assert!(bytes.chunks().iter().all(|c| c.len() <= MAX_CHUNK_BYTES));
        assert!(bytes.chunks().iter().all(|c| !c.is_empty()));
        assert_eq!(bytes.to_bytes(), data);
        assert_eq!(bytes, FileBytes::from(data.clone()));
        let mut other = data;
        other[FIRST_CHUNK_BYTES + 5] ^= 1;
        assert_ne!(bytes, FileBytes::from(other));
    }

    #[test]
    fn an_empty_buffer_finishes_empty() {
        let bytes = FileBuffer::default().finish();
        assert!(bytes.is_empty() && bytes.chunks().is_empty());
        assert_eq!(bytes, FileBytes::from(Vec::new()));
        assert_eq!(bytes.to_bytes(), Bytes::new());
    }
}
