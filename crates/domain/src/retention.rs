//! Retention policies: the rules by which an organisation's profiles
//! expire, checked against its schema. Rules hold field names and numbers
//! of days, never values.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use crate::{FieldType, Schema, Violation};

/// The longest a rule may keep a profile: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// When an organisation's profiles expire. A profile expires as soon as
/// any rule says so; a policy with no rule keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Expire a profile this many days after its last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_update_days: Option<u32>,
    /// Expire a profile this many days after the date in one of its date
    /// fields (a leaving date, say). Profiles without that field are kept
    /// by this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_date: Option<DateRule>,
}

/// Expiry counted from a date field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateRule {
    pub field: String,
    pub days: u32,
}

/// Which rule expired a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    AfterUpdate,
    AfterDate,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterUpdate => "after_update",
            Self::AfterDate => "after_date",
        }
    }
}

impl RetentionPolicy {
    /// Whether the policy has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.after_update_days.is_none() && self.after_date.is_none()
    }

    /// Checks the policy against the schema: day counts from 1 to
    /// `MAX_RETENTION_DAYS`, and a date rule on a date field that exists.
    /// Lists every problem.
    pub fn check(&self, schema: &Schema) -> Result<(), Vec<Violation>> {
        let mut errors = Vec::new();
        let days_ok = |d: u32| (1..=MAX_RETENTION_DAYS).contains(&d);
        if let Some(d) = self.after_update_days
            && !days_ok(d)
        {
            errors.push(Violation::new(
                "/after_update_days",
                "range",
                format!("after_update_days must be 1 to {MAX_RETENTION_DAYS}"),
            ));
        }
        if let Some(rule) = &self.after_date {
            if !days_ok(rule.days) {
                errors.push(Violation::new(
                    "/after_date/days",
                    "range",
                    format!("after_date.days must be 1 to {MAX_RETENTION_DAYS}"),
                ));
            }
            match schema.field_named(&rule.field) {
                Some(f) if f.kind == FieldType::Date => {}
                Some(_) => errors.push(Violation::new(
                    "/after_date/field",
                    "type",
                    format!("{} is not a date field", rule.field),
                )),
                None => errors.push(Violation::new(
                    "/after_date/field",
                    "unknown",
                    "after_date.field names no field of the schema".to_owned(),
                )),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Whether a profile last changed at `updated_at`, whose date field
    /// (if the policy has a date rule) holds `date`, has expired at `now`,
    /// and by which rule.
    pub fn expiry(&self, updated_at: OffsetDateTime, date: Option<Date>, now: OffsetDateTime) -> Option<Expiry> {
        if let Some(days) = self.after_update_days
            && updated_at + Duration::days(i64::from(days)) <= now
        {
            return Some(Expiry::AfterUpdate);
        }
        if let (Some(rule), Some(date)) = (&self.after_date, date)
            && let Some(until) = date.checked_add(Duration::days(i64::from(rule.days)))
            && until < now.date()
        {
            return Some(Expiry::AfterDate);
        }
        None
    }
}

/// Parses a stored date value, `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn schema() -> Schema {
        let fields = serde_json::from_value(serde_json::json!([
            {"name": "leaving_date", "type": "date"},
            {"name": "name", "type": "string"}
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        Schema::new(1, fields).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn rules_expire_by_update_or_by_date_and_keep_the_rest() {
        let now = datetime!(2026-06-10 12:00 UTC);
        let p = RetentionPolicy {
            after_update_days: Some(30),
            after_date: Some(DateRule { field: "leaving_date".into(), days: 10 }),
        };
        assert_eq!(p.expiry(datetime!(2026-05-11 12:00 UTC), None, now), Some(Expiry::AfterUpdate));
        assert_eq!(p.expiry(datetime!(2026-05-11 12:01 UTC), None, now), None);
        let fresh = datetime!(2026-06-09 00:00 UTC);
        assert_eq!(p.expiry(fresh, Some(date!(2026 - 05 - 30)), now), Some(Expiry::AfterDate));
        // The tenth day after the date is still kept.
        assert_eq!(p.expiry(fresh, Some(date!(2026 - 05 - 31)), now), None);
        assert_eq!(RetentionPolicy::default().expiry(datetime!(1990-01-01 0:00 UTC), None, now), None);
    }

    #[test]
    fn policies_are_checked_against_the_schema() {
        let s = schema();
        let bad = RetentionPolicy {
            after_update_days: Some(0),
            after_date: Some(DateRule { field: "name".into(), days: MAX_RETENTION_DAYS + 1 }),
        };
        let errors = bad.check(&s).err().unwrap_or_default();
        let paths: Vec<&str> = errors.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["/after_update_days", "/after_date/days", "/after_date/field"]);
        let unknown =
            RetentionPolicy { after_update_days: None, after_date: Some(DateRule { field: "x".into(), days: 1 }) };
        assert_eq!(unknown.check(&s).err().unwrap_or_default().first().map(|v| v.rule), Some("unknown"));
        let good = RetentionPolicy {
            after_update_days: Some(365),
            after_date: Some(DateRule { field: "leaving_date".into(), days: 30 }),
        };
        assert!(good.check(&s).is_ok());
    }
}
