//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs and
//! IncrementalAlterConfigs over the broker's topic table: allowed in standalone mode,
//! refused on Kubernetes (POLICY_VIOLATION, with the message the gRPC admin calls give,
//! pointing at Topic resources).

use std::collections::BTreeMap;

use kafka_protocol::{
    ResponseError,
    messages::{
        CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
        DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind, TopicName,
        create_partitions_response::CreatePartitionsTopicResult,
        create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
        delete_topics_response::DeletableTopicResult,
        describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
        incremental_alter_configs_response::AlterConfigsResourceResponse,
    },
    protocol::StrBytes,
};

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::error::BrokerError;

/// Kafka's config resource type of a topic (2) and a broker (4).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn refused(ctx: &Context) -> Option<BrokerError> {
    ctx.broker.metadata().admin_refusal().map(BrokerError::Unsupported)
}

pub(super) fn create_topics(ctx: &Context, r: CreateTopicsRequest, version: i16) -> Answer {
    let results: Vec<CreatableTopicResult> = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let out = CreatableTopicResult::default().with_name(t.name.clone());
            let config: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.as_str().to_string(), v.as_str().to_string())))
                .collect();
            let created = (|| {
                if let Some(e) = refused(ctx) {
                    return Err(e);
                }
                if !t.assignments.is_empty() {
                    return Err(BrokerError::InvalidRequest(
                        "manual replica assignments are not supported; the broker places partitions".into(),
                    ));
                }
                // -1: the broker defaults (partition count flag, replication factor 1).
                let partitions = u32::try_from(t.num_partitions).unwrap_or(0);
                let replication = u32::try_from(t.replication_factor).unwrap_or(1);
                if r.validate_only {
                    sluice_core::topic::validate_user_topic_name(name)?;
                    ctx.broker.config().topic_defaults.with_overrides(&config)?;
                    if ctx.broker.partition_count(name).is_some() {
                        return Err(BrokerError::TopicAlreadyExists(name.to_string()));
                    }
                    let n = if partitions == 0 { ctx.broker.config().default_partitions } else { partitions };
                    return Ok((n, None));
                }
                let info = ctx.broker.create_topic(name, partitions, replication, config)?;
                Ok((info.spec.partitions, Some(info)))
            })();
            match created {
                Ok(_) if version < 5 => out,
                Ok((n, info)) => {
                    let configs = info.map(|i| {
                        i.config
                            .to_map()
                            .into_iter()
                            .map(|(k, v)| {
                                let source = if i.spec.config.contains_key(&k) { 1 } else { 5 };
                                CreatableTopicConfigs::default()
                                    .with_name(s(k))
                                    .with_value(Some(s(v)))
                                    .with_config_source(source)
                            })
                            .collect()
                    });
                    out.with_num_partitions(n as i32).with_replication_factor(1).with_configs(configs)
                }
                Err(e) => {
                    let code = match &e {
                        BrokerError::InvalidRequest(why) if why.contains("replication factor") => {
                            ResponseError::InvalidReplicationFactor.code()
                        }
                        BrokerError::InvalidRequest(why) if why.contains("partitions") => {
                            ResponseError::InvalidPartitions.code()
                        }
                        e => errors::code(e),
                    };
                    let out = out.with_error_code(code).with_error_message(errors::message(&e));
                    if version >= 5 { out.with_num_partitions(-1).with_replication_factor(-1) } else { out }
                }
            }
        })
        .collect();
    let error = first_error(results.iter().map(|t| t.error_code));
    Answer::new(ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results)), error)
}

pub(super) fn delete_topics(ctx: &Context, r: DeleteTopicsRequest, version: i16) -> Answer {
    // v0-5 name topics in `topic_names`, v6+ in `topics`.
    let names: Vec<TopicName> =
        if version >= 6 { r.topics.iter().filter_map(|t| t.name.clone()).collect() } else { r.topic_names.clone() };
    let results: Vec<DeletableTopicResult> = names
        .into_iter()
        .map(|n| {
            let out = DeletableTopicResult::default().with_name(Some(n.clone()));
            match ctx.broker.delete_topic(n.0.as_str()) {
                Ok(()) => out,
                Err(e) => out
                    .with_error_code(errors::code(&e))
                    .with_error_message(errors::message(&e).filter(|_| version >= 5)),
            }
        })
        .collect();
    let error = first_error(results.iter().map(|t| t.error_code));
    Answer::new(ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results)), error)
}

pub(super) fn create_partitions(ctx: &Context, r: CreatePartitionsRequest) -> Answer {
    let results: Vec<CreatePartitionsTopicResult> = r
        .topics
        .iter()
        .map(|t| {
            let out = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let count = u32::try_from(t.count).unwrap_or(0);
            let grown = match (refused(ctx), &t.assignments) {
                (Some(e), _) => Err(e),
                (None, Some(_)) => Err(BrokerError::InvalidRequest(
                    "manual replica assignments are not supported; the broker places partitions".into(),
                )),
                (None, None) if r.validate_only => ctx.broker.describe_topic(t.name.0.as_str()).map(|_| ()),
                (None, None) => ctx.broker.create_partitions(t.name.0.as_str(), count).map(|_| ()),
            };
            match grown {
                Ok(()) => out,
                Err(e) => {
                    let code = match &e {
                        BrokerError::InvalidRequest(why) if why.contains("partitions") => {
                            ResponseError::InvalidPartitions.code()
                        }
                        e => errors::code(e),
                    };
                    out.with_error_code(code).with_error_message(errors::message(&e))
                }
            }
        })
        .collect();
    let error = first_error(results.iter().map(|t| t.error_code));
    Answer::new(ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results)), error)
}

pub(super) fn describe_configs(ctx: &Context, r: DescribeConfigsRequest) -> Answer {
    let results: Vec<DescribeConfigsResult> = r
        .resources
        .iter()
        .map(|res| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted = |k: &str| res.configuration_keys.as_ref().is_none_or(|ks| ks.iter().any(|w| w.as_str() == k));
            match res.resource_type {
                TOPIC => match ctx.broker.describe_topic(res.resource_name.as_str()) {
                    Ok(t) => out.with_configs(
                        t.config
                            .to_map()
                            .into_iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, v)| {
                                // 1: DYNAMIC_TOPIC_CONFIG (set on the topic), 5: DEFAULT_CONFIG.
                                let source = if t.spec.config.contains_key(&k) { 1 } else { 5 };
                                DescribeConfigsResourceResult::default()
                                    .with_name(s(k))
                                    .with_value(Some(s(v)))
                                    .with_config_source(source)
                            })
                            .collect(),
                    ),
                    Err(e) => out.with_error_code(errors::code(&e)).with_error_message(errors::message(&e)),
                },
                // Broker configuration is flags, not Kafka configs: none to show.
                BROKER => out,
                other => out
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!("config resource type {other} is not supported")))),
            }
        })
        .collect();
    let error = first_error(results.iter().map(|t| t.error_code));
    Answer::new(ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results)), error)
}

pub(super) fn incremental_alter_configs(ctx: &Context, r: IncrementalAlterConfigsRequest) -> Answer {
    let responses: Vec<AlterConfigsResourceResponse> = r
        .resources
        .iter()
        .map(|res| {
            let out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let altered = (|| {
                if res.resource_type != TOPIC {
                    return Err(BrokerError::InvalidRequest(format!(
                        "only topic configs can be altered (resource type {})",
                        res.resource_type
                    )));
                }
                if let Some(e) = refused(ctx) {
                    return Err(e);
                }
                let mut set = BTreeMap::new();
                for c in &res.configs {
                    let value = match (c.config_operation, &c.value) {
                        (0, Some(v)) => v.as_str().to_string(),
                        (1, _) => String::new(),
                        (op, _) => {
                            return Err(BrokerError::InvalidRequest(format!(
                                "config operation {op} on '{}' is not supported (SET and DELETE are)",
                                c.name.as_str()
                            )));
                        }
                    };
                    set.insert(c.name.as_str().to_string(), value);
                }
                let name = res.resource_name.as_str();
                if r.validate_only {
                    let t = ctx.broker.describe_topic(name)?;
                    let mut overrides = t.spec.config.clone();
                    for (k, v) in set {
                        if v.is_empty() {
                            overrides.remove(&k);
                        } else {
                            overrides.insert(k, v);
                        }
                    }
                    ctx.broker.config().topic_defaults.with_overrides(&overrides)?;
                    return Ok(());
                }
                ctx.broker.alter_topic_config(name, set).map(|_| ())
            })();
            match altered {
                Ok(()) => out,
                Err(e) => out.with_error_code(errors::code(&e)).with_error_message(errors::message(&e)),
            }
        })
        .collect();
    let error = first_error(responses.iter().map(|t| t.error_code));
    Answer::new(
        ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(responses)),
        error,
    )
}
