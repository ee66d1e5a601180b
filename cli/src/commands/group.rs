//! `sluice group list|describe|reset-offsets|delete`.

use anyhow::Result;
use serde_json::{Value, json};
use sluice_client::{Client, GroupAdmin, group::admin::ResetTo, proto as pb};

use crate::{
    args::{GroupCommand, OutputFormat, ResetOffsetsArgs},
    output::{self, Table},
};

pub async fn run(client: &Client, cmd: GroupCommand, format: OutputFormat) -> Result<()> {
    let admin = GroupAdmin::new(client.clone());
    match cmd {
        GroupCommand::List => {
            let groups = admin.list().await?;
            match format {
                OutputFormat::Json => print_json(&groups.iter().map(summary_json).collect::<Value>()),
                OutputFormat::Table => output::print(&list_table(&groups).to_string()),
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin.describe(&group).await?;
            match format {
                OutputFormat::Json => print_json(&describe_json(&d)),
                OutputFormat::Table => output::print(&describe_text(&d)),
            }
        }
        GroupCommand::ResetOffsets(args) => reset(&admin, args, format).await,
        GroupCommand::Delete { group } => {
            let n = admin.delete(&group).await?;
            match format {
                OutputFormat::Json => print_json(&json!({ "deleted": group, "offsets_deleted": n })),
                OutputFormat::Table => output::print(&format!("deleted group '{group}' ({n} committed offsets)\n")),
            }
        }
    }
}

fn print_json(v: &Value) -> Result<()> {
    output::print(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

fn summary_json(g: &pb::GroupSummary) -> Value {
    json!({ "group": g.group, "state": g.state, "members": g.members })
}

fn list_table(groups: &[pb::GroupSummary]) -> Table {
    let mut t = Table::new(["GROUP", "STATE", "MEMBERS"]).right_align(&[2]);
    for g in groups {
        t.row([g.group.clone(), g.state.clone(), g.members.to_string()]);
    }
    t
}

fn tp_list(tps: &[pb::TopicPartition]) -> String {
    let v: Vec<String> = tps.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect();
    v.join(",")
}

fn describe_json(d: &pb::DescribeGroupResponse) -> Value {
    let tps = |tps: &[pb::TopicPartition]| -> Value {
        tps.iter().map(|tp| json!({ "topic": tp.topic, "partition": tp.partition })).collect()
    };
    json!({
        "group": d.group,
        "coordinator": d.coordinator_id,
        "state": d.state,
        "group_epoch": d.group_epoch,
        "strategy": d.strategy,
        "total_lag": d.total_lag,
        "members": d.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "client_id": m.client_id,
            "member_epoch": m.member_epoch,
            "topics": m.topics,
            "assignment": tps(&m.assignment),
            "target": tps(&m.target),
            "last_heartbeat_ago_ms": m.last_heartbeat_ago_ms,
        })).collect::<Value>(),
        "partitions": d.partitions.iter().map(|p| json!({
            "topic": p.topic,
            "partition": p.partition,
            "committed": p.committed,
            "log_end_offset": p.log_end_offset,
            "lag": p.lag,
            "owner": (!p.owner.is_empty()).then_some(&p.owner),
        })).collect::<Value>(),
    })
}

/// The text view: a summary line, the partition table (committed, log end, lag, owner)
/// and the members.
fn describe_text(d: &pb::DescribeGroupResponse) -> String {
    let mut out = format!(
        "Group: {}  state: {}  members: {}  strategy: {}  epoch: {}  total lag: {}  coordinator: broker {}\n\n",
        d.group,
        d.state,
        d.members.len(),
        d.strategy,
        d.group_epoch,
        d.total_lag,
        d.coordinator_id
    );
    let mut t = Table::new(["TOPIC", "PARTITION", "COMMITTED", "LOG END", "LAG", "OWNER"]).right_align(&[1, 2, 3, 4]);
    for p in &d.partitions {
        t.row([
            p.topic.clone(),
            p.partition.to_string(),
            p.committed.map_or("-".to_string(), |c| c.to_string()),
            p.log_end_offset.to_string(),
            p.lag.to_string(),
            if p.owner.is_empty() { "-".to_string() } else { p.owner.clone() },
        ]);
    }
    out.push_str(&t.to_string());
    if !d.members.is_empty() {
        out.push('\n');
        let mut m = Table::new(["MEMBER", "CLIENT", "EPOCH", "PARTITIONS"]).right_align(&[2]);
        for member in &d.members {
            m.row([
                member.member_id.clone(),
                member.client_id.clone(),
                member.member_epoch.to_string(),
                tp_list(&member.assignment),
            ]);
        }
        out.push_str(&m.to_string());
    }
    out
}

async fn reset(admin: &GroupAdmin, args: ResetOffsetsArgs, format: OutputFormat) -> Result<()> {
    let to = if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(o) = args.to_offset {
        ResetTo::Offset(o)
    } else if let Some(ts) = args.to_datetime {
        ResetTo::Timestamp(ts)
    } else if let Some(n) = args.shift_by {
        ResetTo::ShiftBy(n)
    } else {
        anyhow::bail!("say where to reset to: --to-earliest, --to-latest, --to-offset, --to-datetime or --shift-by");
    };
    let r = admin.reset_offsets(&args.group, &args.topic, to, args.execute).await?;
    match format {
        OutputFormat::Json => print_json(&json!({
            "group": args.group,
            "topic": args.topic,
            "executed": r.executed,
            "plan": r.plan.iter().map(|l| json!({
                "partition": l.partition,
                "current": l.current,
                "new": l.new_offset,
                "log_start_offset": l.log_start_offset,
                "log_end_offset": l.log_end_offset,
                "clamped": l.clamped,
            })).collect::<Value>(),
        })),
        OutputFormat::Table => output::print(&reset_text(&args.group, &args.topic, &r)),
    }
}

fn reset_text(group: &str, topic: &str, r: &pb::ResetOffsetsResponse) -> String {
    let mut t = Table::new(["TOPIC", "PARTITION", "CURRENT", "NEW", "LOG START", "LOG END", "NOTE"])
        .right_align(&[1, 2, 3, 4, 5]);
    for l in &r.plan {
        t.row([
            l.topic.clone(),
            l.partition.to_string(),
            l.current.map_or("-".to_string(), |c| c.to_string()),
            l.new_offset.to_string(),
            l.log_start_offset.to_string(),
            l.log_end_offset.to_string(),
            if l.clamped { "clamped to the log range" } else { "" }.to_string(),
        ]);
    }
    let mut out = t.to_string();
    if r.executed {
        out.push_str(&format!("\nreset the offsets of group '{group}' on topic '{topic}'\n"));
    } else {
        out.push_str("\ndry run: nothing changed; add --execute to apply this plan\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_text_shows_committed_log_end_lag_and_owner() {
        let d = pb::DescribeGroupResponse {
            group: "g".into(),
            state: "Stable".into(),
            group_epoch: 3,
            strategy: "range".into(),
            members: vec![pb::MemberDescription {
                member_id: "m1".into(),
                client_id: "c".into(),
                member_epoch: 3,
                assignment: vec![pb::TopicPartition { topic: "t".into(), partition: 0 }],
                ..Default::default()
            }],
            partitions: vec![
                pb::PartitionLag {
                    topic: "t".into(),
                    partition: 0,
                    committed: Some(5),
                    log_end_offset: 12,
                    lag: 7,
                    owner: "m1".into(),
                },
                pb::PartitionLag {
                    topic: "t".into(),
                    partition: 1,
                    committed: None,
                    log_end_offset: 3,
                    lag: 3,
                    owner: String::new(),
                },
            ],
            total_lag: 10,
            coordinator_id: 2,
        };
        let text = describe_text(&d);
        assert!(text.starts_with(
            "Group: g  state: Stable  members: 1  strategy: range  epoch: 3  total lag: 10  coordinator: broker 2\n"
        ));
        assert!(text.contains("TOPIC  PARTITION  COMMITTED  LOG END  LAG  OWNER\nt              0          5       12    7  m1\nt              1          -        3    3  -\n"), "{text}");
        assert!(text.contains("m1      c           3  t-0"), "{text}");
    }
}
