//! A small blocking JSON-RPC 2.0 client over HTTP, for the wallet and the devnet launcher.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The error of a call: the node's JSON-RPC error (with its code), or no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum RpcCallError {
    #[error("node at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{message} (rpc error {code})")]
    Rpc { code: i64, message: String },
    #[error("node at {url} answered something that is not JSON-RPC: {reason}")]
    BadAnswer { url: String, reason: String },
}

#[derive(Debug)]
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl RpcClient {
    pub fn new(url: &str, timeout: Duration) -> RpcClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        RpcClient {
            url: url.to_owned(),
            agent,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts `body` and reads the JSON answer.
    fn post(&self, body: &Value) -> Result<Value, RpcCallError> {
        let mut response =
            self.agent
                .post(&self.url)
                .send_json(body)
                .map_err(|e| RpcCallError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?;
        response
            .body_mut()
            .read_json()
            .map_err(|e| RpcCallError::BadAnswer {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }

    /// The value of the Prometheus sample `name` (a counter or gauge without labels) on
    /// the node's `GET /metrics`; `None` when the node cannot be read or has no such sample.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.url.trim_end_matches('/'));
        let text = self
            .agent
            .get(&url)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcCallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.post(&body)?;
        if let Some(error) = answer.get("error") {
            return Err(RpcCallError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_owned(),
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| RpcCallError::BadAnswer {
                url: self.url.clone(),
                reason: "no result and no error".into(),
            })
    }

    /// Sends `calls` (a JSON array of JSON-RPC calls, ids chosen by the caller) as one
    /// batch and returns the node's array of answers as it is, errors included.
    pub fn batch(&self, calls: Value) -> Result<Value, RpcCallError> {
        let answer = self.post(&calls)?;
        if answer.is_array() {
            Ok(answer)
        } else {
            Err(RpcCallError::BadAnswer {
                url: self.url.clone(),
                reason: format!("a batch was answered with {answer}"),
            })
        }
    }

    /// [`RpcClient::call`] with the failure as one line for people: which node, which
    /// method, and what to do.
    pub fn call_explained(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.call(method, params).map_err(|e| match e {
            RpcCallError::Unreachable { url, reason } => anyhow::anyhow!(
                "cannot reach the node at {url} ({reason}); start one with `toychain devnet` \
                 or point --rpc at a running node"
            ),
            RpcCallError::Rpc { code, message } => {
                anyhow::anyhow!("the node refused {method}: {message} (rpc error {code})")
            }
            other => anyhow::anyhow!(other),
        })
    }
}
