//! Creates emulator tables from template.yaml, the only definition of the tables: the local stack
//! and the test harness read it, so local and AWS cannot drift.

use crate::config::{TableKind, TableNames};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The SAM template, compiled in so a binary can provision without the source tree.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// Logical id of the ingest queue's dead-letter queue in template.yaml.
pub const INGEST_DEAD_LETTER_QUEUE: &str = "IngestDeadLetterQueue";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("template.yaml has no AWS::DynamoDB::Table named {0}")]
    MissingTable(&'static str),
    #[error("template.yaml resource {table}: {reason}")]
    BadTable { table: String, reason: String },
    #[error("creating {table}: {reason}")]
    Backend { table: String, reason: String },
}

#[derive(Deserialize)]
struct Template {
    #[serde(rename = "Resources")]
    resources: BTreeMap<String, Resource>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Properties", default)]
    properties: serde_yaml::Value,
    #[serde(rename = "Metadata", default)]
    metadata: serde_yaml::Value,
}

/// Which function consumes a queue: the template's SQS event sources, as Lambda wires them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Logical id of the queue.
    pub queue: String,
    /// The function's binary (`Metadata.BuildProperties.Binary`), which names its crate.
    pub binary: String,
}

/// Every SQS event source of every function in the template.
pub fn consumers(template: &str) -> Result<Vec<Consumer>, ProvisionError> {
    let t: Template = serde_yaml::from_str(template).map_err(|e| ProvisionError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    for (id, r) in t
        .resources
        .iter()
        .filter(|(_, r)| r.kind == "AWS::Serverless::Function")
    {
        let bad = |reason: &str| ProvisionError::BadTable {
            table: id.clone(),
            reason: reason.to_owned(),
        };
        let Some(events) = r.properties.get("Events").and_then(|e| e.as_mapping()) else {
            continue;
        };
        for event in events
            .values()
            .filter(|e| e.get("Type").and_then(|t| t.as_str()) == Some("SQS"))
        {
            let queue = event
                .get("Properties")
                .and_then(|p| p.get("Queue"))
                .and_then(get_att_target)
                .ok_or_else(|| bad("an SQS event's Queue must be !GetAtt <Queue>.Arn"))?;
            let binary = r
                .metadata
                .get("BuildProperties")
                .and_then(|b| b.get("Binary"))
                .and_then(|b| b.as_str())
                .ok_or_else(|| bad("a function needs Metadata.BuildProperties.Binary"))?;
            out.push(Consumer {
                queue,
                binary: binary.to_owned(),
            });
        }
    }
    Ok(out)
}

/// The parts of an `AWS::DynamoDB::Table` an emulator needs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TableSpec {
    pub attribute_definitions: Vec<AttributeSpec>,
    pub key_schema: Vec<KeySpec>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexSpec>,
    #[serde(default)]
    pub local_secondary_indexes: Vec<IndexSpec>,
    pub time_to_live_specification: Option<TtlSpec>,
    pub billing_mode: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeSpec {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KeySpec {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IndexSpec {
    pub index_name: String,
    pub key_schema: Vec<KeySpec>,
    pub projection: ProjectionSpec,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionSpec {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TtlSpec {
    pub attribute_name: String,
    pub enabled: bool,
}

/// The parts of an `AWS::SQS::Queue` the local stack and emulators need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub visibility_timeout_secs: u32,
    pub maximum_message_size: Option<u32>,
    pub retention_secs: Option<u32>,
    /// Logical id of the dead-letter queue and the receive count that moves a message there.
    pub redrive: Option<(String, u32)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueProps {
    visibility_timeout: Option<u32>,
    maximum_message_size: Option<u32>,
    message_retention_period: Option<u32>,
    redrive_policy: Option<RedriveProps>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedriveProps {
    dead_letter_target_arn: serde_yaml::Value,
    max_receive_count: u32,
}

/// Every queue of the template, by logical id.
pub fn queue_specs(template: &str) -> Result<BTreeMap<String, QueueSpec>, ProvisionError> {
    let t: Template = serde_yaml::from_str(template).map_err(|e| ProvisionError::Yaml(e.to_string()))?;
    t.resources
        .into_iter()
        .filter(|(_, r)| r.kind == "AWS::SQS::Queue")
        .map(|(id, r)| {
            let bad = |reason: String| ProvisionError::BadTable {
                table: id.clone(),
                reason,
            };
            let props: QueueProps = serde_yaml::from_value(r.properties).map_err(|e| bad(e.to_string()))?;
            let redrive = match props.redrive_policy {
                None => None,
                Some(p) => Some((
                    get_att_target(&p.dead_letter_target_arn)
                        .ok_or_else(|| bad("deadLetterTargetArn must be !GetAtt <Queue>.Arn".to_owned()))?,
                    p.max_receive_count,
                )),
            };
            Ok((
                id.clone(),
                QueueSpec {
                    visibility_timeout_secs: props.visibility_timeout.unwrap_or(30),
                    maximum_message_size: props.maximum_message_size,
                    retention_secs: props.message_retention_period,
                    redrive,
                },
            ))
        })
        .collect()
}

/// `!GetAtt Name.Arn` (short form) or `{"Fn::GetAtt": [Name, Arn]}` (long form) -> `Name`.
fn get_att_target(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Tagged(t) if t.tag == "GetAtt" || t.tag == "!GetAtt" => {
            t.value.as_str().and_then(|s| s.strip_suffix(".Arn")).map(str::to_owned)
        }
        serde_yaml::Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(|l| l.as_sequence())
            .and_then(|l| l.first())
            .and_then(|n| n.as_str())
            .map(str::to_owned),
        _ => None,
    }
}

/// Creates the template's queues on an SQS endpoint, named `<prefix><LogicalId>`, dead-letter
/// queues first so redrive policies can point at them. Returns the URL of each, by logical id.
pub async fn create_queues(
    client: &aws_sdk_sqs::Client,
    template: &str,
    prefix: &str,
) -> Result<BTreeMap<String, String>, ProvisionError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let specs = queue_specs(template)?;
    let mut order: Vec<&String> = specs.keys().collect();
    order.sort_by_key(|id| specs[*id].redrive.is_some());
    let mut urls = BTreeMap::new();
    let mut arns = BTreeMap::new();
    for id in order {
        let spec = &specs[id];
        let fail = |reason: String| ProvisionError::Backend {
            table: id.clone(),
            reason,
        };
        let mut req = client
            .create_queue()
            .queue_name(format!("{prefix}{id}"))
            .attributes(A::VisibilityTimeout, spec.visibility_timeout_secs.to_string());
        if let Some(size) = spec.maximum_message_size {
            req = req.attributes(A::MaximumMessageSize, size.to_string());
        }
        if let Some(r) = spec.retention_secs {
            req = req.attributes(A::MessageRetentionPeriod, r.to_string());
        }
        if let Some((dlq, max)) = &spec.redrive {
            let arn: &String = arns
                .get(dlq)
                .ok_or_else(|| fail(format!("dead-letter queue {dlq} is not a queue")))?;
            let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max }).to_string();
            req = req.attributes(A::RedrivePolicy, policy);
        }
        let url = req
            .send()
            .await
            .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
            .queue_url
            .ok_or_else(|| fail("no queue URL returned".to_owned()))?;
        let attrs = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        if let Some(arn) = attrs.attributes.and_then(|mut a| a.remove(&A::QueueArn)) {
            arns.insert(id.clone(), arn);
        }
        urls.insert(id.clone(), url);
    }
    Ok(urls)
}

/// Every table of the template, by logical id.
pub fn table_specs(template: &str) -> Result<BTreeMap<String, TableSpec>, ProvisionError> {
    let t: Template = serde_yaml::from_str(template).map_err(|e| ProvisionError::Yaml(e.to_string()))?;
    t.resources
        .into_iter()
        .filter(|(_, r)| r.kind == "AWS::DynamoDB::Table")
        .map(|(id, r)| {
            let spec = serde_yaml::from_value(r.properties).map_err(|e| ProvisionError::BadTable {
                table: id.clone(),
                reason: e.to_string(),
            })?;
            Ok((id, spec))
        })
        .collect()
}

pub fn spec_for(specs: &BTreeMap<String, TableSpec>, kind: TableKind) -> Result<&TableSpec, ProvisionError> {
    specs
        .get(kind.logical_id())
        .ok_or(ProvisionError::MissingTable(kind.logical_id()))
}

fn keys(schema: &[KeySpec]) -> Vec<KeySchemaElement> {
    schema
        .iter()
        .filter_map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .ok()
        })
        .collect()
}

fn projection(p: &ProjectionSpec) -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::from(p.projection_type.as_str()))
        .set_non_key_attributes((!p.non_key_attributes.is_empty()).then(|| p.non_key_attributes.clone()))
        .build()
}

/// Creates every table of the design under `names`, with its indexes and TTL, as the template
/// declares them.
pub async fn create_tables(client: &Client, template: &str, names: &TableNames) -> Result<(), ProvisionError> {
    let specs = table_specs(template)?;
    for kind in TableKind::ALL {
        create_table(client, names.get(kind), spec_for(&specs, kind)?).await?;
    }
    Ok(())
}

pub async fn create_table(client: &Client, name: &str, spec: &TableSpec) -> Result<(), ProvisionError> {
    let fail = |reason: String| ProvisionError::Backend {
        table: name.to_owned(),
        reason,
    };
    let attrs = spec
        .attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gsis = spec
        .global_secondary_indexes
        .iter()
        .map(|i| {
            GlobalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(keys(&i.key_schema)))
                .projection(projection(&i.projection))
                .build()
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lsis = spec
        .local_secondary_indexes
        .iter()
        .map(|i| {
            LocalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(keys(&i.key_schema)))
                .projection(projection(&i.projection))
                .build()
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(keys(&spec.key_schema)))
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .set_local_secondary_indexes((!lsis.is_empty()).then_some(lsis))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
    if let Some(ttl) = spec.time_to_live_specification.as_ref().filter(|t| t.enabled) {
        let ttl_spec = TimeToLiveSpecification::builder()
            .attribute_name(&ttl.attribute_name)
            .enabled(true)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ttl_spec)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys;

    fn specs() -> BTreeMap<String, TableSpec> {
        table_specs(TEMPLATE).expect("template parses")
    }

    #[test]
    fn the_consumers_are_the_template_s_sqs_event_sources() {
        let found = consumers(TEMPLATE).expect("template parses");
        let pairs: Vec<(&str, &str)> = found.iter().map(|c| (c.queue.as_str(), c.binary.as_str())).collect();
        assert!(pairs.contains(&("IngestQueue", "processor")), "{pairs:?}");
        assert!(pairs.contains(&("OptOutQueue", "optout")), "{pairs:?}");
        let bad = "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        Q: { Type: SQS, Properties: { Queue: arn } }\n";
        assert!(consumers(bad).is_err(), "a queue given as a plain string is refused");
    }

    #[test]
    fn every_table_of_the_design_is_in_the_template_with_ttl() {
        let specs = specs();
        for kind in TableKind::ALL {
            let spec = spec_for(&specs, kind).expect("declared");
            let key_names: Vec<_> = spec.key_schema.iter().map(|k| k.attribute_name.as_str()).collect();
            assert_eq!(key_names, ["pk", "sk"], "{kind:?}");
            if kind != TableKind::OptOuts && kind != TableKind::Tenants {
                let ttl = spec.time_to_live_specification.as_ref().expect("TTL declared");
                assert_eq!(
                    (ttl.attribute_name.as_str(), ttl.enabled),
                    (keys::EXPIRES_AT, true),
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn the_ingest_queue_redrives_to_its_dead_letter_queue() {
        let queues = queue_specs(TEMPLATE).expect("template parses");
        let ingest = &queues[crate::config::QueueKind::Ingest.logical_id()];
        let (dlq, max) = ingest.redrive.clone().expect("redrive policy");
        assert_eq!((dlq.as_str(), max), (INGEST_DEAD_LETTER_QUEUE, 5));
        assert!(queues.contains_key(INGEST_DEAD_LETTER_QUEUE));
        // The queue must carry the largest envelope the webhook may send.
        assert_eq!(ingest.maximum_message_size, Some(crate::queue::MAX_BODY_BYTES as u32));
    }

    #[test]
    fn the_indexes_the_adapters_query_are_declared() {
        let specs = specs();
        let index_names = |kind| {
            let s = spec_for(&specs, kind).expect("declared");
            s.global_secondary_indexes
                .iter()
                .chain(&s.local_secondary_indexes)
                .map(|i| i.index_name.clone())
                .collect::<Vec<_>>()
        };
        let conv = index_names(TableKind::Conversations);
        assert_eq!(
            conv,
            [keys::CONTACTS_BY_TENANT_INDEX],
            "each index costs a write per item"
        );
        assert!(
            index_names(TableKind::PrivacyRequests)
                .iter()
                .any(|i| i == keys::OPEN_BY_DUE_INDEX)
        );
    }
}
