//! What the sinks ship: each entry and each checkpoint as one JSON object
//! (a line of a JSON-lines file, a syslog message, a member of a webhook
//! batch, a line of an S3 object), carrying its chain position so that a
//! receiver can drop duplicates and check continuity, and the RFC 5424
//! syslog framing around it.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Checkpoint, Entry};

/// The record type of an entry.
pub const ENTRY: &str = "audit.entry";
/// The record type of a checkpoint.
pub const CHECKPOINT: &str = "audit.checkpoint";

/// RFC 3339 UTC time with microseconds, from unix microseconds.
pub fn rfc3339_micros(at_micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// An entry as shipped. `id` (`<chain>/<seq>`) is unique and stable: a
/// receiver keeps the first record of each id and drops repeats.
pub fn entry_record(e: &Entry) -> Value {
    json!({
        "type": ENTRY,
        "id": format!("{}/{}", e.chain, e.seq),
        "chain": e.chain,
        "seq": e.seq,
        "at": rfc3339_micros(e.at_micros),
        "at_micros": e.at_micros,
        "actor": e.actor,
        "on_behalf_of": e.on_behalf_of,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "fields": e.fields,
        "request_id": e.request_id,
        "prev_hash": hex::encode(e.prev_hash),
        "hash": hex::encode(e.hash),
    })
}

/// A checkpoint as shipped; its id is `<chain>/checkpoint/<size>`.
pub fn checkpoint_record(c: &Checkpoint) -> Value {
    json!({
        "type": CHECKPOINT,
        "id": format!("{}/checkpoint/{}", c.chain, c.size),
        "chain": c.chain,
        "size": c.size,
        "head": hex::encode(c.head),
        "at": rfc3339_micros(c.at_micros),
        "jws": c.jws,
    })
}

/// Where syslog messages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogOrigin {
    /// RFC 5424 facility, 0 to 23 (10 is authpriv, the default).
    pub facility: u8,
    /// The sending host's name (printable ASCII, at most 255 bytes).
    pub hostname: String,
    /// The application name (at most 48 bytes).
    pub app_name: String,
}

/// One record as an RFC 5424 message (severity informational, MSGID the
/// record type, no structured data, the JSON as MSG) in RFC 6587
/// octet-counting framing, as RFC 5425 requires over TLS.
pub fn syslog_frame(origin: &SyslogOrigin, record: &Value) -> Vec<u8> {
    const INFORMATIONAL: u16 = 6;
    let pri = u16::from(origin.facility.min(23)) * 8 + INFORMATIONAL;
    let kind = record.get("type").and_then(Value::as_str).unwrap_or(ENTRY);
    let at = record.get("at").and_then(Value::as_str).unwrap_or("-");
    let message = format!(
        "<{pri}>1 {at} {} {} - {} - {record}",
        header_token(&origin.hostname, 255),
        header_token(&origin.app_name, 48),
        header_token(kind, 32)
    );
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

/// A header field as RFC 5424 allows it: printable US-ASCII without
/// spaces, cut to `max` bytes; `-` when nothing is left.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if t.is_empty() { "-".to_owned() } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Draft;

    fn entry() -> Entry {
        Draft {
            at_micros: 1_795_000_000_123_456,
            actor: "user:a".into(),
            on_behalf_of: None,
            action: "profile.read".into(),
            target: "profile:p".into(),
            outcome: "success".into(),
            fields: vec!["email".into()],
            request_id: Some("r1".into()),
        }
        .seal("org:o", 7, [0; 32])
    }

    #[test]
    fn an_entry_record_carries_its_position_and_hashes() {
        let e = entry();
        let r = entry_record(&e);
        assert_eq!(r["id"], "org:o/7");
        assert_eq!(r["seq"], 7);
        assert_eq!(r["hash"], hex::encode(e.hash));
        assert_eq!(r["prev_hash"], "0".repeat(64));
        assert!(r["at"].as_str().is_some_and(|s| s.ends_with(".123456Z")), "{r}");
    }

    #[test]
    fn a_syslog_frame_is_octet_counted_rfc_5424() {
        let origin = SyslogOrigin { facility: 10, hostname: "vault 1".into(), app_name: "strongroom".into() };
        let frame = syslog_frame(&origin, &entry_record(&entry()));
        let text = String::from_utf8(frame).unwrap_or_default();
        let (len, message) = text.split_once(' ').unwrap_or_default();
        assert_eq!(len.parse::<usize>().ok(), Some(message.len()));
        assert!(message.starts_with("<86>1 2026-"), "{message}");
        assert!(message.contains(" vault1 strongroom - audit.entry - {"), "{message}");
    }
}
