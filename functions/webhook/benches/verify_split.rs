//! The webhook's hot path: the signature check of a ~1.9 KB body, and signature check plus split
//! of a ~5 KB WhatsApp body, built with the release profile that ships (LTO and per-package
//! opt-levels included). Run: cargo bench -p webhook --bench verify_split

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::meta::envelope;
use shared::meta::signature::{self, AppSecret};
use shared::timestamp::Timestamp;
use std::hint::black_box;

fn body_with(count: usize) -> Vec<u8> {
    let messages: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"from":"54911234567{i:02}","from_user_id":"AR.1349120865530274{i:04}","id":"wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNBMDI2{i:04}","timestamp":"1800000000","type":"text","text":{{"body":"Hola, quería saber si tienen stock del producto {i} en talle M"}}}}"#
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
    let small = body_with(6);
    let secrets = [AppSecret::new("app-secret")];
    let small_header = secrets[0].sign(&small);
    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function(format!("signature_check_{}_bytes", small.len()), |b| {
        b.iter(|| signature::verify(Some(&small_header), black_box(&small), &secrets).expect("valid signature"))
    });
    group.finish();

    let body = body_with(20);
    let header = secrets[0].sign(&body);
    let at = Timestamp::from_unix_seconds(1_800_000_000);
    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("verify_and_split_{}_bytes", body.len()), |b| {
        b.iter(|| {
            signature::verify(Some(&header), black_box(&body), &secrets).expect("valid signature");
            let split = envelope::split(black_box(&body), "req", at).expect("usable");
            assert_eq!(split.envelopes.len(), 1);
            split
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
