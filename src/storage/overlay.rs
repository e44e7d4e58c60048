//! redb storage backends of our own: a copy-on-write overlay that lets redb repair a file it may
//! not write, and a plain backend for a file no other process uses.
//!
//! Neither shares locks with other processes: both stand for a file this process alone uses
//! (the overlay's writes never reach the file; a creator's temporary file is its own), so their
//! byte-range locks always succeed. That also keeps them clear of the lock a creator holds on
//! its temporary file to show it is alive (see `files.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{BackendError, StorageBackend};

/// Overlay granularity, in bytes: redb's page size.
const PAGE: u64 = 4096;

/// A copy-on-write view of a file opened read-only: reads come from the file unless a page was
/// written, writes go to an in-memory page map and never reach the file.
///
/// Memory is bounded by what is written through it (4 KiB per page touched), not by the file:
/// redb's crash recovery on it costs its commit of the rebuilt allocator state, which grows
/// with the file's length by a few bytes per page. Clones share one view.
#[derive(Clone, Debug)]
pub(super) struct Overlay {
    inner: Arc<OverlayInner>,
}

#[derive(Debug)]
struct OverlayInner {
    file: Option<File>,
    state: Mutex<OverlayState>,
}

#[derive(Debug)]
struct OverlayState {
    /// The view's length.
    len: u64,
    /// File bytes at or past this offset read as zero: the view was cut there once.
    file_end: u64,
    pages: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    /// A view of `file`, which needs only read access.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self::over(Some(file), len))
    }

    /// An empty in-memory file, to build a store image in.
    pub fn empty() -> Self {
        Self::over(None, 0)
    }

    fn over(file: Option<File>, len: u64) -> Self {
        Self {
            inner: Arc::new(OverlayInner {
                file,
                state: Mutex::new(OverlayState {
                    len,
                    file_end: len,
                    pages: HashMap::new(),
                }),
            }),
        }
    }

    /// Every byte of the view.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; usize::try_from(self.state().len).map_err(io::Error::other)?];
        self.read(0, &mut bytes)?;
        Ok(bytes)
    }

    /// Bytes held in memory by written pages.
    #[cfg(test)]
    pub fn overlay_bytes(&self) -> usize {
        self.state().pages.len() * PAGE as usize
    }

    fn state(&self) -> MutexGuard<'_, OverlayState> {
        // A panic while holding the lock leaves whole pages behind; the view stays usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // Reads the file's bytes under `out` at `offset`, zero past the file's (cut) end.
    fn read_base(&self, state: &OverlayState, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let from_file = state.file_end.saturating_sub(offset).min(out.len() as u64) as usize;
        let (head, tail) = out.split_at_mut(from_file);
        if let (false, Some(file)) = (head.is_empty(), &self.inner.file) {
            file.read_exact_at(head, offset)?;
        }
        tail.fill(0);
        Ok(())
    }
}

fn out_of_range(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at {offset} past the end ({size} bytes)"),
    )
}

// Splits `[offset, offset + len)` into (page index, offset within the page, span length).
fn spans(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page = at / PAGE;
        let within = (at % PAGE) as usize;
        let span = ((PAGE - at % PAGE).min(end - at)) as usize;
        at += span as u64;
        Some((page, within, span))
    })
}

/// Byte-range locks for a backend only this process uses: every lock is granted at once.
macro_rules! private_locks {
    () => {
        fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
            Ok(true)
        }

        fn try_lock_shared_range(
            &self,
            _: Bound<u64>,
            _: Bound<u64>,
        ) -> Result<bool, BackendError> {
            Ok(true)
        }

        fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
            Ok(())
        }

        fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
            Ok(())
        }

        fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
            Ok(())
        }

        fn query_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
            Ok(false)
        }
    };
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state();
        if offset.saturating_add(out.len() as u64) > state.len {
            return Err(out_of_range(offset, out.len(), state.len));
        }
        let mut done = 0;
        for (page, within, span) in spans(offset, out.len()) {
            let dest = &mut out[done..done + span];
            match state.pages.get(&page) {
                Some(bytes) => dest.copy_from_slice(&bytes[within..within + span]),
                None => self.read_base(&state, page * PAGE + within as u64, dest)?,
            }
            done += span;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state();
        if len < state.len {
            state.pages.retain(|page, _| page * PAGE < len);
            let cut = (len % PAGE) as usize;
            if let Some(bytes) = state.pages.get_mut(&(len / PAGE)) {
                bytes[cut..].fill(0);
            }
            state.file_end = state.file_end.min(len);
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        let mut done = 0;
        for (page, within, span) in spans(offset, data.len()) {
            if !state.pages.contains_key(&page) {
                let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
                self.read_base(&state, page * PAGE, &mut bytes)?;
                state.pages.insert(page, bytes);
            }
            let bytes = state.pages.get_mut(&page).expect("inserted above");
            bytes[within..within + span].copy_from_slice(&data[done..done + span]);
            done += span;
        }
        let end = offset + data.len() as u64;
        state.len = state.len.max(end);
        Ok(())
    }

    private_locks!();
}

/// A file that only this process uses (a creator's temporary file): plain positioned I/O and
/// locks that always succeed.
#[derive(Debug)]
pub(super) struct PrivateFile(pub File);

impl StorageBackend for PrivateFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    private_locks!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn overlay_of(bytes: &[u8]) -> (tempfile::NamedTempFile, Overlay) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let view = Overlay::new(File::open(file.path()).unwrap()).unwrap();
        (file, view)
    }

    fn read(view: &Overlay, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0xAA; len];
        view.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let base: Vec<u8> = (0..3 * PAGE as usize).map(|i| i as u8).collect();
        let (file, view) = overlay_of(&base);
        view.write(PAGE - 2, &[1, 2, 3, 4]).unwrap();
        let mut expected = base.clone();
        expected[PAGE as usize - 2..PAGE as usize + 2].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(read(&view, 0, base.len()), expected);
        assert_eq!(std::fs::read(file.path()).unwrap(), base);
        assert_eq!(view.overlay_bytes(), 2 * PAGE as usize);
    }

    #[test]
    fn cut_then_grown_reads_zero_and_reads_past_the_end_fail() {
        let base = vec![7u8; 2 * PAGE as usize];
        let (_file, view) = overlay_of(&base);
        view.write(10, &[9]).unwrap();
        view.set_len(5).unwrap();
        view.set_len(3 * PAGE).unwrap();
        let all = read(&view, 0, 3 * PAGE as usize);
        assert_eq!(&all[..5], &[7; 5]);
        assert!(all[5..].iter().all(|b| *b == 0));
        let mut out = [0u8; 2];
        assert!(view.read(3 * PAGE - 1, &mut out).is_err());
    }
}
