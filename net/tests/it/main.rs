//! Multi-node tests of the network layer, in-process on 127.0.0.1 with port 0. Every wait
//! is a condition with a deadline; nothing sleeps and hopes. The sync messages' decoders
//! have their properties in `codec`.

mod codec;

use std::future::Future;
use std::time::Duration;

use chain::{BlockHash, Height};
use net::multiaddr::Protocol;
use net::{
    BanReason, Client, Event, EventStream, Keypair, Multiaddr, NetError, NetworkConfig, PeerId,
    ResponseHandle, SyncRequest, SyncResponse, Topic, Verdict,
};
use tokio::time::{Instant, sleep, timeout};

/// Longest any single condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two checks of a polled condition.
const POLL: Duration = Duration::from_millis(50);

fn genesis(byte: u8) -> BlockHash {
    BlockHash::from_bytes([byte; 32])
}

struct Node {
    client: Client,
    events: EventStream,
    id: PeerId,
    /// Listen address with `/p2p/PEER_ID`.
    addr: Multiaddr,
}

async fn start(genesis: BlockHash, bootnodes: Vec<Multiaddr>) -> Node {
    start_with(genesis, bootnodes, |_| {}).await
}

async fn start_with(
    genesis: BlockHash,
    bootnodes: Vec<Multiaddr>,
    tweak: impl FnOnce(&mut NetworkConfig),
) -> Node {
    let mut config = NetworkConfig::new(Keypair::generate_ed25519(), genesis);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")];
    config.bootnodes = bootnodes;
    tweak(&mut config);
    let (client, events, event_loop) = net::new(config).expect("the network starts");
    tokio::spawn(event_loop.run());
    let id = client.local_peer_id();
    let addr = poll_until("a listen address", || async {
        let addrs = client.listen_addrs().await.expect("the network runs");
        addrs.into_iter().next()
    })
    .await;
    Node {
        client,
        events,
        id,
        addr: addr.with(Protocol::P2p(id)),
    }
}

/// Polls `check` until it yields a value, failing the test after [`DEADLINE`].
async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        sleep(POLL).await;
    }
}

/// Waits for the first event that `pick` maps to a value, discarding others.
async fn expect_event<T>(
    events: &mut EventStream,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let event = events.next().await.expect("the network runs");
            if let Some(value) = pick(event) {
                return value;
            }
        }
    };
    timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn expect_connected(node: &mut Node, peer: PeerId) {
    expect_event(&mut node.events, "peer connected", |event| match event {
        Event::PeerConnected { peer: p, .. } if p == peer => Some(()),
        _ => None,
    })
    .await;
}

/// The next gossip message, skipping peer events.
async fn next_gossip(node: &mut Node) -> (Topic, Vec<u8>, PeerId, net::MessageId) {
    expect_event(&mut node.events, "gossip", |event| match event {
        Event::Gossip {
            topic,
            data,
            source,
            id,
        } => Some((topic, data, source, id)),
        _ => None,
    })
    .await
}

/// Publishes once some peer has subscribed (gossipsub refuses while none has).
async fn publish_when_subscribed(client: &Client, topic: Topic, data: &[u8]) {
    poll_until("a subscribed peer", || async {
        match client.publish(topic, data.to_vec()).await {
            Ok(_) => Some(()),
            Err(NetError::NoPeers { .. }) => None,
            Err(other) => panic!("publish failed: {other}"),
        }
    })
    .await;
}

async fn expect_request(node: &mut Node, from: PeerId) -> (SyncRequest, ResponseHandle) {
    expect_event(&mut node.events, "inbound request", |event| match event {
        Event::InboundRequest {
            peer,
            request,
            channel,
        } if peer == from => Some((request, channel)),
        _ => None,
    })
    .await
}

/// Sends `request` from `asker` to `server` and answers it on the server with `response`;
/// returns what the server's `respond` said and what the asker got.
async fn round_trip(
    asker: &Node,
    server: &mut Node,
    request: SyncRequest,
    response: SyncResponse,
) -> (Result<(), NetError>, Result<SyncResponse, NetError>) {
    let client = asker.client.clone();
    let to = server.id;
    let asked = tokio::spawn(async move { client.request(to, request).await });
    let (got, handle) = expect_request(server, asker.id).await;
    assert_eq!(got, request);
    assert_eq!(handle.peer(), asker.id);
    let responded = server.client.respond(handle, response).await;
    let answer = asked.await.expect("the request task does not panic");
    (responded, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n2_gossip_block_reaches_peer() {
    let mut a = start(genesis(1), Vec::new()).await;
    let mut b = start(genesis(1), vec![a.addr.clone()]).await;
    expect_connected(&mut a, b.id).await;
    expect_connected(&mut b, a.id).await;
    let peers = a.client.peers().await.expect("the network runs");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, b.id);

    let block = b"an encoded block".to_vec();
    publish_when_subscribed(&a.client, Topic::Block, &block).await;

    let (topic, data, source, id) = next_gossip(&mut b).await;
    assert_eq!(topic, Topic::Block);
    assert_eq!(data, block);
    assert_eq!(source, a.id);
    assert!(
        b.client
            .report(id, source, Verdict::Accept)
            .await
            .expect("the network runs"),
        "the message is held until the node's verdict"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n3_gossip_relays_once() {
    // Line topology: A – B – C.
    let mut a = start(genesis(2), Vec::new()).await;
    let mut b = start(genesis(2), vec![a.addr.clone()]).await;
    let mut c = start(genesis(2), vec![b.addr.clone()]).await;
    expect_connected(&mut a, b.id).await;
    expect_connected(&mut b, a.id).await;
    expect_connected(&mut c, b.id).await;
    poll_until("B to see both neighbours", || async {
        let peers = b.client.peers().await.expect("the network runs");
        (peers.len() == 2).then_some(())
    })
    .await;
    assert!(
        a.client
            .peers()
            .await
            .expect("the network runs")
            .iter()
            .all(|p| p.peer_id != c.id),
        "A and C are not connected directly"
    );

    let first = b"block one".to_vec();
    publish_when_subscribed(&a.client, Topic::Block, &first).await;

    // B holds the message until it accepts it; only then does it reach C.
    let (_, data, source, id) = next_gossip(&mut b).await;
    assert_eq!((data.as_slice(), source), (first.as_slice(), a.id));
    assert!(
        b.client
            .report(id, source, Verdict::Accept)
            .await
            .expect("runs")
    );

    let (topic, data, source, id) = next_gossip(&mut c).await;
    assert_eq!(
        (topic, data.as_slice(), source),
        (Topic::Block, first.as_slice(), b.id)
    );
    assert!(
        c.client
            .report(id, source, Verdict::Accept)
            .await
            .expect("runs")
    );

    // The message id is the content hash: nobody can gossip the same bytes again.
    for node in [&a, &b, &c] {
        assert!(matches!(
            node.client.publish(Topic::Block, first.clone()).await,
            Err(NetError::Duplicate {
                topic: Topic::Block
            })
        ));
    }

    // The next message C sees is the second one, not the first one again.
    let second = b"block two".to_vec();
    a.client
        .publish(Topic::Block, second.clone())
        .await
        .expect("B is subscribed");
    let (_, data, source, id) = next_gossip(&mut b).await;
    assert_eq!(data, second);
    assert!(
        b.client
            .report(id, source, Verdict::Accept)
            .await
            .expect("runs")
    );
    let (_, data, _, _) = next_gossip(&mut c).await;
    assert_eq!(data, second, "C got the first message twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_round_trip() {
    const ASKER_LIMIT: usize = 64 * 1024;
    const SERVER_LIMIT: usize = 1024 * 1024;
    let mut a = start_with(genesis(3), Vec::new(), |c| {
        c.max_sync_response_bytes = ASKER_LIMIT;
    })
    .await;
    let mut b = start_with(genesis(3), vec![a.addr.clone()], |c| {
        c.max_sync_response_bytes = SERVER_LIMIT;
    })
    .await;
    expect_connected(&mut a, b.id).await;
    expect_connected(&mut b, a.id).await;

    let blocks = SyncRequest::Blocks {
        from: Height(5),
        count: 3,
    };
    let answer = SyncResponse::Blocks(vec![b"five".to_vec(), b"six".to_vec(), b"seven".to_vec()]);
    let (responded, got) = round_trip(&a, &mut b, blocks, answer.clone()).await;
    responded.expect("the response fits");
    assert_eq!(got.expect("the response arrives"), answer);

    // Over the server's own limit: not sent; the asker gets an error answer at once.
    let huge = SyncResponse::Blocks(vec![vec![0; SERVER_LIMIT + 1]]);
    let (responded, got) = round_trip(&a, &mut b, blocks, huge).await;
    assert!(matches!(
        responded,
        Err(NetError::ResponseTooLarge {
            max: SERVER_LIMIT,
            ..
        })
    ));
    assert!(matches!(got, Ok(SyncResponse::Error(_))));

    // Within the server's limit but over the asker's: the asker's codec refuses the frame.
    let big = SyncResponse::Blocks(vec![vec![0; ASKER_LIMIT + 1]]);
    let (responded, got) = round_trip(&a, &mut b, blocks, big).await;
    responded.expect("the response fits the server's limit");
    let error = got.expect_err("an oversize response is refused");
    assert!(
        matches!(error, NetError::BadResponse { peer, .. } if peer == b.id),
        "{error}"
    );
    assert!(error.is_peer_fault());

    // An answer of the wrong kind is refused too.
    let (responded, got) = round_trip(&a, &mut b, blocks, SyncResponse::Headers(Vec::new())).await;
    responded.expect("sent");
    assert!(matches!(got, Err(NetError::UnexpectedResponse { .. })));

    // Requests over the protocol's count limit never leave the node.
    let too_many = SyncRequest::Headers {
        from: Height(0),
        count: net::MAX_SYNC_ITEMS + 1,
    };
    assert!(matches!(
        a.client.request(b.id, too_many).await,
        Err(NetError::InvalidRequest { .. })
    ));

    // The connection survived all of it.
    let status = SyncResponse::Status {
        genesis: genesis(3),
        head_height: Height(7),
        head_hash: genesis(7),
        total_weight: chain::Weight::from_u64(7),
    };
    let (responded, got) = round_trip(&a, &mut b, SyncRequest::Status, status.clone()).await;
    responded.expect("sent");
    assert_eq!(got.expect("the status arrives"), status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_peer_is_banned() {
    const BAN: Duration = Duration::from_secs(6);
    let mut b = start_with(genesis(4), Vec::new(), |c| {
        c.reject_limit = 3;
        c.ban_duration = BAN;
    })
    .await;
    let mut a = start(genesis(4), Vec::new()).await;
    assert_eq!(a.client.dial(b.addr.clone()).await.expect("B is up"), b.id);
    expect_connected(&mut a, b.id).await;
    expect_connected(&mut b, a.id).await;

    publish_when_subscribed(&a.client, Topic::Tx, b"bad tx 0").await;
    for i in 1..3 {
        a.client
            .publish(Topic::Tx, format!("bad tx {i}").into_bytes())
            .await
            .expect("B is subscribed");
    }
    let mut rejected = 0;
    while rejected < 3 {
        let (topic, _, source, id) = next_gossip(&mut b).await;
        assert_eq!((topic, source), (Topic::Tx, a.id));
        assert!(
            b.client
                .report(id, source, Verdict::Reject)
                .await
                .expect("runs")
        );
        rejected += 1;
    }

    let (duration, reason) = expect_event(&mut b.events, "peer banned", |event| match event {
        Event::PeerBanned {
            peer,
            duration,
            reason,
        } if peer == a.id => Some((duration, reason)),
        _ => None,
    })
    .await;
    assert_eq!(duration, BAN);
    assert_eq!(reason, BanReason::RejectedMessages { count: 3 });
    expect_event(
        &mut b.events,
        "banned peer disconnected",
        |event| match event {
            Event::PeerDisconnected { peer } if peer == a.id => Some(()),
            _ => None,
        },
    )
    .await;
    expect_event(
        &mut a.events,
        "A sees the disconnect",
        |event| match event {
            Event::PeerDisconnected { peer } if peer == b.id => Some(()),
            _ => None,
        },
    )
    .await;

    // During the ban A cannot get back in: B refuses the connection, so A's request fails
    // and B never sees A as a peer.
    let _ = a.client.dial(b.addr.clone()).await;
    assert!(a.client.request(b.id, SyncRequest::Status).await.is_err());
    assert!(b.client.peers().await.expect("runs").is_empty());
    let stats = b.client.stats().await.expect("runs");
    assert_eq!(stats.blocked_peers, 1, "the ban outlived the checks");
    while let Some(event) = b.events.try_next() {
        assert!(
            !matches!(
                event,
                Event::PeerConnected { .. } | Event::InboundRequest { .. }
            ),
            "banned peer got through: {event:?}"
        );
    }

    // Once the ban expires the peer may connect again.
    poll_until("the ban to expire", || async {
        let stats = b.client.stats().await.expect("runs");
        (stats.blocked_peers == 0).then_some(())
    })
    .await;
    a.client
        .dial(b.addr.clone())
        .await
        .expect("B accepts again");
    expect_connected(&mut b, a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_genesis_never_exchange() {
    let mut a = start(genesis(5), Vec::new()).await;
    let mut b = start(genesis(6), vec![a.addr.clone()]).await;

    // At least one side learns the other runs another chain (both usually do, but the
    // first to learn it may hang up before the other has heard).
    let wait = async {
        loop {
            let event = tokio::select! {
                event = a.events.next() => event,
                event = b.events.next() => event,
            };
            match event.expect("the network runs") {
                Event::WrongChain {
                    peer,
                    protocol_version,
                } => {
                    assert!(peer == a.id || peer == b.id);
                    assert!(
                        protocol_version == net::identify_version(&genesis(5))
                            || protocol_version == net::identify_version(&genesis(6))
                    );
                    return;
                }
                Event::Gossip { .. } | Event::PeerConnected { .. } => {
                    panic!("nodes of two chains exchanged a message or became peers")
                }
                _ => {}
            }
        }
    };
    timeout(DEADLINE, wait)
        .await
        .expect("timed out waiting for a wrong-chain event");

    poll_until("both sides to be disconnected", || async {
        let sa = a.client.stats().await.expect("runs");
        let sb = b.client.stats().await.expect("runs");
        (sa.connected_peers == 0
            && sb.connected_peers == 0
            && sa.blocked_peers + sb.blocked_peers >= 1)
            .then_some(())
    })
    .await;

    // Neither is subscribed to the other's topics, so nothing can be gossiped.
    assert!(matches!(
        a.client.publish(Topic::Block, b"block".to_vec()).await,
        Err(NetError::NoPeers { .. })
    ));
    assert!(matches!(
        b.client.publish(Topic::Block, b"block".to_vec()).await,
        Err(NetError::NoPeers { .. })
    ));
    assert!(a.client.peers().await.expect("runs").is_empty());
    assert!(b.client.peers().await.expect("runs").is_empty());
    for node in [&mut a, &mut b] {
        while let Some(event) = node.events.try_next() {
            assert!(
                !matches!(event, Event::Gossip { .. } | Event::PeerConnected { .. }),
                "nodes of two chains exchanged {event:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootnode_is_redialled_after_losing_all_peers() {
    let mut a = start(genesis(9), Vec::new()).await;
    // A bootnode given without `/p2p/PEER_ID`.
    let plain: Multiaddr = a
        .addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    let mut b = start(genesis(9), vec![plain]).await;
    expect_connected(&mut a, b.id).await;
    expect_connected(&mut b, a.id).await;

    // A drops B for a moment; B, left without peers, keeps redialling its bootnode
    // with backoff and gets back in once the ban is over, with no help from the test.
    a.client
        .ban(b.id, Duration::from_secs(2))
        .await
        .expect("the network runs");
    let reason = expect_event(&mut a.events, "peer banned", |event| match event {
        Event::PeerBanned { peer, reason, .. } if peer == b.id => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, BanReason::Requested);
    expect_event(
        &mut b.events,
        "B loses its only peer",
        |event| match event {
            Event::PeerDisconnected { peer } if peer == a.id => Some(()),
            _ => None,
        },
    )
    .await;
    expect_connected(&mut b, a.id).await;
    expect_connected(&mut a, b.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_task_and_ends_the_stream() {
    let mut a = start(genesis(7), Vec::new()).await;
    a.client.shutdown().await.expect("the task answers");
    assert!(matches!(a.client.peers().await, Err(NetError::Stopped)));
    let ended = timeout(DEADLINE, async { while a.events.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the event stream ends after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_publish_and_self_ban_are_refused() {
    let a = start_with(genesis(8), Vec::new(), |c| c.max_tx_bytes = 16).await;
    assert!(matches!(
        a.client.publish(Topic::Tx, vec![0; 17]).await,
        Err(NetError::PayloadTooLarge {
            topic: Topic::Tx,
            len: 17,
            max: 16
        })
    ));
    assert!(matches!(
        a.client.ban(a.id, Duration::from_secs(1)).await,
        Err(NetError::BanSelf { .. })
    ));
    let nobody = Keypair::generate_ed25519().public().to_peer_id();
    assert!(matches!(
        a.client.request(nobody, SyncRequest::Status).await,
        Err(NetError::NotConnected { .. })
    ));
}
