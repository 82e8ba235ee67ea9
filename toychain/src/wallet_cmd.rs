//! `toychain wallet`: keys in the encrypted keystore, balances and history from a node,
//! and signed transactions sent to it.
//!
//! Everything local is checked before the node is asked anything (names, addresses with
//! their checksum, amounts), and everything the node knows is checked before a key is
//! unlocked or a transaction is signed (chain id, balance ≥ amount + fee). So every refusal
//! happens before anything is sent. The nonce is the node's `pending_nonce`, which counts
//! the sender's transactions still waiting in the mempool, so two quick sends both land.
//!
//! Exit codes follow the binary's: 2 for what the user typed wrong ([`UsageError`]), 1 for
//! what the node or the machine refused.

use crate::UsageError;
use anyhow::anyhow;
use chain::dev::{DEV_ACCOUNTS, dev_address};
use chain::{Address, Amount, Canonical, ChainId, SecretKey, Transaction};
use clap::{Args, Subcommand};
use node::rpc_client::{RpcCallError, RpcClient};
use node::run::DEFAULT_WALLET_DIR;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wallet::{Keystore, PasswordSource, WalletError};

/// Where the wallet finds a node when `--rpc` is not given: node 0 of `toychain devnet`.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:8545";
/// Help heading of the options every wallet command takes.
const GLOBAL: &str = "Node and keystore";
/// How long one RPC call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--wait` asks whether the transaction is in a block.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// How long `--wait` accepts the node not knowing the transaction at all (neither pending
/// nor included) before it calls it dropped. A reorg puts a transaction back into the
/// mempool, so `unknown` is only ever brief for a transaction that is still alive.
const UNKNOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
#[command(
    about = "Keys and transactions: new, list, address, balance, send, history, votes",
    long_about = "Keys and transactions. Accounts are given as a dev account name (alice … heidi), \
                  a keystore key name or a toy1… address; amounts in decimal TOY (1 TOY = \
                  100,000,000 base units)."
)]
pub struct WalletArgs {
    /// JSON-RPC URL of the node to ask and send to.
    #[arg(long, global = true, default_value = DEFAULT_RPC_URL, value_name = "URL", help_heading = GLOBAL)]
    pub rpc: String,
    /// Keystore folder.
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub wallet_dir: Option<PathBuf>,
    /// Read keystore passwords from the first line of this file instead of prompting.
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub password_file: Option<PathBuf>,
    /// Refuse to sign for a node whose chain id is not this one.
    #[arg(long, global = true, value_name = "ID", help_heading = GLOBAL)]
    pub chain_id: Option<u64>,
    #[command(subcommand)]
    pub command: WalletCommand,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Make a random key and store it encrypted in the keystore (name defaults to key1, key2, …).
    New {
        /// Name of the key: 1–32 of a-z 0-9 _ -.
        name: Option<String>,
    },
    /// List the keystore's keys and the dev accounts, with their addresses.
    List,
    /// Print the address of a key, a dev account or (checked) an address.
    Address {
        /// Key name, dev account name or toy1… address.
        name: String,
    },
    /// Show the balance (decimal TOY) and nonce of an account.
    Balance {
        /// Address, dev account name or key name.
        account: String,
    },
    /// Send TOY to an account.
    Send {
        /// Key or dev account that pays and signs.
        #[arg(long)]
        from: String,
        /// Address, dev account name or key name that receives.
        #[arg(long)]
        to: String,
        /// Amount in decimal TOY, e.g. 1.5 (at most 8 decimals).
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// Transactions from or to an account in the node's recent blocks, newest first.
    History {
        /// Address, dev account name or key name.
        account: String,
        /// Show at most this many transactions.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// DPoS: make an account a delegate that can be voted into the producer set.
    RegisterDelegate {
        /// Key or dev account that registers and signs.
        #[arg(long)]
        from: String,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// DPoS: vote for delegates with the account's stake.
    Vote {
        /// Key or dev account that votes and signs.
        #[arg(long)]
        from: String,
        /// Delegates to vote for (addresses or names).
        #[arg(required = true)]
        delegates: Vec<String>,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// DPoS: withdraw the account's votes from delegates.
    Unvote {
        /// Key or dev account that withdraws and signs.
        #[arg(long)]
        from: String,
        /// Delegates to withdraw votes from (addresses or names).
        #[arg(required = true)]
        delegates: Vec<String>,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// PoA, PBFT and Raft: as an authority (a validator, a server), vote to add (or with
    /// --remove, to remove) one; a majority of PoA authorities, 2f + 1 PBFT validators or a
    /// majority of Raft servers decides, from the next height.
    ProposeAuthority {
        /// Authority key or dev account that votes and signs.
        #[arg(long)]
        from: String,
        /// The account to add or remove.
        address: String,
        /// Vote to remove the account instead of adding it.
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// Show whether a transaction is pending or in a block.
    Tx {
        /// Transaction hash (hex).
        hash: String,
    },
}

/// Fee and waiting, shared by every command that sends a transaction.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Fee in decimal TOY [default: 0.0001].
    #[arg(long, allow_hyphen_values = true)]
    fee: Option<String>,
    /// Wait until the transaction is in a block, then print its height and block hash.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    wait_timeout: u64,
}

impl WalletArgs {
    /// Runs `toychain wallet`.
    pub fn execute(self) -> anyhow::Result<()> {
        let wallet = Wallet::new(&self)?;
        match self.command {
            WalletCommand::New { name } => wallet.new_key(name),
            WalletCommand::List => wallet.list(),
            WalletCommand::Address { name } => {
                println!("{}", wallet.address(&name)?);
                Ok(())
            }
            WalletCommand::Balance { account } => wallet.balance(&account),
            WalletCommand::Send {
                from,
                to,
                amount,
                submit,
            } => {
                let amount = parse_amount("--amount", &amount)?;
                if amount == Amount::ZERO {
                    return Err(usage(
                        "--amount 0 would only pay the fee; send more than 0 TOY",
                    ));
                }
                let to_address = wallet.address(&to)?;
                let what = format!("{} to {}", toy(amount), wallet.label(&to, to_address));
                wallet.submit(&from, amount, &submit, &what, |key, chain, nonce, fee| {
                    wallet::build_transfer(key, chain, nonce, to_address, amount, fee)
                })
            }
            WalletCommand::History { account, limit } => wallet.history(&account, limit),
            WalletCommand::RegisterDelegate { from, submit } => wallet.submit(
                &from,
                Amount::ZERO,
                &submit,
                "register-delegate",
                wallet::build_register_delegate,
            ),
            WalletCommand::Vote {
                from,
                delegates,
                submit,
            } => vote(
                &wallet,
                &from,
                &delegates,
                &submit,
                "vote for",
                wallet::build_vote,
            ),
            WalletCommand::Unvote {
                from,
                delegates,
                submit,
            } => vote(
                &wallet,
                &from,
                &delegates,
                &submit,
                "unvote",
                wallet::build_unvote,
            ),
            WalletCommand::ProposeAuthority {
                from,
                address,
                remove,
                submit,
            } => {
                let target = wallet.address(&address)?;
                let what = format!(
                    "propose to {} authority {}",
                    if remove { "remove" } else { "add" },
                    wallet.label(&address, target)
                );
                wallet.submit(
                    &from,
                    Amount::ZERO,
                    &submit,
                    &what,
                    |key, chain, nonce, fee| {
                        wallet::build_propose_authority(key, chain, nonce, target, !remove, fee)
                    },
                )
            }
            WalletCommand::Tx { hash } => wallet.tx_status(&hash),
        }
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// A wallet error as the CLI reports it: the user's mistake (exit 2) or the machine's (1).
fn wallet_error(e: WalletError) -> anyhow::Error {
    if e.is_user_input() {
        usage(e.to_string())
    } else {
        anyhow!(e)
    }
}

fn parse_amount(flag: &str, text: &str) -> anyhow::Result<Amount> {
    Amount::parse_toy(text).map_err(|e| {
        usage(format!(
            "{flag}: {e}; write decimal TOY such as 1.5 (at most 8 decimals)"
        ))
    })
}

fn toy(amount: Amount) -> String {
    format!("{} TOY", amount.to_toy_string())
}

/// Votes and unvotes: the same flow, another tx kind.
fn vote(
    wallet: &Wallet,
    from: &str,
    delegates: &[String],
    submit: &SubmitArgs,
    verb: &str,
    build: fn(&SecretKey, ChainId, u64, Vec<Address>, Amount) -> wallet::Result<Transaction>,
) -> anyhow::Result<()> {
    let delegates = wallet.addresses(delegates)?;
    let what = format!("{verb} {}", list_addresses(&delegates));
    wallet.submit(
        from,
        Amount::ZERO,
        submit,
        &what,
        |key, chain, nonce, fee| build(key, chain, nonce, delegates, fee),
    )
}

fn list_addresses(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(|a| label_of(a, None))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `alice (toy1…)` for a dev account, `key1 (toy1…)` for a named key, else the address.
fn label_of(address: &Address, name: Option<&str>) -> String {
    let dev = DEV_ACCOUNTS
        .iter()
        .find(|n| dev_address(n).as_ref() == Some(address));
    match (name, dev) {
        (_, Some(dev)) => format!("{dev} ({address})"),
        (Some(name), None) if !name.to_ascii_lowercase().starts_with("toy1") => {
            format!("{name} ({address})")
        }
        _ => address.to_string(),
    }
}

/// Normalises `--rpc`: a bare `HOST:PORT` means plain HTTP; only HTTP is spoken.
fn rpc_url(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if !text.contains("://") {
        return Ok(format!("http://{text}"));
    }
    if text.starts_with("http://") {
        return Ok(text.to_owned());
    }
    Err(usage(format!(
        "--rpc {text:?}: the node's RPC speaks plain http; give http://HOST:PORT"
    )))
}

/// An account as the node sees it.
#[derive(Debug)]
struct AccountState {
    balance: Amount,
    nonce: u64,
    pending_nonce: u64,
}

struct Wallet {
    keystore: Keystore,
    password: PasswordSource,
    client: RpcClient,
    expected_chain: Option<u64>,
}

impl Wallet {
    fn new(args: &WalletArgs) -> anyhow::Result<Wallet> {
        let dir = args
            .wallet_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_WALLET_DIR));
        let keystore = Keystore::open(dir).map_err(wallet_error)?;
        let password = match &args.password_file {
            Some(path) => PasswordSource::File(path.clone()),
            None => PasswordSource::Prompt,
        };
        Ok(Wallet {
            keystore,
            password,
            client: RpcClient::new(&rpc_url(&args.rpc)?, RPC_TIMEOUT),
            expected_chain: args.chain_id,
        })
    }

    fn address(&self, input: &str) -> anyhow::Result<Address> {
        wallet::resolve_address(input, &self.keystore).map_err(wallet_error)
    }

    fn addresses(&self, inputs: &[String]) -> anyhow::Result<Vec<Address>> {
        inputs.iter().map(|i| self.address(i)).collect()
    }

    fn label(&self, input: &str, address: Address) -> String {
        label_of(&address, Some(input.trim()))
    }

    /// One RPC call; failures say which node and what to do.
    fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.client.call_explained(method, params)
    }

    fn bad_answer(&self, method: &str, what: &str) -> anyhow::Error {
        anyhow!(
            "node at {} answered {method} without a valid {what}; is it a toychain node?",
            self.client.url()
        )
    }

    fn u64_field(&self, value: &Value, method: &str, key: &str) -> anyhow::Result<u64> {
        value
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad_answer(method, key))
    }

    fn str_field<'v>(&self, value: &'v Value, method: &str, key: &str) -> anyhow::Result<&'v str> {
        value
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad_answer(method, key))
    }

    /// The node's chain id, refused when `--chain-id` names another.
    fn chain_id(&self) -> anyhow::Result<ChainId> {
        let info = self.call("chain_info", json!([]))?;
        let id = self.u64_field(&info, "chain_info", "chain_id")?;
        if let Some(expected) = self.expected_chain
            && expected != id
        {
            return Err(anyhow!(
                "wrong chain: the node at {} is on chain id {id}, not {expected} (--chain-id); \
                 nothing was signed or sent — point --rpc at a node of chain {expected}",
                self.client.url()
            ));
        }
        Ok(ChainId(id))
    }

    fn account(&self, address: &Address) -> anyhow::Result<AccountState> {
        let method = "state_getAccount";
        let value = self.call(method, json!([address.to_string()]))?;
        let nonce = self.u64_field(&value, method, "nonce")?;
        Ok(AccountState {
            balance: Amount(self.u64_field(&value, method, "balance")?),
            nonce,
            // Older nodes without the field: the confirmed nonce is the best guess.
            pending_nonce: value
                .get("pending_nonce")
                .and_then(Value::as_u64)
                .unwrap_or(nonce),
        })
    }

    fn new_key(&self, name: Option<String>) -> anyhow::Result<()> {
        let name = match name {
            Some(name) => {
                wallet::validate_name(&name).map_err(wallet_error)?;
                name
            }
            None => (1u32..)
                .map(|i| format!("key{i}"))
                .find(|n| !self.keystore.contains(n))
                .expect("some keyN name is free"),
        };
        if self.keystore.contains(&name) {
            return Err(usage(format!(
                "a key named {name} already exists in {}; choose another name",
                self.keystore.dir().display()
            )));
        }
        let password = self.password.for_create(&name).map_err(wallet_error)?;
        let address = self
            .keystore
            .generate(&name, &password)
            .map_err(wallet_error)?;
        let path = self.keystore.path_of(&name).map_err(wallet_error)?;
        println!("created key {name}: {address}");
        println!("stored encrypted in {}", path.display());
        Ok(())
    }

    fn list(&self) -> anyhow::Result<()> {
        let keys = self.keystore.list().map_err(wallet_error)?;
        let dir = self.keystore.dir().display();
        if keys.is_empty() {
            println!("keystore {dir}: no keys yet (make one with `toychain wallet new`)");
        } else {
            println!("keystore {dir}:");
            for (name, address) in &keys {
                println!("  {name:<10} {address}");
            }
        }
        println!("dev accounts (well-known keys, for dev chains only):");
        for name in DEV_ACCOUNTS {
            if let Some(address) = dev_address(name) {
                println!("  {name:<10} {address}");
            }
        }
        Ok(())
    }

    fn balance(&self, input: &str) -> anyhow::Result<()> {
        let address = self.address(input)?;
        let account = self.account(&address)?;
        let pending = account.pending_nonce.saturating_sub(account.nonce);
        let pending = if pending > 0 {
            format!(", {pending} tx pending")
        } else {
            String::new()
        };
        println!(
            "{}: {} (nonce {}{pending})",
            self.label(input, address),
            toy(account.balance),
            account.nonce
        );
        Ok(())
    }

    fn history(&self, input: &str, limit: u64) -> anyhow::Result<()> {
        let address = self.address(input)?;
        let method = "account_history";
        let value = self.call(method, json!([address.to_string(), limit]))?;
        let txs = value
            .get("txs")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_answer(method, "txs"))?;
        let label = self.label(input, address);
        let scanned = value
            .get("scanned_from")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if txs.is_empty() {
            println!("no transactions of {label} in blocks from height {scanned} on");
            return Ok(());
        }
        println!("transactions of {label}, newest first:");
        let me = address.to_string();
        for tx in txs {
            let height = self.u64_field(tx, method, "height")?;
            let hash = self.str_field(tx, method, "hash")?;
            let kind = self.str_field(tx, method, "kind")?;
            let from = self.str_field(tx, method, "from")?;
            let fee = Amount(self.u64_field(tx, method, "fee")?);
            let nonce = self.u64_field(tx, method, "nonce")?;
            let detail = match tx.get("to").and_then(Value::as_str) {
                Some(to) => {
                    let amount = toy(Amount(self.u64_field(tx, method, "amount")?));
                    let peer = |a: &str| {
                        Address::parse(a).map_or_else(|_| a.to_owned(), |a| label_of(&a, None))
                    };
                    if from == me && to == me {
                        format!("self {amount}")
                    } else if from == me {
                        format!("out {amount} to {}", peer(to))
                    } else {
                        format!("in  {amount} from {}", peer(from))
                    }
                }
                None => kind.to_owned(),
            };
            let fee = if from == me {
                format!(" · fee {} · nonce {nonce}", toy(fee))
            } else {
                String::new()
            };
            let short = hash.get(..12).unwrap_or(hash);
            println!("  #{height:<6} {short}  {detail}{fee}");
        }
        Ok(())
    }

    fn tx_status(&self, hash: &str) -> anyhow::Result<()> {
        let hash = hash.trim();
        let hash = chain::TxHash::from_hex(hash)
            .map_err(|e| usage(format!("{e}; give the hash `send` printed")))?
            .to_hex();
        let status = self.call("tx_get", json!([hash]))?;
        match self.str_field(&status, "tx_get", "status")? {
            "included" => println!("{}", self.included_line(&status)?),
            "pending" => println!("tx {hash} is pending in the node's mempool"),
            _ => println!("tx {hash} is unknown to the node at {}", self.client.url()),
        }
        Ok(())
    }

    fn included_line(&self, status: &Value) -> anyhow::Result<String> {
        let height = self.u64_field(status, "tx_get", "height")?;
        let block = self.str_field(status, "tx_get", "block_hash")?;
        let confirmations = self.u64_field(status, "tx_get", "confirmations")?;
        let plural = if confirmations == 1 { "" } else { "s" };
        Ok(format!(
            "included at height {height} in block {block} ({confirmations} confirmation{plural})"
        ))
    }

    /// Checks, signs with `build`, submits and (with `--wait`) waits. `amount` is what the
    /// transaction moves on top of its fee.
    fn submit(
        &self,
        from: &str,
        amount: Amount,
        args: &SubmitArgs,
        what: &str,
        build: impl FnOnce(&SecretKey, ChainId, u64, Amount) -> wallet::Result<Transaction>,
    ) -> anyhow::Result<()> {
        let (fee, fee_note) = match &args.fee {
            Some(text) => (parse_amount("--fee", text)?, ""),
            None => (wallet::DEFAULT_FEE, " (default; set with --fee)"),
        };
        let from_address = self.address(from)?;
        let from_label = self.label(from, from_address);
        let total = amount.checked_add(fee).ok_or_else(|| {
            usage(format!(
                "amount {} plus fee {} is more than any balance can hold",
                toy(amount),
                toy(fee)
            ))
        })?;

        let chain_id = self.chain_id()?;
        let account = self.account(&from_address)?;
        if account.balance < total {
            let needs = if amount == Amount::ZERO {
                format!("the fee of {}", toy(fee))
            } else {
                format!("{} + fee {} = {}", toy(amount), toy(fee), toy(total))
            };
            return Err(anyhow!(
                "insufficient balance: {from_label} has {} but needs {needs}; nothing was sent",
                toy(account.balance)
            ));
        }

        let key =
            wallet::resolve_signer(from, &self.keystore, &self.password).map_err(wallet_error)?;
        if key.address() != from_address {
            return Err(anyhow!(
                "the key of {from} signs as {}, not {from_address}; its keystore file is damaged",
                key.address()
            ));
        }
        let nonce = account.pending_nonce;
        let tx = build(&key, chain_id, nonce, fee).map_err(wallet_error)?;
        drop(key);
        println!(
            "{from_label}: {what} · fee {}{fee_note} · nonce {nonce} · chain {}",
            toy(fee),
            chain_id.0
        );
        let answer = self
            .client
            .call("tx_submit", json!([hex::encode(tx.encode())]))
            .map_err(|e| match e {
                RpcCallError::Rpc { code, message } => anyhow!(
                    "the node refused the transaction: {message} (rpc error {code}); nothing was sent"
                ),
                RpcCallError::Unreachable { url, reason } => anyhow!(
                    "cannot reach the node at {url} to submit ({reason}); the transaction may not \
                     have been sent: check with `toychain wallet balance {from}`"
                ),
                other => anyhow!(other),
            })?;
        let hash = answer
            .get("hash")
            .and_then(Value::as_str)
            .map_or_else(|| tx.hash().to_hex(), str::to_owned);
        println!("submitted tx {hash}");
        if args.wait {
            self.wait_included(&hash, Duration::from_secs(args.wait_timeout))?;
        }
        Ok(())
    }

    /// Polls `tx_get` until the transaction is in a block of the node's best chain.
    fn wait_included(&self, hash: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut unknown_since: Option<Instant> = None;
        loop {
            let status = self.call("tx_get", json!([hash]))?;
            match self.str_field(&status, "tx_get", "status")? {
                "included" => {
                    println!("{}", self.included_line(&status)?);
                    return Ok(());
                }
                "pending" => unknown_since = None,
                _ => {
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > UNKNOWN_GRACE {
                        return Err(anyhow!(
                            "tx {hash} is no longer known to the node at {} (dropped from its \
                             mempool?); check the balance before sending again",
                            self.client.url()
                        ));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "tx {hash} is still not in a block after {} s; it may yet be included: \
                     check with `toychain wallet tx {hash}`",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(WAIT_POLL);
        }
    }
}
