//! Schedules: when a backup or drill is due, as a pure function of the
//! schedule, the last runs and the time.

use std::time::Duration;

use time::OffsetDateTime;

/// When a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every interval since the last successful run.
    Every(Duration),
    /// Once a day at this UTC time.
    DailyAt { hour: u8, minute: u8 },
}

/// A named backup schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub when: When,
}

/// A failed run is retried after this long (or the schedule's own
/// interval, if shorter).
pub const RETRY_AFTER: Duration = Duration::from_secs(300);

/// Parses an interval such as `30s`, `15m`, `12h` or `30d`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not an interval such as 30m, 12h or 30d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} is not an interval such as 30m, 12h or 30d (units: s, m, h, d)")),
    };
    if n == 0 {
        return Err(format!("{text:?}: the interval must be positive"));
    }
    n.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses a UTC time of day, `HH:MM`.
pub fn parse_time_of_day(text: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{text:?} is not a time of day such as 02:30 (UTC)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || text.len() != 5 {
        return Err(bad());
    }
    Ok((h, m))
}

/// Whether a run is due at `now`. `last_success` and `last_attempt` are the
/// start times of the schedule's latest successful run and latest run of
/// any outcome; `since` is when the schedule began to count (the
/// instance's start), used while it has never succeeded.
pub fn is_due(
    when: When,
    last_success: Option<OffsetDateTime>,
    last_attempt: Option<OffsetDateTime>,
    since: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    // A failure is retried, but not at once.
    if let Some(attempt) = last_attempt
        && last_success.is_none_or(|s| attempt > s)
    {
        let retry = match when {
            When::Every(every) => every.min(RETRY_AFTER),
            When::DailyAt { .. } => RETRY_AFTER,
        };
        if now - attempt < retry {
            return false;
        }
        // The failed run was due; so is its retry.
        return true;
    }
    match when {
        When::Every(every) => now - last_success.unwrap_or(since) >= every,
        When::DailyAt { hour, minute } => {
            let Ok(at) = time::Time::from_hms(hour, minute, 0) else { return false };
            let today = now.replace_time(at);
            let latest = if today <= now { today } else { today - time::Duration::DAY };
            let reference = last_success.unwrap_or(since);
            reference < latest && now >= latest
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn intervals_and_times_parse_or_are_refused() {
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_interval("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "h", "0m", "5w", "1.5h", "-1h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_time_of_day("02:30"), Ok((2, 30)));
        for bad in ["2:30", "24:00", "02:60", "0230", "02:30:00"] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_counts_from_the_last_success_or_the_start() {
        let hourly = When::Every(Duration::from_secs(3600));
        let start = datetime!(2026-11-22 10:00 UTC);
        assert!(!is_due(hourly, None, None, start, datetime!(2026-11-22 10:59 UTC)));
        assert!(is_due(hourly, None, None, start, datetime!(2026-11-22 11:00 UTC)));
        let ok = datetime!(2026-11-22 11:00 UTC);
        assert!(!is_due(hourly, Some(ok), Some(ok), start, datetime!(2026-11-22 11:30 UTC)));
        assert!(is_due(hourly, Some(ok), Some(ok), start, datetime!(2026-11-22 12:00 UTC)));
    }

    #[test]
    fn a_failure_is_retried_after_the_retry_delay() {
        let hourly = When::Every(Duration::from_secs(3600));
        let start = datetime!(2026-11-22 10:00 UTC);
        let failed = datetime!(2026-11-22 11:00 UTC);
        assert!(!is_due(hourly, None, Some(failed), start, datetime!(2026-11-22 11:04 UTC)));
        assert!(is_due(hourly, None, Some(failed), start, datetime!(2026-11-22 11:05 UTC)));
    }

    #[test]
    fn daily_at_fires_once_a_day_after_its_time() {
        let nightly = When::DailyAt { hour: 2, minute: 0 };
        let start = datetime!(2026-11-21 12:00 UTC);
        assert!(!is_due(nightly, None, None, start, datetime!(2026-11-22 01:59 UTC)));
        assert!(is_due(nightly, None, None, start, datetime!(2026-11-22 02:00 UTC)));
        let ran = datetime!(2026-11-22 02:00:05 UTC);
        assert!(!is_due(nightly, Some(ran), Some(ran), start, datetime!(2026-11-22 23:00 UTC)));
        assert!(is_due(nightly, Some(ran), Some(ran), start, datetime!(2026-11-23 02:01 UTC)));
    }
}
