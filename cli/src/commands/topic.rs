//! `sluice topic create|list|describe|delete|alter`.

use std::collections::BTreeMap;

use anyhow::Result;
use sluice_client::{Admin, Client, proto as pb};

use crate::{
    args::{OutputFormat, TopicCommand},
    output::{self, Table},
};

pub async fn run(client: &Client, cmd: TopicCommand, format: OutputFormat) -> Result<()> {
    let admin = Admin::new(client.clone());
    match cmd {
        TopicCommand::Create { name, partitions, replication_factor, config } => {
            let t = match replication_factor {
                None => admin.create_topic(&name, partitions, to_map(config)).await?,
                Some(rf) => create_replicated(client, &name, partitions, rf, to_map(config)).await?,
            };
            match format {
                OutputFormat::Json => print_json(&output::topic_description_json(&t))?,
                OutputFormat::Table => output::print(&created_line(&t))?,
            }
        }
        TopicCommand::List { internal } => {
            let mut topics = admin.list_topics(internal).await?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            match format {
                OutputFormat::Json => {
                    print_json(&topics.iter().map(output::topic_summary_json).collect::<serde_json::Value>())?
                }
                OutputFormat::Table => output::print(&topic_table(&topics, internal).to_string())?,
            }
        }
        TopicCommand::Describe { name } => {
            let t = admin.describe_topic(&name).await?;
            print_description(&t, format)?;
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            match format {
                OutputFormat::Json => print_json(&serde_json::json!({ "deleted": name }))?,
                OutputFormat::Table => output::print(&format!("deleted topic '{name}'\n"))?,
            }
        }
        TopicCommand::Alter { name, config } => {
            let t = admin.alter_topic_config(&name, to_map(config)).await?;
            print_description(&t, format)?;
        }
    }
    Ok(())
}

/// Creates a topic with an explicit replication factor (the admin client leaves it to
/// the broker).
async fn create_replicated(
    client: &Client,
    name: &str,
    partitions: u32,
    replication_factor: u32,
    config: BTreeMap<String, String>,
) -> Result<pb::TopicDescription> {
    let r = client
        .raw()
        .create_topic(pb::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            config: config.into_iter().collect(),
        })
        .await
        .map_err(sluice_client::ClientError::from)?;
    Ok(r.into_inner().topic.unwrap_or_default())
}

/// `created topic 'x' with N partition(s)`, with the replication factor when the topic
/// has more than one copy.
fn created_line(t: &pb::TopicDescription) -> String {
    let rf = t.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(1);
    let copies = if rf > 1 { format!(", replication factor {rf}") } else { String::new() };
    format!("created topic '{}' with {} partition(s){copies}\n", t.name, t.partitions.len())
}

fn to_map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn print_description(t: &pb::TopicDescription, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => print_json(&output::topic_description_json(t)),
        OutputFormat::Table => output::print(&output::topic_description_text(t)),
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    output::print(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

fn topic_table(topics: &[pb::TopicSummary], with_internal: bool) -> Table {
    let mut headers = vec!["TOPIC", "PARTITIONS", "REPLICATION"];
    if with_internal {
        headers.push("INTERNAL");
    }
    let mut table = Table::new(headers).right_align(&[1, 2]);
    for t in topics {
        let mut row = vec![t.name.clone(), t.partitions.to_string(), t.replication_factor.to_string()];
        if with_internal {
            row.push(if t.internal { "yes" } else { "" }.to_string());
        }
        table.row(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_table_lists_names_and_counts() {
        let topics = vec![
            pb::TopicSummary { name: "orders".into(), partitions: 3, replication_factor: 1, internal: false },
            pb::TopicSummary { name: "__offsets".into(), partitions: 50, replication_factor: 1, internal: true },
        ];
        let text = topic_table(&topics, true).to_string();
        assert_eq!(
            text,
            "TOPIC      PARTITIONS  REPLICATION  INTERNAL\n\
             orders              3            1\n\
             __offsets          50            1  yes\n"
        );
    }
}
