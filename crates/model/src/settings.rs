//! What every component's configuration section shares: durations written
//! as text, [`Secret`] values, and [`Invalid`], the error of a section's
//! `validate()` that names the setting at fault.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses durations written like `5s`, `250ms`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 5s or 250ms: {e}"))
}

/// Serde for durations as text (`"250ms"`): `#[serde(with = "duration_text")]`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// `d` as the settings write it (`6h`, `1m 30s`).
    pub fn format(d: Duration) -> String {
        humantime::format_duration(d).to_string()
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A setting whose value is wrong: `field` is its dotted path
/// (`finnhub.url`), `reason` says what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with the section's name in front of the field.
    pub fn within(self, section: &str) -> Self {
        Invalid {
            field: format!("{section}.{}", self.field),
            reason: self.reason,
        }
    }
}

/// `Err` naming the first of `fields` that is 0: counts and sizes that
/// must be at least 1.
pub fn at_least_one(fields: &[(&str, usize)]) -> Result<(), Invalid> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((field, _)) => Err(Invalid::new(*field, "must be at least 1")),
        None => Ok(()),
    }
}

/// `Err` naming the first of `fields` that is zero: pauses and timeouts.
pub fn longer_than_zero(fields: &[(&str, Duration)]) -> Result<(), Invalid> {
    match fields.iter().find(|(_, v)| v.is_zero()) {
        Some((field, _)) => Err(Invalid::new(*field, "must be longer than 0")),
        None => Ok(()),
    }
}

/// A credential such as an API token. `Debug`, `Display` and `Serialize`
/// show `***`; only [`Secret::expose`] gives the value, at the one place
/// that sends it. An empty secret means "not set".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the value replaced by `***`: for
    /// error messages of libraries that may echo a URL.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&*self.0, "***")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret as a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            // A token of digits only, given in the environment, arrives as a number.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Query parameters whose values are secrets in the URLs StreamForge takes
/// (libpq's `password` and `sslpassword`, tokens and keys of any service).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "pass",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "sasl.password",
    "sasl_password",
];

/// `url` with every secret replaced by `***`, for logs, messages and
/// `config print`: the password of its userinfo (`user:***@host`) and the
/// values of secret query parameters (`?password=***`). Works on strings
/// that are not valid URLs too (an unknown scheme, a typo), so an error
/// that quotes what the user gave never quotes the password.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // The query starts at the first `?`; the userinfo ends at the last `@`
    // before it (a password may contain `@`, `/` or `:`).
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match before_query.rfind('@') {
        Some(at) if !head.is_empty() => {
            let userinfo = &before_query[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        _ => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_or_serializes_its_value() {
        let s = Secret::new("canary-123");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        assert_eq!(
            s.redact("wss://x/?token=canary-123 failed"),
            "wss://x/?token=*** failed"
        );
        assert_eq!(s.expose(), "canary-123");
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
        let digits: Secret = serde_json::from_str("12345").unwrap();
        assert_eq!(digits.expose(), "12345");
    }

    #[test]
    fn durations_read_and_write_as_text_and_errors_name_the_section() {
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        let e = Invalid::new("url", "expected ws://").within("finnhub");
        assert_eq!(e.to_string(), "finnhub.url: expected ws://");
        assert_eq!(
            at_least_one(&[("a", 1), ("b", 0), ("c", 0)])
                .unwrap_err()
                .field,
            "b"
        );
        assert!(at_least_one(&[("a", 1)]).is_ok());
        let d = Duration::from_millis;
        assert_eq!(
            longer_than_zero(&[("a", d(1)), ("b", d(0))])
                .unwrap_err()
                .field,
            "b"
        );
        assert!(longer_than_zero(&[("a", d(1))]).is_ok());
    }

    #[test]
    fn urls_lose_their_secrets_and_keep_the_rest() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("redis://:pw@cache:6379/", "redis://:***@cache:6379/"),
            (
                "rediss://default:p@ss/w:rd@cache:6380/0",
                "rediss://default:***@cache:6380/0",
            ),
            (
                "postgres://app@db/x?sslmode=require&password=s3cret&application_name=a@b",
                "postgres://app@db/x?sslmode=require&password=***&application_name=a@b",
            ),
            (
                "postgresql://db/x?PASSWORD=s3cret&sslpassword=k3y",
                "postgresql://db/x?PASSWORD=***&sslpassword=***",
            ),
            ("mongodb://root:hunter2@h/x", "mongodb://root:***@h/x"),
            (
                "sqlite://data/streamforge.db",
                "sqlite://data/streamforge.db",
            ),
            ("memory://", "memory://"),
            ("kafka://a:9092,b:9092", "kafka://a:9092,b:9092"),
            ("not a url?token=abc", "not a url?token=***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
