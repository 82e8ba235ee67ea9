//! Running the binary, finding free ports, talking JSON-RPC, and a devnet that stops
//! itself when dropped.

use config::{ChainSpec, EngineKind, EngineSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_toychain");

/// How long one CLI run may take before the test calls it hung.
const RUN_DEADLINE: Duration = Duration::from_secs(150);
/// How long a devnet may take to serve RPC on a busy 2-core CI machine.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// What a finished run of the binary printed, and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn assert_ok(&self, what: &str) -> &Output {
        assert_eq!(
            self.code, 0,
            "{what} failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `toychain ARGS…` to completion (killed after a deadline).
pub fn toychain(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the toychain binary starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for toychain") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("toychain {args:?} did not finish within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `toychain wallet --rpc URL ARGS…`, with a keystore folder that holds nothing, so no
/// key on the machine running the tests can change what a name means.
pub fn wallet(rpc: &str, args: &[&str]) -> Output {
    let empty = std::env::temp_dir().join(format!("toychain-it-no-keys-{}", std::process::id()));
    let empty = empty.to_str().expect("temp path is UTF-8");
    let mut all = vec!["wallet", "--rpc", rpc, "--wallet-dir", empty];
    all.extend_from_slice(args);
    toychain(&all)
}

/// The first of `n` consecutive ports that are free right now (outside the system's
/// ephemeral range, so no connection opened meanwhile takes them; see `node::ports`).
pub fn free_ports(n: u16) -> u16 {
    node::ports::free_ports(usize::from(n)).expect("free ports on 127.0.0.1")
}

/// A port nothing listens on right now.
pub fn closed_port() -> u16 {
    free_ports(1)
}

/// Polls `check` until it returns `Some`, or fails the test naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One JSON-RPC call; the error object or transport failure as text.
pub fn rpc(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut response = ureq::post(url)
        .send_json(&body)
        .map_err(|e| e.to_string())?;
    let answer: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    if let Some(error) = answer.get("error") {
        return Err(error.to_string());
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| format!("no result in {answer}"))
}

/// An account's (balance in base units, nonce) on the node at `url`.
pub fn account(url: &str, name: &str) -> (u64, u64) {
    let address = chain::dev::dev_address(name).expect("a dev account");
    let value =
        rpc(url, "state_getAccount", json!([address.to_string()])).expect("state_getAccount");
    (
        value["balance"].as_u64().expect("balance"),
        value["nonce"].as_u64().expect("nonce"),
    )
}

pub fn mempool_size(url: &str) -> u64 {
    rpc(url, "node_status", json!([])).expect("node_status")["mempool_size"]
        .as_u64()
        .expect("mempool_size")
}

/// The dev spec with proof of work as easy as the limit allows (about two hashes a block),
/// so blocks follow transactions at once, under `chain_id`.
pub fn easy_spec(chain_id: u64) -> String {
    easy_chain_spec(chain_id).to_toml()
}

/// [`easy_spec`] as a value.
pub fn easy_chain_spec(chain_id: u64) -> ChainSpec {
    let mut spec = ChainSpec::dev(EngineKind::Pow);
    spec.chain_id = chain_id;
    let mut p = miner::pow::PowParams::devnet();
    p.genesis_bits = miner::pow::CompactTarget::from_consensus(0x207f_ffff);
    p.pow_limit = miner::pow::CompactTarget::from_consensus(0x207f_ffff);
    p.target_block_time = 1;
    spec.engine = EngineSpec::Pow(p);
    spec
}

fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    let _ = kill(Pid::from_raw(pid), sig);
}

/// SIGTERM, then SIGKILL after `grace`; the exit status if it ended in time.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A `toychain devnet` launcher; dropping it stops the launcher (and so its nodes).
pub struct Devnet {
    pub launcher: Child,
    pub rpc: Vec<String>,
    out: PathBuf,
    err: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Devnet {
    /// A new devnet of `nodes` nodes on the easy test chain, in a temp dir, ready to use.
    pub fn start(nodes: u16) -> Devnet {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_owned();
        write_easy_spec(&dir);
        let mut devnet = Devnet::launch(&dir, nodes, free_ports(nodes), free_ports(nodes), &[]);
        devnet._tmp = Some(tmp);
        devnet.wait_ready();
        devnet.wait_for_mesh();
        devnet
    }

    /// A new devnet of `nodes` nodes on the dev chain of `engine` with 1 s blocks (node i
    /// signs as dev account i), in a temp dir, ready to use.
    pub fn start_engine(nodes: u16, engine: &str) -> Devnet {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut devnet = Devnet::launch(
            tmp.path(),
            nodes,
            free_ports(nodes),
            free_ports(nodes),
            &["--engine", engine, "--block-time", "1"],
        );
        devnet._tmp = Some(tmp);
        devnet.wait_ready();
        devnet.wait_for_mesh();
        devnet
    }

    /// Waits until every node has a peer, so a tx sent to one node reaches the others.
    pub fn wait_for_mesh(&self) {
        for url in &self.rpc {
            wait_for("every node to have a peer", Duration::from_secs(30), || {
                let status = rpc(url, "node_status", json!([])).ok()?;
                (self.rpc.len() < 2 || status["peers"].as_u64()? >= 1).then_some(())
            });
        }
    }

    /// Starts a launcher on `dir` (not waiting); `--on-demand` and a duration cap always.
    pub fn launch(dir: &Path, nodes: u16, rpc_port: u16, p2p_port: u16, extra: &[&str]) -> Devnet {
        let out = dir.join(format!("launcher-{rpc_port}.out"));
        let err = dir.join(format!("launcher-{rpc_port}.err"));
        let launcher = Command::new(BIN)
            .arg("devnet")
            .args(["--nodes", &nodes.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--rpc-port", &rpc_port.to_string()])
            .args(["--p2p-port", &p2p_port.to_string()])
            .args(["--on-demand", "--duration", "240"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("launcher stdout file"))
            .stderr(std::fs::File::create(&err).expect("launcher stderr file"))
            .spawn()
            .expect("the launcher starts");
        Devnet {
            launcher,
            rpc: (0..nodes)
                .map(|i| format!("http://127.0.0.1:{}", rpc_port + i))
                .collect(),
            out,
            err,
            _tmp: None,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the banner the launcher prints once every node serves RPC.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.stdout().contains("Ctrl-C stops every node") {
                return;
            }
            if let Ok(Some(status)) = self.launcher.try_wait() {
                panic!(
                    "the launcher exited ({status}) before its nodes were up\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "devnet not ready within {READY_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C's equivalent: SIGTERM, and the launcher's exit status.
    pub fn stop(&mut self) -> ExitStatus {
        stop_child(&mut self.launcher, Duration::from_secs(30)).unwrap_or_else(|| {
            panic!(
                "the launcher did not stop within 30 s of SIGTERM\nstdout:\n{}",
                self.stdout()
            )
        })
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        stop_child(&mut self.launcher, Duration::from_secs(20));
    }
}

/// Writes the easy test spec where the launcher looks for a stored spec.
pub fn write_easy_spec(dir: &Path) {
    let engine_dir = dir.join("pow");
    std::fs::create_dir_all(&engine_dir).expect("devnet dir");
    std::fs::write(
        engine_dir.join("spec.toml"),
        easy_spec(config::DEV_CHAIN_ID),
    )
    .expect("spec");
}

/// A single `toychain node` (no author) on its own chain spec; stopped when dropped.
pub struct LoneNode {
    child: Child,
    pub rpc: String,
    _tmp: tempfile::TempDir,
}

impl LoneNode {
    pub fn start(spec_toml: &str) -> LoneNode {
        LoneNode::start_prepared(spec_toml, |_| {})
    }

    /// [`LoneNode::start`] after `prepare` has filled the node's data dir (a prebuilt
    /// chain in `data/db`).
    pub fn start_prepared(spec_toml: &str, prepare: impl FnOnce(&Path)) -> LoneNode {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tmp.path().join("data")).expect("data dir");
        prepare(&tmp.path().join("data"));
        let spec = tmp.path().join("spec.toml");
        std::fs::write(&spec, spec_toml).expect("spec");
        let (rpc_port, p2p_port) = (free_ports(1), free_ports(1));
        let log = std::fs::File::create(tmp.path().join("node.log")).expect("log");
        let child = Command::new(BIN)
            .arg("node")
            .arg("--chain")
            .arg(&spec)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["--rpc-addr", &format!("127.0.0.1:{rpc_port}")])
            .args(["--p2p-listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the node starts");
        let node = LoneNode {
            child,
            rpc: format!("http://127.0.0.1:{rpc_port}"),
            _tmp: tmp,
        };
        wait_for("the lone node's RPC", READY_DEADLINE, || {
            rpc(&node.rpc, "chain_info", json!([])).ok()
        });
        node
    }
}

impl Drop for LoneNode {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(20));
    }
}

/// `true` when `pid` no longer runs (gone, or a zombie nobody has reaped yet).
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name, which may contain spaces.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X" | "x"))
        }
    }
}

/// Every process id in /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Processes whose parent is `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A Prometheus counter of the node at `rpc` (its `/metrics`).
pub fn metrics_counter(rpc: &str, name: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let metrics = agent
        .get(format!("{rpc}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A bare libp2p peer of the chain of the node at `rpc`, connected to it (a fresh identity
/// each time, so a ban of one does not stop the next).
pub async fn connect_fake_peer(rpc: &str) -> net::Client {
    let info = self::rpc(rpc, "chain_info", json!([])).expect("info");
    let genesis_hash =
        chain::BlockHash::from_hex(info["genesis_hash"].as_str().expect("hash")).expect("hex");
    let status = self::rpc(rpc, "node_status", json!([])).expect("status");
    let addr: net::Multiaddr = status["listen_addrs"][0]
        .as_str()
        .expect("a listen address")
        .parse()
        .expect("multiaddr");
    let mut config = net::NetworkConfig::new(net::Keypair::generate_ed25519(), genesis_hash);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    let (client, mut events, event_loop) = net::new(config).expect("net");
    tokio::spawn(event_loop.run());
    client.dial(addr).await.expect("dial");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < until, "never connected");
        if let Ok(Some(net::Event::PeerConnected { .. })) =
            tokio::time::timeout(Duration::from_millis(500), events.next()).await
        {
            break;
        }
    }
    // Keep draining events so the peer's channel never fills.
    tokio::spawn(async move { while events.next().await.is_some() {} });
    client
}
