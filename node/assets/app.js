// The toychain dashboard: every node of a devnet side by side, live over each node's
// JSON-RPC WebSocket (ordinary calls and the chain_subscribe* subscriptions). Built with
// Preact + htm (vendored, see vendor/); no build step, no network beyond the nodes.
import { html, render, useState, useEffect } from "/assets/htm-preact-standalone.module.js";
import { EnginePanel, loadPanel } from "/assets/panels.js";

const params = new URLSearchParams(location.search);
/** The nodes to show: `?nodes=host:port,host:port`, else the node that served the page. */
const NODES = (params.get("nodes") || location.host)
  .split(",")
  .map((s) => s.trim().replace(/^(https?|wss?):\/\//, "").replace(/\/$/, ""))
  .filter((s) => s.length > 0);
/** How many confirmations make a block "k-confirmed" on the tree. */
const K = Math.max(1, Number(params.get("k")) || 6);
/** Heights of the tree kept on screen. */
const WINDOW = Math.max(5, Number(params.get("window")) || 24);
const POLL_MS = 2000;
const COLORS = ["#2b7bb9", "#d9822b", "#3c9d4e", "#a845b5", "#c23b3b", "#6b6b6b", "#128a8a", "#8a6d12"];

// ---- the store: plain data, and one counter that makes the page render again ----
const store = {
  nodes: NODES.map((addr, i) => ({
    i, addr, connected: false, error: null, info: null, status: null, peers: [],
    head: null, finalized: null, explainHead: null,
  })),
  blocks: new Map(), // hash -> block (chain_getBlock's fields) + seenBy, reorged
  reorgs: [], // newest first: {node, depth, fork_point, old_head, new_head, at}
  selected: null, // {hash, block, explain, node} of the clicked block
  account: null, // {address, account, history} or {error}
  tx: null,
  panel: null, // the engine panel's data (see panels.js), from the first live node's head
};
let version = 0;
const listeners = new Set();
function changed() {
  version += 1;
  for (const l of listeners) l(version);
}

// ---- one WebSocket per node: calls answered by id, notifications by subscription ----
class NodeConn {
  constructor(node) {
    this.node = node;
    this.nextId = 1;
    this.pending = new Map();
    this.subs = new Map();
    this.retry = 500;
    this.open();
  }

  open() {
    const ws = new WebSocket(`ws://${this.node.addr}/`);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      this.node.connected = true;
      this.node.error = null;
      changed();
      start(this).catch((e) => this.fail(e));
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    ws.onclose = () => {
      this.node.connected = false;
      for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
      this.pending.clear();
      this.subs.clear();
      changed();
      setTimeout(() => this.open(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
    // A refused connection also closes; onclose retries, nothing to report twice.
    ws.onerror = () => {
      this.node.error = `cannot reach ws://${this.node.addr}/`;
    };
  }

  fail(e) {
    this.node.error = String(e.message || e);
    changed();
  }

  receive(msg) {
    if (Array.isArray(msg)) return msg.forEach((m) => this.receive(m));
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else resolve(msg.result);
    } else if (msg.params && this.subs.has(msg.params.subscription)) {
      this.subs.get(msg.params.subscription)(msg.params.result);
    }
  }

  call(method, params = []) {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  async subscribe(method, onResult) {
    const id = await this.call(method);
    this.subs.set(id, onResult);
  }
}

function addBlock(b, nodeIndex) {
  const known = store.blocks.get(b.hash);
  if (known) {
    known.seenBy.add(nodeIndex);
    return;
  }
  store.blocks.set(b.hash, { ...b, seenBy: new Set([nodeIndex]), reorged: false });
  // Keep the map small: what is far below every head is gone from the tree anyway.
  const top = Math.max(...store.nodes.map((n) => (n.head ? n.head.height : 0)), b.height);
  for (const [hash, blk] of store.blocks) {
    if (blk.height < top - WINDOW * 3) store.blocks.delete(hash);
  }
}

/** What a node's connection does once open: the recent chain, then subscriptions. */
async function start(conn) {
  const node = conn.node;
  await refresh(conn);
  const top = node.info.height;
  const from = Math.max(0, top - WINDOW + 1);
  for (let h = from; h <= top; h++) addBlock(await conn.call("chain_getBlock", [h]), node.i);
  node.head = { height: top, hash: node.info.head_hash };
  await conn.subscribe("chain_subscribeNewHeads", (b) => {
    addBlock(b, node.i);
    node.head = { height: b.height, hash: b.hash };
    conn.call("engine_explain", [b.hash]).then((x) => { node.explainHead = x; changed(); }, () => {});
    schedulePanel();
    changed();
  });
  await conn.subscribe("chain_subscribeReorgs", (r) => {
    for (const id of r.reverted) {
      const blk = store.blocks.get(id.hash);
      if (blk) blk.reorged = true;
    }
    store.reorgs.unshift({ node: node.i, at: new Date().toLocaleTimeString(), ...r });
    store.reorgs.length = Math.min(store.reorgs.length, 50);
    changed();
  });
  await conn.subscribe("chain_subscribeFinalized", (f) => {
    node.finalized = f;
    changed();
  });
  schedulePanel();
  changed();
}

/** The slower-moving facts: status, peers, chain info. */
async function refresh(conn) {
  const node = conn.node;
  const [info, status, peers] = await Promise.all([
    conn.call("chain_info"), conn.call("node_status"), conn.call("net_peers"),
  ]);
  node.info = info;
  node.status = status;
  node.peers = peers;
  if (info.finalized_height !== null && info.finalized_height !== undefined) {
    node.finalized = { height: info.finalized_height, hash: info.finalized_hash };
  }
  changed();
}

const conns = store.nodes.map((n) => new NodeConn(n));
setInterval(() => {
  for (const c of conns) if (c.node.connected) refresh(c).catch((e) => c.fail(e));
  schedulePanel();
}, POLL_MS);

// The engine panel is read from the first live node; one load at a time, and heads that
// arrive meanwhile make one more load when it ends.
let panelLoading = false;
let panelAgain = false;
function schedulePanel() {
  if (panelLoading) {
    panelAgain = true;
    return;
  }
  const conn = conns.find((c) => c.node.connected && c.node.info && c.node.head);
  if (!conn) return;
  panelLoading = true;
  const extra = store.account && !store.account.error ? [store.account.address] : [];
  loadPanel(conn, conn.node, store.nodes, extra)
    .then((p) => { store.panel = p; }, (e) => {
      store.panel = { ...(store.panel || { engine: conn.node.info.engine, node: conn.node.i }), error: String(e.message || e) };
    })
    .finally(() => {
      panelLoading = false;
      changed();
      if (panelAgain) {
        panelAgain = false;
        schedulePanel();
      }
    });
}

async function selectBlock(hash) {
  const blk = store.blocks.get(hash);
  const i = blk ? [...blk.seenBy][0] : 0;
  const conn = conns[i] || conns[0];
  store.selected = { hash, node: i, block: null, explain: null, error: null };
  changed();
  try {
    const [block, explain] = await Promise.all([
      conn.call("chain_getBlock", [hash]), conn.call("engine_explain", [hash]),
    ]);
    if (store.selected && store.selected.hash === hash) Object.assign(store.selected, { block, explain });
  } catch (e) {
    if (store.selected && store.selected.hash === hash) store.selected.error = String(e.message);
  }
  changed();
}

async function lookupAccount(address) {
  try {
    const [account, history] = await Promise.all([
      conns[0].call("state_getAccount", [address]), conns[0].call("account_history", [address, 20]),
    ]);
    store.account = { address, account, history };
  } catch (e) {
    store.account = { address, error: String(e.message) };
  }
  schedulePanel();
  changed();
}

async function lookupTx(hash) {
  try {
    store.tx = { hash, result: await conns[0].call("tx_get", [hash]) };
  } catch (e) {
    store.tx = { hash, error: String(e.message) };
  }
  changed();
}

// ---- views ----
const short = (h) => (h ? `${h.slice(0, 8)}…` : "—");

function Fields({ obj }) {
  if (!obj) return null;
  return html`<table class="fields">${Object.entries(obj).map(([k, v]) => html`
    <tr><th>${k}</th><td>${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}</td></tr>`)}
  </table>`;
}

function NodeCard({ node }) {
  const s = node.status || {};
  const voting = s.voting;
  return html`<section class="card node" data-node=${node.i} style=${`border-top: 4px solid ${COLORS[node.i % COLORS.length]}`}>
    <h2>node ${node.i} <small>${node.addr}</small>
      <span class=${node.connected ? "ok" : "bad"}>${node.connected ? "live" : "offline"}</span></h2>
    ${node.error && html`<p class="bad">${node.error}</p>`}
    <dl>
      <dt>head</dt><dd class="head-height" data-head-height=${node.head ? node.head.height : ""}>${node.head ? node.head.height : "—"}</dd>
      <dt>head hash</dt><dd class="mono">${short(node.head && node.head.hash)}</dd>
      <dt>finalized</dt><dd class="finalized-height">${node.finalized ? node.finalized.height : "none"}</dd>
      <dt>engine</dt><dd>${node.info ? node.info.engine : "—"}</dd>
      <dt>peers</dt><dd>${s.peers ?? "—"}</dd>
      <dt>mempool</dt><dd>${s.mempool_size ?? "—"}</dd>
      <dt>sync</dt><dd>${s.syncing ? "syncing" : "in sync"}</dd>
      <dt>producing</dt><dd>${s.producing ? `yes (${short(s.author)})` : "no"}</dd>
      <dt>reorgs</dt><dd>${s.reorgs ?? 0} (max depth ${s.reorg_depth_max ?? 0})</dd>
      <dt>side blocks</dt><dd>${s.side_blocks ?? 0}</dd>
    </dl>
    ${voting && html`<details><summary>votes (${voting.phase || voting.role || "status"})</summary><${Fields} obj=${voting} /></details>`}
    ${node.explainHead && html`<details><summary>engine (head #${node.explainHead.height})</summary>
      <${Fields} obj=${node.explainHead} /></details>`}
    ${node.peers.length > 0 && html`<details><summary>peers (${node.peers.length})</summary><ul class="peers">${node.peers.map((p) => html`
      <li class="mono">${short(p.peer_id)} ${p.address} ${p.height !== null && p.height !== undefined ? `@${p.height}` : ""}</li>`)}</ul></details>`}
  </section>`;
}

/** Lanes: node 0's best chain on lane 0, every other branch on the first free lane. */
function layout(blocks, bestHashes) {
  const lanes = new Map();
  const taken = new Map(); // height -> Set of lanes
  const take = (b, lane) => {
    lanes.set(b.hash, lane);
    if (!taken.has(b.height)) taken.set(b.height, new Set());
    taken.get(b.height).add(lane);
  };
  for (const b of blocks) if (bestHashes.has(b.hash)) take(b, 0);
  for (const b of blocks) {
    if (lanes.has(b.hash)) continue;
    let lane = lanes.has(b.parent_hash) ? lanes.get(b.parent_hash) : 1;
    const used = taken.get(b.height) || new Set();
    while (used.has(lane)) lane += 1;
    take(b, lane);
  }
  return lanes;
}

/** The best chain of `node` as far back as the tree reaches. */
function bestChain(node) {
  const out = new Set();
  let hash = node && node.head && node.head.hash;
  while (hash && store.blocks.has(hash)) {
    out.add(hash);
    hash = store.blocks.get(hash).parent_hash;
  }
  return out;
}

function Tree() {
  const all = [...store.blocks.values()];
  if (all.length === 0) return html`<p>waiting for blocks…</p>`;
  const top = Math.max(...all.map((b) => b.height));
  const low = Math.max(0, top - WINDOW + 1);
  const blocks = all.filter((b) => b.height >= low).sort((a, b) => a.height - b.height);
  const primary = store.nodes.find((n) => n.head) || store.nodes[0];
  const lanes = layout(blocks, bestChain(primary));
  const W = 64, H = 46, PAD = 30;
  const x = (h) => PAD + (h - low) * W;
  const y = (lane) => PAD + 14 + lane * H;
  const laneCount = Math.max(1, ...lanes.values()) + 1;
  const width = PAD * 2 + WINDOW * W;
  const height = PAD * 2 + 14 + laneCount * H;
  const fin = Math.max(-1, ...store.nodes.map((n) => (n.finalized ? n.finalized.height : -1)));
  const kLine = primary.head ? primary.head.height - K : -1;
  const vline = (h, cls, label) => h >= low && html`<g class=${cls}>
    <line x1=${x(h) + 22} x2=${x(h) + 22} y1=${8} y2=${height - 4} />
    <text x=${x(h) + 26} y=${height - 8}>${label}</text></g>`;
  return html`<svg class="tree" width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`}>
    ${vline(fin, "finalized-line", `finalized ${fin}`)}
    ${vline(kLine, "k-line", `${K}-confirmed ${kLine}`)}
    ${blocks.map((b) => {
      const p = store.blocks.get(b.parent_hash);
      return p && lanes.has(p.hash) && html`<line class="edge" x1=${x(p.height) + 40} y1=${y(lanes.get(p.hash)) + 12}
        x2=${x(b.height)} y2=${y(lanes.get(b.hash)) + 12} />`;
    })}
    ${blocks.map((b) => {
      const lane = lanes.get(b.hash);
      const heads = store.nodes.filter((n) => n.head && n.head.hash === b.hash);
      const cls = ["block", lane > 0 ? "side" : "", b.reorged ? "reorged" : "",
        store.selected && store.selected.hash === b.hash ? "selected" : ""].join(" ");
      return html`<g class=${cls} data-block=${b.hash} data-height=${b.height} data-lane=${lane}
          onClick=${() => selectBlock(b.hash)}>
        <title>${`#${b.height} ${b.hash}\nproducer ${b.producer}\n${b.txs.length} txs`}</title>
        <rect x=${x(b.height)} y=${y(lane)} width="40" height="24" rx="4" />
        <text x=${x(b.height) + 20} y=${y(lane) + 16} text-anchor="middle">${b.height}</text>
        ${heads.map((n, j) => html`<circle cx=${x(b.height) + 6 + j * 9} cy=${y(lane) - 5} r="4"
          fill=${COLORS[n.i % COLORS.length]}><title>node ${n.i} head</title></circle>`)}
      </g>`;
    })}
  </svg>`;
}

function BlockPanel() {
  const s = store.selected;
  if (!s) return html`<p class="hint">Click a block for its header, transactions and engine_explain.</p>`;
  return html`<div class="block-detail" data-selected=${s.hash}>
    <h3>block ${short(s.hash)} <small>(from node ${s.node})</small></h3>
    ${s.error && html`<p class="bad">${s.error}</p>`}
    ${s.block && html`<h4>header</h4><${Fields} obj=${{ ...s.block, txs: s.block.txs.length }} />
      <h4>transactions</h4>${s.block.txs.length === 0 ? html`<p>none</p>`
        : html`<ul>${s.block.txs.map((t) => html`<li class="mono"><a href="#" onClick=${(e) => { e.preventDefault(); lookupTx(t); }}>${t}</a></li>`)}</ul>`}`}
    ${s.explain && html`<h4>engine_explain</h4><div class="explain"><${Fields} obj=${s.explain} /></div>`}
  </div>`;
}

function Lookup() {
  const [address, setAddress] = useState("");
  const [txHash, setTxHash] = useState("");
  const a = store.account;
  return html`<div class="lookup">
    <form onSubmit=${(e) => { e.preventDefault(); lookupAccount(address.trim()); }}>
      <input placeholder="account address (toy1…)" value=${address} onInput=${(e) => setAddress(e.target.value)} />
      <button>account</button>
    </form>
    <form onSubmit=${(e) => { e.preventDefault(); lookupTx(txHash.trim()); }}>
      <input placeholder="transaction hash" value=${txHash} onInput=${(e) => setTxHash(e.target.value)} />
      <button>transaction</button>
    </form>
    ${a && html`<div class="account"><h3>account <span class="mono">${a.address}</span></h3>
      ${a.error ? html`<p class="bad">${a.error}</p>` : html`
        <${Fields} obj=${{ balance: a.account.balance, nonce: a.account.nonce, pending_nonce: a.account.pending_nonce, ...a.account.engine }} />
        <h4>history</h4>
        <table class="history"><tr><th>height</th><th>kind</th><th>from</th><th>to</th><th>amount</th><th>tx</th></tr>
        ${a.history.txs.map((t) => html`<tr><td>${t.height}</td><td>${t.kind}</td><td class="mono">${short(t.from)}</td>
          <td class="mono">${short(t.to)}</td><td>${t.amount}</td><td class="mono">${short(t.hash)}</td></tr>`)}</table>`}
    </div>`}
    ${store.tx && html`<div class="tx"><h3>transaction <span class="mono">${short(store.tx.hash)}</span></h3>
      ${store.tx.error ? html`<p class="bad">${store.tx.error}</p>` : html`<${Fields} obj=${store.tx.result} />`}</div>`}
  </div>`;
}

function Reorgs() {
  if (store.reorgs.length === 0) return html`<p class="hint">No reorgs seen since the page opened.</p>`;
  return html`<ul class="reorgs">${store.reorgs.map((r) => html`<li class="reorg">
    ${r.at} node ${r.node}: depth ${r.depth}, fork at #${r.fork_point.height},
    head #${r.old_head.height} ${short(r.old_head.hash)} → #${r.new_head.height} ${short(r.new_head.hash)}</li>`)}</ul>`;
}

function App() {
  const [, setVersion] = useState(0);
  useEffect(() => {
    listeners.add(setVersion);
    return () => listeners.delete(setVersion);
  }, []);
  const first = store.nodes.find((n) => n.info);
  return html`<header><h1>toychain</h1>
      <span>${first ? `${first.info.engine} · chain ${first.info.chain_id} · genesis ${short(first.info.genesis_hash)}` : "connecting…"}</span></header>
    <main>
      <div class="nodes">${store.nodes.map((n) => html`<${NodeCard} node=${n} />`)}</div>
      <${EnginePanel} p=${store.panel} nodes=${store.nodes} />
      <section class="card"><h2>block tree</h2>
        <p class="legend"><span class="side">side branch</span> <span class="reorged">reorged out</span>
          · dots: node heads · lines: finalized, ${K}-confirmed (node ${(store.nodes.find((n) => n.head) || store.nodes[0]).i})</p>
        <div class="tree-wrap"><${Tree} /></div></section>
      <div class="columns">
        <section class="card"><h2>block</h2><${BlockPanel} /></section>
        <section class="card"><h2>reorgs</h2><${Reorgs} /></section>
        <section class="card"><h2>accounts and transactions</h2><${Lookup} /></section>
      </div>
    </main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "loading…" placeholder, which render() would keep beside the page
render(html`<${App} />`, root);
