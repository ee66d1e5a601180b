//! Metadata and DescribeTopic give one answer (leaders, epochs, replicas, brokers), from
//! the broker's metadata store, over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_broker_reports_itself_as_leader_everywhere() {
    let broker = TestBroker::start_with(|c| c.broker_id = 3).await;
    let admin = broker.admin().await;
    let created = admin.create_topic("orders", 2, BTreeMap::new()).await.expect("create");
    let described = admin.describe_topic("orders").await.expect("describe");
    let metadata = admin.metadata(&["orders".to_string()]).await.expect("metadata");

    assert_eq!(metadata.responding_broker, 3);
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!((metadata.brokers[0].id, metadata.brokers[0].address.as_str()), (3, broker.addr.to_string().as_str()));
    let topic = &metadata.topics[0];
    for description in [&created, &described] {
        assert_eq!(description.partitions.len(), 2);
        for (p, m) in description.partitions.iter().zip(&topic.partitions) {
            assert_eq!(p.partition, m.partition);
            assert_eq!((p.leader, p.leader_epoch), (3, 0), "DescribeTopic of partition {}", p.partition);
            assert_eq!((m.leader, m.leader_epoch), (3, 0), "Metadata of partition {}", m.partition);
            assert_eq!((p.replicas.as_slice(), p.isr.as_slice()), (&[3][..], &[3][..]));
            assert_eq!((m.replicas.as_slice(), m.isr.as_slice()), (&[3][..], &[3][..]));
        }
    }
    broker.stop().await;
}
