//! "Emulator failure mid-run" (issue 9): signed WhatsApp events through a running local stack on
//! DynamoDB Local and the SQS server while DynamoDB Local is killed and restarted, then a check
//! that every event is stored exactly once, that each poison envelope (an item over DynamoDB's
//! 400 KB limit) is quarantined with its reason on its first receive while the rest of it is
//! stored, and that the dead-letter queue stays empty. Run by `infra/chaos.sh`, which starts
//! the emulators and the stack, and kills and restarts DynamoDB Local when this asks for it (the
//! file `<run-dir>/kill.request`). Prints the figures; exits 1 when a check fails.
//!
//! Nothing personal is printed: the events are synthetic, and the report names envelopes by their
//! SQS message id, sizes and the ids this driver generated, never by their content.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};
use shared::config::{Endpoints, TableKind, TableNames};
use shared::meta::signature::AppSecret;
use shared::timestamp::Timestamp;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TENANT: &str = "chaos";
const PHONE_NUMBER_ID: &str = "100000000000777";
const WABA_ID: &str = "100000000000700";
/// Larger than DynamoDB's 400 KB item limit once stored, smaller than an SQS message.
const OVERSIZE_BYTES: usize = 450 * 1024;
const USAGE: &str = "usage: chaos --url URL --dynamodb URL --sqs URL --prefix PREFIX --stack-log FILE --run-dir DIR\n\
     \x20 [--events N] [--per-post N] [--per-envelope N] [--senders N] [--poison N] [--kill-at FRACTION]\n\
     \x20 [--concurrency N] [--rate EVENTS_PER_S] [--visibility-timeout SECS] [--settle-timeout SECS]\n\
     secrets: META_APP_SECRET and CHAOS_TOKEN (the bearer token of a LOCAL_PRINCIPALS principal holding\n\
     platform_admin and tenant_agent for the run's tenant) from the environment, as the stack has them";

#[derive(Clone, Debug)]
struct Config {
    url: String,
    dynamodb: String,
    sqs: String,
    prefix: String,
    stack_log: PathBuf,
    run_dir: PathBuf,
    events: usize,
    per_post: usize,
    per_envelope: usize,
    senders: usize,
    poison: usize,
    kill_at: f64,
    concurrency: usize,
    /// Events per second offered to the webhook; 0: as fast as it answers.
    rate: f64,
    visibility_timeout: Option<u32>,
    settle_timeout: Option<u64>,
    app_secret: String,
    admin_token: String,
}

impl Config {
    fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut flags: HashMap<String, String> = HashMap::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument {flag}"));
            };
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            flags.insert(name.to_owned(), value);
        }
        let need = |n: &str| flags.get(n).cloned().ok_or_else(|| format!("--{n} is required"));
        fn num<T: std::str::FromStr>(flags: &HashMap<String, String>, n: &str, default: T) -> Result<T, String> {
            match flags.get(n) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| format!("--{n} takes a number, not {v:?}")),
            }
        }
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let config = Self {
            url: need("url")?.trim_end_matches('/').to_owned(),
            dynamodb: need("dynamodb")?,
            sqs: need("sqs")?,
            prefix: need("prefix")?,
            stack_log: need("stack-log")?.into(),
            run_dir: need("run-dir")?.into(),
            events: num(&flags, "events", 20_000)?,
            per_post: num(&flags, "per-post", 20)?,
            per_envelope: num(&flags, "per-envelope", 5)?,
            senders: num(&flags, "senders", 300)?,
            poison: num(&flags, "poison", 5)?,
            kill_at: num(&flags, "kill-at", 0.3)?,
            concurrency: num(&flags, "concurrency", 4)?,
            rate: num(&flags, "rate", 20.0)?,
            visibility_timeout: flags
                .get("visibility-timeout")
                .map(|v| v.parse().map_err(|_| "--visibility-timeout takes seconds".to_owned()))
                .transpose()?,
            settle_timeout: flags
                .get("settle-timeout")
                .map(|v| v.parse().map_err(|_| "--settle-timeout takes seconds".to_owned()))
                .transpose()?,
            app_secret: env("META_APP_SECRET").ok_or("META_APP_SECRET is not set")?,
            admin_token: env("CHAOS_TOKEN").ok_or("CHAOS_TOKEN is not set")?,
        };
        if config.events == 0 || config.per_post == 0 || config.per_envelope == 0 || config.senders == 0 {
            return Err("--events, --per-post, --per-envelope and --senders must be at least 1".into());
        }
        if !config.per_post.is_multiple_of(config.per_envelope) {
            return Err("--per-post must be a multiple of --per-envelope".into());
        }
        if !(0.0..=1.0).contains(&config.kill_at) || config.concurrency == 0 {
            return Err("--kill-at is a fraction (0-1) and --concurrency at least 1".into());
        }
        Ok(config)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

// ---- The workload -------------------------------------------------------------------------------

/// What makes an envelope poison: each kind stores something larger than DynamoDB's item limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoisonKind {
    /// One text message whose stored item is larger than DynamoDB's item limit.
    Message,
    /// The same, followed in its envelope by an ordinary message (not one of the counted events).
    MessageThenCompanion,
    /// An ordinary message from a sender whose profile name makes the profile item too large.
    ProfileName,
}

impl PoisonKind {
    fn of(i: usize) -> Self {
        [Self::Message, Self::MessageThenCompanion, Self::ProfileName][i % 3]
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Message => "450 KB text message (stored item > 400 KB)",
            Self::MessageThenCompanion => "450 KB text message, then a small one in the same envelope",
            Self::ProfileName => "small text from a sender with a 450 KB profile name",
        }
    }

    /// The reason the processor quarantines it with.
    fn reason(self) -> &'static str {
        match self {
            Self::Message | Self::MessageThenCompanion => "message too large to store",
            Self::ProfileName => "profile name too long to keep",
        }
    }
}

impl Poison {
    /// What of it must be stored: all but the oversize text.
    fn storable(&self) -> &[String] {
        match self.kind {
            PoisonKind::Message => &[],
            PoisonKind::MessageThenCompanion => &self.wamids[1..],
            PoisonKind::ProfileName => &self.wamids,
        }
    }
}

#[derive(Debug)]
struct Poison {
    kind: PoisonKind,
    /// Starts the oversize text or name, so its quarantine entry can be told from the others'.
    marker: String,
    /// The message ids it carries, in order (the companion last).
    wamids: Vec<String>,
}

#[derive(Debug)]
struct Post {
    body: Vec<u8>,
    good: usize,
}

#[derive(Debug)]
struct Workload {
    posts: Vec<Post>,
    /// Every counted event's message id.
    wamids: Vec<String>,
    poison: Vec<Poison>,
    /// The sender index each counted event came from.
    senders_used: usize,
}

fn sender(i: usize, base_phone: u64, base_user: u64) -> (String, String) {
    (
        format!("{}", base_phone + i as u64),
        format!("AR.{}", base_user + i as u64),
    )
}

fn change(contacts: Vec<Value>, messages: Vec<Value>) -> Value {
    json!({"id": WABA_ID, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5491100000777", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": contacts,
        "messages": messages,
    }}]})
}

fn contact(name: &str, phone: &str, user: &str) -> Value {
    json!({"profile": {"name": name}, "wa_id": phone, "user_id": user})
}

fn text(wamid: &str, phone: &str, user: &str, at: i64, body: &str) -> Value {
    json!({"from": phone, "from_user_id": user, "id": wamid, "timestamp": at.to_string(),
        "type": "text", "text": {"body": body}})
}

fn workload(c: &Config, run: &str, now_s: i64) -> Workload {
    let changes_total = c.events.div_ceil(c.per_envelope);
    let mut wamids = Vec::with_capacity(c.events);
    let mut entries: Vec<(Value, usize)> = Vec::with_capacity(changes_total);
    for j in 0..changes_total {
        let s = j % c.senders;
        let (phone, user) = sender(s, 5_491_150_000_000, 2_000_000_000_000_000_000);
        let mut messages = Vec::new();
        for k in 0..c.per_envelope {
            let n = j * c.per_envelope + k;
            if n >= c.events {
                break;
            }
            let wamid = format!("wamid.CHAOS{run}.{n:06}");
            // Meta's times are seconds; spread over the run so messages sort as they would.
            let at = now_s + (n / 100) as i64;
            messages.push(text(&wamid, &phone, &user, at, &format!("Mensaje {n} de la prueba")));
            wamids.push(wamid);
        }
        let count = messages.len();
        entries.push((
            change(vec![contact(&format!("Cliente {s}"), &phone, &user)], messages),
            count,
        ));
    }
    let per_post_changes = c.per_post / c.per_envelope;
    let mut posts: Vec<(Vec<Value>, usize)> = entries
        .chunks(per_post_changes)
        .map(|chunk| {
            (
                chunk.iter().map(|(e, _)| e.clone()).collect(),
                chunk.iter().map(|(_, n)| n).sum(),
            )
        })
        .collect();
    // Poison rides in ordinary POSTs, spread over the first 40 % of the run, so one of them
    // usually meets the outage.
    let mut poison = Vec::new();
    for i in 0..c.poison {
        let kind = PoisonKind::of(i);
        let (phone, user) = sender(i, 5_491_160_000_000, 3_000_000_000_000_000_000);
        let wamid = format!("wamid.CHAOSPOISON{run}.{i}");
        let marker = format!("CHAOSPOISON{run}.{i}:");
        let big = format!("{marker}{}", "x".repeat(OVERSIZE_BYTES));
        let (entry, ids) = match kind {
            PoisonKind::Message => (
                change(
                    vec![contact("Poison", &phone, &user)],
                    vec![text(&wamid, &phone, &user, now_s, &big)],
                ),
                vec![wamid],
            ),
            PoisonKind::MessageThenCompanion => {
                let companion = format!("wamid.CHAOSCOMPANION{run}.{i}");
                let entry = change(
                    vec![contact("Poison", &phone, &user)],
                    vec![
                        text(&wamid, &phone, &user, now_s, &big),
                        text(&companion, &phone, &user, now_s + 1, "Mensaje después del grande"),
                    ],
                );
                (entry, vec![wamid, companion])
            }
            PoisonKind::ProfileName => (
                change(
                    vec![contact(
                        &format!("{marker}{}", "N".repeat(OVERSIZE_BYTES)),
                        &phone,
                        &user,
                    )],
                    vec![text(&wamid, &phone, &user, now_s, "Hola")],
                ),
                vec![wamid],
            ),
        };
        let at = if c.poison > 1 {
            (posts.len().saturating_sub(1) as f64 * 0.4 * i as f64 / (c.poison - 1) as f64) as usize
        } else {
            0
        };
        if let Some((post, _)) = posts.get_mut(at) {
            post.push(entry);
        }
        poison.push(Poison {
            kind,
            marker,
            wamids: ids,
        });
    }
    let posts = posts
        .into_iter()
        .map(|(entry, good)| Post {
            body: serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": entry}))
                .unwrap_or_default(),
            good,
        })
        .collect();
    Workload {
        posts,
        wamids,
        poison,
        senders_used: c.senders.min(changes_total),
    }
}

// ---- Sending ------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Sent {
    /// When the webhook answered 200.
    at_ms: i64,
    good: usize,
    attempts: u32,
}

/// DynamoDB's availability as a client sees it: (time, answered) at every change.
#[derive(Debug, Default)]
struct Probe {
    changes: Mutex<Vec<(i64, bool)>>,
}

impl Probe {
    fn record(&self, at: i64, up: bool) {
        let mut c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if c.last().map(|(_, u)| *u) != Some(up) {
            c.push((at, up));
        }
    }

    /// The first time DynamoDB stopped answering at or after `from`, and when it answered again.
    fn outage_after(&self, from: i64) -> (Option<i64>, Option<i64>) {
        let c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let down = c.iter().find(|(t, up)| *t >= from && !*up).map(|(t, _)| *t);
        let up = down.and_then(|d| c.iter().find(|(t, up)| *t > d && *up).map(|(t, _)| *t));
        (down, up)
    }
}

async fn probe_loop(client: aws_sdk_dynamodb::Client, probe: Arc<Probe>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let at = now_ms();
        let up = client.list_tables().limit(1).send().await.is_ok();
        probe.record(at, up);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Sender {
    http: reqwest::Client,
    url: String,
    signer: AppSecret,
    posts: Vec<Post>,
    next: AtomicUsize,
    accepted: AtomicUsize,
    kill_threshold: usize,
    kill_requested: AtomicBool,
    /// DynamoDB Local's pid (written by infra/chaos.sh), and where the kill time goes for it.
    pid_file: PathBuf,
    killed_file: PathBuf,
    stack_log: PathBuf,
    /// When DynamoDB Local was killed, and how the moment was chosen.
    killed: Mutex<Option<(i64, String)>>,
    sent: Mutex<Vec<Sent>>,
    refused: AtomicUsize,
    start_ms: i64,
    rate: f64,
    /// Counted events before each post, for pacing.
    offsets: Vec<usize>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("posts", &self.posts.len()).finish()
    }
}

impl Sender {
    async fn run(self: Arc<Self>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(post) = self.posts.get(i) else { return };
            if self.rate > 0.0 {
                let due = self.start_ms + (self.offsets[i] as f64 * 1000.0 / self.rate) as i64;
                let wait = due - now_ms();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
            }
            let signature = self.signer.sign(&post.body);
            let mut attempts = 0u32;
            // Meta retries anything but a 200 for days; so does this, for a while.
            let ok = loop {
                attempts += 1;
                let res = self
                    .http
                    .post(format!("{}/webhooks/meta", self.url))
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", &signature)
                    .body(post.body.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => break true,
                    Ok(r) => eprintln!("chaos: POST {i}: webhook answered {}; retrying", r.status()),
                    Err(e) => eprintln!("chaos: POST {i}: {e}; retrying"),
                }
                if attempts >= 60 {
                    break false;
                }
                self.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempts.min(10)))).await;
            };
            if !ok {
                eprintln!("chaos: POST {i} refused 60 times; giving up on it");
                continue;
            }
            let at_ms = now_ms();
            self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(Sent {
                at_ms,
                good: post.good,
                attempts,
            });
            let accepted = self.accepted.fetch_add(post.good, Ordering::Relaxed) + post.good;
            if accepted >= self.kill_threshold && !self.kill_requested.swap(true, Ordering::Relaxed) {
                println!("chaos: {accepted} events accepted: killing DynamoDB Local in the middle of a batch");
                tokio::spawn(self.clone().kill_mid_batch());
            }
        }
    }

    /// SIGKILLs DynamoDB Local just after the processor logs an envelope done: the other
    /// envelopes of its batch (processed concurrently) are then between two writes, so the kill
    /// leaves envelopes half-applied, as a crash mid-write does. Gives up waiting after 10 s.
    async fn kill_mid_batch(self: Arc<Self>) {
        use std::io::{Read, Seek, SeekFrom};
        let from = std::fs::metadata(&self.stack_log).map(|m| m.len()).unwrap_or(0);
        let waited_since = now_ms();
        let mut after_envelope = false;
        while now_ms() - waited_since < 10_000 {
            let mut tail = String::new();
            if let Ok(mut f) = std::fs::File::open(&self.stack_log)
                && f.seek(SeekFrom::Start(from)).is_ok()
                && f.read_to_string(&mut tail).is_ok()
                && tail.contains("envelope processed")
            {
                after_envelope = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let pid = std::fs::read_to_string(&self.pid_file).unwrap_or_default();
        let pid = pid.trim();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .is_ok_and(|s| s.success());
        let at = now_ms();
        if !killed {
            eprintln!("chaos: kill -KILL {pid:?} (from {}) failed", self.pid_file.display());
            return;
        }
        let how = if after_envelope {
            format!("{} ms after the processor finished an envelope", at - waited_since)
        } else {
            "no envelope finished within 10 s; killed anyway".to_owned()
        };
        println!("chaos: DynamoDB Local (pid {pid}) killed with SIGKILL, {how}");
        *self.killed.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, how));
        if let Err(e) = std::fs::write(&self.killed_file, at.to_string()) {
            eprintln!("chaos: cannot write {}: {e}", self.killed_file.display());
        }
    }
}

// ---- The stack's log ----------------------------------------------------------------------------

#[derive(Debug, Default)]
struct StackLog {
    /// Failed attempts by SQS message id: (time, log-safe error).
    failures: HashMap<String, Vec<(i64, String)>>,
    panics: HashMap<String, usize>,
    /// (time, stored, duplicates) of every processed envelope.
    processed: Vec<(i64, u64, u64)>,
    quarantined_items: u64,
}

/// The value of `name=` in a tracing line; the last field (`rest_of_line`) runs to the end.
fn field<'a>(line: &'a str, name: &str, rest_of_line: bool) -> Option<&'a str> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    let value = &line[at..];
    Some(if rest_of_line {
        value.trim_end()
    } else {
        value.split(' ').next().unwrap_or_default()
    })
}

fn line_time(line: &str) -> Option<i64> {
    let first = line.split_whitespace().next()?;
    Timestamp::parse_rfc3339(first).ok().map(|t| t.unix_millis())
}

fn read_stack_log(path: &Path) -> Result<StackLog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut log = StackLog::default();
    for line in text.lines() {
        if line.contains("envelope failed; SQS will redeliver it") {
            let (Some(at), Some(id)) = (line_time(line), field(line, "message_id", false)) else {
                continue;
            };
            let error = field(line, "error", true).unwrap_or("(no error field)").to_owned();
            log.failures.entry(id.to_owned()).or_default().push((at, error));
        } else if line.contains("envelope processing panicked") {
            if let Some(id) = field(line, "message_id", false) {
                *log.panics.entry(id.to_owned()).or_default() += 1;
            }
        } else if line.contains("envelope processed") {
            let n = |name| {
                field(line, name, false)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if let Some(at) = line_time(line) {
                log.processed.push((at, n("stored"), n("duplicates")));
                log.quarantined_items += n("quarantined");
            }
        }
    }
    Ok(log)
}

/// A logged error reduced to what tells errors apart: the SDK's message without its request id
/// and the debug dump after it.
fn error_class(error: &str) -> String {
    let cut = [
        ", aws_request_id",
        " (DispatchFailure(",
        " (ServiceError(",
        " (TimeoutError(",
        " (ResponseError(",
        " (ConstructionFailure(",
    ]
    .iter()
    .filter_map(|m| error.find(m))
    .min()
    .unwrap_or(error.len());
    let error = &error[..cut];
    let short: String = error.chars().take(200).collect();
    if short.len() < error.len() {
        format!("{short}…")
    } else {
        short
    }
}

// ---- Reading the results back -------------------------------------------------------------------

async fn queue_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(usize, usize), String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| format!("GetQueueAttributes: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |a: QueueAttributeName| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// Every quarantine entry rejected with a reason, decoded by the stack's own adapter.
async fn rejected_entries(
    dynamo: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
) -> Result<Vec<shared::domain::QuarantineEntry>, String> {
    let stores = shared::store::dynamodb::stores(
        dynamo,
        tables,
        Arc::new(shared::clock::SystemClock),
        &shared::store::dynamodb::CapacityMeter::default(),
    );
    let mut out = Vec::new();
    let mut page = shared::store::PageRequest::first(shared::store::MAX_PAGE_SIZE);
    loop {
        let got = stores
            .quarantine
            .list(&shared::domain::QuarantineBucket::Rejected, &page)
            .await
            .map_err(|e| format!("listing the quarantine: {}", e.log_safe()))?;
        out.extend(got.items);
        match got.next {
            Some(next) => page = shared::store::PageRequest::after(shared::store::MAX_PAGE_SIZE, next),
            None => return Ok(out),
        }
    }
}

/// Every item of a table (whose `pk` and `sk` start with the given prefixes), as (pk, sk, id).
async fn scan(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    prefixes: Option<(&str, &str)>,
) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let mut req = dynamo
            .scan()
            .table_name(table)
            .consistent_read(true)
            .projection_expression("pk, sk, #id")
            .expression_attribute_names("#id", "id")
            .set_exclusive_start_key(start.take());
        if let Some((pk, sk)) = prefixes {
            req = req
                .filter_expression("begins_with(pk, :pk) AND begins_with(sk, :sk)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()));
        }
        let page = req
            .send()
            .await
            .map_err(|e| format!("Scan {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        for item in page.items() {
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            out.push((s("pk"), s("sk"), s("id")));
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

async fn admin_get(http: &reqwest::Client, c: &Config, path: &str) -> Result<Value, String> {
    let r = http
        .get(format!("{}{path}", c.url))
        .bearer_auth(&c.admin_token)
        .header("x-audit-reason", "issue 9 chaos run: counting stored messages")
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("GET {path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {path}: {status} {body}"));
    }
    Ok(body)
}

/// Every message id the admin API lists for the tenant, contact by contact, page by page; and
/// the number of contacts.
async fn admin_listing(http: &reqwest::Client, c: &Config) -> Result<(Vec<String>, usize), String> {
    let mut handles = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/tenants/{TENANT}/contacts?limit=100");
        if let Some(k) = &cursor {
            path.push_str(&format!("&cursor={k}"));
        }
        let page = admin_get(http, c, &path).await?;
        for contact in page["contacts"].as_array().into_iter().flatten() {
            handles.push(contact["contact"].as_str().unwrap_or_default().to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let mut ids = Vec::new();
    for handle in &handles {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/admin/tenants/{TENANT}/contacts/{handle}/messages?limit=100");
            if let Some(k) = &cursor {
                path.push_str(&format!("&cursor={k}"));
            }
            let page = admin_get(http, c, &path).await?;
            for m in page["messages"].as_array().into_iter().flatten() {
                ids.push(m["id"].as_str().unwrap_or_default().to_owned());
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok((ids, handles.len()))
}

#[derive(Debug)]
struct DeadLetter {
    message_id: String,
    receive_count: u32,
    bytes: usize,
    /// The message ids the envelope carries (ids this driver made: not personal).
    wamids: Vec<String>,
    request_id: String,
}

/// Everything in the dead-letter queue, read without deleting it.
async fn dead_letters(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<DeadLetter>, String> {
    let mut out: Vec<DeadLetter> = Vec::new();
    let mut seen = HashSet::new();
    let mut empty = 0;
    while empty < 2 {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(900)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        for m in messages {
            let id = m.message_id.clone().unwrap_or_default();
            if !seen.insert(id.clone()) {
                continue;
            }
            let body = m.body.clone().unwrap_or_default();
            let envelope: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let wamids = envelope["payload"]["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
            out.push(DeadLetter {
                message_id: id,
                // The count at this read, which includes this driver's own receive.
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse::<u32>().ok())
                    .unwrap_or(0)
                    .saturating_sub(1),
                bytes: body.len(),
                wamids,
                request_id: envelope["request_id"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(out)
}

// ---- The run ------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn read_ms(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Events per second in `[from, to)`, of (time, count) pairs.
fn rate_in(points: impl Iterator<Item = (i64, u64)>, from: i64, to: i64) -> (u64, f64) {
    let n: u64 = points.filter(|(t, _)| *t >= from && *t < to).map(|(_, c)| c).sum();
    let span = secs(to - from);
    (n, if span > 0.0 { n as f64 / span } else { 0.0 })
}

async fn run(c: Config) -> Result<bool, String> {
    let run_id = format!("{:x}", now_ms() % 0xFFFF_FFFF);
    let now_s = now_ms() / 1000;
    let sdk = shared::aws::sdk_config().await;
    let endpoints = Endpoints {
        dynamodb: Some(c.dynamodb.clone()),
        sqs: Some(c.sqs.clone()),
        secretsmanager: None,
    };
    let dynamo = shared::aws::dynamodb(&sdk, &endpoints);
    let sqs = shared::aws::sqs(&sdk, &endpoints);
    // The probe: one attempt, a short deadline, so it sees the outage as it happens.
    let probe_client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(&c.dynamodb)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(500))
                    .operation_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build(),
    );
    let tables = TableNames::with_prefix(&c.prefix);
    let queue_url = |name: String| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| format!("GetQueueUrl {name}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?
                .queue_url
                .ok_or_else(|| format!("no URL for {name}"))
        }
    };
    let ingest = queue_url(format!("{}IngestQueue", c.prefix)).await?;
    let dlq = queue_url(format!("{}IngestDeadLetterQueue", c.prefix)).await?;
    if let Some(v) = c.visibility_timeout {
        sqs.set_queue_attributes()
            .queue_url(&ingest)
            .attributes(QueueAttributeName::VisibilityTimeout, v.to_string())
            .send()
            .await
            .map_err(|e| format!("SetQueueAttributes: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    }
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&ingest)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| format!("GetQueueAttributes: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?
        .attributes
        .unwrap_or_default();
    let visibility: u64 = attrs
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let max_receives: u64 = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["maxReceiveCount"].as_u64())
        .unwrap_or(0);

    let http = local_stack::http_client_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let registration = json!({"tenant_id": TENANT, "name": "Chaos run",
        "whatsapp_phone_number_ids": [PHONE_NUMBER_ID], "whatsapp_business_account_ids": [WABA_ID],
        "retention_months": 24, "locale": "es"});
    let r = http
        .post(format!("{}/admin/tenants", c.url))
        .bearer_auth(&c.admin_token)
        .json(&registration)
        .send()
        .await
        .map_err(|e| format!("registering the tenant: {e}"))?;
    if r.status() != 201 {
        return Err(format!(
            "registering the tenant: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }

    let work = workload(&c, &run_id, now_s);
    let posts_n = work.posts.len();
    let mut offsets = Vec::with_capacity(posts_n);
    let mut acc = 0;
    for p in &work.posts {
        offsets.push(acc);
        acc += p.good;
    }
    println!(
        "chaos: {} events in {posts_n} signed POSTs ({} per POST, {} per envelope) from {} senders, {} poison envelopes; \
         ingest queue: visibility timeout {visibility} s, dead-letter after {max_receives} receives{}",
        c.events,
        c.per_post,
        c.per_envelope,
        work.senders_used,
        work.poison.len(),
        if c.visibility_timeout.is_some() {
            " (visibility set for this run)"
        } else {
            " (template.yaml)"
        }
    );

    let probe = Arc::new(Probe::default());
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probe_task = tokio::spawn(probe_loop(probe_client, probe.clone(), stop_probe.clone()));

    let start_ms = now_ms();
    let sender = Arc::new(Sender {
        http: http.clone(),
        url: c.url.clone(),
        signer: AppSecret::new(c.app_secret.clone()),
        posts: work.posts,
        next: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        kill_threshold: ((c.events as f64 * c.kill_at).ceil() as usize).max(1),
        kill_requested: AtomicBool::new(false),
        pid_file: c.run_dir.join("dynamodb.pid"),
        killed_file: c.run_dir.join("killed"),
        stack_log: c.stack_log.clone(),
        killed: Mutex::new(None),
        sent: Mutex::new(Vec::new()),
        refused: AtomicUsize::new(0),
        start_ms,
        rate: c.rate,
        offsets,
    });
    let tasks: Vec<_> = (0..c.concurrency).map(|_| tokio::spawn(sender.clone().run())).collect();
    for t in tasks {
        let _ = t.await;
    }
    let sent_done_ms = now_ms();
    let sent: Vec<Sent> = sender.sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let accepted = sender.accepted.load(Ordering::Relaxed);
    println!(
        "chaos: sending done in {:.1} s: {accepted} of {} events accepted; {} POSTs needed more than one attempt ({} refused attempts)",
        secs(sent_done_ms - start_ms),
        c.events,
        sent.iter().filter(|s| s.attempts > 1).count(),
        sender.refused.load(Ordering::Relaxed)
    );

    // Wait for the queue to empty: every envelope stored or dead-lettered.
    let killed = sender.killed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let killed_ms = killed.as_ref().map(|(t, _)| *t);
    let settle = Duration::from_secs(c.settle_timeout.unwrap_or((max_receives + 1) * visibility + 600));
    let deadline = tokio::time::Instant::now() + settle;
    let mut zero = 0;
    let mut last_note = tokio::time::Instant::now();
    let settled = loop {
        let restarted = killed_ms.is_none_or(|k| probe.outage_after(k).1.is_some());
        match (queue_counts(&sqs, &ingest).await, queue_counts(&sqs, &dlq).await) {
            (Ok((visible, in_flight)), Ok((dead, _))) => {
                zero = if visible + in_flight == 0 && restarted {
                    zero + 1
                } else {
                    0
                };
                if zero >= 2 {
                    break true;
                }
                if last_note.elapsed() >= Duration::from_secs(30) {
                    last_note = tokio::time::Instant::now();
                    println!(
                        "chaos: +{:.0} s: ingest queue {visible} visible, {in_flight} in flight; dead-letter queue {dead}",
                        secs(now_ms() - start_ms)
                    );
                }
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("chaos: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let settled_ms = now_ms();
    stop_probe.store(true, Ordering::Relaxed);
    let _ = probe_task.await;

    // ---- What was stored ----
    let messages = scan(
        &dynamo,
        tables.get(TableKind::Conversations),
        Some((&format!("{TENANT}#"), "MSG#")),
    )
    .await?;
    let mut stored: HashMap<&str, usize> = HashMap::new();
    for (_, _, id) in &messages {
        *stored.entry(id.as_str()).or_default() += 1;
    }
    let expected: HashSet<&str> = work.wamids.iter().map(String::as_str).collect();
    let missing: Vec<&str> = work
        .wamids
        .iter()
        .map(String::as_str)
        .filter(|w| !stored.contains_key(w))
        .collect();
    let doubled: Vec<(&str, usize)> = stored.iter().filter(|(_, n)| **n > 1).map(|(w, n)| (*w, *n)).collect();
    let poison_ids: HashSet<&str> = work
        .poison
        .iter()
        .flat_map(|p| p.wamids.iter().map(String::as_str))
        .collect();
    let unexpected: Vec<&str> = stored
        .keys()
        .copied()
        .filter(|w| !expected.contains(w) && !poison_ids.contains(w))
        .collect();
    let good_stored = work.wamids.iter().filter(|w| stored.contains_key(w.as_str())).count();
    let (listed, contacts) = admin_listing(&http, &c).await?;
    let listed_set: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let listed_good = work.wamids.iter().filter(|w| listed_set.contains(w.as_str())).count();
    let quarantine = scan(&dynamo, tables.get(TableKind::Quarantine), None).await?;
    let rejected = rejected_entries(&dynamo, &tables).await?;
    let mut buckets: BTreeMap<String, usize> = BTreeMap::new();
    for (pk, _, _) in &quarantine {
        let bucket = pk.split('#').next().unwrap_or_default().to_owned();
        *buckets.entry(bucket).or_default() += 1;
    }

    // ---- The dead-letter queue, joined to the processor's log ----
    let letters = dead_letters(&sqs, &dlq).await?;
    let log = read_stack_log(&c.stack_log)?;
    let dead_ids: HashSet<&str> = letters.iter().map(|d| d.message_id.as_str()).collect();

    // ---- The outage ----
    let restarted_ms = read_ms(&c.run_dir.join("restarted"));
    let (down_ms, up_ms) = killed_ms.map_or((None, None), |k| probe.outage_after(k));
    let outage_from = killed_ms;
    let outage_to = up_ms.or(restarted_ms);

    // ---- Report ----
    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut check = |name: String, ok: bool| checks.push((name, ok));
    println!("\n== Emulator failure mid-run: report");
    println!(
        "workload: {} events, {posts_n} POSTs ({} per POST, {} per envelope), {} senders, {} poison envelopes, {} concurrent POSTs{}",
        c.events,
        c.per_post,
        c.per_envelope,
        work.senders_used,
        work.poison.len(),
        c.concurrency,
        if c.rate > 0.0 {
            format!(", offered at {} events/s", c.rate)
        } else {
            ", as fast as accepted".to_owned()
        }
    );
    println!("ingest queue: visibility timeout {visibility} s, dead-letter queue after {max_receives} receives");
    match (outage_from, outage_to) {
        (Some(from), Some(to)) => {
            println!(
                "outage: DynamoDB Local SIGKILLed at +{:.1} s (after {} events accepted; {}); listening again at +{}; \
                 answering again (probe every 200 ms) at +{:.1} s: {:.1} s without DynamoDB",
                secs(from - start_ms),
                sent.iter().filter(|s| s.at_ms <= from).map(|s| s.good).sum::<usize>(),
                killed.as_ref().map_or("", |(_, how)| how.as_str()),
                restarted_ms.map_or("?".to_owned(), |r| format!("{:.1} s", secs(r - start_ms))),
                secs(to - start_ms),
                secs(to - from)
            );
        }
        _ => println!("outage: none observed (killed: {killed_ms:?}, probe: {down_ms:?}..{up_ms:?})"),
    }
    check(
        "DynamoDB Local was killed and came back during the run".to_owned(),
        outage_from.is_some() && outage_to.is_some(),
    );
    let (from, to) = (outage_from.unwrap_or(sent_done_ms), outage_to.unwrap_or(sent_done_ms));
    let last_stored = log
        .processed
        .iter()
        .filter(|(_, s, _)| *s > 0)
        .map(|(t, _, _)| *t)
        .max()
        .unwrap_or(settled_ms);
    let accepted_points = || sent.iter().map(|s| (s.at_ms, s.good as u64));
    let stored_points = || log.processed.iter().map(|(t, s, _)| (*t, *s));
    println!("throughput (events/s):");
    println!("| phase | span | accepted by the webhook | stored by the processor |");
    println!("| --- | --- | --- | --- |");
    for (phase, a, b, b_stored) in [
        ("before the kill", start_ms, from, from),
        ("during the outage", from, to, to),
        ("after the restart", to, sent_done_ms.max(to), last_stored.max(to) + 1),
    ] {
        let (na, ra) = rate_in(accepted_points(), a, b);
        let (ns, rs) = rate_in(stored_points(), a, b_stored);
        println!(
            "| {phase} | {:.1} s / {:.1} s | {na} ({ra:.0}/s) | {ns} ({rs:.0}/s) |",
            secs(b - a),
            secs(b_stored - a)
        );
    }
    let (na, ra) = rate_in(accepted_points(), start_ms, sent_done_ms + 1);
    let (ns, rs) = rate_in(stored_points(), start_ms, last_stored + 1);
    println!(
        "| whole run | {:.1} s / {:.1} s | {na} ({ra:.0}/s) | {ns} ({rs:.0}/s) |",
        secs(sent_done_ms - start_ms),
        secs(last_stored - start_ms)
    );
    // The same as a timeline, for the stall and the catch-up.
    let end = settled_ms.max(last_stored);
    let window = (((end - start_ms) / 1000 / 20).max(1) as u64).div_ceil(10).max(1) * 10;
    let mut line =
        format!("timeline, accepted/stored per {window} s from the first POST (K: the kill, U: DynamoDB back):");
    let mut t = start_ms;
    while t < end {
        let next = t + window as i64 * 1000;
        let (na, _) = rate_in(accepted_points(), t, next);
        let (ns, _) = rate_in(stored_points(), t, next);
        let marks: String = [(from, "K"), (to, "U")]
            .iter()
            .filter(|(m, _)| *m >= t && *m < next)
            .map(|(_, l)| *l)
            .collect();
        line.push_str(&format!(" {na}/{ns}{marks}"));
        t = next;
    }
    println!("{line}");
    // The backlog (accepted, not yet stored) over time: how far the outage set the processor back,
    // and when it was back where it was before (envelopes that failed wait a visibility timeout).
    let mut deltas: Vec<(i64, i64)> = accepted_points()
        .map(|(t, n)| (t, n as i64))
        .chain(stored_points().map(|(t, n)| (t, -(n as i64))))
        .collect();
    deltas.sort_unstable();
    let (mut backlog, mut before_max, mut peak, mut above_until) = (0i64, 0i64, (0i64, 0i64), None);
    for (t, d) in deltas {
        backlog += d;
        if t < from {
            before_max = before_max.max(backlog);
        } else {
            if backlog > peak.1 {
                peak = (t, backlog);
            }
            if backlog > before_max {
                above_until = Some(t);
            }
        }
    }
    println!(
        "backlog (accepted, not yet stored): at most {before_max} events before the kill; peak {} at +{:.1} s; \
         above {before_max} until +{:.1} s ({:.1} s after DynamoDB answered again)",
        peak.1,
        secs(peak.0 - start_ms),
        secs(above_until.unwrap_or(to) - start_ms),
        secs(above_until.unwrap_or(to) - to)
    );
    println!(
        "wall time: sending {:.1} s; last event stored at +{:.1} s ({:.1} s after DynamoDB answered again); \
         queue empty (everything stored or dead-lettered) at +{:.1} s",
        secs(sent_done_ms - start_ms),
        secs(last_stored - start_ms),
        secs(last_stored - to),
        secs(settled_ms - start_ms)
    );
    check(
        format!("the ingest queue emptied within {} s", settle.as_secs()),
        settled,
    );
    check(format!("all {posts_n} POSTs answered 200"), sent.len() == posts_n);

    println!(
        "\nstored: {} MSG# items for tenant {TENANT} (DynamoDB scan)",
        messages.len()
    );
    println!(
        "  {good_stored} of {} events stored; {} missing; {} stored more than once; {} unexpected ids",
        c.events,
        missing.len(),
        doubled.len(),
        unexpected.len()
    );
    for w in missing.iter().take(10) {
        println!("  missing: {w}");
    }
    for (w, n) in doubled.iter().take(10) {
        println!("  stored {n} times: {w}");
    }
    check(
        format!("each of the {} events stored exactly once", c.events),
        missing.is_empty() && doubled.is_empty() && good_stored == c.events,
    );
    check(
        format!("no MSG# item besides the {} events (and poison companions)", c.events),
        unexpected.is_empty(),
    );
    println!(
        "admin API: {} messages listed over {contacts} contacts; {listed_good} of the {} events",
        listed.len(),
        c.events
    );
    check(
        "the admin API lists each event once".to_owned(),
        listed_good == c.events && listed.len() == listed_set.len(),
    );
    println!(
        "quarantine: {} entries{}",
        quarantine.len(),
        buckets.iter().map(|(b, n)| format!(", {b}: {n}")).collect::<String>()
    );

    println!(
        "\ndead-letter queue: {} envelopes (receives before dead-lettering / failed attempts in the stack's log / reason)",
        letters.len()
    );
    for d in &letters {
        let attempts = log.failures.get(&d.message_id).map(Vec::as_slice).unwrap_or_default();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for (_, e) in attempts {
            *reasons.entry(error_class(e)).or_default() += 1;
        }
        let last = attempts
            .last()
            .map_or("(no failure logged for this message id)".to_owned(), |(_, e)| {
                error_class(e)
            });
        let which = work
            .poison
            .iter()
            .position(|p| d.wamids.first().is_some_and(|w| p.wamids.contains(w)));
        println!(
            "- {} ({} bytes, request {}): {}; received {} times, {} failures logged{}",
            d.message_id,
            d.bytes,
            d.request_id,
            which.map_or_else(
                || format!("carries {} events", d.wamids.len()),
                |i| format!("poison {i}, {}", work.poison[i].kind.describe())
            ),
            d.receive_count,
            attempts.len(),
            log.panics
                .get(&d.message_id)
                .map_or(String::new(), |n| format!(", {n} panics"))
        );
        println!("    reason (last attempt): {last}");
        if reasons.len() > 1 {
            for (reason, n) in &reasons {
                println!("    {n} × {reason}");
            }
        }
    }
    check("the dead-letter queue is empty".to_owned(), letters.is_empty());
    check(
        "every dead-lettered envelope has its reason in the stack's log".to_owned(),
        letters.iter().all(|d| log.failures.contains_key(&d.message_id)),
    );

    // Poison: held in quarantine with its reason on its first receive, the rest of its
    // envelope stored.
    println!("\nquarantined as rejected: {} entries", rejected.len());
    let mut held_ok = 0;
    let mut rest_ok = 0;
    for (i, p) in work.poison.iter().enumerate() {
        let held: Vec<&shared::domain::QuarantineEntry> =
            rejected.iter().filter(|e| e.envelope.contains(&p.marker)).collect();
        let held_right = held.len() == 1 && held[0].reason.starts_with(p.kind.reason());
        let storable = p.storable();
        let rest_stored = storable.iter().all(|w| stored.contains_key(w.as_str()));
        let oversize_absent = p.kind == PoisonKind::ProfileName || !stored.contains_key(p.wamids[0].as_str());
        held_ok += usize::from(held_right);
        rest_ok += usize::from(rest_stored && oversize_absent);
        println!(
            "- poison {i} ({}): {} quarantine entr{}{}; {} of its {} storable message(s) stored",
            p.kind.describe(),
            held.len(),
            if held.len() == 1 { "y" } else { "ies" },
            held.first().map_or(String::new(), |e| {
                let reason: String = e.reason.chars().take(110).collect();
                format!(" (reason: {reason}…; {} bytes held)", e.envelope.len())
            }),
            storable.iter().filter(|w| stored.contains_key(w.as_str())).count(),
            storable.len(),
        );
    }
    check(
        format!(
            "each of the {} poison envelopes held in quarantine once, with its reason ({held_ok})",
            work.poison.len()
        ),
        held_ok == work.poison.len(),
    );
    check(
        format!(
            "what the poison envelopes carry besides the oversize item is stored ({rest_ok} of {})",
            work.poison.len()
        ),
        rest_ok == work.poison.len(),
    );
    let poison_failures: usize = log
        .failures
        .iter()
        .filter(|(_, v)| {
            v.iter()
                .any(|(_, e)| e.contains("larger than") || e.contains("Item size"))
        })
        .count();
    check(
        format!("no envelope failed for an item's size ({poison_failures})"),
        poison_failures == 0,
    );

    let failed_attempts: usize = log.failures.values().map(Vec::len).sum();
    let poison_attempts: usize = log
        .failures
        .iter()
        .filter(|(id, _)| dead_ids.contains(id.as_str()))
        .map(|(_, v)| v.len())
        .sum();
    let redelivered_good = log.failures.keys().filter(|id| !dead_ids.contains(id.as_str())).count();
    let duplicates: u64 = log.processed.iter().map(|(_, _, d)| d).sum();
    let stored_by_log: u64 = log.processed.iter().map(|(_, s, _)| s).sum();
    println!(
        "\nredeliveries (stack log): {failed_attempts} failed attempts, {poison_attempts} of them by envelopes now dead-lettered; \
         {redelivered_good} good envelopes failed at least once and were stored on a later receive; \
         {duplicates} messages found already stored on a redelivery (replays, not stored again); \
         {} envelopes processed, {stored_by_log} messages stored by the processor's count",
        log.processed.len()
    );
    let mut failure_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (id, v) in &log.failures {
        if dead_ids.contains(id.as_str()) {
            continue;
        }
        for (_, e) in v {
            *failure_kinds.entry(error_class(e)).or_default() += 1;
        }
    }
    for (reason, n) in failure_kinds.iter().take(8) {
        println!("  {n} × {reason}");
    }
    if !log.panics.is_empty() {
        println!("  panics: {}", log.panics.values().sum::<usize>());
    }

    println!();
    let mut ok = true;
    for (name, passed) in &checks {
        println!("[{}] {name}", if *passed { "ok" } else { "FAIL" });
        ok &= passed;
    }
    println!(
        "{}",
        if ok {
            "chaos: all checks passed"
        } else {
            "chaos: CHECKS FAILED"
        }
    );
    Ok(ok)
}
