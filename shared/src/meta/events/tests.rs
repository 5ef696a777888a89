use super::*;
use crate::meta::envelope::split;
use serde_json::json;

const EVERY_TYPE: &str = include_str!("../../../../tests/fixtures/wa_every_type.json");
const STATUSES: &str = include_str!("../../../../tests/fixtures/wa_statuses_out_of_order.json");
const STOP: &str = include_str!("../../../../tests/fixtures/wa_stop.json");
const START: &str = include_str!("../../../../tests/fixtures/wa_start.json");
const DECOY: &str = include_str!("../../../../tests/fixtures/wa_decoy.json");
const REVOKE: &str = include_str!("../../../../tests/fixtures/wa_revoke.json");
const CHANGED_NUMBER: &str = include_str!("../../../../tests/fixtures/wa_system_changed_number.json");
const NO_PHONE: &str = include_str!("../../../../tests/fixtures/wa_username_without_phone.json");
const PREFERENCES_STOP: &str = include_str!("../../../../tests/fixtures/wa_user_preferences_stop.json");
const TEMPLATE_EVENTS: &str = include_str!("../../../../tests/fixtures/wa_template_events.json");
const IG_EVERY_EVENT: &str = include_str!("../../../../tests/fixtures/ig_every_event.json");
const IG_UNSEND: &str = include_str!("../../../../tests/fixtures/ig_unsend.json");

const ANA_BSUID: &str = "AR.13491208655302741918";
const ANA_PHONE: &str = "5491123456789";
const IGSID: &str = "7012345678901234";

/// The envelopes the webhook queues for a POST body.
fn envelopes(body: &str) -> Vec<Envelope> {
    let s = split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(1_800_000_000)).expect("a usable body");
    assert!(s.rejected.is_empty(), "the fixture splits cleanly: {:?}", s.rejected);
    s.envelopes
        .iter()
        .map(|e| serde_json::from_str(e).expect("an envelope"))
        .collect()
}

/// Every event of every envelope, with the tenant's keywords.
fn parse_all<'a>(envs: &'a [Envelope], keywords: &TenantKeywords) -> Vec<Event<'a>> {
    envs.iter().flat_map(|e| parse(e, Context { keywords })).collect()
}

fn read(envs: &[Envelope]) -> Vec<Event<'_>> {
    parse_all(envs, &TenantKeywords::default())
}

/// A `messages` change carrying these messages (and statuses), as Meta posts it.
fn wa_body(messages: serde_json::Value, statuses: serde_json::Value) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages",
        "value": {"metadata": {"phone_number_id": "106540352242922"},
                  "contacts": [{"profile": {"name": "Ana Pérez"}, "wa_id": ANA_PHONE, "user_id": ANA_BSUID}],
                  "messages": messages, "statuses": statuses}}]}]})
    .to_string()
}

/// A message from Ana of `kind`, with `content` under that kind.
fn wa_message(id: &str, kind: &str, content: serde_json::Value) -> serde_json::Value {
    let mut m =
        json!({"from": ANA_PHONE, "from_user_id": ANA_BSUID, "id": id, "timestamp": "1800000000", "type": kind});
    m[kind] = content;
    m
}

fn ig_body(messaging: serde_json::Value) -> String {
    json!({"object": "instagram", "entry": [{"id": "17841400000001", "time": 1800000500000_i64, "messaging": messaging}]})
        .to_string()
}

/// An Instagram event from the person to the business, with `extra` merged in.
fn ig_event(extra: serde_json::Value) -> serde_json::Value {
    let mut e = json!({"sender": {"id": IGSID}, "recipient": {"id": "17841400000001"}, "timestamp": 1800000500000_i64});
    for (k, v) in extra.as_object().expect("an object") {
        e[k] = v.clone();
    }
    e
}

fn id(kind: IdentifierKind, value: &str) -> RawIdentifier<'static> {
    RawIdentifier {
        kind,
        value: Cow::Owned(value.to_owned()),
    }
}

fn ana_ids() -> Vec<RawIdentifier<'static>> {
    vec![
        id(IdentifierKind::WhatsAppUserId, ANA_BSUID),
        id(IdentifierKind::Phone, ANA_PHONE),
    ]
}

fn wa_contact(stable_id: &str) -> ContactId {
    ContactId::new(Channel::WhatsApp, stable_id).expect("valid")
}

/// A STOP acted on at the envelope's receipt time, as for a known sender whose message cannot be
/// stored: its seen part and signal, for the checks particular to each case.
fn stop_at_receipt<'e, 'a>(e: &'e Event<'a>) -> (&'e Seen<'a>, &'e OptOutSignal) {
    let Event::Preference { seen, signal } = e else {
        panic!("expected a signal, got {e:?}")
    };
    assert_eq!(signal.action, CommandAction::OptOut);
    assert_eq!(
        seen.at,
        Timestamp::from_unix_seconds(1_800_000_000),
        "counted at receipt"
    );
    (seen, signal)
}

fn ig_contact() -> ContactId {
    ContactId::new(Channel::Instagram, IGSID).expect("valid")
}

fn signal(action: CommandAction, source: OptOutSource, language: Option<Locale>) -> Option<OptOutSignal> {
    Some(OptOutSignal {
        action,
        scope: OptOutScope::All,
        source,
        only_while_opted_out: false,
        language,
    })
}

/// The parts of a `Message` event the tests compare.
#[derive(Debug, PartialEq)]
struct Msg<'e> {
    id: &'e str,
    direction: Direction,
    kind: &'e str,
    signal: Option<OptOutSignal>,
    review: bool,
}

fn msg<'e>(e: &'e Event<'_>) -> Msg<'e> {
    match e {
        Event::Message {
            id,
            direction,
            kind,
            signal,
            review,
            ..
        } => Msg {
            id: id.as_str(),
            direction: *direction,
            kind,
            signal: signal.clone(),
            review: *review,
        },
        other => panic!("expected a message, got {other:?}"),
    }
}

fn seen<'e, 'a>(e: &'e Event<'a>) -> &'e Seen<'a> {
    match e {
        Event::Message { seen, .. }
        | Event::Status { seen, .. }
        | Event::Unsend { seen, .. }
        | Event::Preference { seen, .. } => seen,
        other => panic!("expected an event about a person, got {other:?}"),
    }
}

/// `(kind, raw)` of a `Rejected` event.
fn rejection<'e>(e: &'e Event<'_>) -> (&'static str, &'e str) {
    match e {
        Event::Rejected { kind, raw, .. } => (*kind, *raw),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// `(kind, raw)` of a `HeldOptOut` event.
fn held<'e>(e: &'e Event<'_>) -> (&'static str, &'e str) {
    match e {
        Event::HeldOptOut { kind, raw } => (*kind, *raw),
        other => panic!("expected a held opt-out, got {other:?}"),
    }
}

fn unhandled<'e>(e: &'e Event<'_>) -> (&'static str, &'e str) {
    match e {
        Event::Unhandled { kind, raw, .. } => (*kind, *raw),
        other => panic!("expected an unhandled event, got {other:?}"),
    }
}

// WhatsApp messages.

#[test]
fn every_whatsapp_message_type_is_an_inbound_message_of_its_kind() {
    let envs = envelopes(EVERY_TYPE);
    let events = read(&envs);
    let kinds = [
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "interactive",
        "interactive",
        "button",
        "reaction",
        "order",
        "text",
        "unsupported",
        "poll_vote",
        "edit",
    ];
    assert_eq!(events.len(), kinds.len(), "one event per message: {events:?}");
    for (i, (event, kind)) in events.iter().zip(kinds).enumerate() {
        let n = i + 1;
        let wamid = format!("wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNB{n:04}");
        let expected_id = if kind == "edit" {
            // Kept under its original, so deleting the original takes the edit along.
            "wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNB0001#edit#wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNB0018".to_owned()
        } else {
            wamid.clone()
        };
        assert_eq!(
            msg(event),
            Msg {
                id: &expected_id,
                direction: Direction::Inbound,
                kind,
                signal: None,
                review: false
            },
            "message {n}"
        );
        let seen = seen(event);
        assert_eq!(seen.contact, wa_contact(ANA_BSUID), "message {n}: keyed by the BSUID");
        assert_eq!(seen.identifiers, ana_ids(), "message {n}: BSUID first, phone once");
        assert_eq!(seen.profile_name.as_deref(), Some("Ana Pérez"), "message {n}");
        assert_eq!(
            seen.at,
            Timestamp::from_unix_seconds(1_800_000_000 + n as i64),
            "message {n}"
        );
        let Event::Message { content, .. } = event else {
            unreachable!()
        };
        let content: serde_json::Value = serde_json::from_str(content.get()).expect("content is JSON");
        assert_eq!(
            content["id"],
            wamid.as_str(),
            "message {n}: content is the message object"
        );
        assert_eq!(content["type"], kind, "message {n}");
    }
}

#[test]
fn whatsapp_strings_are_borrowed_unless_escaped() {
    // "P\u00e9rez" has a JSON escape: it cannot be borrowed, and must still be read right.
    let body = wa_body(
        json!([wa_message("wamid.B1", "text", json!({"body": "hola"}))]),
        json!([]),
    )
    .replace("Ana Pérez", "Ana P\\u00e9rez");
    let envs = envelopes(&body);
    let events = read(&envs);
    let seen = seen(&events[0]);
    assert!(
        matches!(seen.profile_name, Some(Cow::Owned(ref n)) if n == "Ana Pérez"),
        "{seen:?}"
    );
    assert!(
        seen.identifiers.iter().all(|i| matches!(i.value, Cow::Borrowed(_))),
        "plain identifiers borrow from the envelope: {:?}",
        seen.identifiers
    );
    let envs = envelopes(EVERY_TYPE);
    let events = super::parse(
        &envs[0],
        Context {
            keywords: &TenantKeywords::default(),
        },
    );
    assert!(matches!(seen_name(&events[0]), Some(Cow::Borrowed("Ana Pérez"))));
    assert!(matches!(
        &events[0],
        Event::Message {
            kind: Cow::Borrowed("text"),
            ..
        }
    ));
}

fn seen_name<'e, 'a>(e: &'e Event<'a>) -> &'e Option<Cow<'a, str>> {
    &seen(e).profile_name
}

#[test]
fn stop_opts_out_of_everything_and_start_opts_back_in() {
    let envs = envelopes(STOP);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    let m = msg(&events[0]);
    assert_eq!(
        m.signal,
        signal(CommandAction::OptOut, OptOutSource::Keyword, Some(Locale::English)),
        "\"STOP\""
    );
    assert!(!m.review);
    assert_eq!(seen(&events[0]).identifiers, ana_ids());

    let envs = envelopes(START);
    let events = read(&envs);
    let m = msg(&events[0]);
    assert_eq!(
        m.signal,
        signal(CommandAction::OptIn, OptOutSource::Keyword, Some(Locale::English)),
        "\"Start\""
    );
    assert!(!m.review);
}

#[test]
fn a_keyword_inside_a_longer_message_goes_to_review_only() {
    let envs = envelopes(DECOY);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    let m = msg(&events[0]);
    assert_eq!(
        (m.signal, m.review),
        (None, true),
        "\"No me den de baja, me encantan sus promos\""
    );
    assert_eq!(m.id, "wamid.OPT0003");
}

#[test]
fn buttons_replies_and_keywords_are_signals_by_their_source() {
    let mut image_with_text = wa_message("wamid.S7", "image", json!({"id": "1"}));
    image_with_text["text"] = json!({"body": "STOP"});
    let body = wa_body(
        json!([
            wa_message(
                "wamid.S1",
                "button",
                json!({"payload": "STOP_PROMOTIONS", "text": "Stop promotions"})
            ),
            wa_message(
                "wamid.S2",
                "interactive",
                json!({"type": "button_reply", "button_reply": {"id": "stop", "title": "No"}})
            ),
            wa_message(
                "wamid.S3",
                "interactive",
                json!({"type": "list_reply", "list_reply": {"id": "baja", "title": "Baja"}})
            ),
            wa_message("wamid.S4", "text", json!({"body": "ayuda"})),
            wa_message("wamid.S5", "text", json!({"body": "yes"})),
            // A label with a keyword in it, on a button whose id means nothing: review.
            wa_message("wamid.S6", "button", json!({"payload": "APPT_1", "text": "Cancelar"})),
            // The text is read only from a text message, a button only from a button message.
            image_with_text,
            wa_message("wamid.S8", "text", json!({"body": "hola"})),
        ]),
        json!([]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    let got: Vec<(Option<OptOutSignal>, bool)> = events.iter().map(msg).map(|m| (m.signal, m.review)).collect();
    let button_stop = signal(CommandAction::OptOut, OptOutSource::Button, None);
    let yes = Some(OptOutSignal {
        only_while_opted_out: true,
        ..signal(CommandAction::OptIn, OptOutSource::Keyword, Some(Locale::English)).expect("some")
    });
    assert_eq!(
        got,
        [
            (button_stop.clone(), false),
            (button_stop.clone(), false),
            (button_stop, false),
            (
                signal(CommandAction::Help, OptOutSource::Keyword, Some(Locale::Spanish)),
                false
            ),
            (yes, false),
            (None, true),
            (None, false),
            (None, false),
        ]
    );
}

#[test]
fn message_parts_of_another_shape_are_no_signal_and_no_error() {
    // Bad input: `text` a string instead of an object, `button.payload` a number, and
    // `interactive.button_reply` an array; the processor read these through `Value` indexing,
    // which finds nothing there and keeps the message.
    let body = wa_body(
        json!([
            wa_message("wamid.L1", "text", json!("STOP")),
            wa_message("wamid.L2", "button", json!({"payload": 5, "text": null})),
            wa_message(
                "wamid.L3",
                "interactive",
                json!({"button_reply": ["stop"], "list_reply": {"id": "stop"}})
            ),
            wa_message("wamid.L4", "text", json!({"body": {"nested": "STOP"}})),
        ]),
        json!([]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    let got: Vec<Msg<'_>> = events.iter().map(msg).collect();
    let ids: Vec<&str> = got.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        ["wamid.L1", "wamid.L2", "wamid.L3", "wamid.L4"],
        "all kept: {events:?}"
    );
    assert_eq!(got[0].signal, None);
    assert_eq!(got[1].signal, None);
    // The list reply is still read when the button reply is not an object.
    assert_eq!(got[2].signal, signal(CommandAction::OptOut, OptOutSource::Button, None));
    assert_eq!(got[3].signal, None);
}

#[test]
fn a_tenants_own_keyword_is_honoured() {
    let body = wa_body(
        json!([wa_message("wamid.T1", "text", json!({"body": "Chau"}))]),
        json!([]),
    );
    let envs = envelopes(&body);
    assert_eq!(msg(&read(&envs)[0]).signal, None, "\"Chau\" is no built-in keyword");
    let tenant = TenantKeywords {
        opt_out: vec!["chau".into()],
        ..Default::default()
    };
    let events = parse_all(&envs, &tenant);
    assert_eq!(
        msg(&events[0]).signal,
        signal(CommandAction::OptOut, OptOutSource::Keyword, None)
    );

    let body = ig_body(json!([ig_event(json!({"message": {"mid": "m.chau", "text": "chau"}}))]));
    let envs = envelopes(&body);
    let events = parse_all(&envs, &tenant);
    assert_eq!(
        msg(&events[0]).signal,
        signal(CommandAction::OptOut, OptOutSource::Keyword, None)
    );
}

#[test]
fn a_revoke_unsends_its_original() {
    let envs = envelopes(REVOKE);
    let events = read(&envs);
    assert_eq!(events.len(), 1, "{events:?}");
    let Event::Unsend { seen, message_id } = &events[0] else {
        panic!("expected an unsend, got {:?}", events[0]);
    };
    assert_eq!(message_id.as_str(), "wamid.HBgNNTQ5MTEyMzQ1Njc4ORUCABIYFDNB0004");
    assert_eq!(seen.contact, wa_contact(ANA_BSUID));
    assert_eq!(seen.identifiers, ana_ids());
    assert_eq!(seen.profile_name.as_deref(), Some("Ana Pérez"));
    assert_eq!(seen.at, Timestamp::from_unix_seconds(1_800_000_200));

    // Bad input: a revoke whose original id has a space (no message id can): nothing to unsend.
    let body = wa_body(
        json!([wa_message(
            "wamid.R2",
            "revoke",
            json!({"original_message_id": "not an id"})
        )]),
        json!([]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_changed_number_links_the_new_phone_to_the_same_contact() {
    let envs = envelopes(CHANGED_NUMBER);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    assert_eq!(msg(&events[0]).kind, "system");
    let seen = seen(&events[0]);
    assert_eq!(seen.contact, wa_contact(ANA_BSUID));
    assert_eq!(
        seen.identifiers,
        [
            id(IdentifierKind::WhatsAppUserId, ANA_BSUID),
            id(IdentifierKind::Phone, ANA_PHONE),
            id(IdentifierKind::Phone, "5491134567890"),
        ]
    );
    assert_eq!(seen.profile_name, None, "the change has no contacts");
}

#[test]
fn a_username_user_without_phone_is_keyed_by_the_bsuid() {
    let envs = envelopes(NO_PHONE);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    assert_eq!(msg(&events[0]).id, "wamid.NOPHONE1");
    let seen = seen(&events[0]);
    assert_eq!(seen.contact, wa_contact("AR.99887766554433221100"));
    assert_eq!(
        seen.identifiers,
        [id(IdentifierKind::WhatsAppUserId, "AR.99887766554433221100")]
    );
    assert_eq!(seen.profile_name.as_deref(), Some("Caro"));
}

#[test]
fn a_phone_only_sender_is_keyed_by_phone_and_its_profile_found_by_wa_id() {
    // Contacts hold two entries for the phone: the processor's map kept the last one.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"metadata": {"phone_number_id": "106540352242922"},
                  "contacts": [{"profile": {"name": "Old"}, "wa_id": ANA_PHONE}, {"profile": {"name": "New"}, "wa_id": ANA_PHONE, "user_id": "AR.1"}],
                  "messages": [{"from": ANA_PHONE, "id": "wamid.P1", "timestamp": "1800000000", "type": "text", "text": {"body": "hola"}}]}}]}]})
    .to_string();
    let envs = envelopes(&body);
    let events = read(&envs);
    let seen = seen(&events[0]);
    assert_eq!(seen.contact, wa_contact(ANA_PHONE));
    assert_eq!(seen.profile_name.as_deref(), Some("New"));
    assert_eq!(
        seen.identifiers,
        [
            id(IdentifierKind::Phone, ANA_PHONE),
            id(IdentifierKind::WhatsAppUserId, "AR.1")
        ],
        "the sender's phone, then the profile's user id"
    );
}

#[test]
fn bad_whatsapp_messages_are_rejected_beside_good_ones() {
    let good = wa_message("wamid.G1", "text", json!({"body": "hola"}));
    let mut bad_timestamp = wa_message("wamid.X1", "text", json!({"body": "hola"}));
    bad_timestamp["timestamp"] = json!("yesterday");
    let mut implausible = wa_message("wamid.X2", "text", json!({"body": "hola"}));
    implausible["timestamp"] = json!("5");
    let mut no_sender = wa_message("wamid.X3", "text", json!({"body": "hola"}));
    no_sender
        .as_object_mut()
        .expect("object")
        .retain(|k, _| k != "from" && k != "from_user_id");
    let mut bad_sender = wa_message("wamid.X4", "text", json!({"body": "hola"}));
    bad_sender["from_user_id"] = json!("has space");
    bad_sender["from"] = json!("54911 has space");
    let mut bad_id = wa_message("wamid.X5", "text", json!({"body": "hola"}));
    bad_id["id"] = json!("wamid with space");
    let mut malformed = wa_message("wamid.X6", "text", json!({"body": "hola"}));
    malformed["id"] = json!(42);
    let bad_edit = wa_message("wamid.X7", "edit", json!({"original_message_id": "bad original"}));
    let body = wa_body(
        json!([
            good,
            bad_timestamp,
            implausible,
            no_sender,
            bad_sender,
            bad_id,
            malformed,
            bad_edit,
            "not an object"
        ]),
        json!([]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(msg(&events[0]).id, "wamid.G1", "the good one is kept");
    let kinds: Vec<&str> = events[1..].iter().map(|e| rejection(e).0).collect();
    assert_eq!(
        kinds,
        [
            "WhatsApp message: bad timestamp",    // "yesterday"
            "WhatsApp message: bad timestamp",    // 1970
            "WhatsApp message: no usable sender", // neither from nor from_user_id
            "WhatsApp message: no usable sender", // a BSUID and a phone with a space
            "WhatsApp message: bad id",           // an id with a space
            "WhatsApp message",                   // id a number
            "WhatsApp edit: bad original id",     // original id with a space
            "WhatsApp message",                   // a string, not a message
        ]
    );
    let (_, raw) = rejection(&events[1]);
    assert!(
        raw.contains("yesterday") && raw.starts_with('{'),
        "raw is the message itself: {raw}"
    );
    let Event::Rejected { detail, .. } = &events[6] else {
        unreachable!()
    };
    assert!(detail.contains("invalid type"), "the parser's message: {detail}");
}

#[test]
fn a_malformed_messages_value_is_rejected_whole() {
    // Bad input: `messages` is a number.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": 5}}]}]})
    .to_string();
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    let (kind, raw) = rejection(&events[0]);
    assert_eq!(kind, "WhatsApp messages value");
    assert_eq!(raw, envs[0].payload.get());
}

// WhatsApp statuses.

#[test]
fn statuses_keep_their_order_states_and_times() {
    let envs = envelopes(STATUSES);
    let events = read(&envs);
    let got: Vec<(&str, DeliveryState, i64, bool)> = events
        .iter()
        .map(|e| match e {
            Event::Status {
                seen,
                message_id,
                state,
                signal,
                ..
            } => (message_id.as_str(), *state, seen.at.unix_seconds(), signal.is_some()),
            other => panic!("expected a status, got {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            ("wamid.OUT0001", DeliveryState::Read, 1_800_000_030, false),
            ("wamid.OUT0001", DeliveryState::Sent, 1_800_000_010, false),
            ("wamid.OUT0001", DeliveryState::Delivered, 1_800_000_020, false),
            ("wamid.OUT0002", DeliveryState::Failed, 1_800_000_040, true),
        ]
    );
    for e in &events {
        let seen = seen(e);
        assert_eq!(seen.contact, wa_contact(ANA_BSUID));
        assert_eq!(seen.identifiers, ana_ids(), "recipient BSUID, then phone");
        assert_eq!(seen.profile_name, None, "the change has no contacts");
    }
    let Event::Status { detail, .. } = &events[1] else {
        unreachable!()
    };
    assert!(detail.get().contains("\"pricing\""), "detail is the whole status");
    let Event::Status { signal, .. } = &events[3] else {
        unreachable!()
    };
    assert_eq!(
        signal,
        &Some(OptOutSignal {
            action: CommandAction::OptOut,
            scope: OptOutScope::Marketing,
            source: OptOutSource::FailedStatus,
            only_while_opted_out: false,
            language: None,
        }),
        "error 131050: the person stopped marketing messages"
    );
}

#[test]
fn a_status_gets_its_recipients_profile_and_other_failures_signal_nothing() {
    let body = wa_body(
        json!([]),
        json!([
            {"id": "wamid.F1", "status": "failed", "timestamp": "1800000000", "recipient_id": ANA_PHONE, "errors": [{"code": 131026}]},
            {"id": "wamid.F2", "status": "delivered", "timestamp": "1800000000", "recipient_id": ANA_PHONE, "errors": [{"code": 131050}]},
        ]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    for e in &events {
        let Event::Status { seen, signal, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(signal, &None, "not failed with 131050");
        assert_eq!(seen.contact, wa_contact(ANA_PHONE), "no BSUID: keyed by phone");
        assert_eq!(seen.profile_name.as_deref(), Some("Ana Pérez"), "found by recipient_id");
        assert_eq!(seen.identifiers, [id(IdentifierKind::Phone, ANA_PHONE)]);
    }
}

#[test]
fn bad_statuses_are_rejected_with_their_reason() {
    let body = wa_body(
        json!([]),
        json!([
            {"id": "wamid.B1", "status": "seen", "timestamp": "1800000000", "recipient_id": ANA_PHONE},
            {"id": "wamid.B2", "status": "read", "timestamp": "soon", "recipient_id": ANA_PHONE},
            {"id": "wamid.B3", "status": "read", "timestamp": "1800000000"},
            {"id": "wamid B4", "status": "read", "timestamp": "1800000000", "recipient_id": ANA_PHONE},
            {"id": "wamid.B5", "timestamp": "1800000000", "recipient_id": ANA_PHONE},
        ]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    let kinds: Vec<&str> = events.iter().map(|e| rejection(e).0).collect();
    assert_eq!(
        kinds,
        [
            "WhatsApp status: unknown status",      // "seen"
            "WhatsApp status: bad timestamp",       // "soon"
            "WhatsApp status: no usable recipient", // no recipient
            "WhatsApp status: bad id",              // an id with a space
            "WhatsApp status",                      // no status at all
        ]
    );
    assert!(rejection(&events[0]).1.contains("wamid.B1"), "raw is the status itself");
}

/// Error 131050 is a STOP even in a status that cannot be stored: acted on at receipt when the
/// recipient is known, held when nothing identifies them.
#[test]
fn a_marketing_stop_in_an_unreadable_failed_status_is_still_a_signal() {
    let stopped = json!([{"code": 131050, "title": "User's number is part of an experiment"}]);
    let body = wa_body(
        json!([]),
        json!([
            // Bad input: a status name Meta may add later.
            {"id": "wamid.S1", "status": "undeliverable", "timestamp": "1800000000", "recipient_id": ANA_PHONE, "errors": stopped},
            // Bad input: a timestamp that is not a number.
            {"id": "wamid.S2", "status": "failed", "timestamp": "soon", "recipient_id": ANA_PHONE, "errors": stopped},
            // Bad input: an id with a space.
            {"id": "wamid S3", "status": "failed", "timestamp": "1800000000", "recipient_id": ANA_PHONE, "errors": stopped},
            // Bad input: no recipient at all.
            {"id": "wamid.S4", "status": "failed", "timestamp": "1800000000", "errors": stopped},
            // A bad time without 131050 is only rejected.
            {"id": "wamid.S5", "status": "failed", "timestamp": "soon", "recipient_id": ANA_PHONE, "errors": [{"code": 131026}]},
        ]),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 8, "{events:?}");
    for (signal, rejected, kind) in [
        (&events[0], &events[1], "WhatsApp status: unknown status"),
        (&events[2], &events[3], "WhatsApp status: bad timestamp"),
        (&events[4], &events[5], "WhatsApp status: bad id"),
    ] {
        let (seen, signal) = stop_at_receipt(signal);
        assert_eq!(signal.source, OptOutSource::FailedStatus);
        assert_eq!(seen.contact, wa_contact(ANA_PHONE));
        assert_eq!(rejection(rejected).0, kind);
    }
    assert!(
        matches!(
            events[6],
            Event::HeldOptOut {
                kind: "WhatsApp status: no usable recipient",
                ..
            }
        ),
        "{:?}",
        events[6]
    );
    assert_eq!(rejection(&events[7]).0, "WhatsApp status: bad timestamp");
}

// WhatsApp user preferences.

#[test]
fn a_marketing_stop_set_inside_whatsapp_is_a_preference() {
    let envs = envelopes(PREFERENCES_STOP);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    let Event::Preference { seen, signal } = &events[0] else {
        panic!("expected a preference, got {:?}", events[0]);
    };
    assert_eq!(seen.contact, wa_contact("AR.55667788990011223344"));
    assert_eq!(
        seen.identifiers,
        [
            id(IdentifierKind::WhatsAppUserId, "AR.55667788990011223344"),
            id(IdentifierKind::Phone, "5491155557777"),
        ]
    );
    assert_eq!(seen.at, Timestamp::from_unix_seconds(1_800_004_000));
    assert_eq!(seen.profile_name, None);
    assert_eq!(
        signal,
        &OptOutSignal {
            action: CommandAction::OptOut,
            scope: OptOutScope::Marketing,
            source: OptOutSource::UserPreferences,
            only_while_opted_out: false,
            language: None,
        }
    );
}

fn preferences_body(value: serde_json::Value) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "user_preferences", "value": value}]}]})
        .to_string()
}

#[test]
fn other_preferences_are_resumed_unhandled_or_rejected() {
    let item = |category: &str, value: &str, timestamp: i64| json!({"wa_id": ANA_PHONE, "category": category, "value": value, "timestamp": timestamp});
    let body = preferences_body(
        json!({"metadata": {"phone_number_id": "106540352242922"}, "user_preferences": [
            item("marketing_messages", "resume", 1_800_000_000),
            item("call_permissions", "stop", 1_800_000_000),
            item("marketing_messages", "stop", 5),
            {"category": "marketing_messages", "value": "stop", "timestamp": 1_800_000_000_i64},
            {"wa_id": ANA_PHONE, "category": "marketing_messages", "timestamp": 1_800_000_000_i64},
        ]}),
    );
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 5, "{events:?}");
    let Event::Preference { seen, signal } = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(
        (signal.action, signal.scope),
        (CommandAction::OptIn, OptOutScope::Marketing)
    );
    assert_eq!(seen.contact, wa_contact(ANA_PHONE));
    assert_eq!(seen.identifiers, [id(IdentifierKind::Phone, ANA_PHONE)]);
    let (kind, raw) = unhandled(&events[1]);
    assert_eq!(kind, "unhandled user preference", "call_permissions");
    assert!(raw.contains("call_permissions"));
    // A stop that cannot be recorded is held for a person, never rejected.
    assert_eq!(
        held(&events[2]).0,
        "user_preferences item: bad timestamp or person",
        "timestamp 5"
    );
    assert_eq!(
        held(&events[3]).0,
        "user_preferences item: bad timestamp or person",
        "no wa_id or user_id"
    );
    assert_eq!(rejection(&events[4]).0, "user_preferences item", "no value");

    // Bad input: `user_preferences` is a string. One that says stop may be a STOP in a shape
    // Meta changed: held for a person; anything else is rejected.
    let envs = envelopes(&preferences_body(json!({"user_preferences": "stop"})));
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    assert_eq!(held(&events[0]).0, "user_preferences value");
    let envs = envelopes(&preferences_body(json!({"user_preferences": "later"})));
    let events = read(&envs);
    assert_eq!(rejection(&events[0]).0, "user_preferences value");
}

/// A part in a shape the typed reader does not know is held when anything in it may be a STOP,
/// on every path: a whole messages value, one message, one status, an Instagram entry or event.
#[test]
fn an_unreadable_part_that_may_say_stop_is_held_not_rejected() {
    let cases = [
        // Bad input: `messages` is an object, not a list; a text in it says STOP.
        (
            wa_body(json!({"m": {"text": {"body": "STOP"}}}), json!([])),
            "WhatsApp messages value",
        ),
        // Bad input: a message whose id is a number.
        (
            wa_body(json!([{"id": 5, "from": ANA_PHONE, "timestamp": "1800000000", "type": "text", "text": {"body": "baja"}}]), json!([])),
            "WhatsApp message",
        ),
        // Bad input: a status whose errors are an object; error 131050 in it.
        (
            wa_body(json!([]), json!([{"id": "wamid.Z", "status": "failed", "timestamp": "1800000000", "recipient_id": ANA_PHONE, "errors": {"code": 131050}}])),
            "WhatsApp status",
        ),
        // Bad input: `messaging` is an object.
        (
            json!({"object": "instagram", "entry": [{"id": "17841400000001", "messaging": {"message": {"text": "STOP"}}}]}).to_string(),
            "Instagram entry",
        ),
        // Bad input: the sender is a string, not an object.
        (
            ig_body(json!([{"sender": IGSID, "recipient": {"id": "17841400000001"}, "timestamp": 1800000500000_i64, "message": {"mid": "m.Z", "text": "no quiero recibir más mensajes"}}])),
            "Instagram event",
        ),
    ];
    for (body, kind) in cases {
        let envs = envelopes(&body);
        let events = read(&envs);
        assert_eq!(events.len(), 1, "{kind}: {events:?}");
        assert_eq!(held(&events[0]).0, kind);
        // The same shape saying something else is only rejected.
        let quiet = body
            .replace("STOP", "hola")
            .replace("baja", "hola")
            .replace("131050", "131026")
            .replace("no quiero recibir más mensajes", "hola");
        let envs = envelopes(&quiet);
        let events = read(&envs);
        assert_eq!(rejection(&events[0]).0, kind, "{quiet}");
    }
}

// Tenant events and unhandled fields.

#[test]
fn template_notifications_are_tenant_events_with_stable_ids() {
    let envs = envelopes(TEMPLATE_EVENTS);
    let first = read(&envs);
    let got: Vec<(&str, &str, &str)> = first
        .iter()
        .zip(&envs)
        .map(|(e, env)| match e {
            Event::TenantEvent { id, field, payload } => {
                assert_eq!(payload.get(), env.payload.get(), "the payload as it came");
                (id.as_str(), *field, env.field.as_deref().expect("a field"))
            }
            other => panic!("expected a tenant event, got {other:?}"),
        })
        .collect();
    // Pinned: computed apart from this code (SHA-256 over the length-prefixed entry id, field
    // and payload), so ids stay those already stored.
    assert_eq!(
        got,
        [
            (
                "7ae4c05318d7a5cfc3b377ad190aeab4",
                "message_template_status_update",
                "message_template_status_update"
            ),
            (
                "ab9494fbb9701f7dfbf4ae6fa147bf0a",
                "message_template_quality_update",
                "message_template_quality_update"
            ),
        ]
    );
    let again = read(&envs);
    let ids = |evs: &[Event<'_>]| -> Vec<String> {
        evs.iter()
            .map(|e| match e {
                Event::TenantEvent { id, .. } => id.clone(),
                _ => String::new(),
            })
            .collect()
    };
    assert_eq!(ids(&first), ids(&again), "a redelivery gets the same ids");

    // The same notification for another account is another event.
    let other = TEMPLATE_EVENTS.replace("102290129340398", "102290129349999");
    let envs = envelopes(&other);
    assert_ne!(ids(&read(&envs))[0], ids(&first)[0]);
}

fn envelope_with(object: MetaObject, field: Option<&str>, payload: &str) -> Envelope {
    Envelope {
        request_id: "req-1".into(),
        received_at: Timestamp::from_unix_seconds(1_800_000_000),
        object,
        entry_id: "102290129340398".into(),
        field: field.map(str::to_owned),
        account: crate::domain::ChannelAccount::new(Channel::WhatsApp, "102290129340398").expect("valid"),
        payload: RawValue::from_string(payload.to_owned()).expect("JSON syntax"),
    }
}

#[test]
fn a_tenant_event_serde_json_cannot_read_is_rejected() {
    // Bad input: JSON syntax a `serde_json::Value` refuses, as the processor's check did: a
    // number beyond f64, nesting past serde_json's limit, a lone surrogate.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for payload in [r#"{"n": 1e400}"#, deep.as_str(), r#"{"s": "\ud800"}"#] {
        let env = envelope_with(MetaObject::WhatsAppBusinessAccount, Some("account_update"), payload);
        let events = parse(
            &env,
            Context {
                keywords: &TenantKeywords::default(),
            },
        );
        assert_eq!(events.len(), 1);
        let Event::Rejected { kind, detail, raw } = &events[0] else {
            panic!("{payload}: expected a rejection, got {:?}", events[0]);
        };
        assert_eq!(*kind, "tenant event value is not JSON", "{payload}");
        assert_eq!(detail, "account_update", "the detail names the field");
        assert_eq!(*raw, payload);
    }
}

#[test]
fn the_json_check_accepts_exactly_what_serde_json_value_does() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let samples = [
        r#"{"a": [1, -2, 3.5, 1e300, true, null, "x\n\u00e9"], "b": {}}"#.to_owned(),
        r#"{"n": 1e400}"#.to_owned(),
        r#"{"n": -1e400}"#.to_owned(),
        r#"{"\ud800": 1}"#.to_owned(),
        r#"["\ud83d\ude00"]"#.to_owned(),
        r#"{"a": 1, "a": 2}"#.to_owned(),
        "18446744073709551616".to_owned(),
        deep(127),
        deep(128),
        deep(129),
    ];
    for s in &samples {
        assert_eq!(
            serde_json::from_str::<wa::ValidJson>(s).is_ok(),
            serde_json::from_str::<serde_json::Value>(s).is_ok(),
            "{}",
            &s[..s.len().min(40)]
        );
    }
}

#[test]
fn other_fields_are_unhandled_with_their_payload() {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "security", "value": {"event": "PIN_CHANGED"}}]}]})
    .to_string();
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    assert_eq!(
        unhandled(&events[0]),
        ("unhandled webhook field", envs[0].payload.get())
    );
    assert!(
        matches!(events[0], Event::Unhandled { detail: "security", .. }),
        "the field is named for the operator"
    );

    // An Instagram change (not a messaging entry).
    let body = json!({"object": "instagram", "entry": [{"id": "17841400000001", "changes": [
        {"field": "comments", "value": {"text": "hola"}}]}]})
    .to_string();
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(
        unhandled(&events[0]),
        ("unhandled webhook field", envs[0].payload.get())
    );
}

// Instagram.

#[test]
fn every_instagram_event_is_read() {
    let envs = envelopes(IG_EVERY_EVENT);
    let events = read(&envs);
    assert_eq!(events.len(), 9, "{events:?}");
    let inbound = |id, kind| Msg {
        id,
        direction: Direction::Inbound,
        kind,
        signal: None,
        review: false,
    };
    assert_eq!(
        msg(&events[0]),
        inbound("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMToxMDAx", "text")
    );
    assert_eq!(msg(&events[1]), inbound("aWdfZAG1faXRlbToxMDAy", "attachment"));
    assert_eq!(msg(&events[2]), inbound("aWdfZAG1faXRlbToxMDAz", "quick_reply"));
    assert_eq!(msg(&events[3]), inbound("aWdfZAG1faXRlbToxMDA0", "text"), "a reply");
    assert_eq!(
        msg(&events[4]),
        Msg {
            id: "aWdfZAG1faXRlbToxMDA1",
            direction: Direction::Outbound,
            kind: "text",
            signal: None,
            review: false
        },
        "an echo is outbound"
    );
    assert_eq!(
        msg(&events[5]),
        inbound("aWdfZAG1faXRlbToxMDA1#react#1800000505000", "reaction")
    );
    let Event::Status {
        message_id,
        state,
        detail,
        signal,
        ..
    } = &events[6]
    else {
        panic!("a read is a status: {:?}", events[6]);
    };
    assert_eq!(
        (message_id.as_str(), *state, signal),
        ("aWdfZAG1faXRlbToxMDA1", DeliveryState::Read, &None)
    );
    assert!(detail.get().contains("\"read\""), "detail is the raw event");
    assert_eq!(msg(&events[7]), inbound("aWdfZAG1faXRlbToxMDA2", "postback"));
    assert_eq!(msg(&events[8]), inbound("referral#1800000508000", "referral"));
    for (i, e) in events.iter().enumerate() {
        let seen = seen(e);
        assert_eq!(seen.contact, ig_contact(), "event {i}: the person, also on the echo");
        assert_eq!(seen.identifiers, [id(IdentifierKind::InstagramId, IGSID)], "event {i}");
        assert_eq!(
            seen.at,
            Timestamp::from_unix_millis(1_800_000_500_000 + 1000 * i as i64),
            "event {i}"
        );
        assert_eq!(seen.profile_name, None);
        if let Event::Message { content, .. } = e {
            assert!(
                content.get().contains("\"sender\""),
                "event {i}: content is the raw event"
            );
        }
    }
}

#[test]
fn an_instagram_quick_reply_is_a_button_with_its_text_as_label() {
    let envs = envelopes(IG_EVERY_EVENT);
    // The fixture's quick reply is SIZE_M, "Talle M": an opt-out button once the tenant says so.
    let tenant = TenantKeywords {
        opt_out_button_ids: vec!["size_m".into()],
        ..Default::default()
    };
    let events = parse_all(&envs, &tenant);
    assert_eq!(
        msg(&events[2]).signal,
        signal(CommandAction::OptOut, OptOutSource::Button, None)
    );
    assert_eq!(msg(&events[0]).signal, None, "the text message is no button");

    // A keyword as a quick reply's label is reviewed (as button labels are), not acted on as
    // text would be; an echo's "STOP" is the business's, no signal at all.
    let body = ig_body(json!([
        ig_event(json!({"message": {"mid": "m.q1", "text": "STOP", "quick_reply": {"payload": "OTHER"}}})),
        ig_event(json!({"message": {"mid": "m.q2", "text": "STOP", "quick_reply": {"payload": 7}}})),
        ig_event(
            json!({"sender": {"id": "17841400000001"}, "recipient": {"id": IGSID}, "message": {"mid": "m.e1", "text": "STOP", "is_echo": true}})
        ),
        ig_event(json!({"message": {"mid": "m.t1", "text": "STOP"}})),
    ]));
    let envs = envelopes(&body);
    let events = read(&envs);
    let got: Vec<Msg<'_>> = events.iter().map(msg).collect();
    assert_eq!(
        (got[0].kind, &got[0].signal, got[0].review),
        ("quick_reply", &None, true)
    );
    // A payload that is no string: read as the text it carries.
    assert_eq!(
        (got[1].kind, &got[1].signal),
        (
            "quick_reply",
            &signal(CommandAction::OptOut, OptOutSource::Keyword, Some(Locale::English))
        )
    );
    assert_eq!(
        (got[2].direction, &got[2].signal, got[2].review),
        (Direction::Outbound, &None, false)
    );
    assert_eq!(
        got[3].signal,
        signal(CommandAction::OptOut, OptOutSource::Keyword, Some(Locale::English))
    );
}

#[test]
fn instagram_edits_postbacks_without_mid_and_unknown_events() {
    let body = ig_body(json!([
        ig_event(json!({"message_edit": {"mid": "m.orig", "num_edit": 2, "text": "corregido"}})),
        ig_event(json!({"postback": {"title": "Ver", "payload": "CATALOG"}})),
        ig_event(json!({"optin": {"type": "notification_messages"}})),
        ig_event(json!({"message": {"mid": "m.plain"}})),
    ]));
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(msg(&events[0]).id, "m.orig#edit#2");
    assert_eq!(msg(&events[0]).kind, "edit");
    assert_eq!(msg(&events[1]).id, "postback#1800000500000");
    let (kind, raw) = unhandled(&events[2]);
    assert_eq!(kind, "unhandled Instagram event");
    assert!(raw.contains("optin"));
    assert_eq!(msg(&events[3]).kind, "message", "no text, attachment or quick reply");
}

#[test]
fn an_instagram_unsend_is_an_unsend() {
    let envs = envelopes(IG_UNSEND);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    let Event::Unsend { seen, message_id } = &events[0] else {
        panic!("expected an unsend, got {:?}", events[0]);
    };
    assert_eq!(message_id.as_str(), "aWdfZAG1faXRlbToxMDAy");
    assert_eq!(seen.contact, ig_contact());
    assert_eq!(seen.at, Timestamp::from_unix_millis(1_800_000_600_000));

    // Bad input: an unsent message whose mid has a space names nothing: no event.
    let body = ig_body(json!([ig_event(
        json!({"message": {"mid": "bad mid", "is_deleted": true}})
    )]));
    let envs = envelopes(&body);
    let events = read(&envs);
    assert!(events.is_empty(), "{events:?}");
}

/// Fail closed: a STOP in a message that cannot be processed is held for a person, whatever
/// made it unusable; the same message without a keyword is only rejected.
#[test]
fn an_unusable_stop_is_held_not_rejected() {
    let mut no_sender = wa_message("wamid.H1", "text", json!({"body": "STOP"}));
    no_sender
        .as_object_mut()
        .expect("object")
        .retain(|k, _| k != "from" && k != "from_user_id");
    let mut no_user_id = wa_message("wamid.H2", "text", json!({"body": "Baja"}));
    no_user_id["from_user_id"] = json!("AR#1");
    no_user_id["from"] = json!("54911#2345");
    let mut bad_time = wa_message("wamid.H3", "text", json!({"body": "no quiero recibir más mensajes"}));
    bad_time["timestamp"] = json!("yesterday");
    let mut greeting = wa_message("wamid.H4", "text", json!({"body": "hola"}));
    greeting["from_user_id"] = json!("AR#1");
    greeting["from"] = json!("54911#2345");
    let envs = envelopes(&wa_body(json!([no_sender, no_user_id, bad_time, greeting]), json!([])));
    let events = read(&envs);
    let kinds: Vec<&str> = events[..2].iter().map(|e| held(e).0).collect();
    assert_eq!(
        kinds,
        [
            "WhatsApp message: no usable sender",
            "WhatsApp message: no usable sender",
        ]
    );
    // A keyword to review from a known sender: held under the sender's contact, so an operator
    // can still opt them out.
    let Event::HeldReview { seen, kind, raw } = &events[2] else {
        panic!("expected a held review, got {:?}", events[2])
    };
    assert_eq!(
        (seen.contact.clone(), *kind),
        (wa_contact(ANA_BSUID), "WhatsApp message: bad timestamp")
    );
    assert_eq!(
        seen.at,
        Timestamp::from_unix_seconds(1_800_000_000),
        "counted at receipt"
    );
    assert!(raw.contains("yesterday"));
    assert_eq!(rejection(&events[3]).0, "WhatsApp message: no usable sender");
    let body = ig_body(json!([ig_event(
        json!({"sender": {"id": "has space"}, "message": {"mid": "m.9", "text": "stop"}})
    )]));
    let envs = envelopes(&body);
    assert_eq!(held(&read(&envs)[0]).0, "Instagram event: unusable IGSID");
}

/// A STOP from a known sender is acted on even when its message cannot be stored: at its
/// receipt time, with the message rejected beside it. An unusable user id falls back to the phone.
#[test]
fn a_stop_from_a_known_sender_in_a_broken_message_is_still_a_signal() {
    let mut bad_time = wa_message("wamid.K1", "text", json!({"body": "STOP"}));
    bad_time["timestamp"] = json!("yesterday");
    let mut bad_id = wa_message("wamid.K2", "text", json!({"body": "BAJA"}));
    bad_id["id"] = json!("wamid with space");
    let mut bad_user_id = wa_message("wamid.K3", "text", json!({"body": "STOP"}));
    bad_user_id["from_user_id"] = json!("AR#1");
    let envs = envelopes(&wa_body(json!([bad_time, bad_id, bad_user_id]), json!([])));
    let events = read(&envs);
    assert_eq!(events.len(), 5, "{events:?}");
    for (signal, rejected) in [(&events[0], &events[1]), (&events[2], &events[3])] {
        let (seen, _) = stop_at_receipt(signal);
        assert_eq!(seen.contact, wa_contact(ANA_BSUID));
        assert!(rejection(rejected).0.starts_with("WhatsApp message: bad"));
    }
    let m = msg(&events[4]);
    assert_eq!(m.id, "wamid.K3");
    assert!(m.signal.is_some());
    assert_eq!(seen(&events[4]).contact, wa_contact(ANA_PHONE), "keyed by the phone");
}

/// The same on Instagram: the IGSID is known, so a STOP in an event with a bad time or mid is
/// acted on at receipt rather than held; one from an unusable IGSID is held.
#[test]
fn an_instagram_stop_from_a_known_sender_in_a_broken_event_is_still_a_signal() {
    let body = ig_body(json!([
        // Bad input: a timestamp of 5 ms after 1970.
        ig_event(json!({"timestamp": 5, "message": {"mid": "m.K1", "text": "STOP"}})),
        // Bad input: a mid with a space.
        ig_event(json!({"message": {"mid": "bad mid", "text": "BAJA"}})),
        // Bad input: an IGSID with a space; nothing identifies the sender.
        ig_event(json!({"sender": {"id": "has space"}, "message": {"mid": "m.K3", "text": "STOP"}})),
    ]));
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 5, "{events:?}");
    for (signal, rejected, kind) in [
        (&events[0], &events[1], "Instagram event: bad timestamp"),
        (&events[2], &events[3], "Instagram event: bad message id"),
    ] {
        let (seen, _) = stop_at_receipt(signal);
        assert_eq!(seen.contact, ig_contact());
        assert_eq!(seen.identifiers, vec![id(IdentifierKind::InstagramId, IGSID)]);
        assert_eq!(rejection(rejected).0, kind);
    }
    assert!(
        matches!(
            events[4],
            Event::HeldOptOut {
                kind: "Instagram event: unusable IGSID",
                ..
            }
        ),
        "{:?}",
        events[4]
    );
}

/// A person who edits a message to "STOP" has said STOP: an edit's new text is classified like
/// any text, on both channels; an edit to something else is only stored.
#[test]
fn an_edit_to_stop_is_a_stop() {
    let edit = |id: &str, text: &str| {
        wa_message(
            id,
            "edit",
            json!({"original_message_id": "wamid.ORIG", "message": {"type": "text", "text": {"body": text}}}),
        )
    };
    let envs = envelopes(&wa_body(
        json!([edit("wamid.E1", "STOP"), edit("wamid.E2", "nos vemos")]),
        json!([]),
    ));
    let events = read(&envs);
    assert_eq!(events.len(), 2);
    assert_eq!(msg(&events[0]).id, "wamid.ORIG#edit#wamid.E1");
    assert_eq!(msg(&events[0]).signal.map(|s| s.action), Some(CommandAction::OptOut));
    assert_eq!(msg(&events[1]).signal, None);

    // Bad input: an edit whose original id has a space; the STOP in it is still acted on.
    let mut broken = edit("wamid.E3", "STOP");
    broken["edit"]["original_message_id"] = json!("bad original");
    let envs = envelopes(&wa_body(json!([broken]), json!([])));
    let events = read(&envs);
    stop_at_receipt(&events[0]);
    assert_eq!(rejection(&events[1]).0, "WhatsApp edit: bad original id");

    let body = ig_body(json!([
        ig_event(json!({"message_edit": {"mid": "m.orig", "num_edit": 1, "text": "STOP"}})),
        ig_event(json!({"message_edit": {"mid": "m.orig", "num_edit": 2, "text": "corregido"}})),
        // Both a message and an edit: the message is what is stored, and what is classified.
        ig_event(
            json!({"message": {"mid": "m.both", "text": "STOP"}, "message_edit": {"mid": "m.orig", "text": "ok"}})
        ),
    ]));
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(msg(&events[0]).signal.map(|s| s.action), Some(CommandAction::OptOut));
    assert_eq!(msg(&events[1]).signal, None);
    assert_eq!(msg(&events[2]).id, "m.both");
    assert_eq!(msg(&events[2]).signal.map(|s| s.action), Some(CommandAction::OptOut));
}

#[test]
fn bad_instagram_events_are_rejected_with_their_reason() {
    let body = ig_body(json!([
        ig_event(json!({"message": {"mid": "m.good", "text": "hola"}})),
        {"recipient": {"id": "17841400000001"}, "timestamp": 1800000500000_i64, "message": {"mid": "m.1", "text": "no sender"}},
        ig_event(json!({"timestamp": 5, "message": {"mid": "m.2"}})),
        ig_event(json!({"sender": {"id": "has space"}, "message": {"mid": "m.3"}})),
        ig_event(json!({"read": {"mid": "bad mid"}})),
        ig_event(json!({"message": {"mid": "bad mid", "text": "hola"}})),
        ig_event(json!({"message": {"mid": "m.4", "text": 5}})),
        ig_event(json!({"message": {"mid": "m.5", "attachments": {"type": "image"}}})),
    ]))
    // A quick reply serde_json::Value cannot hold, as the processor read it.
    .replace(r#""text":5"#, r#""text":"x","quick_reply":{"n":1e400}"#);
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(msg(&events[0]).id, "m.good", "the good one is kept");
    let kinds: Vec<&str> = events[1..].iter().map(|e| rejection(e).0).collect();
    assert_eq!(
        kinds,
        [
            "Instagram event",                 // no sender
            "Instagram event: bad timestamp",  // 5 seconds after 1970
            "Instagram event: unusable IGSID", // an IGSID with a space
            "Instagram read: bad mid",         // a read mid with a space
            "Instagram event: bad message id", // a message mid with a space
            "Instagram event",                 // quick_reply with a number beyond f64
            "Instagram event",                 // attachments an object, not a list
        ]
    );
    assert!(rejection(&events[2]).1.contains("m.2"), "raw is the event itself");

    // Bad input: `messaging` is not a list.
    let body =
        json!({"object": "instagram", "entry": [{"id": "17841400000001", "messaging": {"sender": 1}}]}).to_string();
    let envs = envelopes(&body);
    let events = read(&envs);
    assert_eq!(events.len(), 1);
    assert_eq!(rejection(&events[0]), ("Instagram entry", envs[0].payload.get()));
}
