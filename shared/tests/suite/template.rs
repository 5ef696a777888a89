//! The hardening rules of template.yaml, read from the template compiled into the crate: log
//! retention, least-privilege function policies, a watched dead-letter queue for every source
//! queue, encrypted and recoverable tables, and no secrets in environment variables.
//!
//! CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`, `!If`) come through serde_yaml as
//! `Value::Tagged`; the long forms (`{"Fn::Sub": ...}`) are read too.

use serde_yaml::Value;
use shared::provision::TEMPLATE;
use shared::retention::LOG_RETENTION_DAYS;

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("template.yaml parses")
}

/// Every resource of `kind`, by logical id. Panics when there is none, so no rule passes vacuously.
fn resources<'t>(t: &'t Value, kind: &str) -> Vec<(&'t str, &'t Value)> {
    let all = t["Resources"].as_mapping().expect("Resources is a mapping");
    let found: Vec<_> = all
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are strings"), r))
        .collect();
    assert!(!found.is_empty(), "template.yaml declares no {kind}");
    found
}

/// `!Name x`, `{"Fn::Name": x}` or `{"Ref": x}` -> `("Name", x)`.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            let name = if k == "Ref" { k } else { k.strip_prefix("Fn::")? };
            Some((name.to_owned(), inner))
        }
        _ => None,
    }
}

/// The template string of a `!Sub` (either `!Sub "..."` or `!Sub ["...", {vars}]`).
fn sub_string(v: &Value) -> Option<&str> {
    match intrinsic(v)? {
        (name, inner) if name == "Sub" => match inner {
            Value::String(s) => Some(s),
            Value::Sequence(l) => l.first()?.as_str(),
            _ => None,
        },
        _ => None,
    }
}

/// `!GetAtt Name.Attr` or `{"Fn::GetAtt": [Name, Attr]}` -> `(Name, Attr)`.
fn get_att(v: &Value) -> Option<(String, String)> {
    match intrinsic(v)? {
        (name, inner) if name == "GetAtt" => match inner {
            Value::String(s) => s.split_once('.').map(|(r, a)| (r.to_owned(), a.to_owned())),
            Value::Sequence(l) => Some((l.first()?.as_str()?.to_owned(), l.get(1)?.as_str()?.to_owned())),
            _ => None,
        },
        _ => None,
    }
}

/// `!Ref Name` -> `Name`.
fn ref_target(v: &Value) -> Option<&str> {
    match intrinsic(v)? {
        (name, inner) if name == "Ref" => inner.as_str(),
        _ => None,
    }
}

/// A value that is one item or a list of items, as IAM and SAM allow.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(l) => l.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Every string inside `v`: scalars, mapping keys and values, and the contents of tags.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(l) => l.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.iter().for_each(|(k, x)| {
            strings(k, out);
            strings(x, out);
        }),
        Value::Tagged(t) => strings(&t.value, out),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[test]
fn every_function_has_a_log_group_kept_for_the_policy_retention() {
    let t = template();
    let groups = resources(&t, "AWS::Logs::LogGroup");
    for (function, _) in resources(&t, "AWS::Serverless::Function") {
        let name = format!("/aws/lambda/${{{function}}}");
        let own: Vec<_> = groups
            .iter()
            .filter(|(_, g)| sub_string(&g["Properties"]["LogGroupName"]) == Some(name.as_str()))
            .collect();
        assert!(
            !own.is_empty(),
            "{function} has no AWS::Logs::LogGroup with LogGroupName !Sub \"{name}\""
        );
        for (group, g) in own {
            assert_eq!(
                g["Properties"]["RetentionInDays"].as_u64(),
                Some(u64::from(LOG_RETENTION_DAYS)),
                "log group {group} of {function} must keep logs {LOG_RETENTION_DAYS} days (policy §6)"
            );
        }
    }
}

/// SAM policy templates that expand to statements on the one named resource they are given.
const SCOPED_POLICY_TEMPLATES: &[&str] = &["SQSSendMessagePolicy", "SQSPollerPolicy", "DynamoDBReadPolicy"];

/// Why a statement's Resource is too broad, if it is. A wildcard is allowed only as a suffix after
/// a named resource of the template, e.g. `!Sub "${Table.Arn}/index/*"`.
const TENANT_SECRETS_ARN_PREFIX: &str =
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/tenants/";

fn resource_problem(v: &Value) -> Option<String> {
    if let Value::String(s) = v {
        return s.contains('*').then(|| format!("wildcard resource {s:?}"));
    }
    if let Value::Sequence(l) = v {
        return l.iter().find_map(resource_problem);
    }
    let Some((name, inner)) = intrinsic(v) else {
        return Some(format!("unrecognised resource {v:?}"));
    };
    match name.as_str() {
        "Ref" | "GetAtt" => None,
        "If" => one_or_many(inner).into_iter().skip(1).find_map(resource_problem),
        "Sub" => {
            let Some(s) = sub_string(v) else {
                return Some(format!("unrecognised !Sub {inner:?}"));
            };
            let star = s.find('*')?;
            // Tenants' access-token secrets are put by an operator, one per tenant, outside the
            // stack: they cannot be named resources, so they are scoped by the stack's own prefix.
            if s.starts_with(TENANT_SECRETS_ARN_PREFIX) && star >= TENANT_SECRETS_ARN_PREFIX.len() {
                return None;
            }
            let named = s
                .strip_prefix("${")
                .and_then(|rest| rest.find('}').map(|end| (&rest[..end], end + 2)))
                .filter(|(var, end)| !var.starts_with("AWS::") && star > *end);
            named
                .is_none()
                .then(|| format!("wildcard in {s:?} is not a suffix of a named resource"))
        }
        other => Some(format!("unrecognised resource intrinsic {other}")),
    }
}

fn statement_problem(st: &Value) -> Option<String> {
    for broad in ["NotAction", "NotResource"] {
        if !st[broad].is_null() {
            return Some(format!("{broad} grants everything but a list"));
        }
    }
    let actions = one_or_many(&st["Action"]);
    if actions.is_empty() {
        return Some("no Action".to_owned());
    }
    for a in actions {
        match a.as_str() {
            Some(a) if a == "*" || a.ends_with(":*") => return Some(format!("wildcard action {a:?}")),
            Some(_) => {}
            None => return Some(format!("unrecognised action {a:?}")),
        }
    }
    if st["Resource"].is_null() {
        return Some("no Resource".to_owned());
    }
    resource_problem(&st["Resource"])
}

#[test]
fn no_function_policy_grants_a_wildcard_action_or_resource() {
    let t = template();
    for (function, f) in resources(&t, "AWS::Serverless::Function") {
        for policy in one_or_many(&f["Properties"]["Policies"]) {
            let Some(m) = policy.as_mapping() else {
                panic!("{function}: policy {policy:?} is a managed policy this test cannot inspect");
            };
            if let Some(statements) = m.get("Statement") {
                for st in one_or_many(statements) {
                    if let Some(problem) = statement_problem(st) {
                        panic!("{function}: statement {st:?}: {problem}");
                    }
                }
                continue;
            }
            let name = m.keys().next().and_then(Value::as_str).unwrap_or_default();
            assert!(
                m.len() == 1 && SCOPED_POLICY_TEMPLATES.contains(&name),
                "{function}: policy {policy:?} is not a statement list nor a SAM template scoped to one resource"
            );
        }
    }
}

/// The alarms watching a queue: `Dimensions` has `QueueName: !GetAtt <queue>.QueueName`.
fn alarms_on_queue<'t>(t: &'t Value, queue: &str) -> Vec<&'t str> {
    resources(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| {
            one_or_many(&a["Properties"]["Dimensions"]).iter().any(|d| {
                d["Name"].as_str() == Some("QueueName")
                    && get_att(&d["Value"]) == Some((queue.to_owned(), "QueueName".to_owned()))
            })
        })
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn every_source_queue_has_a_dead_letter_queue_with_an_alarm() {
    let t = template();
    let queues = resources(&t, "AWS::SQS::Queue");
    let sources: Vec<_> = queues
        .iter()
        .filter(|(_, q)| !q["Properties"]["RedrivePolicy"].is_null())
        .collect();
    assert!(!sources.is_empty(), "no queue has a RedrivePolicy");
    for (queue, q) in sources {
        let target = &q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"];
        let Some((dlq, attr)) = get_att(target) else {
            panic!("{queue}: deadLetterTargetArn {target:?} is not !GetAtt <Queue>.Arn");
        };
        assert_eq!(
            attr, "Arn",
            "{queue}: deadLetterTargetArn must be the dead-letter queue's Arn"
        );
        assert!(
            queues.iter().any(|(id, _)| *id == dlq),
            "{queue}: dead-letter queue {dlq} is not an AWS::SQS::Queue of the template"
        );
        assert!(
            !alarms_on_queue(&t, &dlq).is_empty(),
            "{queue}: no AWS::CloudWatch::Alarm has Dimensions QueueName !GetAtt {dlq}.QueueName"
        );
    }
}

/// The queues whose messages name people: webhook envelopes, opt-out commands, replies.
const PERSONAL_DATA_QUEUES: &[&str] = &["IngestQueue", "OptOutQueue", "OutboundQueue", "TenantOutboundQueue"];

/// The shortest deadline a request can have (a minor's data: 72 hours).
const SHORTEST_DEADLINE_SECS: u64 = 72 * 3600;

#[test]
fn no_copy_of_personal_data_waits_in_sqs_past_the_shortest_deadline() {
    let t = template();
    let retention = |q: &str| {
        t["Resources"][q]["Properties"]["MessageRetentionPeriod"]
            .as_u64()
            .unwrap_or(345_600)
    };
    let consumers = shared::provision::consumers(TEMPLATE).expect("consumers");
    for queue in PERSONAL_DATA_QUEUES {
        let (dlq, _) = get_att(&t["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            .unwrap_or_else(|| panic!("{queue} has no dead-letter queue"));
        // SQS keeps the original enqueue time in the dead-letter queue: its retention must be
        // longer than the source's, or a late failure would be dropped on arrival.
        assert!(
            retention(queue) < retention(&dlq),
            "{queue} keeps messages {} s, its dead-letter queue {dlq} only {} s",
            retention(queue),
            retention(&dlq)
        );
        assert!(
            retention(&dlq) < SHORTEST_DEADLINE_SECS,
            "{dlq} keeps messages {} s, past the 72-hour deadline",
            retention(&dlq)
        );
        assert!(
            consumers.iter().any(|c| c.queue == dlq && c.binary == "deadletter"),
            "{dlq} is not consumed by the dead-letter function, which moves its messages into quarantine"
        );
    }
}

#[test]
fn every_table_is_recoverable_and_encrypted_with_a_customer_key() {
    let t = template();
    for (table, r) in resources(&t, "AWS::DynamoDB::Table") {
        let p = &r["Properties"];
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true),
            "{table}: point-in-time recovery must be enabled"
        );
        let sse = &p["SSESpecification"];
        assert_eq!(
            sse["SSEEnabled"].as_bool(),
            Some(true),
            "{table}: SSEEnabled must be true"
        );
        assert_eq!(sse["SSEType"].as_str(), Some("KMS"), "{table}: SSEType must be KMS");
        assert!(
            !sse["KMSMasterKeyId"].is_null(),
            "{table}: SSESpecification needs a KMSMasterKeyId"
        );
    }
}

#[test]
fn every_queue_is_encrypted_with_the_customer_key() {
    let t = template();
    for (queue, q) in resources(&t, "AWS::SQS::Queue") {
        let p = &q["Properties"];
        assert!(!p["KmsMasterKeyId"].is_null(), "{queue}: KmsMasterKeyId missing");
        assert!(
            p["SqsManagedSseEnabled"].is_null(),
            "{queue}: SqsManagedSseEnabled conflicts with KmsMasterKeyId"
        );
    }
}

#[test]
fn no_environment_variable_resolves_a_secret() {
    let t = template();
    let mut environments = vec![("Globals", &t["Globals"]["Function"]["Environment"])];
    for (function, f) in resources(&t, "AWS::Serverless::Function") {
        environments.push((function, &f["Properties"]["Environment"]));
    }
    for (owner, env) in environments {
        let mut found = Vec::new();
        strings(env, &mut found);
        if let Some(s) = found
            .iter()
            .find(|s| s.to_ascii_lowercase().contains("resolve:secretsmanager"))
        {
            panic!("{owner}: environment variable resolves a secret ({s:?}); read it from SECRETS_ARN at init");
        }
    }
}

#[test]
fn every_alarm_notifies_a_topic_of_the_template() {
    let t = template();
    let topics: Vec<&str> = resources(&t, "AWS::SNS::Topic").into_iter().map(|(id, _)| id).collect();
    for (alarm, a) in resources(&t, "AWS::CloudWatch::Alarm") {
        let actions = one_or_many(&a["Properties"]["AlarmActions"]);
        assert!(
            actions
                .iter()
                .any(|x| ref_target(x).is_some_and(|r| topics.contains(&r))),
            "{alarm}: AlarmActions must include !Ref of one of the template's topics {topics:?}"
        );
    }
}

#[test]
fn every_function_has_an_errors_alarm() {
    let t = template();
    let alarms = resources(&t, "AWS::CloudWatch::Alarm");
    for (function, _) in resources(&t, "AWS::Serverless::Function") {
        let watched = alarms.iter().any(|(_, a)| {
            let p: &Value = &a["Properties"];
            p["Namespace"].as_str() == Some("AWS/Lambda")
                && p["MetricName"].as_str() == Some("Errors")
                && one_or_many(&p["Dimensions"])
                    .iter()
                    .any(|d| d["Name"].as_str() == Some("FunctionName") && ref_target(&d["Value"]) == Some(function))
        });
        assert!(
            watched,
            "{function}: no AWS/Lambda Errors alarm with Dimensions FunctionName !Ref {function}"
        );
    }
}
