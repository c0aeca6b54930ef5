//! The shape of a dead letter: whatever was rejected, it fits the bus.
//!
//! A dead letter carries the rejected input and the reason in headers. The
//! input is untrusted and may be large (a provider frame, a database error
//! text), so both are capped: a dead letter always fits the producer's
//! message limit (1 MB by default), and a cut payload says so in its
//! headers with the original size and a hash of the whole. The original
//! message's headers are kept up to [`MAX_HEADERS`] bytes.

use bytes::Bytes;
use streamforge_bus::Headers;

use streamforge_bus::message::headers;

/// Largest payload a dead letter carries; the rest is cut.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest error text in the `dlq-error` header.
pub const MAX_ERROR: usize = 2 * 1024;
/// Bytes of the original message's headers a dead letter keeps (names and
/// values); the rest are left out and `dlq-truncated: true` says so.
pub const MAX_HEADERS: usize = 16 * 1024;

/// `payload`, cut to [`MAX_PAYLOAD`] when longer; a cut payload gets the
/// headers `dlq-truncated: true`, `dlq-original-size` (bytes) and
/// `dlq-original-xxh3` (the 128-bit XXH3 of the whole payload, hex).
pub fn payload(payload: Bytes, h: &mut Headers) -> Bytes {
    if payload.len() <= MAX_PAYLOAD {
        return payload;
    }
    h.insert(headers::DLQ_TRUNCATED, Bytes::from_static(b"true"));
    h.insert(
        headers::DLQ_ORIGINAL_SIZE,
        Bytes::from(payload.len().to_string()),
    );
    h.insert(
        headers::DLQ_ORIGINAL_XXH3,
        Bytes::from(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&payload))),
    );
    payload.slice(..MAX_PAYLOAD)
}

/// The `dlq-error` header value: `error`, cut at [`MAX_ERROR`] bytes on a
/// character boundary.
pub fn error(error: &str) -> Bytes {
    if error.len() <= MAX_ERROR {
        return Bytes::copy_from_slice(error.as_bytes());
    }
    let mut end = MAX_ERROR;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    Bytes::from(format!("{}… ({} bytes)", &error[..end], error.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_pass_unchanged() {
        let mut h = Headers::with_capacity(0);
        let p = payload(Bytes::from_static(b"{\"x\":1}"), &mut h);
        assert_eq!(&p[..], b"{\"x\":1}");
        assert_eq!(h.iter().count(), 0);
    }

    #[test]
    fn large_payloads_are_cut_with_size_and_hash() {
        let big: Vec<u8> = (0..MAX_PAYLOAD * 3).map(|i| (i % 251) as u8).collect();
        let mut h = Headers::with_capacity(0);
        let p = payload(Bytes::from(big.clone()), &mut h);
        assert_eq!(p.len(), MAX_PAYLOAD);
        assert_eq!(&p[..], &big[..MAX_PAYLOAD]);
        assert_eq!(h.get_str(headers::DLQ_TRUNCATED), Some("true"));
        assert_eq!(
            h.get_str(headers::DLQ_ORIGINAL_SIZE),
            Some((MAX_PAYLOAD * 3).to_string().as_str())
        );
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&big));
        assert_eq!(h.get_str(headers::DLQ_ORIGINAL_XXH3), Some(hash.as_str()));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let e = "é".repeat(MAX_ERROR);
        let cut = error(&e);
        let text = std::str::from_utf8(&cut).expect("still UTF-8");
        assert!(text.len() < MAX_ERROR + 32, "{}", text.len());
        assert!(text.ends_with(&format!("({} bytes)", e.len())), "{text}");
        assert_eq!(&error("short")[..], b"short");
    }
}
