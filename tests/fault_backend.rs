//! A redb `StorageBackend` that simulates a disk losing power.
//!
//! Writes land in a volatile layer; only `sync_data` moves them to the durable layer. The
//! backend counts every mutating I/O operation (`write`, `set_len`, `sync_data`) and, when told
//! to, fails the Nth one and every mutating operation after it, as a machine whose power was
//! cut would. A crash image is then built from the durable bytes, either alone or with a seeded
//! random subset of the unsynced writes overlaid, each torn at 512-byte sectors.
//!
//! redb's byte-range locks are always granted: each image is opened by one instance only.

use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{BackendError, StorageBackend};

use crate::util::Rng;

/// The sector size at which unsynced writes tear.
pub const SECTOR: usize = 512;

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

#[derive(Debug, Default)]
struct Disk {
    /// Bytes a power cut cannot take away.
    durable: Vec<u8>,
    /// What reads see: durable bytes with every pending operation applied.
    live: Vec<u8>,
    /// Mutations since the last completed sync, in order.
    pending: Vec<Pending>,
    /// Mutating operations attempted so far.
    ops: u64,
    /// Fail the operation with this index and everything after it.
    crash_at: Option<u64>,
    crashed: bool,
    /// Negative control: `sync_data` reports success without persisting anything.
    lying_sync: bool,
    /// A transient fault: operations of this kind ("write" covers `write` and `set_len`,
    /// "sync" covers `sync_data`) fail with this errno, changing nothing, until healed.
    transient: Option<(&'static str, i32)>,
}

/// A shared handle on one simulated disk; clones see the same disk.
#[derive(Clone, Debug, Default)]
pub struct FaultBackend {
    disk: Arc<Mutex<Disk>>,
}

impl FaultBackend {
    /// An empty disk that never crashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `image`, all of it durable.
    pub fn from_image(image: &[u8]) -> Self {
        let backend = Self::new();
        {
            let mut disk = backend.lock();
            disk.durable = image.to_vec();
            disk.live = image.to_vec();
        }
        backend
    }

    /// Fails the mutating operation with index `n` (0-based) and all later ones.
    pub fn crash_at(self, n: u64) -> Self {
        self.lock().crash_at = Some(n);
        self
    }

    /// Makes `sync_data` report success without persisting anything.
    pub fn lying_sync(self) -> Self {
        self.lock().lying_sync = true;
        self
    }

    /// Fails every later operation of kind `op` ("write" or "sync") with `errno`, changing
    /// nothing, as a full disk or a failing device would, until [`heal`](Self::heal).
    pub fn fail_transiently(&self, op: &'static str, errno: i32) {
        self.lock().transient = Some((op, errno));
    }

    /// Clears a transient fault.
    pub fn heal(&self) {
        self.lock().transient = None;
    }

    fn transient(disk: &Disk, op: &str) -> io::Result<()> {
        match disk.transient {
            Some((kind, errno)) if kind == op => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }

    /// Mutating operations attempted so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the simulated power cut has happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The image left when every unsynced write is lost.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The image left when a random subset of unsynced operations reached the disk. Each write
    /// is lost, kept whole, or torn: each of its 512-byte sectors survives or not on its own.
    pub fn torn_image(&self, seed: u64) -> Vec<u8> {
        let disk = self.lock();
        let mut rng = Rng::new(seed);
        let mut image = disk.durable.clone();
        for op in &disk.pending {
            match op {
                Pending::SetLen(len) => {
                    if rng.one_in(2) {
                        image.resize(*len, 0);
                    }
                }
                Pending::Write { offset, data } => match rng.below(3) {
                    0 => {}
                    1 => overlay(&mut image, *offset, data),
                    _ => {
                        let end = offset + data.len();
                        let mut start = *offset;
                        while start < end {
                            let cut = ((start / SECTOR) + 1) * SECTOR;
                            let stop = cut.min(end);
                            if rng.one_in(2) {
                                overlay(&mut image, start, &data[start - offset..stop - offset]);
                            }
                            start = stop;
                        }
                    }
                },
            }
        }
        image
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // A panic elsewhere must not hide the disk's contents from the test that reports it.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    // Counts one mutating operation; fails it if the power is (or just went) out.
    fn begin_mutation(disk: &mut Disk) -> io::Result<()> {
        let index = disk.ops;
        disk.ops += 1;
        if disk.crashed || disk.crash_at.is_some_and(|n| index >= n) {
            disk.crashed = true;
            return Err(io::Error::other("simulated power loss"));
        }
        Ok(())
    }
}

fn overlay(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset..end].copy_from_slice(data);
}

fn usize_of(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let disk = self.lock();
        let offset = usize_of(offset)?;
        let end = offset
            .checked_add(out.len())
            .filter(|end| *end <= disk.live.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(&disk.live[offset..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut disk = self.lock();
        Self::transient(&disk, "write")?;
        Self::begin_mutation(&mut disk)?;
        let len = usize_of(len)?;
        disk.live.resize(len, 0);
        disk.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut disk = self.lock();
        Self::transient(&disk, "sync")?;
        Self::begin_mutation(&mut disk)?;
        if !disk.lying_sync {
            // Replaying the pending operations is much cheaper than copying the whole file.
            let pending = std::mem::take(&mut disk.pending);
            for op in pending {
                match op {
                    Pending::SetLen(len) => disk.durable.resize(len, 0),
                    Pending::Write { offset, data } => overlay(&mut disk.durable, offset, &data),
                }
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut disk = self.lock();
        Self::transient(&disk, "write")?;
        Self::begin_mutation(&mut disk)?;
        let offset = usize_of(offset)?;
        overlay(&mut disk.live, offset, data);
        disk.pending.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn try_lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
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
}
