//! Open files of a [`Disk`](super::Disk): [`DiskFile`] for blocking code (snapshot build,
//! install, the small files) and [`SnapshotFile`], openraft's `SnapshotData`, for the async
//! snapshot transfer. Each is a real file, or a handle of a custom disk with its own position;
//! a custom disk is in memory (tests), so its calls run inline even in `poll_*`.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use redb::StorageBackend;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A handle of a custom disk and where the next read or write goes.
#[derive(Debug)]
pub(crate) struct SimFile {
    backend: Box<dyn StorageBackend>,
    pos: u64,
}

impl SimFile {
    fn read_at(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let len = self.backend.len()?;
        let n = usize::try_from(len.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(out.len());
        if n > 0 {
            self.backend.read(self.pos, &mut out[..n])?;
            self.pos += n as u64;
        }
        Ok(n)
    }

    fn write_at(&mut self, data: &[u8]) -> io::Result<usize> {
        self.backend.write(self.pos, data)?;
        self.pos += data.len() as u64;
        Ok(data.len())
    }

    fn seek_to(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(p) => {
                self.pos = p;
                return Ok(p);
            }
            SeekFrom::End(d) => (self.backend.len()?, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base
            .checked_add_signed(delta)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// An open file of a [`Disk`](super::Disk), for blocking code.
#[derive(Debug)]
pub(crate) enum DiskFile {
    Real(std::fs::File),
    Sim(SimFile),
}

impl DiskFile {
    pub(super) fn sim(backend: Box<dyn StorageBackend>) -> DiskFile {
        DiskFile::Sim(SimFile { backend, pos: 0 })
    }

    /// Makes the file's data durable.
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        match self {
            DiskFile::Real(f) => f.sync_all(),
            DiskFile::Sim(s) => s.backend.sync_data(),
        }
    }

    /// Copies the rest of `self` to `out`; between real files the kernel copies
    /// (`copy_file_range`), which a wrapper type would lose to an 8 KiB buffer loop.
    pub(crate) fn copy_to(&mut self, out: &mut DiskFile) -> io::Result<u64> {
        match (self, out) {
            (DiskFile::Real(src), DiskFile::Real(dst)) => io::copy(src, dst),
            (src, dst) => io::copy(&mut io::BufReader::with_capacity(1 << 20, src), dst),
        }
    }
}

impl Read for DiskFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            DiskFile::Real(f) => f.read(out),
            DiskFile::Sim(s) => s.read_at(out),
        }
    }
}

impl Write for DiskFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            DiskFile::Real(f) => f.write(data),
            DiskFile::Sim(s) => s.write_at(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            DiskFile::Real(f) => f.flush(),
            DiskFile::Sim(_) => Ok(()),
        }
    }
}

impl Seek for DiskFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            DiskFile::Real(f) => f.seek(to),
            DiskFile::Sim(s) => s.seek_to(to),
        }
    }
}

/// openraft's `SnapshotData`: a snapshot file being sent or received, on the node's disk.
#[derive(Debug)]
pub struct SnapshotFile(Inner);

#[derive(Debug)]
enum Inner {
    Real(tokio::fs::File),
    Sim(SimFile),
}

impl SnapshotFile {
    /// The blocking handle to the same file (after any write in flight completed).
    pub(crate) async fn into_disk_file(self) -> DiskFile {
        match self.0 {
            Inner::Real(f) => DiskFile::Real(f.into_std().await),
            Inner::Sim(s) => DiskFile::Sim(s),
        }
    }
}

impl From<DiskFile> for SnapshotFile {
    fn from(f: DiskFile) -> SnapshotFile {
        SnapshotFile(match f {
            DiskFile::Real(f) => Inner::Real(tokio::fs::File::from_std(f)),
            DiskFile::Sim(s) => Inner::Sim(s),
        })
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).poll_read(cx, buf),
            Inner::Sim(s) => {
                let n = s.read_at(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).poll_write(cx, data),
            Inner::Sim(s) => Poll::Ready(s.write_at(data)),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).poll_flush(cx),
            Inner::Sim(_) => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).poll_shutdown(cx),
            Inner::Sim(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).start_seek(to),
            Inner::Sim(s) => s.seek_to(to).map(|_| ()),
        }
    }
    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match &mut self.get_mut().0 {
            Inner::Real(f) => Pin::new(f).poll_complete(cx),
            Inner::Sim(s) => Poll::Ready(Ok(s.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    /// A custom disk's handle reads, writes and seeks like a file: short reads at the end,
    /// seeks from the end and current position, writes at the position.
    #[tokio::test]
    async fn a_sim_handle_moves_like_a_file() {
        #[derive(Debug, Default)]
        struct Mem(std::sync::Mutex<Vec<u8>>);
        impl StorageBackend for Mem {
            fn len(&self) -> io::Result<u64> {
                Ok(self
                    .0
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .len() as u64)
            }
            fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
                let b = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
                let s = offset as usize;
                out.copy_from_slice(
                    b.get(s..s + out.len())
                        .ok_or(io::ErrorKind::UnexpectedEof)?,
                );
                Ok(())
            }
            fn set_len(&self, len: u64) -> io::Result<()> {
                self.0
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .resize(len as usize, 0);
                Ok(())
            }
            fn sync_data(&self) -> io::Result<()> {
                Ok(())
            }
            fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
                let mut b = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
                let s = offset as usize;
                if b.len() < s + data.len() {
                    b.resize(s + data.len(), 0);
                }
                b[s..s + data.len()].copy_from_slice(data);
                Ok(())
            }
        }
        let mut f = SnapshotFile::from(DiskFile::sim(Box::new(Mem::default())));
        f.write_all(b"hello world").await.expect("write");
        assert_eq!(f.seek(SeekFrom::End(-5)).await.expect("seek"), 6);
        let mut tail = String::new();
        f.read_to_string(&mut tail).await.expect("read");
        assert_eq!(tail, "world");
        f.seek(SeekFrom::Start(0)).await.expect("seek");
        f.write_all(b"J").await.expect("write");
        assert_eq!(f.seek(SeekFrom::Current(-1)).await.expect("seek"), 0);
        let mut all = Vec::new();
        f.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"Jello world");
        assert!(f.seek(SeekFrom::Current(-100)).await.is_err());
        let mut blocking = f.into_disk_file().await;
        blocking.seek(SeekFrom::Start(6)).expect("seek");
        let mut out = [0u8; 16];
        assert_eq!(blocking.read(&mut out).expect("read"), 5);
        assert_eq!(blocking.read(&mut out).expect("read"), 0);
    }
}
