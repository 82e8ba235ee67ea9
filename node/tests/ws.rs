//! JSON-RPC over WebSocket against nodes started in this process (`node::testnet`): the
//! subscriptions deliver heads in order and reorgs after a partition heals, a client that
//! never reads is dropped while the node goes on, and bad params are named in the error.

use futures::{SinkExt, StreamExt};
use node::testnet::{NodeHandle, TestBuilder};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(90);

fn ws_url(node: &NodeHandle) -> String {
    node.rpc_url().replacen("http://", "ws://", 1) + "/"
}

async fn connect(node: &NodeHandle) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(ws_url(node))
        .await
        .expect("the RPC port takes a WebSocket");
    socket
}

/// The next text message as JSON, within `deadline`.
async fn next_json(socket: &mut Socket, deadline: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(deadline, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a good frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Sends one call and returns its answer (notifications in between are skipped).
async fn call(socket: &mut Socket, id: u64, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .expect("sent");
    loop {
        let answer = next_json(socket, DEADLINE).await;
        if answer["id"] == json!(id) {
            return answer;
        }
    }
}

/// The next notification of `method`, skipping other messages.
async fn notification(socket: &mut Socket, method: &str, deadline: Duration) -> Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let message = next_json(socket, left).await;
        if message["method"] == method {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_arrive_in_order_and_plain_calls_answer_over_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Poa)
        .add_node()
        .block_time(1)
        .start()
        .expect("one node starts");
    let node = net.node(0).expect("node 0 runs");
    let mut socket = connect(node).await;

    let info = call(&mut socket, 1, "chain_info", json!([])).await;
    assert_eq!(info["result"]["engine"], "poa", "{info}");

    let subscribed = call(&mut socket, 2, "chain_subscribeNewHeads", json!([])).await;
    let id = subscribed["result"]
        .as_str()
        .expect("a subscription id")
        .to_owned();
    let mut previous: Option<Value> = None;
    for _ in 0..3 {
        let note = notification(&mut socket, "chain_newHead", DEADLINE).await;
        assert_eq!(note["jsonrpc"], "2.0");
        assert_eq!(note["params"]["subscription"], json!(id), "{note}");
        let head = note["params"]["result"].clone();
        if let Some(prev) = &previous {
            assert_eq!(
                head["height"].as_u64(),
                prev["height"].as_u64().map(|h| h + 1)
            );
            assert_eq!(
                head["parent_hash"], prev["hash"],
                "each head builds on the last"
            );
        }
        previous = Some(head);
    }

    let gone = call(&mut socket, 3, "chain_unsubscribe", json!([id])).await;
    assert_eq!(gone["result"], true, "{gone}");
    let again = call(&mut socket, 4, "chain_unsubscribe", json!([id])).await;
    assert_eq!(again["result"], false, "{again}");

    let over_http = node
        .client()
        .call("chain_subscribeNewHeads", json!([]))
        .expect_err("subscriptions need a socket");
    assert!(over_http.to_string().contains("WebSocket"), "{over_http}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscribe_params_answer_an_error_naming_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Poa)
        .add_node()
        .start()
        .expect("one node starts");
    let mut socket = connect(net.node(0).expect("node 0 runs")).await;

    let cases = [
        ("chain_subscribeNewHeads", json!(["fast"]), "\"fast\""),
        ("chain_subscribeReorgs", json!([7]), "[7]"),
        (
            "chain_subscribeFinalized",
            json!({"depth": 3}),
            "\"depth\":3",
        ),
        ("chain_unsubscribe", json!([42]), "42"),
    ];
    for (i, (method, params, named)) in cases.into_iter().enumerate() {
        let answer = call(&mut socket, i as u64, method, params).await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
        let message = answer["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains(named),
            "{method}: {message:?} names {named}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_the_node_keeps_producing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Poa)
        .add_node()
        .block_time(1)
        .start()
        .expect("one node starts");
    let node = net.node(0).expect("node 0 runs");

    // A small receive buffer, so the kernel does not soak up what the node sends.
    let stream = tokio::net::TcpSocket::new_v4().expect("socket");
    stream.set_recv_buffer_size(4096).expect("buffer size");
    let address = node
        .rpc_url()
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let stream = stream.connect(address).await.expect("connected");
    let (mut slow, _) =
        tokio_tungstenite::client_async(ws_url(node), MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
    slow.send(Message::Text(
        json!({"jsonrpc": "2.0", "id": 0, "method": "chain_subscribeNewHeads"})
            .to_string()
            .into(),
    ))
    .await
    .expect("subscribed");
    // Far more answers than the node queues for one client (and than the kernel buffers),
    // none of them read: batches of 64 blocks each.
    const BATCHES: u64 = 600;
    let batch: Vec<Value> = (0..64)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "chain_getBlock", "params": [0]}))
        .collect();
    let batch = Value::Array(batch).to_string();
    let mut sent = 0;
    for _ in 0..BATCHES {
        let send = slow.send(Message::Text(batch.clone().into()));
        match tokio::time::timeout(Duration::from_secs(5), send).await {
            Ok(Ok(())) => sent += 1,
            // The node stopped reading us (it dropped the connection, or is about to).
            _ => break,
        }
    }

    let start = net.heights()[0].expect("node 0 answers");
    net.wait_until(start + 2, DEADLINE)
        .expect("the node keeps producing with a stuck client");

    // What the kernel had buffered comes out, then the end: well short of every answer.
    let mut answers = 0;
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(message) = slow.next().await {
            match message {
                Ok(Message::Text(_)) => answers += 1,
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow client was disconnected");
    assert!(
        answers < sent,
        "{answers} answers of {sent} batches reached a client dropped for being slow"
    );

    let mut fresh = connect(node).await;
    let info = call(&mut fresh, 1, "chain_info", json!([])).await;
    assert!(
        info["result"]["height"].as_u64() >= Some(start + 2),
        "{info}"
    );
    let metrics = ureq::get(&format!("{}/metrics", node.rpc_url()))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.contains("toychain_ws_slow_clients_dropped_total 1"),
        "{metrics}"
    );
}

/// Two PoW miners cut apart each extend their own branch; once healed, the lighter side
/// switches to the heavier one and its subscribers hear of the reorg, with the fork point
/// below both branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n2_pow_partition_and_heal_notifies_a_reorg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Pow)
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("two nodes start");
    net.wait_until(2, DEADLINE).expect("both mine");
    let mut sockets = Vec::new();
    for i in 0..2 {
        let mut socket = connect(net.node(i).expect("running")).await;
        let answer = call(&mut socket, 1, "chain_subscribeReorgs", json!([])).await;
        assert!(answer["result"].is_string(), "{answer}");
        sockets.push(socket);
    }

    net.partition(&[1]).expect("split 1 | 1");
    let split = net.heights().into_iter().flatten().max().expect("heights");
    net.wait_until(split + 2, DEADLINE)
        .expect("each side mines its own branch");
    net.heal().expect("healed");

    let (mut first, mut second) = {
        let mut it = sockets.into_iter();
        (it.next().expect("socket 0"), it.next().expect("socket 1"))
    };
    let reorg = tokio::select! {
        note = notification(&mut first, "chain_reorg", DEADLINE) => note,
        note = notification(&mut second, "chain_reorg", DEADLINE) => note,
    };
    let result = &reorg["params"]["result"];
    let depth = result["depth"].as_u64().expect("depth");
    assert!(depth >= 1, "{reorg}");
    assert_eq!(
        result["reverted"].as_array().map(Vec::len),
        Some(depth as usize)
    );
    let fork = result["fork_point"]["height"]
        .as_u64()
        .expect("fork height");
    let old = result["old_head"]["height"].as_u64().expect("old height");
    let new = result["new_head"]["height"].as_u64().expect("new height");
    assert!(fork < old && fork < new, "{reorg}");
    assert_ne!(result["old_head"]["hash"], result["new_head"]["hash"]);
}
