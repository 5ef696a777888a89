//! The whole in-memory path of one inbound webhook body: the webhook's signature check and split
//! into envelopes, then the processor's envelope decode and parse into events (no I/O on either
//! side), beside its floor measured in the same run: one HMAC over the body plus one JSON pass in
//! the webhook and one in the processor. Run: cargo bench -p shared --bench ingest_path

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;
use shared::meta::envelope::{self, Envelope};
use shared::meta::events::{self, Context};
use shared::meta::signature::{self, AppSecret};
use shared::optout::keywords::TenantKeywords;
use shared::timestamp::Timestamp;
use std::hint::black_box;

/// A WhatsApp `messages` change with `count` text messages from one person, as Meta sends it.
fn body_with(count: usize) -> Vec<u8> {
    let messages: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"from":"5491123456789","from_user_id":"AR.13491208655302741918","id":"wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNBMDI2{i:04}","timestamp":"1800000000","type":"text","text":{{"body":"Hola, quería saber si tienen stock del producto {i} en talle M"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Ana"}},"wa_id":"5491123456789","user_id":"AR.13491208655302741918"}}],"messages":[{}]}}}}]}}]}}"#,
        messages.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    shared::optout::keywords::prepare();
    let body = body_with(6);
    let secrets = [AppSecret::new("app-secret")];
    let header = secrets[0].sign(&body);
    let at = Timestamp::from_unix_seconds(1_800_000_000);
    let keywords = TenantKeywords::default();
    let queued = envelope::split(&body, "req", at).expect("usable").envelopes;
    assert_eq!(queued.len(), 1);

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("whole_path_{}_bytes", body.len()), |b| {
        b.iter(|| {
            signature::verify(Some(&header), black_box(&body), &secrets).expect("valid signature");
            let split = envelope::split(black_box(&body), "req", at).expect("usable");
            let mut n = 0;
            for queued in &split.envelopes {
                let env: Envelope = serde_json::from_str(queued).expect("an envelope");
                n += events::parse(&env, Context { keywords: &keywords }).len();
            }
            assert_eq!(n, 6);
        })
    });
    group.bench_function(format!("floor_{}_bytes", body.len()), |b| {
        b.iter(|| {
            signature::verify(Some(&header), black_box(&body), &secrets).expect("valid signature");
            let _: IgnoredAny = serde_json::from_slice(black_box(&body)).expect("json");
            let _: IgnoredAny = serde_json::from_str(black_box(&queued[0])).expect("json");
        })
    });
    group.bench_function("webhook_part", |b| {
        b.iter(|| {
            signature::verify(Some(&header), black_box(&body), &secrets).expect("valid signature");
            envelope::split(black_box(&body), "req", at).expect("usable")
        })
    });
    group.bench_function("processor_part", |b| {
        b.iter(|| {
            let env: Envelope = serde_json::from_str(black_box(&queued[0])).expect("an envelope");
            events::parse(&env, Context { keywords: &keywords }).len()
        })
    });
    group.bench_function("envelope_decode", |b| {
        b.iter(|| serde_json::from_str::<Envelope>(black_box(&queued[0])).expect("an envelope"))
    });
    let env: Envelope = serde_json::from_str(&queued[0]).expect("an envelope");
    group.bench_function("messages_value_decode", |b| {
        b.iter(|| {
            serde_json::from_str::<shared::meta::whatsapp::MessagesValue<'_>>(black_box(env.payload.get()))
                .expect("a value")
                .messages
                .len()
        })
    });
    group.bench_function("hmac_only", |b| {
        b.iter(|| signature::verify(Some(&header), black_box(&body), &secrets).expect("valid signature"))
    });
    group.finish();
}

/// The opt-out keyword check alone, on one ordinary message without a keyword (the usual case):
/// it runs on every inbound text and was most of `processor_part`.
fn classify_text(c: &mut Criterion) {
    shared::optout::keywords::prepare();
    let keywords = TenantKeywords::default();
    let text = "Hola, quería saber si tienen stock del producto 3 en talle M";
    c.bench_function("classify_text", |b| {
        b.iter(|| shared::optout::keywords::classify(black_box(text), &keywords))
    });
}

criterion_group!(benches, bench, classify_text);
criterion_main!(benches);
