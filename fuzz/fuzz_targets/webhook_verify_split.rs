//! The webhook's hot path over arbitrary bytes: the `X-Hub-Signature-256` check
//! (`shared::meta::signature::verify`) and the split into envelopes (`shared::meta::envelope::split`).
//!
//! Input: the raw body, or `H:<header>\n<body>` to fuzz the header too. Besides "never panics":
//! a body signed with the app secret always verifies (raw, with padding around the header, and in
//! the `\uXXXX`-escaped form older Meta documentation signs); another secret's signature never
//! does; every envelope the split enqueues fits a queue message, carries only characters SQS
//! accepts, and decodes as the processor decodes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::meta::envelope::{self, Envelope};
use shared::meta::signature::{self, AppSecret, SignatureError};
use shared::timestamp::Timestamp;

const REQUEST_ID: &str = "fuzz-request";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.strip_prefix(b"H:") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (std::str::from_utf8(&rest[..end]).ok(), &rest[end + 1..]),
            None => (None, rest),
        },
        None => (None, data),
    };
    let secrets = [AppSecret::new("fuzz-app-secret"), AppSecret::new("fuzz-rotated-secret")];

    // Whatever the header says: an answer, never a panic; a forged header never verifies.
    if let Some(h) = header {
        let verdict = signature::verify(Some(h), body, &secrets);
        if verdict.is_ok() {
            let honest = secrets.iter().any(|s| h.trim().eq_ignore_ascii_case(&s.sign(body)));
            let escaped = std::str::from_utf8(body).is_ok_and(|t| {
                let e = escape_non_ascii(t);
                secrets
                    .iter()
                    .any(|s| h.trim().eq_ignore_ascii_case(&s.sign(e.as_bytes())))
            });
            assert!(honest || escaped, "a header no secret signed was accepted");
        }
    }
    assert_eq!(signature::verify(None, body, &secrets), Err(SignatureError::Missing));

    // Signed by a configured secret: accepted, however the header is padded.
    for s in &secrets {
        let signed = s.sign(body);
        assert_eq!(signature::verify(Some(&signed), body, &secrets), Ok(()));
        assert_eq!(signature::verify(Some(&format!(" {signed}\t")), body, &secrets), Ok(()));
    }
    let stranger = AppSecret::new("someone-else").sign(body);
    assert_eq!(
        signature::verify(Some(&stranger), body, &secrets),
        Err(SignatureError::Mismatch)
    );
    if let Ok(text) = std::str::from_utf8(body)
        && !text.is_ascii()
    {
        let escaped = secrets[1].sign(escape_non_ascii(text).as_bytes());
        assert_eq!(signature::verify(Some(&escaped), body, &secrets), Ok(()));
    }

    // The split, as the webhook runs it after a good signature.
    let received_at = Timestamp::from_unix_seconds(1_800_000_000);
    match envelope::split(body, REQUEST_ID, received_at) {
        Ok(split) => {
            for queued in &split.envelopes {
                assert!(
                    queued.len() <= shared::queue::MAX_BODY_BYTES,
                    "envelope over the queue limit"
                );
                assert!(queued.chars().all(sqs_accepts), "a character SQS refuses was enqueued");
                let decoded: Envelope = match serde_json::from_str(queued) {
                    Ok(e) => e,
                    Err(e) => panic!("an enqueued envelope does not decode in the processor: {e}"),
                };
                assert_eq!(decoded.request_id, REQUEST_ID);
                assert_eq!(decoded.received_at, received_at);
            }
            for rejected in &split.rejected {
                assert!(!rejected.kind.is_empty());
                let _ = format!("{rejected:?}");
            }
        }
        Err(unusable) => {
            assert!(!unusable.kind.is_empty());
            let _ = unusable.to_string();
        }
    }
});

/// The form older Meta documentation says is signed: every character outside ASCII as `\uXXXX`
/// (UTF-16 code units, lowercase hex), as `signature::verify` documents it.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The characters an SQS message body may hold.
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
