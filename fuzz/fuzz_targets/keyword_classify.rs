//! The opt-out keyword classifier (`shared::optout::keywords`) over arbitrary text, with and
//! without tenant keywords.
//!
//! Input: `<tenant keywords, separated by |; the first 16 count>\n<message>`, or just the message.
//! Besides "never panics":
//! - `normalize` matches the reference pipeline its documentation gives (NFKC, lower case, NFD
//!   without combining marks, runs of letters and digits): the Latin-1 fast path cannot drift;
//! - a tenant's keywords never change what a built-in opt-out decides (they are tried after);
//! - a tenant keyword sent alone is never ignored (acted on or held for review);
//! - a button is acted on only as an opt-out, and always when its id is an opt-out id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::optout::keywords::{self, Action, Decision, TenantKeywords};
use unicode_normalization::UnicodeNormalization;

const MAX_TENANT_KEYWORDS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tenant_part, message) = text.split_once('\n').unwrap_or(("", text));
    // A tenant has a few keywords; `classify` normalizes them on every call, so hundreds would
    // only slow the search (quadratically, in the check of each keyword alone below).
    let own: Vec<String> = tenant_part
        .split('|')
        .filter(|k| !k.is_empty())
        .take(MAX_TENANT_KEYWORDS)
        .map(str::to_owned)
        .collect();
    let none = TenantKeywords::default();
    let fixed = TenantKeywords {
        opt_out: vec!["chau".to_owned(), "no molestar".to_owned(), "NO MÁS PROMOS".to_owned()],
        opt_out_button_ids: vec!["Promo_Off".to_owned()],
    };
    let fuzzed = TenantKeywords {
        opt_out: own.clone(),
        opt_out_button_ids: own.clone(),
    };

    for t in [message, text] {
        assert_eq!(keywords::normalize(t), reference_normalize(t), "normalize({t:?})");
    }

    let built_in = keywords::classify(message, &none);
    for tenant in [&fixed, &fuzzed] {
        let with_tenant = keywords::classify(message, tenant);
        if matches!(
            built_in,
            Decision::Act {
                action: Action::OptOut,
                ..
            }
        ) {
            assert_eq!(
                with_tenant, built_in,
                "a tenant keyword changed a built-in opt-out of {message:?}"
            );
        }
    }
    for k in &own {
        if !keywords::normalize(k).is_empty() {
            assert_ne!(
                keywords::classify(k, &fuzzed),
                Decision::None,
                "tenant keyword {k:?} alone was ignored"
            );
        }
    }

    let id = own.first().map_or(message, String::as_str);
    for tenant in [&none, &fixed, &fuzzed] {
        for label in [None, Some(message)] {
            let decision = keywords::classify_button(id, label, tenant);
            assert!(
                matches!(
                    decision,
                    Decision::Act {
                        action: Action::OptOut,
                        ..
                    } | Decision::Review
                        | Decision::None
                ),
                "a button decided {decision:?}"
            );
            if keywords::is_opt_out_button(id, tenant) {
                assert!(matches!(
                    decision,
                    Decision::Act {
                        action: Action::OptOut,
                        ..
                    }
                ));
            }
        }
    }
});

/// The normalization as `keywords::normalize` documents it, the slow way.
fn reference_normalize(text: &str) -> Vec<String> {
    let folded = text.nfkc().collect::<String>().to_lowercase();
    let stripped: String = folded
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    stripped
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}
