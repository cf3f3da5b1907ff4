//! A mixed cluster: tokio and smol nodes gossip the same protocol, so they form one cluster,
//! see each other's metadata both ways, and see departures.

use cohort_core::MemberStatus;

use super::*;

fn tokio_node(name: &str, seeds: &[SocketAddr]) -> cohort_tokio::NodeBuilder {
    cohort_tokio::NodeBuilder::new(
        name,
        cohort_tokio::ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id("mixed")
    .gossip_interval(INTERVAL)
}

fn smol_node(name: &str, seeds: &[SocketAddr]) -> cohort_smol::NodeBuilder {
    cohort_smol::NodeBuilder::new(
        name,
        cohort_smol::ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id("mixed")
    .gossip_interval(INTERVAL)
    .tls(smol_tls(name))
}

#[test]
fn tokio_and_smol_nodes_form_one_cluster() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bounded(async {
        let t1 = tokio_node("t1", &[]).connect().await.unwrap();
        let seeds = [t1.public_addr()];
        let s1 = smol_node("s1", &seeds)
            .metadata("driver", "smol")
            .connect()
            .await
            .unwrap();
        let t2 = tokio_node("t2", &seeds)
            .metadata("driver", "tokio")
            .connect()
            .await
            .unwrap();
        let s2 = smol_node("s2", &[s1.public_addr()])
            .connect()
            .await
            .unwrap();
        for members in [
            t1.wait_for_members(|m| m.live_count() == 4, WAIT).await,
            t2.wait_for_members(|m| m.live_count() == 4, WAIT).await,
            s1.wait_for_members(|m| m.live_count() == 4, WAIT).await,
            s2.wait_for_members(|m| m.live_count() == 4, WAIT).await,
        ] {
            let members = members.expect("every node sees all four live");
            assert_eq!(
                members.get(s1.id()).and_then(|m| m.get("driver")),
                Some("smol")
            );
            assert_eq!(
                members.get(t2.id()).and_then(|m| m.get("driver")),
                Some("tokio")
            );
        }
        // A key set on a smol node reaches a tokio node, and back.
        s2.set_metadata("from", "smol").unwrap();
        t1.set_metadata("from", "tokio").unwrap();
        t2.wait_for_members(
            |m| m.get(s2.id()).and_then(|m| m.get("from")) == Some("smol"),
            WAIT,
        )
        .await
        .unwrap();
        s1.wait_for_members(
            |m| m.get(t1.id()).and_then(|m| m.get("from")) == Some("tokio"),
            WAIT,
        )
        .await
        .unwrap();
        // A smol node leaves: the tokio nodes see it left.
        let s2_id = s2.id().clone();
        s2.shutdown().await;
        t1.wait_for_members(
            |m| {
                m.get(&s2_id)
                    .is_some_and(|m| m.status == MemberStatus::Left)
            },
            WAIT,
        )
        .await
        .unwrap();
        t1.shutdown().await;
        t2.shutdown().await;
        s1.shutdown().await;
    }));
}
