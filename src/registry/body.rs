//! What a registry request sends: bytes in memory, or a range of a file
//! streamed as it is sent (a layer blob is never read whole into memory).

use std::path::PathBuf;

use super::RegistryError;

/// What a request sends.
pub(crate) enum Body {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// `len` bytes of the file at `path` from `offset`, read as they are
    /// sent (a few buffers at a time, never the whole range in memory) and
    /// read again from the start on every attempt.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// Bytes read from a file per piece of a streamed body.
const STREAM_PIECE: usize = 256 << 10;

impl Body {
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// The reqwest body for one attempt. A file shorter than the range is
    /// an error of the stream (the request fails), not a short body.
    pub(super) async fn to_reqwest(&self) -> Result<reqwest::Body, RegistryError> {
        let (path, offset, len) = match self {
            Body::Bytes(b) => return Ok(reqwest::Body::from(b.clone())),
            Body::File { path, offset, len } => (path.clone(), *offset, *len),
        };
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let io = |source| RegistryError::Io {
            op: "reading",
            path: path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io)?;
        let pieces = futures_util::stream::try_unfold(
            (file, len, path),
            |(mut file, left, path)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let mut buf = vec![0u8; left.min(STREAM_PIECE as u64) as usize];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ended {left} bytes before the blob's end",
                            path.display()
                        ),
                    ));
                }
                buf.truncate(n);
                Ok(Some((buf, (file, left - n as u64, path))))
            },
        );
        Ok(reqwest::Body::wrap_stream(pieces))
    }
}
