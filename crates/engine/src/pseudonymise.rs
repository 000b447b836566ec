//! Pseudonymised datasets: every personal and sensitive value replaced by
//! a realistic fake of the same kind, drawn from a seed keyed by the
//! run's random key and the real value, so equal values get equal fakes
//! within a run (joins still work) and nothing maps a fake back once the
//! key is dropped. Plain values and the structure are kept.

use domain::{FieldDef, FieldType, FieldValue, ProfileId};
use fake::Fake;
use fake::faker::address::en::{BuildingNumber, CityName, CountryName, PostCode, StreetName};
use fake::faker::company::en::CompanyName;
use fake::faker::job::en::Title as JobTitle;
use fake::faker::lorem::en::{Sentence, Words};
use fake::faker::name::en::{FirstName, LastName};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::{EngineError, KeyError};

/// What a text field holds, guessed from its type and name, to choose a
/// fake that looks like it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FullName,
    FirstName,
    LastName,
    Email,
    Phone,
    City,
    Street,
    Postcode,
    Country,
    Company,
    JobTitle,
    Words,
    Prose,
}

impl Kind {
    fn of(def: &FieldDef) -> Self {
        match def.kind {
            FieldType::Email => return Self::Email,
            FieldType::Phone => return Self::Phone,
            FieldType::Text => return Self::Prose,
            _ => {}
        }
        let name = def.name.as_str().to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
        if has(&["first", "given", "forename"]) {
            Self::FirstName
        } else if has(&["last", "surname", "family"]) {
            Self::LastName
        } else if has(&["name"]) && !has(&["company", "employer", "organisation", "organization"]) {
            Self::FullName
        } else if has(&["email", "mail"]) {
            Self::Email
        } else if has(&["phone", "mobile", "tel"]) {
            Self::Phone
        } else if has(&["city", "town"]) {
            Self::City
        } else if has(&["address", "street"]) {
            Self::Street
        } else if has(&["postcode", "postal", "zip"]) {
            Self::Postcode
        } else if has(&["country", "nationality"]) {
            Self::Country
        } else if has(&["company", "employer", "organisation", "organization"]) {
            Self::Company
        } else if has(&["title", "job", "role", "position"]) {
            Self::JobTitle
        } else {
            Self::Words
        }
    }

    /// The generator's name in the seed: equal values of kinds made alike
    /// (names, or addresses) map alike wherever they appear.
    fn seed_name(self) -> &'static str {
        match self {
            Self::FullName => "full_name",
            Self::FirstName => "first_name",
            Self::LastName => "last_name",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::City => "city",
            Self::Street => "street",
            Self::Postcode => "postcode",
            Self::Country => "country",
            Self::Company => "company",
            Self::JobTitle => "job_title",
            Self::Words => "words",
            Self::Prose => "prose",
        }
    }

    fn make(self, rng: &mut StdRng) -> String {
        match self {
            Self::FullName => {
                let (first, last): (String, String) = (FirstName().fake_with_rng(rng), LastName().fake_with_rng(rng));
                format!("{first} {last}")
            }
            Self::FirstName => FirstName().fake_with_rng(rng),
            Self::LastName => LastName().fake_with_rng(rng),
            Self::Email => {
                let (first, last): (String, String) = (FirstName().fake_with_rng(rng), LastName().fake_with_rng(rng));
                let n: u16 = rng.random_range(1..10_000);
                let domain = ["example.com", "example.org", "example.net"][rng.random_range(0..3usize)];
                let local: String = format!("{first}.{last}{n}")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect::<String>()
                    .to_ascii_lowercase();
                format!("{local}@{domain}")
            }
            // Always within the phone rule: digits, spaces, +, and 4 to 32
            // characters; 555 numbers are reserved for fiction. 10^11 of
            // them, so two people almost never share one.
            Self::Phone => {
                format!("+1 555 {:07} {:04}", rng.random_range(0..10_000_000u32), rng.random_range(0..10_000u16))
            }
            Self::City => CityName().fake_with_rng(rng),
            Self::Street => {
                let (n, street): (String, String) =
                    (BuildingNumber().fake_with_rng(rng), StreetName().fake_with_rng(rng));
                format!("{n} {street}")
            }
            Self::Postcode => PostCode().fake_with_rng(rng),
            Self::Country => CountryName().fake_with_rng(rng),
            Self::Company => CompanyName().fake_with_rng(rng),
            Self::JobTitle => JobTitle().fake_with_rng(rng),
            Self::Words => {
                let words: Vec<String> = Words(1..4).fake_with_rng(rng);
                words.join(" ")
            }
            Self::Prose => Sentence(4..16).fake_with_rng(rng),
        }
    }
}

/// One pseudonymisation run. Its key lives as long as the value.
#[derive(Debug)]
pub struct Pseudonymiser {
    key: crypto::PseudonymKey,
    started: time::OffsetDateTime,
}

impl Pseudonymiser {
    /// A run with a fresh random key.
    pub fn new() -> Result<Self, EngineError> {
        Ok(Self { key: crypto::PseudonymKey::generate().map_err(KeyError::from)?, started: store::now() })
    }

    /// When the run began: every record's times in the dataset.
    pub fn started(&self) -> time::OffsetDateTime {
        self.started
    }

    fn rng(&self, kind: &str, value: &[u8]) -> StdRng {
        StdRng::from_seed(self.key.seed(kind, value))
    }

    /// A record's stand-in id: the same for the same record in one run.
    pub fn id(&self, id: ProfileId) -> ProfileId {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.key.seed("profile_id", id.as_uuid().as_bytes())[..16]);
        ProfileId::from_uuid(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// The fake of one encrypted field's value in record `record`: the
    /// same kind of value, never the value itself. Booleans and enum
    /// values have too few values to stand for a person consistently, so
    /// they are drawn afresh for each record and field (from a seed of the
    /// record and field, not the value): they carry nothing of the real one.
    pub fn value(&self, record: ProfileId, def: &FieldDef, value: &FieldValue) -> FieldValue {
        let per_record = || {
            let mut at = record.as_uuid().as_bytes().to_vec();
            at.extend_from_slice(def.name.as_str().as_bytes());
            self.rng("per_record", &at)
        };
        match (def.kind, value) {
            (FieldType::Boolean, FieldValue::Bool(_)) => FieldValue::Bool(per_record().random_bool(0.5)),
            (FieldType::Number, FieldValue::Number(n)) => FieldValue::Number(self.number(*n)),
            (FieldType::Date, FieldValue::Text(s)) => FieldValue::Text(self.date(s)),
            (FieldType::Enum, FieldValue::Text(_)) => {
                let pick = def.values.get(per_record().random_range(0..def.values.len().max(1))).cloned();
                FieldValue::Text(pick.unwrap_or_default())
            }
            (_, FieldValue::Text(s)) => FieldValue::Text(self.text(def, s)),
            // A value whose type the schema does not give it: dropped to
            // nothing rather than passed through.
            _ => FieldValue::Text(String::new()),
        }
    }

    fn text(&self, def: &FieldDef, real: &str) -> String {
        let kind = Kind::of(def);
        // Case and spacing do not make a different person.
        let normalised = real.trim().to_lowercase();
        let mut rng = self.rng(kind.seed_name(), normalised.as_bytes());
        let max = match def.kind {
            FieldType::String => def.max_length.unwrap_or(1_000) as usize,
            _ => 65_536,
        };
        for _ in 0..16 {
            let fake: String = kind.make(&mut rng).chars().take(max).collect();
            if !fake.trim().is_empty() && fake.trim().to_lowercase() != normalised {
                return fake;
            }
        }
        // Drawing the real value sixteen times over: use a token instead.
        format!("x{}", rng.random_range(0..u32::MAX)).chars().take(max).collect()
    }

    /// A date moved by 1 to 365 days either way, the same for the same
    /// date: plausible (a birth date stays an adult's), never the real one.
    fn date(&self, real: &str) -> String {
        let Some(date) = domain::parse_date(real) else { return String::new() };
        let mut rng = self.rng("date", real.as_bytes());
        let days = i64::from(rng.random_range(1..=365u16)) * if rng.random_bool(0.5) { 1 } else { -1 };
        let moved = date.checked_add(time::Duration::days(days)).unwrap_or(date);
        let format = time::macros::format_description!("[year]-[month]-[day]");
        moved.format(&format).unwrap_or_default()
    }

    /// A number scaled by 0.8 to 1.2 and rounded to the real one's
    /// decimals (at most 6), redrawn until it differs from it.
    fn number(&self, real: f64) -> f64 {
        let mut rng = self.rng("number", &real.to_bits().to_be_bytes());
        let decimals = decimals_of(real);
        let scale = 10f64.powi(decimals);
        for _ in 0..16 {
            let up: bool = rng.random_bool(0.5);
            let factor = 1.0 + if up { 1.0 } else { -1.0 } * rng.random_range(0.01..0.2);
            let fake = (real * factor * scale).round() / scale;
            if fake != real {
                return fake;
            }
        }
        // Too small to move by a fifth at this precision: one unit of its
        // last decimal instead.
        real + 1.0 / scale
    }
}

/// How many decimals a number is written with (at most 6).
fn decimals_of(n: f64) -> i32 {
    let text = format!("{n}");
    text.split_once('.').map_or(0, |(_, frac)| i32::try_from(frac.len().min(6)).unwrap_or(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: serde_json::Value) -> FieldDef {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fakes_are_consistent_within_a_run_of_the_right_kind_and_never_the_real_value() {
        let run = Pseudonymiser::new().unwrap_or_else(|e| panic!("{e}"));
        let name = def(serde_json::json!({"name": "full_name", "type": "string"}));
        let email = def(serde_json::json!({"name": "email", "type": "email"}));
        let phone = def(serde_json::json!({"name": "mobile", "type": "phone"}));
        let born = def(serde_json::json!({"name": "born", "type": "date"}));
        let text = |v: FieldValue| match v {
            FieldValue::Text(s) => s,
            _ => panic!("not text"),
        };
        let real = FieldValue::Text("Ada Lovelace".into());
        let r = ProfileId::new();
        let a = text(run.value(r, &name, &real));
        assert_eq!(
            a,
            text(run.value(ProfileId::new(), &name, &FieldValue::Text(" ada lovelace".into()))),
            "same person, same fake"
        );
        assert_ne!(a, "Ada Lovelace");
        assert_eq!(a.split(' ').count(), 2, "{a}");
        let e = text(run.value(r, &email, &FieldValue::Text("ada@example.org".into())));
        assert!(domain::Email::parse(&e).is_ok(), "{e}");
        let p = text(run.value(r, &phone, &FieldValue::Text("+44 20 7946 0000".into())));
        assert!(p.len() >= 4 && p.chars().all(|c| c.is_ascii_digit() || " +".contains(c)), "{p}");
        let d = text(run.value(r, &born, &FieldValue::Text("1990-02-03".into())));
        assert!(domain::parse_date(&d).is_some() && d != "1990-02-03", "{d}");
        let other = Pseudonymiser::new().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(run.id(ProfileId::new()), other.id(ProfileId::new()));
        let id = ProfileId::new();
        assert_eq!(run.id(id), run.id(id));
        assert_ne!(run.id(id), id);
        for n in [42.0, 3.5, 0.05, 0.1, 1e-6, 0.0, -7.25] {
            let fake = run.number(n);
            assert_ne!(fake, n);
            assert!(decimals_of(fake) <= decimals_of(n).max(1), "{n} -> {fake}");
        }
        // Booleans and enum values are drawn per record: the same real value
        // comes out both ways across records.
        let flag = def(serde_json::json!({"name": "smoker", "type": "boolean"}));
        let drawn: std::collections::BTreeSet<bool> = (0..64)
            .map(|_| matches!(run.value(ProfileId::new(), &flag, &FieldValue::Bool(true)), FieldValue::Bool(true)))
            .collect();
        assert_eq!(drawn.len(), 2);
    }
}
