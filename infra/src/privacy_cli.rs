//! The operator CLI's privacy commands: the privacy mailbox's work (create, list open with days
//! left, show, decide, export, replay after a restore) through the admin API, as any other
//! caller. Against a deployed stack each request is SigV4-signed with the operator's AWS
//! credentials (the API's IAM authorizer decides, and the deletion function checks the
//! `privacy_officer` grant); against the local stack, a bearer token stands for the principal.

use aws_credential_types::Credentials;
use serde_json::{Map, Value, json};
use std::time::SystemTime;

pub const USAGE: &str = "usage: operator privacy [--api URL] [--token TOKEN] [--ticket REF] <command>\n\
     \x20 create --kind KIND --id TYPE=VALUE [--id ...] --source email|operator [--jurisdiction J]\n\
     \x20        [--tenant T] [--note TEXT] [--erase] [--rectify-name NAME]\n\
     \x20 list                              open requests, soonest due first, with days left\n\
     \x20 show ID\n\
     \x20 decide ID approve|reject|extend [--reason TEXT] [--due-at RFC3339]\n\
     \x20 export ID [--csv] [--out FILE]\n\
     \x20 replay --since RFC3339 --reason TEXT   erasures undone by a restore, carried out again\n\
     --api (or SOCIO_API_URL): the stack's ApiUrl output, or http://127.0.0.1:3000 for the local stack.\n\
     --token (or SOCIO_ADMIN_TOKEN): a local stack's bearer token; without one, requests are signed\n\
     with the AWS credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.\n\
     --ticket: the case reference the audit trail records as the reason (no e-mail or phone).";

/// How the admin API learns who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// The local stack's stand-in for IAM.
    Bearer(String),
    /// API Gateway's IAM authorization, in the API's region.
    SigV4 { region: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivacyCommand {
    Create(Value),
    List,
    Show(String),
    Decide { id: String, body: Value },
    Export { id: String, csv: bool, out: Option<String> },
    Replay(Value),
    Compliance,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyInvocation {
    /// Base URL, without a trailing slash.
    pub api: String,
    pub auth: Auth,
    pub ticket: Option<String>,
    pub command: PrivacyCommand,
}

/// Flags that take no value.
const SWITCHES: &[&str] = &["--erase", "--csv"];

struct Flags {
    given: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let (mut given, mut positional) = (Vec::new(), Vec::new());
        while let Some(a) = args.next() {
            if SWITCHES.contains(&a.as_str()) {
                given.push((a, None));
            } else if a.starts_with("--") {
                let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
                given.push((a, Some(v)));
            } else {
                positional.push(a);
            }
        }
        Ok(Self { given, positional })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(format!("{name} is given more than once")),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| n == name)
    }

    /// Refuses any flag the command does not take.
    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.given.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("unknown flag {n} here")),
            None => Ok(()),
        }
    }
}

const GLOBAL: &[&str] = &["--api", "--token", "--ticket"];

fn with_global(flags: &[&'static str]) -> Vec<&'static str> {
    GLOBAL.iter().chain(flags).copied().collect()
}

/// `operator privacy ...` after the word `privacy`; `env` reads the environment.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PrivacyInvocation, String> {
    let flags = Flags::parse(args)?;
    let env = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    let api = flags
        .one("--api")?
        .map(str::to_owned)
        .or_else(|| env("SOCIO_API_URL"))
        .ok_or("--api URL (or SOCIO_API_URL) is required: the stack's ApiUrl output")?
        .trim_end_matches('/')
        .to_owned();
    if !api.starts_with("https://") && !api.starts_with("http://127.") && !api.starts_with("http://localhost") {
        return Err("--api must be https://, or http:// on loopback for the local stack".into());
    }
    let auth = match flags
        .one("--token")?
        .map(str::to_owned)
        .or_else(|| env("SOCIO_ADMIN_TOKEN"))
    {
        Some(token) => Auth::Bearer(token),
        None => Auth::SigV4 {
            region: region_of(&api)
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .ok_or("no region: the API URL names none and AWS_REGION is unset")?,
        },
    };
    let ticket = flags.one("--ticket")?.map(str::to_owned);
    let command = match flags.positional.as_slice() {
        [c] if c == "create" => {
            flags.only(&with_global(&[
                "--kind",
                "--id",
                "--source",
                "--jurisdiction",
                "--tenant",
                "--note",
                "--erase",
                "--rectify-name",
            ]))?;
            PrivacyCommand::Create(create_body(&flags)?)
        }
        [c] if c == "list" => {
            flags.only(GLOBAL)?;
            PrivacyCommand::List
        }
        [c, id] if c == "show" => {
            flags.only(GLOBAL)?;
            PrivacyCommand::Show(id.clone())
        }
        [c, id, decision] if c == "decide" => {
            flags.only(&with_global(&["--reason", "--due-at"]))?;
            let mut body = Map::new();
            body.insert("decision".into(), json!(decision));
            if let Some(r) = flags.one("--reason")? {
                body.insert("reason".into(), json!(r));
            }
            if let Some(d) = flags.one("--due-at")? {
                body.insert("due_at".into(), json!(d));
            }
            PrivacyCommand::Decide {
                id: id.clone(),
                body: Value::Object(body),
            }
        }
        [c, id] if c == "export" => {
            flags.only(&with_global(&["--csv", "--out"]))?;
            PrivacyCommand::Export {
                id: id.clone(),
                csv: flags.has("--csv"),
                out: flags.one("--out")?.map(str::to_owned),
            }
        }
        [c] if c == "replay" => {
            flags.only(&with_global(&["--since", "--reason"]))?;
            let since = flags
                .one("--since")?
                .ok_or("replay needs --since: when the restored backup was taken")?;
            let reason = flags
                .one("--reason")?
                .ok_or("replay needs --reason: the restore's ticket")?;
            PrivacyCommand::Replay(json!({"since": since, "reason": reason}))
        }
        [c] if c == "compliance" => {
            flags.only(GLOBAL)?;
            PrivacyCommand::Compliance
        }
        _ => {
            return Err("expected create, list, show ID, decide ID DECISION, export ID, replay or compliance".into());
        }
    };
    Ok(PrivacyInvocation {
        api,
        auth,
        ticket,
        command,
    })
}

/// `https://{id}.execute-api.{region}.amazonaws.com`.
fn region_of(api: &str) -> Option<String> {
    let host = api.strip_prefix("https://")?.split('/').next()?;
    let mut parts = host.split('.');
    let (_, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "execute-api").then(|| region.to_owned())
}

fn create_body(flags: &Flags) -> Result<Value, String> {
    let kind = flags.one("--kind")?.ok_or("create needs --kind")?;
    let source = flags.one("--source")?.ok_or("create needs --source email|operator")?;
    let ids = flags.all("--id");
    if ids.is_empty() {
        return Err("create needs at least one --id TYPE=VALUE".into());
    }
    let identifiers = ids
        .iter()
        .map(|i| {
            let (t, v) = i
                .split_once('=')
                .ok_or("--id takes TYPE=VALUE, e.g. phone=+5491155550123")?;
            Ok(json!({"type": t, "value": v}))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut body = Map::new();
    body.insert("kind".into(), json!(kind));
    body.insert("identifiers".into(), Value::Array(identifiers));
    body.insert("source".into(), json!(source));
    for (flag, field) in [
        ("--jurisdiction", "jurisdiction"),
        ("--tenant", "tenant"),
        ("--note", "note"),
    ] {
        if let Some(v) = flags.one(flag)? {
            body.insert(field.into(), json!(v));
        }
    }
    if flags.has("--erase") {
        body.insert("erase".into(), json!(true));
    }
    if let Some(name) = flags.one("--rectify-name")? {
        body.insert("rectify".into(), json!({"profile_name": name}));
    }
    Ok(Value::Object(body))
}

/// The operator's AWS credentials, from the variables `aws configure export-credentials
/// --format env` (or any credential tool) sets.
pub fn credentials_from(env: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let var = |n: &str| env(n).filter(|v| !v.is_empty());
    Some(Credentials::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// The headers SigV4 adds to a request for API Gateway (`execute-api`) in `region` at `time`.
pub fn sigv4_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

/// What a command prints: text, or an export's bytes for a file or stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Text(String),
    Export { bytes: Vec<u8>, out: Option<String> },
}

struct Call {
    method: reqwest::Method,
    path: String,
    body: Option<Vec<u8>>,
    accept: &'static str,
}

fn call_for(command: &PrivacyCommand) -> Call {
    let json_call = |method, path: String, body: Option<&Value>| Call {
        method,
        path,
        body: body.map(|b| b.to_string().into_bytes()),
        accept: "application/json",
    };
    match command {
        PrivacyCommand::Create(b) => json_call(reqwest::Method::POST, "/admin/privacy-requests".into(), Some(b)),
        PrivacyCommand::List => json_call(
            reqwest::Method::GET,
            "/admin/privacy-requests?status=open&limit=100".into(),
            None,
        ),
        PrivacyCommand::Show(id) => json_call(reqwest::Method::GET, format!("/admin/privacy-requests/{id}"), None),
        PrivacyCommand::Decide { id, body } => json_call(
            reqwest::Method::POST,
            format!("/admin/privacy-requests/{id}/decision"),
            Some(body),
        ),
        PrivacyCommand::Export { id, csv, .. } => Call {
            method: reqwest::Method::GET,
            path: format!("/admin/privacy-requests/{id}/export"),
            body: None,
            accept: if *csv { "text/csv" } else { "application/json" },
        },
        PrivacyCommand::Replay(b) => json_call(reqwest::Method::POST, "/admin/privacy-requests/replay".into(), Some(b)),
        PrivacyCommand::Compliance => json_call(reqwest::Method::GET, "/admin/compliance".into(), None),
    }
}

/// One admin API call, authenticated as `inv.auth` says; the answer's body, or the API's error.
async fn send(
    http: &reqwest::Client,
    inv: &PrivacyInvocation,
    credentials: Option<&Credentials>,
    call: &Call,
) -> Result<Vec<u8>, String> {
    let url = format!("{}{}", inv.api, call.path);
    let body = call.body.clone().unwrap_or_default();
    let mut headers: Vec<(String, String)> = vec![("accept".into(), call.accept.into())];
    if call.body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    if let Some(t) = &inv.ticket {
        headers.push(("x-audit-reason".into(), t.clone()));
    }
    match &inv.auth {
        Auth::Bearer(token) => headers.push(("authorization".into(), format!("Bearer {token}"))),
        Auth::SigV4 { region } => {
            let credentials =
                credentials.ok_or("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
            let host = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .ok_or("--api is not a URL")?;
            headers.push(("host".into(), host));
            let signed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let extra = sigv4_headers(
                call.method.as_str(),
                &url,
                &signed,
                &body,
                credentials,
                region,
                SystemTime::now(),
            )?;
            headers.extend(extra);
        }
    }
    let mut request = http.request(call.method.clone(), &url);
    for (n, v) in &headers {
        request = request.header(n, v);
    }
    if call.body.is_some() {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?.to_vec();
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!(
            "{} {}: {message}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    Ok(bytes)
}

fn json_of(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the API answered something that is not JSON: {e}"))
}

/// One request per line, soonest due first: what the mailbox must answer next.
fn open_table(pages: &[Value]) -> String {
    let mut lines = vec![format!(
        "{:<21} {:>9}  {:<13} {:<11} {}",
        "DUE (UTC)", "DAYS LEFT", "KIND", "STATUS", "ID"
    )];
    for r in pages
        .iter()
        .flat_map(|p| p["requests"].as_array().cloned().unwrap_or_default())
    {
        lines.push(format!(
            "{:<21} {:>9}  {:<13} {:<11} {}",
            r["due_at"].as_str().unwrap_or("?"),
            r["days_left"].as_i64().map_or("?".to_owned(), |d| d.to_string()),
            r["kind"].as_str().unwrap_or("?"),
            r["status"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?"),
        ));
    }
    if lines.len() == 1 {
        return "no open privacy requests".to_owned();
    }
    lines.join("\n")
}

/// The compliance report, one line per figure under the clause it proves; a failing figure is
/// marked `FAIL`.
pub fn compliance_table(report: &Value) -> String {
    let mut out = vec![format!(
        "compliance report at {} : {}",
        report["generated_at"].as_str().unwrap_or("?"),
        if report["compliant"] == true {
            "every figure within its limit"
        } else {
            "SOME FIGURES FAIL"
        }
    )];
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    let mut clauses: Vec<&str> = Vec::new();
    for l in &lines {
        let c = l["clause"].as_str().unwrap_or("?");
        if !clauses.contains(&c) {
            clauses.push(c);
        }
    }
    for clause in clauses {
        out.push(String::new());
        out.push(clause.to_owned());
        out.push(format!(
            "  {:<4} {:<34} {:<16} {:>8} {:>8}",
            "", "FIGURE", "TENANT", "VALUE", "LIMIT"
        ));
        for l in lines.iter().filter(|l| l["clause"].as_str() == Some(clause)) {
            out.push(format!(
                "  {:<4} {:<34} {:<16} {:>8} {:>8}",
                if l["ok"] == true { "ok" } else { "FAIL" },
                l["figure"].as_str().unwrap_or("?"),
                l["tenant"].as_str().unwrap_or("-"),
                l["value"].as_i64().map_or("?".to_owned(), |v| v.to_string()),
                l["limit"].as_i64().map_or("-".to_owned(), |v| v.to_string()),
            ));
        }
    }
    out.join("\n")
}

/// Runs one command; `credentials` sign it when `inv.auth` is SigV4.
pub async fn run(
    http: &reqwest::Client,
    inv: &PrivacyInvocation,
    credentials: Option<&Credentials>,
) -> Result<Output, String> {
    let call = call_for(&inv.command);
    match &inv.command {
        PrivacyCommand::List => {
            let mut pages = Vec::new();
            let mut call = call;
            loop {
                let page = json_of(&send(http, inv, credentials, &call).await?)?;
                let next = page["next_cursor"].as_str().map(str::to_owned);
                pages.push(page);
                match next {
                    Some(c) => {
                        call.path = format!("/admin/privacy-requests?status=open&limit=100&cursor={c}");
                    }
                    None => return Ok(Output::Text(open_table(&pages))),
                }
            }
        }
        PrivacyCommand::Compliance => Ok(Output::Text(compliance_table(&json_of(
            &send(http, inv, credentials, &call).await?,
        )?))),
        PrivacyCommand::Export { out, .. } => Ok(Output::Export {
            bytes: send(http, inv, credentials, &call).await?,
            out: out.clone(),
        }),
        _ => {
            let v = json_of(&send(http, inv, credentials, &call).await?)?;
            Ok(Output::Text(
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn command_lines_become_the_api_calls_they_name() {
        let inv = parse(
            args("--api https://abc123.execute-api.sa-east-1.amazonaws.com/ create --kind erasure --id phone=+5491155550123 --id instagram_username=ana.p --source email --jurisdiction eu"),
            no_env,
        )
        .expect("valid");
        assert_eq!(inv.api, "https://abc123.execute-api.sa-east-1.amazonaws.com");
        assert_eq!(
            inv.auth,
            Auth::SigV4 {
                region: "sa-east-1".into()
            }
        );
        assert_eq!(
            inv.command,
            PrivacyCommand::Create(json!({
                "kind": "erasure",
                "identifiers": [{"type": "phone", "value": "+5491155550123"}, {"type": "instagram_username", "value": "ana.p"}],
                "source": "email",
                "jurisdiction": "eu",
            }))
        );
        let local = |n: &str| (n == "SOCIO_API_URL").then(|| "http://127.0.0.1:3000".to_owned());
        let decide = parse(args("--token t decide 42 reject --reason duplicate"), local).expect("valid");
        assert_eq!(decide.auth, Auth::Bearer("t".into()));
        assert_eq!(
            decide.command,
            PrivacyCommand::Decide {
                id: "42".into(),
                body: json!({"decision": "reject", "reason": "duplicate"})
            }
        );
    }

    #[test]
    fn the_compliance_report_prints_as_a_table_by_clause() {
        let inv = parse(args("--token t --api http://127.0.0.1:3000 compliance"), no_env).expect("valid");
        let call = call_for(&inv.command);
        assert_eq!(
            (call.method, call.path.as_str()),
            (reqwest::Method::GET, "/admin/compliance")
        );
        let report = json!({"generated_at": "2028-06-01T12:00:00Z", "compliant": false, "lines": [
            {"clause": "6. Retention", "figure": "oldest_message_age_days", "tenant": "acme", "value": 396, "limit": 731, "ok": true},
            {"clause": "7. Rights", "figure": "overdue_requests", "value": 1, "limit": 0, "ok": false},
        ]});
        let table = compliance_table(&report);
        assert!(table.contains("SOME FIGURES FAIL"), "{table}");
        let row = |figure: &str| {
            table
                .lines()
                .find(|l| l.contains(figure))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(row("oldest_message_age_days").trim_start().starts_with("ok"), "{table}");
        assert!(row("oldest_message_age_days").contains("acme"), "{table}");
        assert!(row("overdue_requests").trim_start().starts_with("FAIL"), "{table}");
        assert!(table.find("6. Retention") < table.find("7. Rights"), "{table}");
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let local = |n: &str| (n == "SOCIO_API_URL").then(|| "http://127.0.0.1:3000".to_owned());
        for (line, says) in [
            ("list", "--api"),
            ("--api http://example.com list", "https://"),
            (
                "--token t --api http://127.0.0.1:3000 create --kind erasure --source email",
                "--id",
            ),
            (
                "--token t --api http://127.0.0.1:3000 create --kind erasure --source email --id 5491155550123",
                "TYPE=VALUE",
            ),
            ("--token t --api http://127.0.0.1:3000 show 1 --csv", "--csv"),
            (
                "--token t --api http://127.0.0.1:3000 replay --since 2026-12-01T00:00:00Z",
                "--reason",
            ),
            ("--token t --api http://127.0.0.1:3000 forget 1", "expected"),
        ] {
            let err = parse(args(line), no_env).expect_err(line);
            assert!(err.contains(says), "{line}: {err}");
        }
        assert!(
            parse(args("list"), local)
                .expect_err("no region for a local URL without a token")
                .contains("region")
        );
    }

    #[test]
    fn requests_to_a_deployed_api_are_signed_for_execute_api_in_its_region() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session".into()),
            None,
            "test",
        );
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_300_000);
        let url = "https://abc123.execute-api.sa-east-1.amazonaws.com/admin/privacy-requests?status=open";
        let sign = |region: &str, body: &[u8]| {
            sigv4_headers(
                "GET",
                url,
                &[("host", "abc123.execute-api.sa-east-1.amazonaws.com")],
                body,
                &creds,
                region,
                at,
            )
            .expect("signed")
        };
        let headers = sign("sa-east-1", b"");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        assert!(
            get("authorization").starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/sa-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date"),
            "{}",
            get("authorization")
        );
        assert_eq!(get("x-amz-date"), "20261203T121320Z");
        assert_eq!(get("x-amz-security-token"), "session");
        assert_ne!(sign("us-east-1", b""), headers, "the region is part of the signature");
        assert_ne!(sign("sa-east-1", b"{}"), headers, "so is the body");
    }
}
