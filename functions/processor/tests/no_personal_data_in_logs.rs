//! Its own test binary: the log capture is the process-wide subscriber, so no other test's
//! callsites or threads interfere with what is captured.

use processor::Processor;
use shared::clock::SettableClock;
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ChannelAccount, Locale, Tenant, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::timestamp::Timestamp;
use std::sync::{Arc, Mutex};

const EVERY_TYPE: &str = include_str!("../../../tests/fixtures/wa_every_type.json");
const STATUSES: &str = include_str!("../../../tests/fixtures/wa_statuses_out_of_order.json");
const UNKNOWN_ACCOUNT: &str = include_str!("../../../tests/fixtures/wa_unknown_account.json");
const INSTAGRAM: &str = include_str!("../../../tests/fixtures/ig_every_event.json");

/// Collects everything logged, as the Lambda's JSON log would.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_no_personal_data() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let clock = SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000));
    let stores = shared::store::embedded::stores(Arc::new(clock.clone()));
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![
            ChannelAccount::new(Channel::WhatsApp, "106540352242922").expect("valid"),
            ChannelAccount::new(Channel::Instagram, "17841400000001").expect("valid"),
        ],
        retention_months: shared::retention::RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        created_at: Timestamp::from_unix_seconds(0),
    };
    stores.tenants.register(&tenant).await.expect("register");
    let secret = SubjectKeySecret::new(b"processor-test-secret-processor-test".to_vec()).expect("long enough");
    let optout_queue = Arc::new(shared::queue::embedded::EmbeddedQueue::new(
        Arc::new(shared::clock::SystemClock),
        std::time::Duration::from_secs(30),
    ));
    let p = Processor::new(stores, secret, Arc::new(clock), optout_queue);

    // Good items, bad items (parser errors may quote the payload) and an unrouted envelope.
    let mut broken: serde_json::Value = serde_json::from_str(EVERY_TYPE).expect("json");
    let messages = &mut broken["entry"][0]["changes"][0]["value"]["messages"];
    messages[0]["timestamp"] = serde_json::json!(["Ana Pérez", "5491123456789"]);
    messages[1]["id"] = serde_json::json!("Hola Ana 5491123456789");
    messages[2]["type"] = serde_json::json!(5491123456789u64);
    let bodies = [
        EVERY_TYPE.to_owned(),
        STATUSES.to_owned(),
        UNKNOWN_ACCOUNT.to_owned(),
        INSTAGRAM.to_owned(),
        broken.to_string(),
    ];
    for body in &bodies {
        let split =
            envelope::split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(1_800_000_000)).expect("usable");
        for e in split.envelopes {
            p.process(&e).await.expect("processed");
        }
    }
    let logs = String::from_utf8(captured.0.lock().unwrap_or_else(|e| e.into_inner()).clone()).expect("utf8");
    for expected in [
        "item quarantined",
        "envelope processed",
        "no tenant owns the receiving account",
    ] {
        assert!(logs.contains(expected), "{expected:?} was logged: {logs}");
    }
    for personal in [
        "Ana",
        "Pérez",
        "5491123456789",
        "+549",
        "AR.1349",
        "7012345678901234",
        "Hola",
        "stock",
        "hola desde IG",
    ] {
        assert!(!logs.contains(personal), "{personal:?} leaked into the logs:\n{logs}");
    }
}
