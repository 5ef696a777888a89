//! The people a raw piece of a Meta webhook names, found without understanding it: what is held
//! in quarantine could not be processed, yet an erasure must find it by the person (issue 11). A
//! walk over the JSON collects the fields that carry a person's identifiers in either channel's
//! payloads, whatever the shape around them.

use crate::domain::{Channel, ContactId};
use crate::identity::{Identifier, IdentifierKind, SubjectKey, SubjectKeySecret};
use serde_json::Value;

/// Nesting deeper than this is not walked (serde_json refuses past 128 anyway).
const MAX_DEPTH: usize = 64;

/// The field names that hold a person's identifier, by the kind they hold. `from` and
/// `recipient_id` are WhatsApp phone numbers (`wa_id`s); Instagram's `sender`, `recipient` and a
/// comment's `from` are objects whose `id` is the Instagram-scoped id.
fn kind_of(field: &str) -> Option<IdentifierKind> {
    Some(match field {
        "wa_id" | "from" | "recipient_id" => IdentifierKind::Phone,
        "user_id" | "from_user_id" | "recipient_user_id" => IdentifierKind::WhatsAppUserId,
        "username" => IdentifierKind::InstagramUsername,
        _ => return None,
    })
}

fn walk(v: &Value, depth: usize, out: &mut Vec<Identifier>) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, depth + 1, out)),
        Value::Object(map) => {
            for (field, value) in map {
                match (field.as_str(), value) {
                    ("sender" | "recipient" | "from", Value::Object(who)) => {
                        if let Some(id) = who.get("id").and_then(Value::as_str) {
                            out.extend(Identifier::parse(IdentifierKind::InstagramId, id).ok());
                        }
                        walk(value, depth + 1, out);
                    }
                    (name, Value::String(s)) => {
                        if let Some(kind) = kind_of(name) {
                            out.extend(Identifier::parse(kind, s).ok());
                        }
                    }
                    _ => walk(value, depth + 1, out),
                }
            }
        }
        _ => {}
    }
}

/// The subject keys of every identifier the text names, if it is JSON; none otherwise.
pub fn subject_keys_in(raw: &str, secret: &SubjectKeySecret) -> Vec<SubjectKey> {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(&v, 0, &mut found);
    let mut keys: Vec<SubjectKey> = found.iter().map(|i| secret.subject_key(i)).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The subject keys a contact's stable id may be under: a WhatsApp stable id is a user id or,
/// for payloads without one, a phone number (`wa_id`); an Instagram one is the scoped id.
pub fn contact_keys(contact: &ContactId, secret: &SubjectKeySecret) -> Vec<SubjectKey> {
    let kinds: &[IdentifierKind] = match contact.channel {
        Channel::WhatsApp => &[IdentifierKind::WhatsAppUserId, IdentifierKind::Phone],
        Channel::Instagram => &[IdentifierKind::InstagramId],
    };
    let mut keys: Vec<SubjectKey> = kinds
        .iter()
        .filter_map(|k| Identifier::parse(*k, &contact.stable_id).ok())
        .map(|i| secret.subject_key(&i))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SubjectKeySecret {
        SubjectKeySecret::new(b"identifiers-test-secret-identifiers-test".to_vec()).expect("secret")
    }

    fn key(kind: IdentifierKind, raw: &str) -> SubjectKey {
        secret().subject_key(&Identifier::parse(kind, raw).expect("valid"))
    }

    #[test]
    fn whatsapp_contacts_messages_and_statuses_name_their_people() {
        let raw = r#"{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
            "contacts":[{"profile":{"name":"Ana"},"wa_id":"5491155550123","user_id":"AR.1234567890ABCDEF"}],
            "messages":[{"from":"5491155550123","id":"wamid.1","type":"bogus"}],
            "statuses":[{"recipient_id":"5491166660000","status":"read"}]}"#;
        let mut want = vec![
            key(IdentifierKind::Phone, "5491155550123"),
            key(IdentifierKind::WhatsAppUserId, "AR.1234567890ABCDEF"),
            key(IdentifierKind::Phone, "5491166660000"),
        ];
        want.sort();
        assert_eq!(subject_keys_in(raw, &secret()), want);
    }

    #[test]
    fn instagram_senders_and_commenters_name_theirs() {
        let raw = r#"{"object":"instagram","entry":[{"id":"17841400000000000","messaging":[
            {"sender":{"id":"7012345678901234"},"recipient":{"id":"17841400000000000"},"message":{"mid":"m"}}],
            "changes":[{"field":"comments","value":{"from":{"id":"7099999999999999","username":"ana.perez"}}}]}]}"#;
        let got = subject_keys_in(raw, &secret());
        for k in [
            key(IdentifierKind::InstagramId, "7012345678901234"),
            key(IdentifierKind::InstagramId, "7099999999999999"),
            key(IdentifierKind::InstagramUsername, "ana.perez"),
        ] {
            assert!(got.contains(&k));
        }
    }

    #[test]
    fn a_contact_is_found_under_the_key_its_stable_id_was_linked_by() {
        let bsuid = ContactId::new(Channel::WhatsApp, "AR.1234567890ABCDEF").expect("valid");
        assert!(contact_keys(&bsuid, &secret()).contains(&key(IdentifierKind::WhatsAppUserId, "AR.1234567890ABCDEF")));
        let wa_id = ContactId::new(Channel::WhatsApp, "5491155550123").expect("valid");
        assert!(contact_keys(&wa_id, &secret()).contains(&key(IdentifierKind::Phone, "+54 9 11 5555-0123")));
        let igsid = ContactId::new(Channel::Instagram, "7012345678901234").expect("valid");
        assert_eq!(
            contact_keys(&igsid, &secret()),
            vec![key(IdentifierKind::InstagramId, "7012345678901234")]
        );
    }

    #[test]
    fn text_that_is_no_json_or_names_nobody_gives_no_keys() {
        assert!(subject_keys_in("not json {", &secret()).is_empty());
        assert!(subject_keys_in(r#"{"from": "not a number", "id": "x"}"#, &secret()).is_empty());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(subject_keys_in(&deep, &secret()).is_empty());
    }
}
