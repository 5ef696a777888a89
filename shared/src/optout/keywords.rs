//! The opt-out keyword policy: which messages opt a person out, back in, or ask for help. The
//! tables below are the one place to change a keyword. A message counts only when all of it is a
//! keyword, optionally with courtesy words around it; a keyword inside a longer sentence ("no me
//! den de baja") is never acted on, only flagged for human review.

use crate::domain::Locale;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// Opt-out keywords, normalized (lower case, no accents). PARAR and CANCELAR are Spanish and
/// Portuguese alike.
pub const OPT_OUT: &[(&str, &[Locale])] = &[
    ("stop", &[Locale::English]),
    ("stopall", &[Locale::English]),
    ("stop all", &[Locale::English]),
    ("unsubscribe", &[Locale::English]),
    ("cancel", &[Locale::English]),
    ("end", &[Locale::English]),
    ("quit", &[Locale::English]),
    ("optout", &[Locale::English]),
    ("opt out", &[Locale::English]),
    ("revoke", &[Locale::English]),
    ("remove", &[Locale::English]),
    ("baja", &[Locale::Spanish]),
    ("dar de baja", &[Locale::Spanish]),
    ("darme de baja", &[Locale::Spanish]),
    ("dame de baja", &[Locale::Spanish]),
    ("fin", &[Locale::Spanish]),
    ("alto", &[Locale::Spanish]),
    ("detener", &[Locale::Spanish]),
    ("no mas", &[Locale::Spanish]),
    ("desuscribir", &[Locale::Spanish]),
    ("desuscribirme", &[Locale::Spanish]),
    ("parar", &[Locale::Spanish, Locale::Portuguese]),
    ("cancelar", &[Locale::Spanish, Locale::Portuguese]),
    ("pare", &[Locale::Portuguese]),
    ("sair", &[Locale::Portuguese]),
    ("descadastrar", &[Locale::Portuguese]),
];

/// Opt back in. YES counts only while the person is opted out (it is an ordinary answer otherwise).
pub const OPT_IN: &[(&str, &[Locale])] = &[
    ("start", &[Locale::English]),
    ("unstop", &[Locale::English]),
    ("yes", &[Locale::English]),
    ("alta", &[Locale::Spanish]),
    ("volver", &[Locale::Spanish]),
    ("voltar", &[Locale::Portuguese]),
];

pub const ONLY_WHILE_OPTED_OUT: &[&str] = &["yes"];

/// Keywords that are ordinary answers when softened ("No más, gracias" answers "¿algo más?";
/// "Cancelar, por favor" may be about an order): alone they act, with courtesy words they go to
/// review.
pub const ALONE_ONLY: &[&str] = &["no mas", "cancel", "cancelar"];

/// Phrases that may be a request to stop without being a keyword ("no pares", "no me manden
/// más"): never acted on, always sent to review.
pub const REVIEW_TRIGGERS: &[&str] = &[
    "pares",
    "paren",
    "parem",
    "dejen de",
    "no me manden",
    "no me envien",
    "no quiero recibir",
    "nao quero receber",
    "nao me mandem",
    "me descadastra",
    "me descadastre",
    "stop sending",
    "unsubscribe me",
];

/// Button labels that mean "opt out" whatever the button's id (Meta's marketing opt-out button
/// and its translations). Other labels that contain a keyword ("Cancelar" on an appointment)
/// are sent to review, never acted on.
pub const OPT_OUT_BUTTON_LABELS: &[&str] = &[
    "stop promotions",
    "stop promos",
    "detener promociones",
    "no recibir promociones",
    "parar promocoes",
    "sair das promocoes",
    "unsubscribe",
];

pub const HELP: &[(&str, &[Locale])] = &[
    ("help", &[Locale::English]),
    ("info", &[Locale::English]),
    ("ayuda", &[Locale::Spanish]),
    ("ajuda", &[Locale::Portuguese]),
];

/// Words that may surround a keyword without changing what it asks.
pub const COURTESY: &[(&str, Locale)] = &[
    ("please", Locale::English),
    ("pls", Locale::English),
    ("plz", Locale::English),
    ("thanks", Locale::English),
    ("thank you", Locale::English),
    ("thx", Locale::English),
    ("now", Locale::English),
    ("por favor", Locale::Spanish),
    ("porfa", Locale::Spanish),
    ("porfavor", Locale::Spanish),
    ("gracias", Locale::Spanish),
    ("muchas gracias", Locale::Spanish),
    ("ya", Locale::Spanish),
    ("ahora", Locale::Spanish),
    ("obrigado", Locale::Portuguese),
    ("obrigada", Locale::Portuguese),
    ("muito obrigado", Locale::Portuguese),
    ("agora", Locale::Portuguese),
];

/// Button and quick-reply ids that mean "opt out" unless a tenant configures its own.
pub const DEFAULT_OPT_OUT_BUTTON_IDS: &[&str] =
    &["stop", "optout", "opt_out", "unsubscribe", "baja", "stop_promotions"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    OptOut,
    OptIn,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Act on it. `language` is the keyword's (or courtesy words') when unambiguous.
    Act {
        action: Action,
        language: Option<Locale>,
        only_while_opted_out: bool,
    },
    /// A keyword inside a longer message: recorded for a person to look at, not acted on.
    Review,
    None,
}

/// A tenant's additions to the tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantKeywords {
    pub opt_out: Vec<String>,
    pub opt_out_button_ids: Vec<String>,
}

/// Unicode NFKC (fullwidth letters become ASCII), case-fold, accents removed, everything that is
/// not a letter or digit (punctuation, emoji, symbols) turned into a separator; then split.
pub fn normalize(text: &str) -> Vec<String> {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    let unaccented: String = folded
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    unaccented
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A keyword as the tokens a normalized message is compared with.
struct Keyword {
    phrase: String,
    tokens: Vec<String>,
    action: Action,
    languages: &'static [Locale],
}

impl Keyword {
    fn new(phrase: &str, action: Action, languages: &'static [Locale]) -> Self {
        Self {
            phrase: phrase.to_owned(),
            tokens: normalize(phrase),
            action,
            languages,
        }
    }
}

/// The tables above, normalized once: opt-out, then opt-in, then help.
static BUILT_IN: LazyLock<Vec<Keyword>> = LazyLock::new(|| {
    [(Action::OptOut, OPT_OUT), (Action::OptIn, OPT_IN), (Action::Help, HELP)]
        .iter()
        .flat_map(|(action, table)| table.iter().map(|(k, l)| Keyword::new(k, *action, l)))
        .collect()
});

static COURTESY_TOKENS: LazyLock<Vec<(Vec<String>, Locale)>> =
    LazyLock::new(|| COURTESY.iter().map(|(w, l)| (normalize(w), *l)).collect());

static TRIGGER_TOKENS: LazyLock<Vec<Vec<String>>> =
    LazyLock::new(|| REVIEW_TRIGGERS.iter().map(|t| normalize(t)).collect());

/// Builds the normalized tables now rather than on the first message: a function calls this at
/// init, which Lambda runs with a CPU boost, so its first invocation costs what later ones do.
pub fn prepare() {
    LazyLock::force(&BUILT_IN);
    LazyLock::force(&COURTESY_TOKENS);
    LazyLock::force(&TRIGGER_TOKENS);
}

fn strip_courtesy(tokens: &[String]) -> (&[String], Option<Locale>) {
    let mut t = tokens;
    let mut lang = None;
    loop {
        let before = t.len();
        for (w, l) in COURTESY_TOKENS.iter() {
            if t.len() > w.len() && t[..w.len()] == w[..] {
                t = &t[w.len()..];
                lang = lang.or(Some(*l));
            }
            if t.len() > w.len() && t[t.len() - w.len()..] == w[..] {
                t = &t[..t.len() - w.len()];
                lang = lang.or(Some(*l));
            }
        }
        if t.len() == before {
            return (t, lang);
        }
    }
}

fn contains_phrase(tokens: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && tokens.windows(phrase.len()).any(|w| w == phrase)
}

pub fn classify(text: &str, tenant: &TenantKeywords) -> Decision {
    let tokens = normalize(text);
    if tokens.is_empty() {
        return Decision::None;
    }
    let (core, courtesy_lang) = strip_courtesy(&tokens);
    let softened = core.len() < tokens.len();
    let extra: Vec<Keyword> = tenant
        .opt_out
        .iter()
        .map(|k| Keyword::new(k, Action::OptOut, &[]))
        .collect();
    let built_in_opt_out = BUILT_IN.iter().filter(|k| k.action == Action::OptOut);
    let opt_outs = || built_in_opt_out.clone().chain(extra.iter());
    let all = opt_outs().chain(BUILT_IN.iter().filter(|k| k.action != Action::OptOut));
    for keyword in all {
        if !is_repeated(core, &keyword.tokens) {
            continue;
        }
        if softened && ALONE_ONLY.contains(&keyword.phrase.as_str()) {
            return Decision::Review;
        }
        let langs = keyword.languages;
        let language = match langs {
            [only] => Some(*only),
            _ => courtesy_lang.filter(|l| langs.is_empty() || langs.contains(l)),
        };
        return Decision::Act {
            action: keyword.action,
            language,
            only_while_opted_out: ONLY_WHILE_OPTED_OUT.contains(&keyword.phrase.as_str()),
        };
    }
    let opt_out_inside = opt_outs().any(|k| contains_phrase(&tokens, &k.tokens))
        || TRIGGER_TOKENS.iter().any(|t| contains_phrase(&tokens, t));
    if opt_out_inside {
        Decision::Review
    } else {
        Decision::None
    }
}

/// The keyword once or repeated ("STOP STOP").
fn is_repeated(core: &[String], keyword: &[String]) -> bool {
    !keyword.is_empty()
        && !core.is_empty()
        && core.len().is_multiple_of(keyword.len())
        && core.chunks(keyword.len()).all(|c| c == keyword)
}

/// A tapped button or quick reply: its id, or an explicit opt-out label, acts; any other label
/// with a keyword in it goes to review (a "Cancelar" button is usually about an appointment).
pub fn classify_button(id: &str, label: Option<&str>, tenant: &TenantKeywords) -> Decision {
    let opt_out = Decision::Act {
        action: Action::OptOut,
        language: None,
        only_while_opted_out: false,
    };
    if is_opt_out_button(id, tenant) {
        return opt_out;
    }
    let Some(label) = label else {
        return Decision::None;
    };
    let normalized = normalize(label).join(" ");
    if OPT_OUT_BUTTON_LABELS.contains(&normalized.as_str()) {
        return opt_out;
    }
    match classify(label, tenant) {
        Decision::None => Decision::None,
        _ => Decision::Review,
    }
}

/// A tapped button or quick reply whose id means "opt out".
pub fn is_opt_out_button(id: &str, tenant: &TenantKeywords) -> bool {
    let id = id.trim().to_lowercase();
    DEFAULT_OPT_OUT_BUTTON_IDS.contains(&id.as_str())
        || tenant.opt_out_button_ids.iter().any(|b| b.to_lowercase() == id)
}

#[cfg(test)]
#[path = "keywords/tests.rs"]
mod tests;
