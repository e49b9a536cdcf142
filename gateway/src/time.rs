//! Time for the control plane: a [`Clock`] (real or manual, so tests can
//! move time), calendar months ([`Period`]) for usage, and RFC 3339
//! formatting. Times are unix milliseconds in UTC everywhere.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in unix milliseconds (UTC).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            // A clock before 1970 is a broken host; 0 keeps arithmetic sane.
            Err(_) => 0,
        }
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(now_ms),
        }
    }

    /// Moves the clock to `now_ms`.
    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A calendar month in UTC, written `YYYY-MM`: the unit of usage and quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

/// Text that is not a `YYYY-MM` month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid period {0:?}: use YYYY-MM, e.g. 2025-03")]
pub struct InvalidPeriod(pub String);

impl Period {
    /// The month `month` (1..=12) of `year` (1970..=9999).
    pub fn new(year: i32, month: u32) -> Result<Self, InvalidPeriod> {
        if (1970..=9999).contains(&year) && (1..=12).contains(&month) {
            Ok(Self { year, month })
        } else {
            Err(InvalidPeriod(format!("{year:04}-{month:02}")))
        }
    }

    /// The month containing the instant `unix_ms`.
    pub fn containing(unix_ms: i64) -> Self {
        let (year, month, _) = civil_from_days(unix_ms.div_euclid(MS_PER_DAY));
        Self {
            year: i32::try_from(year).unwrap_or(1970),
            month,
        }
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(&self) -> u32 {
        self.month
    }

    /// The first millisecond of the month.
    pub fn start_ms(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, 1) * MS_PER_DAY
    }

    /// The month after this one.
    pub fn next(&self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Splits the interval `[start_ms, end_ms)` at month boundaries: each
    /// month it touches with the milliseconds that fall into it. Empty for
    /// an empty or reversed interval.
    pub fn split(start_ms: i64, end_ms: i64) -> Vec<(Period, i64)> {
        let mut parts = Vec::new();
        if end_ms <= start_ms {
            return parts;
        }
        let mut period = Period::containing(start_ms);
        let mut from = start_ms;
        while from < end_ms {
            let boundary = period.next().start_ms();
            let to = boundary.min(end_ms);
            parts.push((period, to - from));
            from = to;
            period = period.next();
        }
        parts
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = InvalidPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPeriod(s.chars().take(40).collect());
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        Period::new(year, month).map_err(|_| bad())
    }
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, e.g.
/// `2025-03-01T18:30:00.000Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let in_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hours, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-1000, 0, 1, 59, 365, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }

    #[test]
    fn periods_parse_and_split() {
        let march: Period = "2025-03".parse().unwrap();
        assert_eq!(march.to_string(), "2025-03");
        assert_eq!(rfc3339(march.start_ms()), "2025-03-01T00:00:00.000Z");
        assert_eq!(Period::containing(march.start_ms() - 1).to_string(), "2025-02");
        for bad in [
            "2025-3", "2025-13", "25-03", "2025/03", "", "abcd-ef", "2025-00", "+025-01",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
        let december: Period = "2024-12".parse().unwrap();
        assert_eq!(december.next().to_string(), "2025-01");
        let boundary = december.next().start_ms();
        let parts = Period::split(boundary - 1_000, boundary + 3_000);
        assert_eq!(parts, vec![(december, 1_000), (december.next(), 3_000)]);
        assert!(Period::split(5, 5).is_empty());
    }

    #[test]
    fn manual_clock_moves() {
        let clock = ManualClock::new(1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 3_000);
        clock.set(7);
        assert_eq!(clock.now_ms(), 7);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }
}
