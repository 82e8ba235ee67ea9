//! JSON-RPC 2.0 over HTTP POST and over WebSocket (with subscriptions, see [`crate::ws`]),
//! the dashboard at `GET /` (see [`crate::dashboard`]), and Prometheus metrics at
//! `GET /metrics`, on one port.
//!
//! Requests are limited in body size and batch length; malformed JSON answers -32700, an
//! unknown method -32601, bad params -32602, and rejected transactions carry stable codes
//! (see [`codes`]) with a message naming the reason. Reads go to the store through the
//! chain reader, so a long import never stalls the RPC.

use crate::actor::ChainHandle;
use crate::metrics::Metrics;
use crate::producer::ProducerControl;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chain::{
    Address, Block, BlockHash, Canonical, ChainView, Height, MempoolError, Transaction, TxError,
    TxHash, TxKind,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Most calls in one batch (geth's default `--rpc.batch-request-limit`): room for a load
/// generator's batch of transfers within [`MAX_BODY_BYTES`].
pub const MAX_BATCH: usize = 1_000;
/// Most blocks one `dev_mine` call may ask for.
pub const MAX_DEV_MINE: u64 = 1_000;
/// How many blocks back `account_history` looks at most.
const HISTORY_SCAN_BLOCKS: u64 = 2_000;
/// A call that takes longer than this to answer is logged as a warning, with its method:
/// callers (the test network, the devnet launcher) give up after a few seconds.
const SLOW_CALL: std::time::Duration = std::time::Duration::from_secs(1);

/// Stable error codes. The standard ones, then toychain's own.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// The transaction can never be valid: malformed, bad signature, wrong chain id.
    pub const TX_INVALID: i64 = -32010;
    /// Nonce too low or too high.
    pub const TX_NONCE: i64 = -32011;
    /// The balance does not cover amount plus fee.
    pub const TX_BALANCE: i64 = -32012;
    /// The mempool refused it: already known, underpriced replacement, full.
    pub const TX_POOL: i64 = -32013;
    /// No such block or transaction.
    pub const NOT_FOUND: i64 = -32020;
    /// The node is shutting down.
    pub const UNAVAILABLE: i64 = -32040;
    /// `dev_mine` on a node that does not produce blocks.
    pub const NOT_PRODUCING: i64 = -32030;
}

#[derive(Debug)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn params(message: impl Into<String>) -> RpcError {
        RpcError::new(codes::INVALID_PARAMS, message)
    }

    fn internal(e: impl std::fmt::Display) -> RpcError {
        RpcError::new(codes::INTERNAL, e.to_string())
    }
}

impl From<crate::actor::ActorStopped> for RpcError {
    fn from(e: crate::actor::ActorStopped) -> Self {
        RpcError::new(codes::UNAVAILABLE, e.to_string())
    }
}

impl From<chain::StoreError> for RpcError {
    fn from(e: chain::StoreError) -> Self {
        RpcError::internal(e)
    }
}

/// What the RPC knows about the network side.
#[derive(Clone, Debug, Default)]
pub struct NetView {
    pub client: Option<net::Client>,
    /// Where accepted transactions go to be gossiped in batches.
    pub relay: Option<crate::tx_relay::TxRelay>,
    /// Head heights peers told us in status exchanges.
    pub peer_heights: Arc<Mutex<HashMap<String, u64>>>,
    pub syncing: Arc<AtomicBool>,
}

#[derive(Clone, Debug)]
pub struct RpcState {
    pub chain: ChainHandle,
    pub metrics: Arc<Metrics>,
    pub net: NetView,
    pub author: Option<Address>,
    /// The block producer's control, on a node started with `--author`.
    pub producer: Option<ProducerControl>,
    /// `--rpc-admin`: the `admin_*` methods (fault injection) answer; without it they are
    /// unknown methods.
    pub admin: bool,
    /// Where accepted txs are written before `tx_submit` answers (none in tests that run
    /// the RPC without a data dir).
    pub journal: Option<Arc<crate::tx_journal::TxJournal>>,
    /// A voting engine's machine status (view or term, leader, role, votes).
    pub voting: Option<crate::voting::VotingStatus>,
    /// Turns true when the node shuts down: WebSocket connections end then, so none keeps
    /// the chain actor alive.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: RpcState) -> Router {
    Router::new()
        .route("/", get(root).post(handle_http))
        .route("/metrics", get(metrics))
        .route("/assets/{name}", get(crate::dashboard::asset))
        .with_state(state)
}

/// `GET /`: a WebSocket upgrade serves JSON-RPC; a plain GET serves the dashboard.
async fn root(State(state): State<RpcState>, request: Request) -> Response {
    if crate::ws::is_upgrade(request.headers()) {
        crate::ws::upgrade(state, request).await
    } else {
        crate::dashboard::index().await
    }
}

async fn metrics(State(state): State<RpcState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub(crate) fn error_object(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn handle_http(State(state): State<RpcState>, request: Request) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            let err = error_object(
                Value::Null,
                codes::INVALID_REQUEST,
                &format!("request body larger than {MAX_BODY_BYTES} bytes"),
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(err)).into_response();
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            let err = error_object(
                Value::Null,
                codes::PARSE_ERROR,
                &format!("parse error: {e}"),
            );
            return axum::Json(err).into_response();
        }
    };
    let answer = match parsed {
        Value::Array(calls) => {
            if let Some(err) = batch_error(calls.len()) {
                err
            } else {
                let out = handle_batch(&state, calls).await;
                if out.is_empty() {
                    return StatusCode::NO_CONTENT.into_response();
                }
                Value::Array(out)
            }
        }
        call => match handle_call(&state, call).await {
            Some(reply) => reply,
            None => return StatusCode::NO_CONTENT.into_response(),
        },
    };
    axum::Json(answer).into_response()
}

/// Answers a batch's calls in order. Consecutive well-formed `tx_submit` calls are
/// admitted in one trip to the chain actor (a load generator's batch of a thousand
/// transfers is one queue wait, not a thousand), each still judged on its own and answered
/// with its own result; any other call, or a `tx_submit` that is not well formed, is
/// answered on its own by [`handle_call`] after the run before it.
async fn handle_batch(state: &RpcState, calls: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(calls.len());
    let mut run: Vec<(Option<Value>, Transaction)> = Vec::new();
    for call in calls {
        if let Some(submit) = as_tx_submit(&call) {
            run.push(submit);
            continue;
        }
        admit_run(state, std::mem::take(&mut run), &mut out).await;
        if let Some(reply) = handle_call(state, call).await {
            out.push(reply);
        }
    }
    admit_run(state, run, &mut out).await;
    out
}

/// A `tx_submit` call whose transaction decodes: its id (`None` for a notification) and
/// the transaction. Anything else is `None` and goes through [`handle_call`], which names
/// what is wrong with it.
fn as_tx_submit(call: &Value) -> Option<(Option<Value>, Transaction)> {
    let obj = call.as_object()?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
        || obj.get("method").and_then(Value::as_str) != Some("tx_submit")
    {
        return None;
    }
    let tx = match obj.get("params")? {
        Value::Array(params) if params.len() == 1 => param_tx(&params[0]).ok()?,
        _ => return None,
    };
    Some((obj.get("id").cloned(), tx))
}

/// `tx_submit`'s parameter: a signed transaction as hex of its canonical encoding.
fn param_tx(param: &Value) -> Result<Transaction, RpcError> {
    let text = param
        .as_str()
        .ok_or_else(|| RpcError::params("expected the signed tx as a hex string"))?;
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|e| RpcError::params(format!("tx is not hex: {e}")))?;
    Transaction::decode(&bytes).map_err(|e| RpcError::new(codes::TX_INVALID, e.to_string()))
}

/// Admits `run`'s transactions in one trip to the chain actor and appends each call's
/// answer to `out`.
async fn admit_run(state: &RpcState, run: Vec<(Option<Value>, Transaction)>, out: &mut Vec<Value>) {
    if run.is_empty() {
        return;
    }
    state
        .metrics
        .rpc_requests
        .fetch_add(run.len() as u64, Ordering::Relaxed);
    state.metrics.rpc_tx_batches.fetch_add(1, Ordering::Relaxed);
    let (ids, txs): (Vec<Option<Value>>, Vec<Transaction>) = run.into_iter().unzip();
    let offered = state.chain.warm_signatures(txs.clone()).await;
    let results = match state.chain.submit_txs_each(offered).await {
        Ok(results) => results.into_iter().map(Some).collect(),
        Err(_) => vec![None; ids.len()],
    };
    let mut admitted = Vec::new();
    let mut answers = Vec::with_capacity(ids.len());
    for ((id, tx), result) in ids.into_iter().zip(txs).zip(results) {
        let answer = match result {
            Some(Ok(hash)) => {
                admitted.push((tx, hash));
                Ok(json!({"hash": hash.to_hex()}))
            }
            Some(Err(e)) => Err(mempool_error(e)),
            None => Err(RpcError::from(crate::actor::ActorStopped)),
        };
        answers.push((id, answer));
    }
    accepted(state, admitted);
    for (id, answer) in answers {
        let Some(id) = id else { continue };
        out.push(match answer {
            Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
            Err(e) => {
                state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                error_object(id, e.code, &e.message)
            }
        });
    }
}

/// What follows the admission of transactions through RPC (each with its hash): the
/// journal, in one write, so a restart keeps them, and the relay, which gossips them.
fn accepted(state: &RpcState, admitted: Vec<(Transaction, TxHash)>) {
    if let Some(journal) = &state.journal {
        let records: Vec<(&Transaction, TxHash)> =
            admitted.iter().map(|(tx, hash)| (tx, *hash)).collect();
        if let Err(e) = journal.append_all(&records) {
            // Still in the mempool, but a crash would now lose them.
            tracing::error!(error = %e, count = admitted.len(), "txs not written to the journal");
        }
    }
    if let Some(relay) = &state.net.relay {
        // Gossip is best effort: with no peers the tx still waits here, and is announced
        // when one connects.
        for (tx, _) in admitted {
            relay.relay(tx);
        }
    }
}

/// The error answering a batch of `len` calls, if it is empty or too long.
pub(crate) fn batch_error(len: usize) -> Option<Value> {
    if len == 0 {
        Some(error_object(
            Value::Null,
            codes::INVALID_REQUEST,
            "empty batch",
        ))
    } else if len > MAX_BATCH {
        Some(error_object(
            Value::Null,
            codes::INVALID_REQUEST,
            &format!("batch of {len} calls, more than the limit of {MAX_BATCH}"),
        ))
    } else {
        None
    }
}

/// One call; `None` for a notification (no id), which gets no answer.
pub(crate) async fn handle_call(state: &RpcState, call: Value) -> Option<Value> {
    state.metrics.rpc_requests.fetch_add(1, Ordering::Relaxed);
    let Value::Object(mut obj) = call else {
        state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
        return Some(error_object(
            Value::Null,
            codes::INVALID_REQUEST,
            "a call must be a JSON object",
        ));
    };
    let id = obj.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
        return Some(error_object(
            reply_id,
            codes::INVALID_REQUEST,
            "\"jsonrpc\" must be \"2.0\"",
        ));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str).map(str::to_owned) else {
        state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
        return Some(error_object(
            reply_id,
            codes::INVALID_REQUEST,
            "missing \"method\"",
        ));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other @ Value::Object(_)) => vec![other],
        Some(_) => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            return Some(error_object(
                reply_id,
                codes::INVALID_REQUEST,
                "\"params\" must be an array or object",
            ));
        }
    };
    let started = std::time::Instant::now();
    let result = dispatch(state, &method, params).await;
    let took = started.elapsed();
    if took >= SLOW_CALL {
        tracing::warn!(
            method,
            millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "slow rpc call"
        );
    }
    id.as_ref()?;
    Some(match result {
        Ok(value) => json!({"jsonrpc": "2.0", "id": reply_id, "result": value}),
        Err(e) => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            error_object(reply_id, e.code, &e.message)
        }
    })
}

/// Checks the number of positional params.
fn arity(method: &str, params: &[Value], min: usize, max: usize) -> Result<(), RpcError> {
    if params.len() < min || params.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(RpcError::params(format!(
            "{method} takes {expected} params, got {}",
            params.len()
        )));
    }
    Ok(())
}

fn param_address(v: &Value) -> Result<Address, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::params(format!("expected an address string, got {v}")))?;
    Address::parse(s).map_err(|e| RpcError::params(e.to_string()))
}

fn param_tx_hash(v: &Value) -> Result<TxHash, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::params(format!("expected a tx hash string, got {v}")))?;
    TxHash::from_hex(s).map_err(|e| RpcError::params(e.to_string()))
}

/// Routes a call to its namespace's handler.
async fn dispatch(state: &RpcState, method: &str, params: Vec<Value>) -> Result<Value, RpcError> {
    match method
        .split_once('_')
        .map_or(method, |(namespace, _)| namespace)
    {
        "chain" | "state" | "account" => chain_method(state, method, params).await,
        "tx" => tx_method(state, method, params).await,
        "net" | "node" | "engine" => node_method(state, method, params).await,
        "dev" | "admin" => control_method(state, method, params).await,
        _ => Err(unknown_method(method)),
    }
}

fn unknown_method(method: &str) -> RpcError {
    RpcError::new(
        codes::METHOD_NOT_FOUND,
        format!("unknown method {method:?}"),
    )
}

/// `chain_*`, `state_*` and `account_*`: what the chain holds.
async fn chain_method(
    state: &RpcState,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    let reader = state.chain.reader();
    match method {
        "chain_info" => {
            arity(method, &params, 0, 0)?;
            let head = state.chain.head();
            Ok(json!({
                "chain_id": state.chain.chain_id().0,
                "genesis_hash": reader.genesis().hash().to_hex(),
                "engine": state.chain.engine().name(),
                "height": head.id.height.0,
                "head_hash": head.id.hash.to_hex(),
                "head_timestamp": head.timestamp.0,
                "finalized_height": head.finalized.map(|f| f.height.0),
                "finalized_hash": head.finalized.map(|f| f.hash.to_hex()),
                "total_weight": head.total_weight.to_string(),
            }))
        }
        "chain_getBlock" => {
            arity(method, &params, 1, 1)?;
            let block = find_block(state, &params[0])?;
            Ok(block_json(state, &block))
        }
        "state_getAccount" => {
            arity(method, &params, 1, 1)?;
            let address = param_address(&params[0])?;
            let account = reader.account(&address)?;
            let pending_nonce = state.chain.pending_nonce(address).await??;
            let engine: serde_json::Map<String, Value> = state
                .chain
                .engine()
                .account_fields(reader.state(), &address)
                .map_err(RpcError::internal)?
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            Ok(json!({
                "address": address.to_string(),
                "balance": account.balance.0,
                "nonce": account.nonce,
                "pending_nonce": pending_nonce,
                "engine": engine,
            }))
        }
        "account_history" => {
            arity(method, &params, 1, 2)?;
            let address = param_address(&params[0])?;
            let limit = match params.get(1) {
                None => 50,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| RpcError::params(format!("limit must be a number, got {v}")))?
                    .min(1_000) as usize,
            };
            account_history(state, address, limit)
        }
        "chain_subscribeNewHeads"
        | "chain_subscribeReorgs"
        | "chain_subscribeFinalized"
        | "chain_unsubscribe" => Err(RpcError::new(
            codes::INVALID_REQUEST,
            format!("{method} needs a WebSocket connection (ws:// on the RPC port), not HTTP"),
        )),
        other => Err(unknown_method(other)),
    }
}

/// `tx_*`: submitting and finding transactions.
async fn tx_method(state: &RpcState, method: &str, params: Vec<Value>) -> Result<Value, RpcError> {
    let reader = state.chain.reader();
    match method {
        "tx_submit" => {
            arity(method, &params, 1, 1)?;
            let tx = param_tx(&params[0])?;
            let tx = state
                .chain
                .warm_signatures(vec![tx])
                .await
                .pop()
                .ok_or_else(|| RpcError::internal("the transaction went missing"))?;
            match state.chain.submit_tx(tx.clone()).await? {
                Ok(hash) => {
                    accepted(state, vec![(tx, hash)]);
                    Ok(json!({"hash": hash.to_hex()}))
                }
                Err(e) => Err(mempool_error(e)),
            }
        }
        "tx_get" => {
            arity(method, &params, 1, 1)?;
            let hash = param_tx_hash(&params[0])?;
            if let Some((block_hash, index)) = reader.tx_location(&hash)? {
                let header = reader
                    .header(&block_hash)?
                    .ok_or_else(|| RpcError::internal("indexed block is missing"))?;
                let head = state.chain.head();
                return Ok(json!({
                    "status": "included",
                    "block_hash": block_hash.to_hex(),
                    "height": header.height().0,
                    "index": index,
                    "confirmations": head.id.height.0.saturating_sub(header.height().0) + 1,
                }));
            }
            let status = if state.chain.is_pending(hash).await? {
                "pending"
            } else {
                "unknown"
            };
            Ok(json!({"status": status, "block_hash": null, "height": null, "confirmations": 0}))
        }
        other => Err(unknown_method(other)),
    }
}

/// `net_*`, `node_*` and `engine_*`: this node, its peers and its engine.
async fn node_method(
    state: &RpcState,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    let reader = state.chain.reader();
    match method {
        "net_peers" => {
            arity(method, &params, 0, 0)?;
            let Some(client) = &state.net.client else {
                return Ok(json!([]));
            };
            let peers = client.peers().await.map_err(RpcError::internal)?;
            let heights = state
                .net
                .peer_heights
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            Ok(Value::Array(
                peers
                    .into_iter()
                    .map(|p| {
                        let id = p.peer_id.to_string();
                        json!({
                            "peer_id": id,
                            "address": p.address.to_string(),
                            "height": heights.get(&id),
                        })
                    })
                    .collect(),
            ))
        }
        "node_status" => {
            arity(method, &params, 0, 0)?;
            let (peer_id, listen, peers) = match &state.net.client {
                Some(client) => (
                    Some(client.local_peer_id().to_string()),
                    client
                        .listen_addrs()
                        .await
                        .map_err(RpcError::internal)?
                        .into_iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>(),
                    client.peers().await.map_err(RpcError::internal)?.len(),
                ),
                None => (None, Vec::new(), 0),
            };
            let voting = state.voting.as_ref().map(|status| {
                let pairs = status.lock().map(|s| s.clone()).unwrap_or_default();
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), Value::String(v)))
                        .collect(),
                )
            });
            Ok(json!({
                "voting": voting,
                "syncing": state.net.syncing.load(Ordering::Relaxed),
                "peers": peers,
                "mempool_size": state.metrics.mempool_size.load(Ordering::Relaxed),
                "producing": state.author.is_some(),
                "author": state.author.map(|a| a.to_string()),
                "peer_id": peer_id,
                "listen_addrs": listen,
                "blocks_produced": state.metrics.blocks_produced.load(Ordering::Relaxed),
                "reorgs": state.metrics.reorgs.load(Ordering::Relaxed),
                "reorg_depth_max": state.metrics.reorg_depth_max.load(Ordering::Relaxed),
                "side_blocks": state.metrics.side_blocks.load(Ordering::Relaxed),
            }))
        }
        "engine_explain" => {
            arity(method, &params, 1, 1)?;
            let block = find_block(state, &params[0])?;
            let sealed = block.header.clone().seal();
            let fields = state
                .chain
                .engine()
                .explain(reader, &sealed)
                .map_err(RpcError::internal)?;
            let mut out = serde_json::Map::new();
            out.insert("hash".into(), json!(sealed.hash().to_hex()));
            out.insert("height".into(), json!(sealed.height().0));
            out.insert("producer".into(), json!(sealed.producer.to_string()));
            for (k, v) in fields {
                out.insert(k.into(), json!(v));
            }
            if let Some(ms) = commit_latency_ms(state, &sealed.hash()) {
                out.insert("commit_latency_ms".into(), json!(ms));
            }
            Ok(Value::Object(out))
        }
        other => Err(unknown_method(other)),
    }
}

/// `dev_*` and `admin_*`: steering this node (dev chains, fault injection).
async fn control_method(
    state: &RpcState,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    match method {
        "dev_mine" => {
            arity(method, &params, 1, 1)?;
            let n = params[0]
                .as_u64()
                .filter(|n| (1..=MAX_DEV_MINE).contains(n))
                .ok_or_else(|| {
                    RpcError::params(format!(
                        "expected a block count from 1 to {MAX_DEV_MINE}, got {}",
                        params[0]
                    ))
                })?;
            let control = state.producer.as_ref().ok_or_else(|| {
                if state.voting.is_some() {
                    RpcError::new(
                        codes::NOT_PRODUCING,
                        format!(
                            "the {} engine makes a block when its validators' votes ask for one; \
                             dev_mine cannot",
                            state.chain.engine().name()
                        ),
                    )
                } else {
                    RpcError::new(
                        codes::NOT_PRODUCING,
                        "this node does not produce blocks; start it with --author",
                    )
                }
            })?;
            // As geth's `--dev` APIs: a chain with real value never mines on request.
            let chain_id = state.chain.chain_id().0;
            if chain_id != config::DEV_CHAIN_ID {
                return Err(RpcError::new(
                    codes::NOT_PRODUCING,
                    format!(
                        "dev_mine answers only on a dev chain (chain id {}); this chain's id \
                         is {chain_id}",
                        config::DEV_CHAIN_ID
                    ),
                ));
            }
            let produced = state.metrics.blocks_produced.load(Ordering::Relaxed);
            control.request_blocks(n);
            Ok(json!({
                "requested": n,
                "blocks_produced": produced,
                "pending_requests": control.requested(),
            }))
        }
        "admin_blockPeers" if state.admin => {
            arity(method, &params, 1, 1)?;
            let peers = param_peer_ids(&params[0])?;
            let client = state.net.client.as_ref().ok_or_else(|| {
                RpcError::new(codes::UNAVAILABLE, "this node runs without a network")
            })?;
            let blocked = client.set_blocked_peers(peers).await.map_err(|e| match e {
                net::NetError::BanSelf { .. } => {
                    RpcError::params(format!("cannot block this node's own peer id: {e}"))
                }
                other => RpcError::internal(other),
            })?;
            Ok(json!({"blocked": blocked}))
        }
        other => Err(unknown_method(other)),
    }
}

/// `admin_blockPeers`' list of peer ids.
fn param_peer_ids(v: &Value) -> Result<Vec<net::PeerId>, RpcError> {
    let list = v
        .as_array()
        .ok_or_else(|| RpcError::params(format!("expected a list of peer id strings, got {v}")))?;
    list.iter()
        .map(|item| {
            let text = item.as_str().ok_or_else(|| {
                RpcError::params(format!("expected a peer id string, got {item}"))
            })?;
            text.parse::<net::PeerId>()
                .map_err(|e| RpcError::params(format!("invalid peer id {text:?}: {e}")))
        })
        .collect()
}

fn mempool_error(e: MempoolError) -> RpcError {
    RpcError::new(mempool_error_code(&e), e.to_string())
}

/// The error code of a mempool refusal.
pub fn mempool_error_code(e: &MempoolError) -> i64 {
    match e {
        MempoolError::Invalid(TxError::NonceTooLow { .. } | TxError::NonceTooHigh { .. }) => {
            codes::TX_NONCE
        }
        MempoolError::Invalid(TxError::InsufficientBalance { .. }) => codes::TX_BALANCE,
        MempoolError::Invalid(_) => codes::TX_INVALID,
        MempoolError::AlreadyKnown { .. }
        | MempoolError::ReplacementUnderpriced { .. }
        | MempoolError::FeeBelowMinimum { .. }
        | MempoolError::Full { .. } => codes::TX_POOL,
        MempoolError::Store(_) => codes::INTERNAL,
    }
}

fn find_block(state: &RpcState, param: &Value) -> Result<Block, RpcError> {
    let reader = state.chain.reader();
    let found = match param {
        Value::Number(n) => {
            let height = n.as_u64().ok_or_else(|| {
                RpcError::params(format!("height must be a whole number, got {n}"))
            })?;
            if height > state.chain.head().id.height.0 {
                None
            } else {
                reader.block_at(Height(height))?
            }
        }
        Value::String(s) => {
            let hash = BlockHash::from_hex(s).map_err(|e| RpcError::params(e.to_string()))?;
            reader.block(&hash)?
        }
        other => {
            return Err(RpcError::params(format!(
                "expected a height (number) or a block hash (hex string), got {other}"
            )));
        }
    };
    found.ok_or_else(|| RpcError::new(codes::NOT_FOUND, format!("no block {param}")))
}

pub(crate) fn block_json(state: &RpcState, block: &Block) -> Value {
    let hash = block.hash();
    let engine: serde_json::Map<String, Value> = state
        .chain
        .engine()
        .header_fields(&block.header)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut out = json!({
        "hash": hash.to_hex(),
        "height": block.header.height.0,
        "parent_hash": block.header.parent.to_hex(),
        "timestamp": block.header.timestamp.0,
        "producer": block.header.producer.to_string(),
        "tx_root": block.header.tx_root.to_hex(),
        "state_root": block.header.state_root.to_hex(),
        "txs": block.txs.iter().map(|t| t.hash().to_hex()).collect::<Vec<_>>(),
        "engine": engine,
    });
    if let (Some(map), Some(ms)) = (out.as_object_mut(), commit_latency_ms(state, &hash)) {
        map.insert("commit_latency_ms".into(), json!(ms));
    }
    out
}

/// For a block this node's voting machine decided recently: milliseconds from when the
/// node first held the proposal to the decision.
fn commit_latency_ms(state: &RpcState, hash: &BlockHash) -> Option<f64> {
    let latency = state.metrics.commit_latency(hash)?;
    Some((latency.as_secs_f64() * 1e6).round() / 1e3)
}

/// Transactions from or to `address`, newest first, from the last blocks of the best chain.
fn account_history(state: &RpcState, address: Address, limit: usize) -> Result<Value, RpcError> {
    let reader = state.chain.reader();
    let head = state.chain.head().id.height.0;
    let mut out = Vec::new();
    let lowest = head.saturating_sub(HISTORY_SCAN_BLOCKS);
    let mut height = head;
    while height >= lowest.max(1) && out.len() < limit {
        if let Some(block) = reader.block_at(Height(height))? {
            for tx in block.txs.iter().rev() {
                let from = tx.sender_address();
                let to = match &tx.kind {
                    TxKind::Transfer { to, .. } => Some(*to),
                    _ => None,
                };
                if from == address || to == Some(address) {
                    out.push(json!({
                        "hash": tx.hash().to_hex(),
                        "height": height,
                        "block_hash": block.hash().to_hex(),
                        "kind": tx.kind.name(),
                        "from": from.to_string(),
                        "to": to.map(|a| a.to_string()),
                        "amount": tx.kind.amount().0,
                        "fee": tx.fee.0,
                        "nonce": tx.nonce,
                    }));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        height -= 1;
    }
    Ok(json!({"address": address.to_string(), "scanned_from": height + 1, "txs": out}))
}

/// Serves the RPC until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: RpcState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
