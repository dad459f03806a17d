//! The leader's view of replication (`Ipam::replication`) and the `/ui` overview built on it:
//! every member's matched index on the leader, none on a follower, and the lag of a follower
//! cut off from the leader.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ipam_tests::{bounded, wait_until, Cluster, WAIT};
use tower::ServiceExt;

async fn overview(cluster: &Cluster, id: u64) -> String {
    let state = ipam_node::AppState::new(cluster.ipam(id).clone(), None, Duration::from_secs(30))
        .expect("metrics");
    let response = ipam_node::router(state)
        .oneshot(Request::get("/ui").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The matched index and lag cells of member `id` in an overview page.
fn member_row(page: &str, id: u64) -> String {
    let start = page
        .find(&format!("data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row for member {id}: {page}"));
    let end = page[start..].find("</tr>").unwrap() + start;
    page[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_shows_each_members_progress_and_a_cut_off_followers_lag() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/24").await;
        let follower = (1..=3).find(|&id| id != leader).unwrap();

        let progress = wait_until("every member to match the leader's log", WAIT, || async {
            let last = cluster.ipam(leader).status().last_log_index;
            match cluster.ipam(leader).replication() {
                Some(p) if p.len() == 3 && p.iter().all(|r| r.matched == Some(last)) => Ok(p),
                other => Err(format!("last {last}, progress {other:?}")),
            }
        })
        .await;
        assert_eq!(
            progress.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(cluster.ipam(follower).replication(), None);

        let page = overview(&cluster, leader).await;
        for id in 1..=3 {
            let row = member_row(&page, id);
            assert!(row.contains("<td>voter</td>"), "{row}");
            assert!(row.ends_with("<td class=\"num\">0</td>"), "lag 0: {row}");
        }
        assert!(member_row(&page, leader).contains("leader"), "{page}");
        let page = overview(&cluster, follower).await;
        assert!(
            page.contains(&format!(
                "<dd id=\"leader\">node {leader} ({})</dd>",
                cluster.addr(leader)
            )),
            "{page}"
        );
        assert!(page.contains("open the leader's dashboard"), "{page}");

        // Cut the follower off: the leader goes on committing with the third node, and its
        // page shows how far the follower trails.
        cluster.isolate(follower, true);
        for i in 0..5 {
            cluster
                .ipam(leader)
                .allocate("vms", &format!("o{i}"), None, Default::default())
                .await
                .expect("allocate with a majority");
        }
        let page = overview(&cluster, leader).await;
        let row = member_row(&page, follower);
        let lag: u64 = row
            .rsplit("<td class=\"num\">")
            .next()
            .and_then(|cell| cell.strip_suffix("</td>"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no lag in {row}"));
        assert!(lag >= 1, "{row}");
        cluster.isolate(follower, false);
    })
    .await;
}
