//! The opt-out keyword policy: which messages opt a person out, back in, or ask for help. The
//! tables below are the one place to change a keyword. A message counts only when all of it is a
//! keyword, optionally with courtesy words around it; a keyword inside a longer sentence ("no me
//! den de baja") is never acted on, only flagged for human review.

use crate::domain::Locale;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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

/// Phrases that ask for the person's data to be deleted, written in the chat itself (policy §7).
/// As with STOP, the whole message must be the phrase, courtesy words around it allowed; inside a
/// longer message ("¿cómo hago para borrar mis datos?") it is not acted on.
pub const ERASURE_PHRASES: &[(&str, Locale)] = &[
    ("borrar mis datos", Locale::Spanish),
    ("borren mis datos", Locale::Spanish),
    ("eliminar mis datos", Locale::Spanish),
    ("eliminen mis datos", Locale::Spanish),
    ("delete my data", Locale::English),
    ("erase my data", Locale::English),
    ("apagar meus dados", Locale::Portuguese),
    ("excluir meus dados", Locale::Portuguese),
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
    split_words(&words(text)).map(str::to_owned).collect()
}

/// The normalization before the split: NFKC, lower case, NFD without combining marks. Three
/// passes and three allocations: only texts with a character above U+00FF take it, and
/// [`LATIN1`] is built from it.
fn normalize_slow(text: &str) -> String {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    folded
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect()
}

/// [`words`] by the slow pipeline: the words of [`normalize_slow`], runs of letters and digits.
fn words_slow(text: &str) -> String {
    let normalized = normalize_slow(text);
    let words: Vec<&str> = normalized
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    words.join(" ")
}

/// [`normalize_slow`] of each character U+0000..=U+00FF alone, built from it so the two cannot
/// drift apart. Up to U+00FF the pipeline works character by character: none of them is a
/// combining mark and each one's decomposition starts with a base character, so nothing
/// composes or reorders across two characters, and their lower case needs no context. A text of such
/// characters therefore normalizes to the concatenation of their entries (the tests compare
/// [`words`] with [`words_slow`] on every character, every pair and a set of mixed texts).
static LATIN1: LazyLock<Vec<Latin1>> = LazyLock::new(|| {
    (0..=u8::MAX)
        .map(|b| {
            let normalized = normalize_slow(char::from(b).encode_utf8(&mut [0; 4]));
            let mut chars = normalized.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_alphanumeric() => Latin1::Letter(c),
                (Some(_), _) if !normalized.chars().any(char::is_alphanumeric) => Latin1::Separator,
                _ => Latin1::Other(normalized.into_boxed_str()),
            }
        })
        .collect()
});

/// An entry of [`LATIN1`], in the form the loop in [`words`] wants: all but ¼ ½ ¾ ("1⁄4") are
/// one letter or digit, or separators.
#[derive(Debug)]
enum Latin1 {
    /// One letter or digit.
    Letter(char),
    /// One or more characters, none a letter or digit (an empty entry would separate nothing).
    Separator,
    Other(Box<str>),
}

/// A text's tokens, normalized as [`normalize`] says, joined by single spaces: one buffer for
/// the tokens to borrow from, and the form button labels are compared in. Built in one pass by
/// lookup in [`LATIN1`] when every character is up to U+00FF (nearly every message in Spanish,
/// Portuguese or English), by [`words_slow`] otherwise.
fn words(text: &str) -> String {
    let latin1 = &*LATIN1;
    let mut words = String::with_capacity(text.len());
    for c in text.chars() {
        match latin1.get(c as usize) {
            Some(Latin1::Letter(letter)) => words.push(*letter),
            Some(Latin1::Separator) => push_separator(&mut words),
            Some(Latin1::Other(normalized)) => {
                for c in normalized.chars() {
                    if c.is_alphanumeric() {
                        words.push(c);
                    } else {
                        push_separator(&mut words);
                    }
                }
            }
            None => return words_slow(text),
        }
    }
    if words.ends_with(' ') {
        words.pop();
    }
    words
}

/// One space between two words, however many separators there are.
fn push_separator(words: &mut String) {
    if !words.is_empty() && !words.ends_with(' ') {
        words.push(' ');
    }
}

/// The tokens of [`words`]. Splitting on ASCII whitespace finds the spaces by bytes (splitting
/// on `' '` calls `memchr` per token, slower for short words); words have no other whitespace.
fn split_words(words: &str) -> impl Iterator<Item = &str> {
    words.split_ascii_whitespace()
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

/// The built-in opt-out keywords and the review triggers, by their first token: the check for
/// one of them inside a longer message then looks only where a message's token starts one,
/// instead of trying each phrase at each position.
static INSIDE_BY_FIRST_TOKEN: LazyLock<FnvMap<&'static str, Vec<&'static [String]>>> = LazyLock::new(|| {
    let opt_outs = BUILT_IN
        .iter()
        .filter(|k| k.action == Action::OptOut)
        .map(|k| &k.tokens);
    let mut index = FnvMap::<&'static str, Vec<&'static [String]>>::default();
    for phrase in opt_outs.chain(TRIGGER_TOKENS.iter()) {
        if let Some(first) = phrase.first() {
            index.entry(first.as_str()).or_default().push(phrase);
        }
    }
    index
});

/// A map hashed with FNV-1a: [`INSIDE_BY_FIRST_TOKEN`] is looked up once per token of every
/// message, and SipHash (the default, which resists chosen collisions when keys are inserted)
/// was a sixth of `classify` there; this map's keys are fixed, a few short words.
type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Builds the normalized tables now rather than on the first message: a function calls this at
/// init, which Lambda runs with a CPU boost, so its first invocation costs what later ones do.
pub fn prepare() {
    LazyLock::force(&LATIN1);
    LazyLock::force(&BUILT_IN);
    LazyLock::force(&COURTESY_TOKENS);
    LazyLock::force(&TRIGGER_TOKENS);
    LazyLock::force(&INSIDE_BY_FIRST_TOKEN);
}

fn strip_courtesy<'a, 't>(tokens: &'a [&'t str]) -> (&'a [&'t str], Option<Locale>) {
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

fn contains_phrase(tokens: &[&str], phrase: &[String]) -> bool {
    !phrase.is_empty() && tokens.windows(phrase.len()).any(|w| w == phrase)
}

/// A built-in opt-out keyword or a review trigger anywhere in the message.
fn contains_built_in_phrase(tokens: &[&str]) -> bool {
    tokens.iter().enumerate().any(|(i, token)| {
        INSIDE_BY_FIRST_TOKEN.get(token).is_some_and(|phrases| {
            phrases
                .iter()
                .any(|p| tokens.get(i..i + p.len()).is_some_and(|w| w == *p))
        })
    })
}

static ERASURE: LazyLock<Vec<(Vec<String>, Locale)>> =
    LazyLock::new(|| ERASURE_PHRASES.iter().map(|(p, l)| (normalize(p), *l)).collect());

/// The language of the erasure phrase the whole message is, if it is one.
pub fn classify_erasure(text: &str) -> Option<Locale> {
    let normalized = words(text);
    let tokens: Vec<&str> = split_words(&normalized).collect();
    let (core, _) = strip_courtesy(&tokens);
    ERASURE
        .iter()
        .find(|(phrase, _)| is_repeated(core, phrase))
        .map(|(_, language)| *language)
}

pub fn classify(text: &str, tenant: &TenantKeywords) -> Decision {
    let normalized = words(text);
    // At most one token in two bytes: allocated once, never grown.
    let mut tokens = Vec::with_capacity(normalized.len() / 2 + 1);
    tokens.extend(split_words(&normalized));
    if tokens.is_empty() {
        return Decision::None;
    }
    let (core, courtesy_lang) = strip_courtesy(&tokens);
    let softened = core.len() < tokens.len();
    // Empty for most tenants: then nothing is normalized and nothing allocated.
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
    // Tenant keywords are few: tried at every position.
    let opt_out_inside = contains_built_in_phrase(&tokens) || extra.iter().any(|k| contains_phrase(&tokens, &k.tokens));
    if opt_out_inside {
        Decision::Review
    } else {
        Decision::None
    }
}

/// The keyword once or repeated ("STOP STOP"). The first words are compared before the division
/// by the keyword's length: they differ for nearly every keyword, and the division cost more.
fn is_repeated(core: &[&str], keyword: &[String]) -> bool {
    matches!((core.first(), keyword.first()), (Some(c), Some(k)) if c == k)
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
    if OPT_OUT_BUTTON_LABELS.contains(&words(label).as_str()) {
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
