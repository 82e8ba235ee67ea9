//! JSON-RPC over WebSocket on the RPC port, with subscriptions to chain events in the shape of
//! geth's `eth_subscribe` and Substrate's `chain_subscribeNewHeads`: a subscribe call answers
//! an id, then notifications arrive as
//! `{"jsonrpc":"2.0","method":"chain_newHead","params":{"subscription":id,"result":…}}`.
//!
//! Every ordinary method answers over the socket as over HTTP, under the same limits (message
//! size [`MAX_BODY_BYTES`], batch length). What goes out to a client waits in a bounded queue
//! of [`OUT_QUEUE`] messages; a client that does not read (the queue full, or a send stuck
//! for [`SEND_TIMEOUT`]) is disconnected, so the chain actor never waits for anyone: it only
//! publishes on a broadcast channel. Browsers may connect from loopback pages and from the
//! node's own origin only (a page on another site must not drive a local node). When the
//! node shuts down every connection ends, so none keeps the chain actor alive.

use crate::actor::ChainEvent;
use crate::rpc::{RpcState, codes, error_object, handle_call};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chain::BlockId;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info};

use crate::rpc::MAX_BODY_BYTES;

/// Messages waiting to be written to one client at most; one more and it is disconnected.
pub const OUT_QUEUE: usize = 256;
/// How long one message may take to reach a client's socket before it is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Live subscriptions on one connection at most.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// Subscription ids, unique in this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a subscription follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topic {
    NewHeads,
    Reorgs,
    Finalized,
}

impl Topic {
    /// The subscribe method's topic, if `method` is one.
    fn of_method(method: &str) -> Option<Topic> {
        match method {
            "chain_subscribeNewHeads" => Some(Topic::NewHeads),
            "chain_subscribeReorgs" => Some(Topic::Reorgs),
            "chain_subscribeFinalized" => Some(Topic::Finalized),
            _ => None,
        }
    }

    /// The notification's method name.
    fn notification(self) -> &'static str {
        match self {
            Topic::NewHeads => "chain_newHead",
            Topic::Reorgs => "chain_reorg",
            Topic::Finalized => "chain_finalized",
        }
    }

    fn of_event(event: &ChainEvent) -> Topic {
        match event {
            ChainEvent::NewHead(_) => Topic::NewHeads,
            ChainEvent::Reorg { .. } => Topic::Reorgs,
            ChainEvent::Finalized(_) => Topic::Finalized,
        }
    }
}

/// Whether `headers` ask for a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a browser page at `origin` may open a socket on a node reached as `host`: no
/// origin (not a browser), the node's own origin, or a page served from loopback.
fn origin_allowed(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
        return true;
    }
    let name = match authority.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => authority,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// Upgrades a request to a WebSocket serving JSON-RPC, after the origin check.
pub async fn upgrade(state: RpcState, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let text = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if !origin_allowed(text(header::ORIGIN), text(header::HOST)) {
        let origin = text(header::ORIGIN).unwrap_or_default().to_owned();
        info!(%origin, "WebSocket from a foreign origin refused");
        return (
            StatusCode::FORBIDDEN,
            format!("WebSocket connections from origin {origin:?} are not allowed"),
        )
            .into_response();
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    ws.max_message_size(MAX_BODY_BYTES)
        .max_frame_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| serve_socket(state, socket))
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed it, or the node is stopping.
    Closed,
    /// The client does not keep up.
    Slow(String),
}

/// One connection: reads calls, answers them and forwards the subscribed chain events,
/// all through the bounded out queue that a writer task drains.
async fn serve_socket(state: RpcState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut queue) = mpsc::channel::<Message>(OUT_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return End::Closed,
                Err(_) => {
                    return End::Slow(format!(
                        "a message waited more than {} s for the socket",
                        SEND_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        let _ = sink.close().await;
        End::Closed
    });
    let mut conn = Connection {
        state,
        out,
        subscriptions: HashMap::new(),
    };
    let mut events = conn.state.chain.events();
    let mut writer_done = false;
    let mut closing = conn.state.closing.clone();
    let end = loop {
        if *closing.borrow_and_update() {
            break End::Closed;
        }
        tokio::select! {
            // The node is stopping (or gone).
            changed = closing.changed() => {
                if changed.is_err() {
                    break End::Closed;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(end) = conn.on_text(text.as_str()).await {
                        break end;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let err = error_object(Value::Null, codes::INVALID_REQUEST,
                        "binary messages are not JSON-RPC; send text");
                    if let Err(end) = conn.push(err) {
                        break end;
                    }
                }
                Some(Ok(_)) => {} // ping and pong are answered by the socket itself
                Some(Err(_)) | None => break End::Closed,
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if let Err(end) = conn.on_event(&event) {
                        break end;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    break End::Slow(format!("{missed} chain events were not read in time"));
                }
                Err(broadcast::error::RecvError::Closed) => break End::Closed,
            },
            done = &mut writer => {
                writer_done = true;
                break done.unwrap_or(End::Closed);
            }
        }
    };
    match end {
        End::Slow(why) => {
            conn.state
                .metrics
                .ws_dropped
                .fetch_add(1, Ordering::Relaxed);
            info!(reason = %why, "slow WebSocket client disconnected");
            // Dropping the socket's half closes the connection without a goodbye.
            writer.abort();
        }
        End::Closed => {
            debug!("WebSocket closed");
            drop(conn);
            if !writer_done {
                let _ = tokio::time::timeout(SEND_TIMEOUT, writer).await;
            }
        }
    }
}

/// One socket's subscriptions and its way out.
struct Connection {
    state: RpcState,
    out: mpsc::Sender<Message>,
    subscriptions: HashMap<String, Topic>,
}

impl Connection {
    /// Queues `value` for the client, or ends the connection if the queue is full.
    fn push(&self, value: Value) -> Result<(), End> {
        match self.out.try_send(Message::Text(value.to_string().into())) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(End::Slow(format!(
                "{OUT_QUEUE} messages were waiting for the client"
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::Closed),
        }
    }

    /// One text message: a call or a batch of calls.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let parsed: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.state
                    .metrics
                    .rpc_errors
                    .fetch_add(1, Ordering::Relaxed);
                return self.push(error_object(
                    Value::Null,
                    codes::PARSE_ERROR,
                    &format!("parse error: {e}"),
                ));
            }
        };
        match parsed {
            Value::Array(calls) => {
                if let Some(err) = crate::rpc::batch_error(calls.len()) {
                    return self.push(err);
                }
                let mut answers = Vec::with_capacity(calls.len());
                for call in calls {
                    answers.extend(self.call(call).await);
                }
                if answers.is_empty() {
                    return Ok(());
                }
                self.push(Value::Array(answers))
            }
            call => match self.call(call).await {
                Some(answer) => self.push(answer),
                None => Ok(()),
            },
        }
    }

    /// Answers one call; the subscription methods are handled here, the rest by the RPC.
    async fn call(&mut self, call: Value) -> Option<Value> {
        let method = call.get("method").and_then(Value::as_str).unwrap_or("");
        let topic = Topic::of_method(method);
        if topic.is_none() && method != "chain_unsubscribe" {
            return handle_call(&self.state, call).await;
        }
        self.state
            .metrics
            .rpc_requests
            .fetch_add(1, Ordering::Relaxed);
        let id = call.get("id").cloned();
        let params = match call.get("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => vec![other.clone()],
        };
        let result = match topic {
            Some(topic) => self.subscribe(method, topic, &params),
            None => self.unsubscribe(&params),
        };
        let id = id?;
        Some(match result {
            Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
            Err(message) => {
                self.state
                    .metrics
                    .rpc_errors
                    .fetch_add(1, Ordering::Relaxed);
                error_object(id, codes::INVALID_PARAMS, &message)
            }
        })
    }

    fn subscribe(&mut self, method: &str, topic: Topic, params: &[Value]) -> Result<Value, String> {
        if !params.is_empty() {
            return Err(format!(
                "{method} takes no params, got {}",
                Value::Array(params.to_vec())
            ));
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(format!(
                "this connection already has {MAX_SUBSCRIPTIONS} subscriptions, the limit"
            ));
        }
        let id = format!("0x{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        self.subscriptions.insert(id.clone(), topic);
        Ok(json!(id))
    }

    /// `chain_unsubscribe(id)`: `true` if the subscription was live, `false` if it was not
    /// (as geth and Substrate answer).
    fn unsubscribe(&mut self, params: &[Value]) -> Result<Value, String> {
        match params {
            [Value::String(id)] => Ok(json!(self.subscriptions.remove(id).is_some())),
            [other] => Err(format!(
                "chain_unsubscribe expects a subscription id string, got {other}"
            )),
            _ => Err(format!(
                "chain_unsubscribe takes 1 param (the subscription id), got {}",
                params.len()
            )),
        }
    }

    /// Sends `event` to each subscription that follows its topic.
    fn on_event(&self, event: &ChainEvent) -> Result<(), End> {
        let topic = Topic::of_event(event);
        let mut ids = self
            .subscriptions
            .iter()
            .filter(|(_, t)| **t == topic)
            .map(|(id, _)| id)
            .peekable();
        if ids.peek().is_none() {
            return Ok(());
        }
        let Some(result) = event_json(&self.state, event) else {
            return Ok(());
        };
        for id in ids {
            self.push(json!({
                "jsonrpc": "2.0",
                "method": topic.notification(),
                "params": {"subscription": id, "result": result},
            }))?;
        }
        Ok(())
    }
}

fn id_json(id: &BlockId) -> Value {
    json!({"height": id.height.0, "hash": id.hash.to_hex()})
}

/// A notification's `result`: a new head as `chain_getBlock` shows it, a reorg as the ids
/// of both branches, finality as the block's id. `None` if the head's block cannot be read
/// (it was just pruned, or the store failed), which is logged.
fn event_json(state: &RpcState, event: &ChainEvent) -> Option<Value> {
    match event {
        ChainEvent::NewHead(id) => match state.chain.reader().block(&id.hash) {
            Ok(Some(block)) => Some(crate::rpc::block_json(state, &block)),
            Ok(None) => {
                debug!(block = %id.hash, "new head no longer stored");
                None
            }
            Err(e) => {
                tracing::warn!(block = %id.hash, error = %e, "cannot read a new head");
                None
            }
        },
        ChainEvent::Reorg {
            old_head,
            new_head,
            fork_point,
            reverted,
            applied,
        } => Some(json!({
            "old_head": id_json(old_head),
            "new_head": id_json(new_head),
            "fork_point": id_json(fork_point),
            "depth": reverted.len(),
            "reverted": reverted.iter().map(id_json).collect::<Vec<_>>(),
            "applied": applied.iter().map(id_json).collect::<Vec<_>>(),
        })),
        ChainEvent::Finalized(id) => Some(id_json(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_from_loopback_or_the_node_itself_may_connect() {
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, Some("127.0.0.1:8545"), true),
            (Some("http://127.0.0.1:8546"), Some("127.0.0.1:8545"), true),
            (Some("http://localhost:3000"), Some("127.0.0.1:8545"), true),
            (Some("http://[::1]:8545"), Some("[::1]:8545"), true),
            (Some("http://10.0.0.5:8545"), Some("10.0.0.5:8545"), true),
            (Some("https://evil.example"), Some("127.0.0.1:8545"), false),
            (
                Some("http://127.0.0.1.evil.example"),
                Some("127.0.0.1:8545"),
                false,
            ),
            (Some("null"), Some("127.0.0.1:8545"), false),
        ];
        for (origin, host, allowed) in cases {
            assert_eq!(
                origin_allowed(*origin, *host),
                *allowed,
                "origin {origin:?} host {host:?}"
            );
        }
    }

    #[test]
    fn each_subscribe_method_names_its_notification() {
        let cases = [
            ("chain_subscribeNewHeads", "chain_newHead"),
            ("chain_subscribeReorgs", "chain_reorg"),
            ("chain_subscribeFinalized", "chain_finalized"),
        ];
        for (method, notification) in cases {
            let topic = Topic::of_method(method).expect("a subscribe method");
            assert_eq!(topic.notification(), notification);
        }
        assert_eq!(Topic::of_method("chain_subscribe"), None);
    }
}
