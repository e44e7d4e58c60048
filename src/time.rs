//! Persistable points in time, anchored to the wall clock and, where the OS offers one, to the
//! boot clock.
//!
//! Within one boot, elapsed time comes from the boot clock (`CLOCK_BOOTTIME` on Linux), which
//! NTP and manual wall-clock steps do not move. Across boots the boot clock restarts, so elapsed
//! time falls back to the wall clock.
//!
//! A boot-clock reading is only ever compared with one taken in the same *clock view*. Processes
//! in a Linux time namespace share the host's boot id but see `CLOCK_BOOTTIME` shifted by the
//! namespace's offset (`unshare --time --boottime N`, a CRIU-restored container), so the view is
//! the boot id plus the time namespace: outside the initial time namespace, the namespace's
//! inode number is folded into the stored boot id. Readings from two views compare as readings
//! from two boots do, on the wall clock. The initial namespace keeps the plain boot id, so
//! timestamps stored before this rule keep their meaning.

use std::ops::{Add, Sub};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The boot a timestamp was taken in, and how long that boot had run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootTime {
    /// The clock view the reading was taken in: the kernel's random boot id (Linux:
    /// `/proc/sys/kernel/random/boot_id`), with the time namespace folded in outside the
    /// initial one (see the module docs). Equal ids mean readings that may be compared.
    pub boot_id: u128,
    /// Time since boot, suspend included (Linux: `CLOCK_BOOTTIME`).
    pub since_boot: Duration,
}

/// A point in time that can be stored and compared across processes and reboots.
///
/// Wall time is kept as nanoseconds since the Unix epoch in an `i64`, which covers the years
/// 1677 to 2262; times outside that range saturate at its ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    unix_nanos: i64,
    boot: Option<BootTime>,
}

impl Timestamp {
    /// The current time, with the boot clock where the OS provides one.
    pub fn now() -> Self {
        Self {
            unix_nanos: wall_nanos(SystemTime::now()),
            boot: boot_now(),
        }
    }

    /// A wall-clock time with no boot-clock reading.
    pub fn from_wall(wall: SystemTime) -> Self {
        Self {
            unix_nanos: wall_nanos(wall),
            boot: None,
        }
    }

    /// A wall-clock time together with a boot-clock reading taken at the same moment.
    pub fn with_boot(wall: SystemTime, boot: BootTime) -> Self {
        Self {
            unix_nanos: wall_nanos(wall),
            boot: Some(boot),
        }
    }

    /// Rebuilds a timestamp from its stored parts.
    pub fn from_parts(unix_nanos: i64, boot: Option<BootTime>) -> Self {
        Self { unix_nanos, boot }
    }

    /// Nanoseconds since the Unix epoch (negative before 1970).
    pub fn unix_nanos(&self) -> i64 {
        self.unix_nanos
    }

    /// Milliseconds since the Unix epoch (negative before 1970), rounded toward negative infinity.
    pub fn unix_millis(&self) -> i64 {
        self.unix_nanos.div_euclid(1_000_000)
    }

    /// The wall-clock time.
    pub fn wall(&self) -> SystemTime {
        let magnitude = Duration::from_nanos(self.unix_nanos.unsigned_abs());
        if self.unix_nanos >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    /// The boot-clock reading, if one was taken.
    pub fn boot(&self) -> Option<BootTime> {
        self.boot
    }

    /// How long after `earlier` this timestamp lies, or `None` if `earlier` is later.
    ///
    /// Both on the same boot: measured on the boot clock, immune to wall-clock steps. Otherwise
    /// measured on the wall clock.
    pub fn duration_since(&self, earlier: &Timestamp) -> Option<Duration> {
        match (self.boot, earlier.boot) {
            (Some(now), Some(then)) if now.boot_id == then.boot_id => {
                now.since_boot.checked_sub(then.since_boot)
            }
            _ => {
                let nanos = i128::from(self.unix_nanos) - i128::from(earlier.unix_nanos);
                u64::try_from(nanos).ok().map(Duration::from_nanos)
            }
        }
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Moves both clocks forward by `rhs`, saturating at the end of the representable range.
    fn add(self, rhs: Duration) -> Timestamp {
        let nanos = i64::try_from(rhs.as_nanos()).unwrap_or(i64::MAX);
        Timestamp {
            unix_nanos: self.unix_nanos.saturating_add(nanos),
            boot: self.boot.map(|b| BootTime {
                boot_id: b.boot_id,
                since_boot: b.since_boot.saturating_add(rhs),
            }),
        }
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// Moves both clocks back by `rhs`, saturating at the start of the representable range; a
    /// boot-clock reading that would fall before its boot is dropped, leaving the wall clock.
    fn sub(self, rhs: Duration) -> Timestamp {
        let nanos = i64::try_from(rhs.as_nanos()).unwrap_or(i64::MAX);
        Timestamp {
            unix_nanos: self.unix_nanos.saturating_sub(nanos),
            boot: self.boot.and_then(|b| {
                Some(BootTime {
                    boot_id: b.boot_id,
                    since_boot: b.since_boot.checked_sub(rhs)?,
                })
            }),
        }
    }
}

fn wall_nanos(wall: SystemTime) -> i64 {
    match wall.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .map(|n| -n)
            .unwrap_or(i64::MIN),
    }
}

fn boot_now() -> Option<BootTime> {
    static BOOT_ID: OnceLock<Option<u128>> = OnceLock::new();
    let boot_id = (*BOOT_ID.get_or_init(read_boot_id))?;
    Some(BootTime {
        boot_id,
        since_boot: boot_clock()?,
    })
}

#[cfg(target_os = "linux")]
fn read_boot_id() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(clock_view(parse_boot_id(&text)?, time_namespace()?))
}

/// The inode of the initial time namespace (the kernel's `PROC_TIME_INIT_INO`).
const INITIAL_TIME_NAMESPACE: u64 = 0xEFFF_FFFA;

/// This process's time namespace: `Some(inode)`, with the initial namespace's inode on a kernel
/// without time namespaces, or `None` when it cannot be told (then no boot-clock reading is
/// used at all, and elapsed time comes from the wall clock).
#[cfg(target_os = "linux")]
fn time_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/ns/time") {
        Ok(meta) => Some(meta.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(INITIAL_TIME_NAMESPACE),
        Err(_) => None,
    }
}

/// The id of a clock view: the boot id itself in the initial time namespace, otherwise the boot
/// id mixed with the namespace's inode (SplitMix64 over both halves, so nearby inodes give
/// unrelated ids).
fn clock_view(boot_id: u128, namespace: u64) -> u128 {
    if namespace == INITIAL_TIME_NAMESPACE {
        return boot_id;
    }
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = mix(namespace);
    let low = mix(namespace ^ high);
    boot_id ^ ((u128::from(high) << 64) | u128::from(low))
}

#[cfg(not(target_os = "linux"))]
fn read_boot_id() -> Option<u128> {
    None
}

fn parse_boot_id(text: &str) -> Option<u128> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

#[cfg(target_os = "linux")]
fn boot_clock() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(not(target_os = "linux"))]
fn boot_clock() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn boot(id: u128, secs: u64) -> BootTime {
        BootTime {
            boot_id: id,
            since_boot: Duration::from_secs(secs),
        }
    }

    #[test]
    fn same_boot_ignores_wall_clock_steps() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let then = Timestamp::with_boot(wall, boot(7, 100));
        // The wall clock was stepped back a day, but the boot clock moved 5 s.
        let now = Timestamp::with_boot(wall - 86_400 * SEC, boot(7, 105));
        assert_eq!(now.duration_since(&then), Some(5 * SEC));
    }

    #[test]
    fn other_boot_falls_back_to_wall_clock() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let then = Timestamp::with_boot(wall, boot(7, 100));
        let now = Timestamp::with_boot(wall + 60 * SEC, boot(8, 3));
        assert_eq!(now.duration_since(&then), Some(60 * SEC));
        let no_boot = Timestamp::from_wall(wall + 2 * SEC);
        assert_eq!(no_boot.duration_since(&then), Some(2 * SEC));
    }

    #[test]
    fn later_start_is_reported_as_none() {
        let then = Timestamp::from_wall(UNIX_EPOCH + 10 * SEC);
        let now = Timestamp::from_wall(UNIX_EPOCH + 9 * SEC);
        assert_eq!(now.duration_since(&then), None);
    }

    #[test]
    fn extremes_saturate_without_panicking() {
        let early = Timestamp::from_wall(UNIX_EPOCH - Duration::from_secs(u64::MAX / 4));
        assert_eq!(early.unix_nanos(), i64::MIN);
        let late = Timestamp::from_wall(UNIX_EPOCH + Duration::from_secs(u64::MAX / 4));
        assert_eq!(late.unix_nanos(), i64::MAX);
        assert_eq!((late + Duration::MAX).unix_nanos(), i64::MAX);
        let span = late.duration_since(&early).unwrap();
        assert_eq!(span, Duration::from_nanos(u64::MAX));
        assert_eq!(early.duration_since(&late), None);
        let _ = early.wall();
        let _ = late.wall();
    }

    #[test]
    fn subtraction_moves_both_clocks_back_and_drops_a_boot_reading_before_its_boot() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let ts = Timestamp::with_boot(wall, boot(7, 100));
        let back = ts - 40 * SEC;
        assert_eq!(back.wall(), wall - 40 * SEC);
        assert_eq!(back.boot(), Some(boot(7, 60)));
        assert_eq!(ts.duration_since(&back), Some(40 * SEC));
        let before_boot = ts - 200 * SEC;
        assert_eq!(before_boot.boot(), None);
        assert_eq!(before_boot.wall(), wall - 200 * SEC);
        assert_eq!(ts.duration_since(&before_boot), Some(200 * SEC));
        let early = Timestamp::from_wall(UNIX_EPOCH - 1_000 * SEC);
        assert_eq!((early - Duration::MAX).unix_nanos(), i64::MIN);
    }

    #[test]
    fn pre_epoch_round_trips() {
        let wall = UNIX_EPOCH - Duration::from_millis(1500);
        let ts = Timestamp::from_wall(wall);
        assert_eq!(ts.unix_nanos(), -1_500_000_000);
        assert_eq!(ts.unix_millis(), -1500);
        assert_eq!(ts.wall(), wall);
    }

    #[test]
    fn clock_views_keep_the_host_boot_id_and_separate_namespaces() {
        let boot = 0x0123abcd_0000_0000_0000_00000000000f;
        assert_eq!(clock_view(boot, INITIAL_TIME_NAMESPACE), boot);
        let a = clock_view(boot, 4_026_532_000);
        let b = clock_view(boot, 4_026_532_001);
        assert!(a != boot && b != boot && a != b);
        // Readings from two views are compared on the wall clock, like two boots.
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let host = Timestamp::with_boot(
            wall,
            BootTime {
                boot_id: boot,
                since_boot: 100 * SEC,
            },
        );
        let shifted = Timestamp::with_boot(
            wall + 5 * SEC,
            BootTime {
                boot_id: a,
                since_boot: 3_705 * SEC,
            },
        );
        assert_eq!(shifted.duration_since(&host), Some(5 * SEC));
        assert_eq!(host.duration_since(&shifted), None);
    }

    #[test]
    fn boot_ids_parse() {
        assert_eq!(
            parse_boot_id("0123abcd-0000-0000-0000-00000000000f\n"),
            Some(0x0123abcd_0000_0000_0000_00000000000f)
        );
        assert_eq!(parse_boot_id("nonsense"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn now_reads_the_boot_clock_on_linux() {
        let a = Timestamp::now();
        let b = Timestamp::now();
        assert!(a.boot().is_some());
        assert!(b.duration_since(&a).is_some());
    }
}
