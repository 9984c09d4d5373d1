//! Writes over the long-lived write stream (`Ingester/WriteStream`), against
//! ingester services on real tonic servers on 127.0.0.1: many concurrent
//! writes share one stream and are all stored; a bad request fails alone;
//! a broken stream fails its pending writes and a restarted server is
//! reached again; in a raft group a follower answers each request with the
//! leader, and the client follows it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Gated, OpenOnDrop, Server, eventually};
use futures::future::join_all;
use pharos_cluster::{Error, RemoteShard, Shard, series_to_proto};
use pharos_model::{Labels, MatchOp, Matcher, Sample};
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_client::IngesterClient;
use pharos_proto::pharos::v1::write_stream_response::Result as Answer;
use pharos_raft::testing::Router;
use pharos_raft::{Member, NodeId, Replica, ReplicaOptions};
use pharos_storage::{SeriesSamples, Storage};
use pharos_tsdb::{RocksOptions, RocksStorage};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One series `up{i="<i>"}` with one sample.
fn one(i: usize) -> Vec<SeriesSamples> {
    vec![SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]),
        samples: vec![Sample::new(1000, i as f64)],
    }]
}

fn request(id: u64, i: Option<usize>) -> pb::WriteStreamRequest {
    let write = i.map(|i| pb::WriteRequest {
        tenant: "t".into(),
        series: one(i).iter().map(|s| series_to_proto(&s.labels, &s.samples)).collect(),
    });
    pb::WriteStreamRequest { id, write }
}

fn stored(storage: &dyn Storage) -> usize {
    let m = [Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()];
    storage.select("t", &m, i64::MIN, i64::MAX).unwrap().len()
}

/// A raw write stream to `addr`: where requests go and the answers.
async fn raw_stream(addr: &str) -> (mpsc::Sender<pb::WriteStreamRequest>, tonic::Streaming<pb::WriteStreamResponse>) {
    let mut client = IngesterClient::connect(format!("http://{addr}")).await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    let answers = client.write_stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
    (tx, answers)
}

/// The next `n` answers, by id.
async fn answers(stream: &mut tonic::Streaming<pb::WriteStreamResponse>, n: usize) -> HashMap<u64, Answer> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let a = stream.message().await.unwrap().expect("the stream ended early");
        assert!(out.insert(a.id, a.result.expect("an answer without a result")).is_none(), "id {} twice", a.id);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writes_share_one_stream_and_are_all_stored() {
    let storage = Arc::new(Gated::default());
    let _gate = OpenOnDrop(storage.clone());
    let server = Server::bind(storage.clone()).await;
    let remote = RemoteShard::new(0, &server.addr).unwrap();

    // While the storage holds them all, every batch is inside it at once:
    // the server handles a stream's requests concurrently, not in turn.
    const HELD: usize = 32;
    let held: Vec<_> = (0..HELD)
        .map(|i| {
            let r = remote.clone();
            tokio::spawn(async move { r.append("t", one(i)).await })
        })
        .collect();
    eventually(|| storage.entered.load(Ordering::SeqCst) == HELD, "every held batch inside the storage").await;
    storage.open();
    for w in held {
        assert_eq!(w.await.unwrap().unwrap().accepted, 1);
    }
    // More writers than the client lets in flight at once.
    let more = join_all((HELD..HELD + 500).map(|i| remote.append("t", one(i)))).await;
    for r in more {
        assert_eq!(r.unwrap().accepted, 1);
    }
    assert_eq!(stored(&storage.inner), HELD + 500, "an acknowledged write is missing");
    assert_eq!(remote.write_streams_opened(), 1, "writers did not share one stream");
    // The open stream does not keep the server from shutting down.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_fails_alone_and_the_stream_stays_open() {
    let storage = Arc::new(Gated::opened());
    let server = Server::bind(storage.clone()).await;
    let (tx, mut rx) = raw_stream(&server.addr).await;
    for (id, i) in [(1, Some(1)), (2, None), (3, Some(3))] {
        tx.send(request(id, i)).await.unwrap();
    }
    let mut got = answers(&mut rx, 3).await;
    for id in [1, 3] {
        match got.remove(&id) {
            Some(Answer::Ok(r)) => assert_eq!(r.accepted, 1),
            other => panic!("write {id}: {other:?}"),
        }
    }
    let Some(Answer::Error(e)) = got.remove(&2) else { panic!("the request without a write was not refused") };
    assert_eq!(tonic::Code::from(e.code), tonic::Code::InvalidArgument);
    assert!(e.message.contains("request 2 carries no write"), "{}", e.message);
    assert!(matches!(Error::from_write_error(0, e), Error::BadRequest(_)));
    // The stream still takes writes after the error.
    tx.send(request(4, Some(4))).await.unwrap();
    assert!(matches!(answers(&mut rx, 1).await.remove(&4), Some(Answer::Ok(_))));
    assert_eq!(stored(&storage.inner), 3);
    // The client ending its requests ends the answers.
    drop(tx);
    assert!(rx.message().await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_fails_its_pending_writes_and_a_restarted_server_is_reached_again() {
    let storage = Arc::new(Gated::default());
    let _gate = OpenOnDrop(storage.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(listener, storage.clone(), None);
    let addr = server.addr.clone();
    // No retries: a write fails with the error of its one attempt.
    let impatient = RemoteShard::new(0, &addr).unwrap().with_deadline(Duration::ZERO);
    let patient = impatient.clone().with_deadline(Duration::from_secs(15));
    let pending: Vec<_> = (0..4)
        .map(|i| {
            let r = impatient.clone();
            tokio::spawn(async move { r.append("t", one(i)).await })
        })
        .collect();
    eventually(|| storage.entered.load(Ordering::SeqCst) == 4, "the writes inside the storage").await;
    // The server shuts down with the four writes unanswered: it ends the stream.
    server.stop().await;
    for w in pending {
        match w.await.unwrap() {
            Err(Error::Unavailable { msg, .. }) => assert!(msg.contains("write stream"), "{msg}"),
            other => panic!("a pending write was not failed by the broken stream: {other:?}"),
        }
    }
    storage.open();
    // A write sent around the restart retries until the server is back.
    let retried = tokio::spawn({
        let r = patient.clone();
        async move { r.append("t", one(10)).await }
    });
    let server = Server::start(TcpListener::bind(&addr).await.unwrap(), storage.clone(), None);
    assert_eq!(retried.await.unwrap().unwrap().accepted, 1);
    assert_eq!(impatient.append("t", one(11)).await.unwrap().accepted, 1);
    assert_eq!(impatient.write_streams_opened(), 2, "the stream was not reopened once");
    // The server had taken the four failed writes: they are stored once the
    // storage lets them through (a retry of them would store nothing new).
    eventually(|| stored(&storage.inner) == 6, "every write stored").await;
    server.stop().await;
}

fn member(id: NodeId, addrs: &[String]) -> Member {
    Member { name: format!("ingester-{id}"), grpc: addrs[id as usize - 1].clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_names_the_leader_per_request_and_writes_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut nodes = BTreeMap::new();
    for (id, listener) in (1..=3).zip(listeners) {
        // As an ingester of a replicated shard opens it: the raft log in it.
        let tsdb_opts = RocksOptions {
            external_log: true,
            extra_column_families: pharos_raft::store::COLUMN_FAMILIES.map(String::from).to_vec(),
            ..RocksOptions::default()
        };
        let tsdb = Arc::new(RocksStorage::open(&dir.path().join(format!("tsdb-{id}")), tsdb_opts).unwrap());
        let mut opts = ReplicaOptions::new(id, member(id, &addrs), dir.path().join(format!("raft-{id}")));
        opts.heartbeat_ms = 50;
        opts.election_timeout_min_ms = 200;
        opts.election_timeout_max_ms = 400;
        let replica = Replica::start(opts, tsdb.clone(), router.transport(id)).await.unwrap();
        router.register(id, replica.raft().clone());
        let server = Server::start(listener, tsdb.clone(), Some(replica.clone()));
        nodes.insert(id, (replica, tsdb, server));
    }
    let members = (1..=3).map(|id| (id, member(id, &addrs))).collect();
    nodes[&1].0.bootstrap(members).await.unwrap();
    let leader = || nodes.iter().find(|(_, n)| n.0.status().state == "leader").map(|(id, _)| *id);
    eventually(|| leader().is_some(), "a leader").await;
    let leader = leader().unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    eventually(|| nodes[&follower].0.status().leader == Some(leader), "the follower to know the leader").await;

    // Each request to the follower is answered "not leader" naming the
    // leader, and the stream stays open for the next.
    let (tx, mut rx) = raw_stream(&addrs[follower as usize - 1]).await;
    for id in 1..=3 {
        tx.send(request(id, Some(id as usize))).await.unwrap();
        match answers(&mut rx, 1).await.remove(&id) {
            Some(Answer::Error(e)) => match Error::from_write_error(0, e) {
                Error::NotLeader { leader: l, addr } => {
                    assert_eq!((l, addr.as_deref()), (Some(leader), Some(addrs[leader as usize - 1].as_str())))
                }
                other => panic!("write {id}: {other:?}"),
            },
            other => panic!("write {id}: {other:?}"),
        }
    }
    drop(tx);

    // A client that tries the follower first follows it to the leader, and
    // stays there: one stream to each.
    let mut order: Vec<NodeId> = vec![follower];
    order.extend((1..=3).filter(|id| *id != follower));
    let replicas: Vec<(Option<u64>, String)> =
        order.iter().map(|id| (Some(*id), addrs[*id as usize - 1].clone())).collect();
    let remote = RemoteShard::replicated(0, &replicas).unwrap();
    let writes = (0..200).map(|i| {
        let r = remote.clone();
        async move { r.append("t", one(i)).await }
    });
    for r in join_all(writes).await {
        assert_eq!(r.unwrap().accepted, 1);
    }
    assert_eq!(remote.leader_addr(), addrs[leader as usize - 1]);
    assert_eq!(remote.write_streams_opened(), 2, "one stream to the follower, one to the leader");
    let (replica, tsdb, _) = &nodes[&leader];
    assert_eq!(stored(&**tsdb), 200, "an acknowledged write is not applied on the leader");
    eprintln!("200 writes took {:?} raft log entries", replica.status().last_log_index);

    for (_, (replica, _, server)) in nodes {
        server.stop().await;
        replica.shutdown().await;
    }
}
