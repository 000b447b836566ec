//! Retention: which backups a set of rules keeps, as a pure function of their times.
//!
//! Buckets are calendar hours, days and months in UTC. For each rule, the N most recent buckets (counting the
//! bucket that holds `now` as the first) keep their newest backup; the newest backup overall is always kept.
//! Backups dated after `now` (clock skew) are treated as lying in `now`'s bucket for every rule.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use time::{Month, OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// How many of the most recent hours, days and months keep their newest backup.
///
/// A count of zero disables that rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Number of most recent calendar hours (the current one included) whose newest backup is kept.
    pub hourly: u32,
    /// Number of most recent calendar days (today included) whose newest backup is kept.
    pub daily: u32,
    /// Number of most recent calendar months (this month included) whose newest backup is kept.
    pub monthly: u32,
}

impl Default for Rules {
    /// 48 hours, 180 days and 12 months.
    fn default() -> Self {
        Self { hourly: 48, daily: 180, monthly: 12 }
    }
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The backup's id.
    pub id: Uuid,
    /// When the backup was taken; any offset, bucketed in UTC.
    pub created_at: OffsetDateTime,
}

/// Why a backup is kept (for the prune report): the first rule that keeps it.
///
/// Precedence, strongest first: `Newest`, `Hourly`, `Daily`, `Monthly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The newest backup overall.
    Newest,
    /// The newest backup of one of the most recent hours.
    Hourly,
    /// The newest backup of one of the most recent days.
    Daily,
    /// The newest backup of one of the most recent months.
    Monthly,
}

impl Reason {
    /// Lower is stronger.
    fn rank(self) -> u8 {
        match self {
            Self::Newest => 0,
            Self::Hourly => 1,
            Self::Daily => 2,
            Self::Monthly => 3,
        }
    }
}

/// The outcome of applying [`Rules`] to a set of backups.
///
/// Every input id appears exactly once, either in `keep` or in `prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Backups to keep with the reason they are kept, newest first.
    pub keep: Vec<(Uuid, Reason)>,
    /// Backups to delete, oldest first.
    pub prune: Vec<Uuid>,
}

/// Bucket keys of one instant: hours and days since the Unix epoch, months since year 0 (all UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keys {
    hour: i64,
    day: i64,
    month: i64,
}

impl Keys {
    fn of(t: OffsetDateTime) -> Self {
        let secs = t.unix_timestamp();
        Self { hour: secs.div_euclid(3_600), day: secs.div_euclid(86_400), month: month_key(t) }
    }

    /// Keys are monotone in time, so clamping each key clamps the instant: a backup after `now` lands in `now`'s
    /// buckets.
    fn clamp_to(self, now: Self) -> Self {
        Self { hour: self.hour.min(now.hour), day: self.day.min(now.day), month: self.month.min(now.month) }
    }
}

/// `year * 12 + month - 1` of the instant in UTC.
fn month_key(t: OffsetDateTime) -> i64 {
    match t.checked_to_offset(UtcOffset::UTC) {
        Some(utc) => i64::from(utc.year()) * 12 + i64::from(u8::from(utc.month())) - 1,
        // The UTC instant lies just outside the representable years, which offsets (under 26 hours) only allow
        // at the very ends of the range: 10000-01 above, -10000-12 below.
        None if t.unix_timestamp() > 0 => 10_000 * 12 + i64::from(u8::from(Month::January)) - 1,
        None => -10_000 * 12 + i64::from(u8::from(Month::December)) - 1,
    }
}

/// Whether `key` (never after `now_key`) is among the `n` most recent buckets ending with `now_key`.
fn in_window(key: i64, now_key: i64, n: u32) -> bool {
    n > 0 && key >= now_key.saturating_sub(i64::from(n) - 1)
}

/// Newest first: greater `created_at`, ties broken by the greater id.
fn newer_first(a: &Item, b: &Item) -> Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id))
}

/// Decides which of `items` the `rules` keep at time `now`, and why; everything else is pruned.
///
/// Duplicate ids are judged item by item but reported once: if any of them is kept the id is kept (with the
/// strongest reason among them), otherwise it is pruned once.
pub fn plan(items: &[Item], rules: Rules, now: OffsetDateTime) -> Plan {
    let now_keys = Keys::of(now);
    let mut order: Vec<&Item> = items.iter().collect();
    order.sort_by(|a, b| newer_first(a, b));

    let mut hours = HashSet::new();
    let mut days = HashSet::new();
    let mut months = HashSet::new();
    let mut reasons: Vec<Option<Reason>> = Vec::with_capacity(order.len());
    for (pos, item) in order.iter().enumerate() {
        let k = Keys::of(item.created_at).clamp_to(now_keys);
        // Walking newest first, the first item to claim a bucket is that bucket's newest. Every rule claims its
        // bucket even when an earlier rule already keeps the item.
        let hourly = in_window(k.hour, now_keys.hour, rules.hourly) && hours.insert(k.hour);
        let daily = in_window(k.day, now_keys.day, rules.daily) && days.insert(k.day);
        let monthly = in_window(k.month, now_keys.month, rules.monthly) && months.insert(k.month);
        let reason = if pos == 0 {
            Some(Reason::Newest)
        } else if hourly {
            Some(Reason::Hourly)
        } else if daily {
            Some(Reason::Daily)
        } else if monthly {
            Some(Reason::Monthly)
        } else {
            None
        };
        reasons.push(reason);
    }

    let mut keep: Vec<(Uuid, Reason)> = Vec::new();
    let mut kept_at: HashMap<Uuid, usize> = HashMap::new();
    for (item, reason) in order.iter().zip(&reasons) {
        let Some(reason) = *reason else { continue };
        match kept_at.get(&item.id) {
            Some(&at) => {
                if let Some(entry) = keep.get_mut(at)
                    && reason.rank() < entry.1.rank()
                {
                    entry.1 = reason;
                }
            }
            None => {
                kept_at.insert(item.id, keep.len());
                keep.push((item.id, reason));
            }
        }
    }

    let mut prune = Vec::new();
    let mut pruned = HashSet::new();
    for (item, reason) in order.iter().zip(&reasons).rev() {
        if reason.is_none() && !kept_at.contains_key(&item.id) && pruned.insert(item.id) {
            prune.push(item.id);
        }
    }

    Plan { keep, prune }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn item(n: u128, created_at: OffsetDateTime) -> Item {
        Item { id: id(n), created_at }
    }

    /// `count` backups, `step` apart, the first at `first`; ids 1, 2, ... in time order.
    fn series(first: OffsetDateTime, step: Duration, count: u32) -> Vec<Item> {
        (0..count).map(|k| item(u128::from(k) + 1, first + step * k)).collect()
    }

    fn created(items: &[Item], wanted: Uuid) -> OffsetDateTime {
        let Some(found) = items.iter().find(|i| i.id == wanted) else { panic!("unknown id {wanted}") };
        found.created_at
    }

    /// Every input id exactly once in keep or prune; keep newest first, prune oldest first.
    fn assert_partition(items: &[Item], plan: &Plan) {
        let kept: HashSet<Uuid> = plan.keep.iter().map(|(id, _)| *id).collect();
        let pruned: HashSet<Uuid> = plan.prune.iter().copied().collect();
        assert_eq!(kept.len(), plan.keep.len(), "duplicate in keep");
        assert_eq!(pruned.len(), plan.prune.len(), "duplicate in prune");
        assert!(kept.is_disjoint(&pruned), "an id is both kept and pruned");
        let all: HashSet<Uuid> = items.iter().map(|i| i.id).collect();
        assert_eq!(kept.union(&pruned).copied().collect::<HashSet<_>>(), all);
        for pair in plan.keep.windows(2) {
            assert!(created(items, pair[0].0) >= created(items, pair[1].0), "keep not newest first");
        }
        for pair in plan.prune.windows(2) {
            assert!(created(items, pair[0]) <= created(items, pair[1]), "prune not oldest first");
        }
    }

    const OFF: Rules = Rules { hourly: 0, daily: 0, monthly: 0 };

    #[test]
    fn empty_input_gives_empty_plan() {
        assert_eq!(plan(&[], Rules::default(), datetime!(2026-03-15 12:00 UTC)), Plan::default());
    }

    #[test]
    fn single_backup_is_kept_as_newest() {
        let items = [item(7, datetime!(2020-01-01 00:00 UTC))];
        let expected = Plan { keep: vec![(id(7), Reason::Newest)], prune: vec![] };
        assert_eq!(plan(&items, Rules::default(), datetime!(2026-03-15 12:00 UTC)), expected);
        assert_eq!(plan(&items, OFF, datetime!(2026-03-15 12:00 UTC)), expected);
    }

    #[test]
    fn default_rules() {
        assert_eq!(Rules::default(), Rules { hourly: 48, daily: 180, monthly: 12 });
    }

    #[test]
    fn hourly_keeps_newest_of_each_of_the_last_48_hours() {
        // Every 20 minutes for 72 hours: 2026-03-12 12:00 .. 2026-03-15 11:40.
        let items = series(datetime!(2026-03-12 12:00 UTC), Duration::minutes(20), 216);
        let now = datetime!(2026-03-15 11:50 UTC);
        let p = plan(&items, Rules { hourly: 48, daily: 0, monthly: 0 }, now);
        assert_partition(&items, &p);
        // Window: 2026-03-13 12:00 .. 2026-03-15 11:59, 48 hours, each with three backups.
        assert_eq!(p.keep.len(), 48);
        assert_eq!(p.prune.len(), 216 - 48);
        assert_eq!(p.keep[0], (id(216), Reason::Newest));
        assert!(p.keep[1..].iter().all(|(_, r)| *r == Reason::Hourly));
        for (kept, _) in &p.keep {
            let at = created(&items, *kept);
            assert_eq!(at.minute(), 40, "not the newest of its hour: {at}");
            assert!(at >= datetime!(2026-03-13 12:00 UTC));
        }
        // The whole oldest day is pruned.
        for i in items.iter().filter(|i| i.created_at.date() == time::macros::date!(2026 - 03 - 12)) {
            assert!(p.prune.contains(&i.id));
        }
        assert_eq!(p.prune[0], id(1));
    }

    #[test]
    fn daily_keeps_last_backup_of_each_day() {
        // Four a day (01, 07, 13, 19 o'clock) for ten days, 2026-03-06 .. 2026-03-15.
        let items: Vec<Item> = (0..10u32)
            .flat_map(|d| [1, 7, 13, 19].map(move |h| (d, h)))
            .enumerate()
            .map(|(n, (d, h))| {
                item(n as u128 + 1, datetime!(2026-03-06 00:00 UTC) + Duration::days(d.into()) + Duration::hours(h))
            })
            .collect();
        let now = datetime!(2026-03-15 20:00 UTC);
        let p = plan(&items, Rules { hourly: 0, daily: 7, monthly: 0 }, now);
        assert_partition(&items, &p);
        assert_eq!(p.keep.len(), 7);
        assert_eq!(p.prune.len(), 33);
        assert_eq!(p.keep[0].1, Reason::Newest);
        assert!(p.keep[1..].iter().all(|(_, r)| *r == Reason::Daily));
        let kept_times: Vec<OffsetDateTime> = p.keep.iter().map(|(k, _)| created(&items, *k)).collect();
        let expected: Vec<OffsetDateTime> =
            (0..7).map(|d| datetime!(2026-03-15 19:00 UTC) - Duration::days(d)).collect();
        assert_eq!(kept_times, expected);
    }

    #[test]
    fn days_are_utc_days() {
        // 23:30 at -02:00 is 01:30 the next day in UTC, so it is the newest of 2026-03-15 (UTC), not of 03-14.
        let items = [
            item(1, datetime!(2026-03-14 22:00 UTC)),
            item(2, datetime!(2026-03-14 23:30 -02:00)),
            item(3, datetime!(2026-03-15 01:00 UTC)),
            item(4, datetime!(2026-03-15 10:00 UTC)),
        ];
        let p = plan(&items, Rules { hourly: 0, daily: 2, monthly: 0 }, datetime!(2026-03-15 12:00 UTC));
        assert_eq!(p.keep, vec![(id(4), Reason::Newest), (id(1), Reason::Daily)]);
        assert_eq!(p.prune, vec![id(3), id(2)]);
    }

    #[test]
    fn monthly_crosses_the_year_boundary() {
        // The 1st and 15th of 2025-09 .. 2026-01, then 2026-02-01.
        let firsts = [
            datetime!(2025-09-01 00:00 UTC),
            datetime!(2025-10-01 00:00 UTC),
            datetime!(2025-11-01 00:00 UTC),
            datetime!(2025-12-01 00:00 UTC),
            datetime!(2026-01-01 00:00 UTC),
        ];
        let mut items: Vec<Item> = firsts
            .iter()
            .flat_map(|&first| [first, first + Duration::days(14)])
            .zip(1..)
            .map(|(t, n)| item(n, t))
            .collect();
        items.push(item(100, datetime!(2026-02-01 06:00 UTC)));
        let now = datetime!(2026-02-10 12:00 UTC);
        let p = plan(&items, Rules { hourly: 0, daily: 0, monthly: 3 }, now);
        assert_partition(&items, &p);
        let kept: Vec<(OffsetDateTime, Reason)> = p.keep.iter().map(|(k, r)| (created(&items, *k), *r)).collect();
        assert_eq!(
            kept,
            vec![
                (datetime!(2026-02-01 06:00 UTC), Reason::Newest),
                (datetime!(2026-01-15 00:00 UTC), Reason::Monthly),
                (datetime!(2025-12-15 00:00 UTC), Reason::Monthly),
            ]
        );
        assert_eq!(p.prune.len(), 8);
    }

    #[test]
    fn backup_in_the_future_is_kept_and_sits_in_nows_buckets() {
        let now = datetime!(2026-03-15 12:20 UTC);
        let items = [
            item(1, datetime!(2026-03-15 11:30 UTC)),
            item(2, datetime!(2026-03-15 12:05 UTC)),
            item(3, datetime!(2026-03-17 09:00 UTC)),
        ];
        let p = plan(&items, Rules { hourly: 2, daily: 0, monthly: 0 }, now);
        assert_partition(&items, &p);
        // The future backup is newest and takes now's hour; 12:05 shares that hour, 11:30 has its own.
        assert_eq!(p.keep, vec![(id(3), Reason::Newest), (id(1), Reason::Hourly)]);
        assert_eq!(p.prune, vec![id(2)]);

        // Even with every rule off the future backup is not pruned, and with a one-hour window it claims now's hour.
        let p = plan(&items, Rules { hourly: 1, daily: 1, monthly: 1 }, now);
        assert_eq!(p.keep, vec![(id(3), Reason::Newest)]);
        assert_eq!(p.prune, vec![id(1), id(2)]);
    }

    #[test]
    fn all_rules_off_keeps_only_the_newest() {
        let items = series(datetime!(2026-03-15 08:00 UTC), Duration::hours(1), 5);
        let p = plan(&items, OFF, datetime!(2026-03-15 12:30 UTC));
        assert_eq!(p.keep, vec![(id(5), Reason::Newest)]);
        assert_eq!(p.prune, vec![id(1), id(2), id(3), id(4)]);
    }

    #[test]
    fn reason_is_the_strongest_rule() {
        let now = datetime!(2026-03-15 12:30 UTC);
        let items = [
            item(1, datetime!(2026-02-20 10:00 UTC)), // monthly only (last month's newest)
            item(2, datetime!(2026-03-14 10:00 UTC)), // daily only (yesterday's newest, outside 2 hours)
            item(3, datetime!(2026-03-15 11:10 UTC)), // hourly, daily of today is taken by 4
            item(4, datetime!(2026-03-15 12:10 UTC)), // newest, also hourly, daily, monthly
        ];
        let p = plan(&items, Rules { hourly: 2, daily: 2, monthly: 2 }, now);
        assert_eq!(
            p.keep,
            vec![(id(4), Reason::Newest), (id(3), Reason::Hourly), (id(2), Reason::Daily), (id(1), Reason::Monthly)]
        );
        assert!(p.prune.is_empty());
    }

    #[test]
    fn ties_and_duplicate_ids() {
        let t = datetime!(2026-03-15 10:00 UTC);
        // Same instant: the greater id is the newest. The equal instant given at another offset is the same time.
        let items = [item(1, t), item(2, datetime!(2026-03-15 12:00 +02:00))];
        let p = plan(&items, Rules { hourly: 1, daily: 0, monthly: 0 }, t);
        assert_eq!(p.keep, vec![(id(2), Reason::Newest)]);
        assert_eq!(p.prune, vec![id(1)]);

        // Id 9 appears twice: once pruned, once kept; keep wins and it is reported once.
        let items = [item(9, datetime!(2026-03-10 00:00 UTC)), item(5, t), item(9, t + Duration::minutes(5))];
        let p = plan(&items, OFF, t + Duration::hours(1));
        assert_eq!(p.keep, vec![(id(9), Reason::Newest)]);
        assert_eq!(p.prune, vec![id(5)]);

        // Id 8 appears twice, both pruned: reported once.
        let items = [item(8, t - Duration::days(3)), item(8, t - Duration::days(2)), item(1, t)];
        let p = plan(&items, OFF, t);
        assert_eq!(p.keep, vec![(id(1), Reason::Newest)]);
        assert_eq!(p.prune, vec![id(8)]);
    }

    #[test]
    fn extreme_offsets_do_not_panic() {
        let items = [
            item(1, datetime!(9999-12-31 23:59:59 -23:00)),
            item(2, datetime!(-9999-01-01 00:00 +23:00)),
            item(3, datetime!(2026-01-01 00:00 UTC)),
        ];
        for now in [datetime!(9999-12-31 23:59:59 -23:00), datetime!(-9999-01-01 00:00 +23:00)] {
            let p = plan(&items, Rules { hourly: u32::MAX, daily: u32::MAX, monthly: u32::MAX }, now);
            assert_partition(&items, &p);
        }
    }

    #[test]
    fn realistic_mix_with_defaults() {
        // Hourly backups for 400 days: 2025-02-08 13:00 .. 2026-03-15 12:00 (9600 backups).
        let items = series(datetime!(2025-02-08 13:00 UTC), Duration::hours(1), 400 * 24);
        assert_eq!(items.last().map(|i| i.created_at), Some(datetime!(2026-03-15 12:00 UTC)));
        let now = datetime!(2026-03-15 12:30 UTC);
        let p = plan(&items, Rules::default(), now);
        assert_partition(&items, &p);
        // Hourly: 2026-03-13 13:00 .. 2026-03-15 12:00, 48 backups (the newest among them). That covers the
        // newest (23:00, or 12:00 today) of 03-13, 03-14 and 03-15.
        // Daily: 180 days, 2025-09-17 .. 2026-03-15; 3 already kept, 177 more (each 23:00).
        // Monthly: 12 months, 2025-04 .. 2026-03; the newest of a month is its last day's 23:00. 2026-03 is kept
        // as newest, 2025-09 .. 2026-02 end inside the daily window, leaving 2025-04 .. 2025-08: 5 more.
        let count = |r: Reason| p.keep.iter().filter(|(_, k)| *k == r).count();
        assert_eq!(count(Reason::Newest), 1);
        assert_eq!(count(Reason::Hourly), 47);
        assert_eq!(count(Reason::Daily), 177);
        assert_eq!(count(Reason::Monthly), 5);
        assert_eq!(p.keep.len(), 48 + 177 + 5);
        assert_eq!(p.prune.len(), 9600 - 230);
        let monthly: Vec<OffsetDateTime> =
            p.keep.iter().filter(|(_, r)| *r == Reason::Monthly).map(|(k, _)| created(&items, *k)).collect();
        assert_eq!(
            monthly,
            vec![
                datetime!(2025-08-31 23:00 UTC),
                datetime!(2025-07-31 23:00 UTC),
                datetime!(2025-06-30 23:00 UTC),
                datetime!(2025-05-31 23:00 UTC),
                datetime!(2025-04-30 23:00 UTC),
            ]
        );
        let oldest_daily = p.keep.iter().filter(|(_, r)| *r == Reason::Daily).map(|(k, _)| created(&items, *k)).min();
        assert_eq!(oldest_daily, Some(datetime!(2025-09-17 23:00 UTC)));
    }
}
