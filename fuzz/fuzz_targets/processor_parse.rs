//! The processor's read of one ingest-queue body, as `processor::Processor::process` does it
//! before any I/O: `serde_json::from_str::<Envelope>`, then `shared::meta::events::parse` with the
//! tenant's keywords (none, and a tenant's own), then what `apply` and `upsert` compute from each
//! event without a store: identifiers normalized (`Identifier::parse`) and keyed, content and
//! details read back as JSON, expiries from the event time.
//!
//! Besides "never panics": a normalized identifier normalizes to itself (a stored E.164 phone
//! looked up again finds the same subject key), and a contact's expiry is never before its
//! message's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::identity::{Identifier, SubjectKeySecret};
use shared::meta::envelope::Envelope;
use shared::meta::events::{self, Context, Event, Seen};
use shared::optout::keywords::TenantKeywords;
use shared::retention::RetentionMonths;
use std::sync::LazyLock;

static SECRET: LazyLock<SubjectKeySecret> =
    LazyLock::new(|| SubjectKeySecret::new(b"fuzz-subject-key-secret-fuzz-subject-key".to_vec()).expect("long enough"));

static TENANTS: LazyLock<[TenantKeywords; 2]> = LazyLock::new(|| {
    [
        TenantKeywords::default(),
        TenantKeywords {
            opt_out: vec!["chau".to_owned(), "no molestar".to_owned(), "NO MÁS PROMOS".to_owned()],
            opt_out_button_ids: vec!["Promo_Off".to_owned(), "baja-ya".to_owned()],
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        // SQS bodies are text: the processor never sees anything else.
        return;
    };
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        return;
    };
    let _ = format!("{envelope:?}");
    for keywords in TENANTS.iter() {
        for event in events::parse(&envelope, Context { keywords }) {
            apply(&event);
        }
    }
});

/// What the processor computes from an event before writing it.
fn apply(event: &Event<'_>) {
    let _ = format!("{event:?}");
    match event {
        Event::Message { seen, content, .. } => {
            upsert(seen);
            let _ = serde_json::from_str::<serde_json::Value>(content.get());
        }
        Event::Status { seen, detail, .. } => {
            upsert(seen);
            let _ = serde_json::from_str::<serde_json::Value>(detail.get());
        }
        Event::Unsend { seen, .. } | Event::Preference { seen, .. } => upsert(seen),
        Event::HeldReview { seen, kind, raw } => {
            assert!(!kind.is_empty());
            upsert(seen);
            let _ = serde_json::from_str::<serde_json::Value>(raw);
        }
        Event::TenantEvent { id, payload, .. } => {
            assert!(!id.is_empty(), "a tenant event without an id");
            let _ = serde_json::from_str::<serde_json::Value>(payload.get());
        }
        Event::Unhandled { kind, .. } | Event::Rejected { kind, .. } | Event::HeldOptOut { kind, .. } => {
            assert!(!kind.is_empty())
        }
        // An event added later: its Debug output above is exercised.
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fn upsert(seen: &Seen<'_>) {
    for raw in &seen.identifiers {
        if let Ok(id) = Identifier::parse(raw.kind, &raw.value) {
            let again = Identifier::parse(raw.kind, id.value())
                .unwrap_or_else(|e| panic!("{:?}: a normalized identifier does not parse again: {e}", raw.kind));
            assert_eq!(
                again.value(),
                id.value(),
                "{:?}: normalization is not idempotent",
                raw.kind
            );
            assert_eq!(SECRET.subject_key(&again), SECRET.subject_key(&id));
        }
    }
    for months in [RetentionMonths::MAX, RetentionMonths::new(1).expect("1 month")] {
        let message = months.expiry_for(seen.at);
        let contact = months.contact_expiry_for(seen.at);
        assert!(contact >= message, "the contact expires before its message");
    }
}
