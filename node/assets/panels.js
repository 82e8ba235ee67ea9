// Engine panels: one per consensus engine, built only from what a node's JSON-RPC returns —
// `engine_explain` of the head, `chain_getBlock`, `state_getAccount` and `node_status`'s
// voting status. Where a panel derives a value (a hash rate, a slot table, a cool-down), the
// rule it uses is written next to it, and it is the engine's rule, cited from its module.
import { html } from "/assets/htm-preact-standalone.module.js";

const params = new URLSearchParams(location.search);
/**
 * Blocks the PoW hash-rate estimate looks back over: `?hashps=N` (bitcoind's
 * `getnetworkhashps` looks back 120 by default; a devnet with one-second blocks needs fewer
 * to follow a change).
 */
const HASHPS_BLOCKS = Math.max(1, Math.min(1000, Number(params.get("hashps")) || 60));

// Blocks and a PoW header's explain depend only on the block hash, so they are kept; an
// explain of the head is always asked again (PoA, DPoS and the voting engines read the
// head's state into it).
const CACHE_MAX = 2048;
const blockCache = new Map();
const workCache = new Map();

function remember(cache, key, value) {
  cache.set(key, value);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  return value;
}

async function getBlock(conn, hash) {
  return blockCache.get(hash) || remember(blockCache, hash, await conn.call("chain_getBlock", [hash]));
}

/** The work of one PoW block (`engine_explain`'s `work`, the expected hashes of its target). */
async function blockWork(conn, hash) {
  if (workCache.has(hash)) return workCache.get(hash);
  const x = await conn.call("engine_explain", [hash]);
  if (typeof x.work !== "string" || !/^[0-9]+$/.test(x.work)) {
    throw new Error(`block ${hash} has no work in engine_explain (target ${x.target})`);
  }
  return remember(workCache, hash, BigInt(x.work));
}

/** `hash` and its ancestors, newest first, while `keep(block)` holds and at most `max`. */
async function walkBack(conn, hash, max, keep = () => true) {
  const out = [];
  let next = hash;
  while (out.length < max) {
    const b = await getBlock(conn, next);
    if (!keep(b)) break;
    out.push(b);
    if (b.height === 0) break;
    next = b.parent_hash;
  }
  return out;
}

const unique = (xs) => [...new Set(xs.filter((x) => typeof x === "string" && x.length > 0))];
const csv = (s) => (typeof s === "string" && s.length > 0 ? s.split(",") : []);

async function accounts(conn, addresses) {
  return Promise.all(addresses.map((address) => conn.call("state_getAccount", [address]).then(
    (account) => ({ address, account }),
    (e) => ({ address, error: String(e.message || e) }),
  )));
}

/**
 * The panel of `node`'s engine at its head, read over `conn`. `nodes` are all the page's
 * nodes (their authors are the accounts a PoS panel shows); `extra` are more addresses to
 * show (the account page's).
 */
export async function loadPanel(conn, node, nodes, extra) {
  const head = node.head;
  const engine = node.info.engine;
  const explain = await conn.call("engine_explain", [head.hash]);
  const base = { engine, node: node.i, height: head.height, hash: head.hash, explain, error: null };
  switch (engine) {
    case "pow": return { ...base, ...(await powData(conn, head)) };
    case "pos": return { ...base, ...(await posData(conn, nodes, extra)) };
    case "dpos": return { ...base, ...(await dposData(conn, head, explain)) };
    case "poa": return { ...base, ...(await poaData(conn, head, explain)) };
    default: return base;
  }
}

/**
 * bitcoind's `getnetworkhashps`: the work of the last N blocks over the time between the
 * earliest and the latest of them and the block before them. The genesis block's time is
 * the chain's creation, not a mining time, so the window stays above it.
 */
async function powData(conn, head) {
  const window = Math.max(0, Math.min(HASHPS_BLOCKS, head.height - 1));
  const blocks = await walkBack(conn, head.hash, window + 1);
  let work = 0n;
  for (const b of blocks.slice(0, window)) work += await blockWork(conn, b.hash);
  const times = blocks.map((b) => b.timestamp);
  const span = times.length > 0 ? Math.max(...times) - Math.min(...times) : 0;
  return {
    window, span, work: work.toString(),
    hashps: span > 0 ? Number(work) / span : null,
  };
}

/** The coin age of each node's author and of the account on the account page. */
async function posData(conn, nodes, extra) {
  const addresses = unique([...nodes.map((n) => n.status && n.status.author), ...extra]);
  return { accounts: await accounts(conn, addresses) };
}

/**
 * The head's round: slot `round·n + i` belongs to `schedule[i mod len]` (`dpos::slot_owner`),
 * filled by the best chain's block with that slot, missed when a later slot has one.
 */
async function dposData(conn, head, x) {
  const perRound = Number(x.slots_per_round);
  const schedule = csv(x.schedule);
  const slot = Number(x.slot);
  const start = Number(x.round) * perRound;
  const inRound = await walkBack(conn, head.hash, perRound, (b) => b.height > 0 && Number(b.engine.slot) >= start);
  const bySlot = new Map(inRound.map((b) => [Number(b.engine.slot), b]));
  const slots = [];
  for (let i = 0; schedule.length > 0 && i < perRound; i++) {
    const s = start + i;
    const block = bySlot.get(s);
    const state = block ? "produced" : s < slot ? "missed" : s === slot + 1 ? "next" : "upcoming";
    slots.push({ slot: s, index: i, owner: schedule[i % schedule.length], block, state });
  }
  return { schedule, slots, delegates: await accounts(conn, unique(schedule)) };
}

/**
 * Clique's turn and cool-down for the next block `n`: `signers[n mod N]` is in turn, and a
 * signer of one of the last `limit − 1` blocks (`limit = ⌊N/2⌋ + 1`) may not sign `n`
 * (`poa::snapshot`).
 */
async function poaData(conn, head, x) {
  const signers = csv(x.authorities_at_head);
  const limit = Number(x.signer_limit);
  const next = head.height + 1;
  const recent = await walkBack(conn, head.hash, Math.max(0, limit - 1), (b) => b.height > 0);
  const lastSigned = new Map();
  for (const b of recent) if (!lastSigned.has(b.producer)) lastSigned.set(b.producer, b.height);
  const votes = await accounts(conn, signers);
  return {
    signers, limit, next,
    inTurn: signers.length > 0 ? signers[next % signers.length] : null,
    rows: signers.map((address, index) => {
      const last = lastSigned.get(address);
      const v = votes.find((a) => a.address === address);
      return {
        address, index, last,
        until: last === undefined ? null : last + limit,
        votes: v && v.account ? csv(v.account.engine.pending_votes) : [],
        error: v && v.error,
      };
    }),
  };
}

// ---- views ----

/** An address cut to its ends, with the whole of it as the tooltip. */
function Addr({ a, nodes }) {
  if (!a) return "—";
  const owner = nodes.find((n) => n.status && n.status.author === a);
  const text = a.length > 16 ? `${a.slice(0, 10)}…${a.slice(-4)}` : a;
  return html`<span class="mono" title=${a}>${text}</span>${owner ? html` <small class="who">node ${owner.i}</small>` : ""}`;
}

const hex = (h) => (h ? `${h.slice(0, 12)}…` : "—");

function rate(hps) {
  if (hps === null) return "— (the blocks share one timestamp)";
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
  let v = hps;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return `${v.toPrecision(3)} ${units[u]}`;
}

function duration(secs) {
  if (!Number.isFinite(secs)) return "—";
  const s = Math.max(0, secs);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function PowPanel({ p }) {
  const x = p.explain;
  return html`<dl class="pow" data-bits=${x.bits} data-work=${x.work}>
    <dt>bits</dt><dd class="mono pow-bits">${x.bits}${x.expected_bits && x.expected_bits !== x.bits ? html` <span class="bad">(expected ${x.expected_bits})</span>` : ""}</dd>
    <dt>target</dt><dd class="mono" title=${x.target}>${hex(x.target)}</dd>
    <dt>difficulty</dt><dd class="pow-work">${x.work} <small>expected hashes per block (the head's work)</small></dd>
    <dt>hash rate</dt><dd class="pow-hashrate" data-window=${p.window}>${p.window === 0 ? "— (needs two blocks above genesis)" : html`${rate(p.hashps)} <small>estimated from the last ${p.window} blocks: their work ${p.work} over ${p.span} s, as bitcoind's getnetworkhashps</small>`}</dd>
    <dt>mean interval</dt><dd>${p.window > 0 ? `${(p.span / p.window).toFixed(2)} s` : "—"}</dd>
    <dt>retarget</dt><dd>${x.retarget}</dd>
  </dl>`;
}

function PosPanel({ p, nodes }) {
  const x = p.explain;
  const now = Number(x.time);
  return html`<div class="pos">
    <h3>kernel of head #${p.height}</h3>
    ${x.kernel === undefined ? html`<p class="hint">${x.stake_proof || "the genesis block has no kernel"}</p>` : html`
    <dl class="pos-kernel" data-staker=${x.staker} data-coin-days=${x.coin_days}>
      <dt>staker</dt><dd><${Addr} a=${x.staker} nodes=${nodes} /></dd>
      <dt>stake</dt><dd>${x.stake}</dd>
      <dt>coin age</dt><dd>${duration(Number(x.age_secs))} <small>since ${x.age_origin}; buckets ${x.age_buckets}</small></dd>
      <dt>stake weight</dt><dd class="pos-coin-days">${x.coin_days} coin-days</dd>
      <dt>kernel</dt><dd class="mono" title=${x.kernel}>${hex(x.kernel)}</dd>
      <dt>target</dt><dd class="mono" title=${x.weighted_target}>${hex(x.weighted_target)} <small>= ${hex(x.target_per_coin_day)} per coin-day × ${x.coin_days}</small></dd>
      <dt>kernel ≤ target</dt><dd class=${x.kernel_meets_target === "true" ? "ok-text" : "bad"}>${x.kernel_meets_target}</dd>
      <dt>reward</dt><dd>${x.reward ?? "—"}</dd>
    </dl>`}
    <h3>coin age of the accounts shown</h3>
    <table class="fields pos-accounts"><tr><th>account</th><th>balance (base units)</th><th>age at head</th><th>stakes from</th><th>full weight from</th><th>buckets (amount@origin)</th></tr>
    ${p.accounts.map((a) => {
      if (a.error) return html`<tr><td><${Addr} a=${a.address} nodes=${nodes} /></td><td colspan="5" class="bad">${a.error}</td></tr>`;
      const e = a.account.engine;
      const origin = Number(e.age_origin);
      return html`<tr data-account=${a.address}><td><${Addr} a=${a.address} nodes=${nodes} /></td><td>${a.account.balance}</td>
        <td>${Number.isFinite(origin) ? duration(now - origin) : e.age_origin}</td>
        <td>${e.stakes_from ?? "—"}${e.stakes_from && now >= Number(e.stakes_from) ? " ✓" : ""}</td>
        <td>${e.full_weight_from ?? "—"}</td><td class="mono">${e.age_buckets ?? "—"}</td></tr>`;
    })}</table>
    <p class="hint">Age at head: the head's time (${x.time}) minus the oldest bucket's origin; an account stakes once that passes the minimum age (✓).</p>
  </div>`;
}

function DposPanel({ p, nodes }) {
  const x = p.explain;
  const delegate = (a) => p.delegates.find((d) => d.address === a);
  const crossing = p.slots.length > 0 && Number(x.slot) + 1 >= p.slots[0].slot + p.slots.length;
  return html`<div class="dpos" data-round=${x.round} data-schedule=${x.schedule} data-lib=${x.last_irreversible}>
    <dl>
      <dt>round</dt><dd>${x.round} <small>(${x.slots_per_round} slots of ${x.slot_secs} s)</small></dd>
      <dt>head</dt><dd>#${p.height}, slot ${x.slot} (${x.slot_in_round} of the round) by <${Addr} a=${x.producer} nodes=${nodes} /></dd>
      <dt>last irreversible</dt><dd class="dpos-lib">#${x.last_irreversible} <small>(more than ⅔ of the producers built on it)</small></dd>
      ${crossing && html`<dt>next</dt><dd>the next slot opens round ${Number(x.round) + 1}, whose schedule is drawn when it starts</dd>`}
    </dl>
    <table class="fields dpos-slots"><tr><th>slot</th><th>delegate</th><th>block</th><th>votes</th><th>produced</th><th>missed</th></tr>
    ${p.slots.map((s) => {
      const d = delegate(s.owner);
      const e = d && d.account ? d.account.engine : {};
      return html`<tr class=${`slot-${s.state}`} data-slot=${s.slot} data-owner=${s.owner}><td>${s.index}</td><td><${Addr} a=${s.owner} nodes=${nodes} /></td>
        <td>${s.block ? `#${s.block.height}` : s.state}${s.slot === Number(x.slot) ? " (head)" : ""}</td>
        <td>${e.votes ?? "—"}</td><td>${e.produced ?? "—"}</td><td>${e.missed ?? "—"}</td></tr>`;
    })}</table>
    <p class="hint">Slots of the head's round on the best chain: produced, missed (a later slot has a block), next after the head, upcoming. Produced and missed count the delegate's whole record.</p>
  </div>`;
}

function PoaPanel({ p, nodes }) {
  const x = p.explain;
  // Every pending vote, by target and direction; more than N/2 of them make the change.
  const tally = new Map();
  for (const r of p.rows) for (const v of r.votes) tally.set(v, (tally.get(v) || 0) + 1);
  const needed = Math.floor(p.signers.length / 2) + 1;
  return html`<div class="poa" data-signers=${x.authorities_at_head} data-in-turn=${p.inTurn || ""} data-next=${p.next}>
    <dl>
      <dt>head</dt><dd>#${p.height} by <${Addr} a=${x.signer} nodes=${nodes} /> (${x.in_turn === "true" ? "in turn" : "out of turn"}, difficulty ${x.difficulty})</dd>
      <dt>in turn for #${p.next}</dt><dd class="poa-in-turn"><${Addr} a=${p.inTurn} nodes=${nodes} /></dd>
      <dt>signer limit</dt><dd>one of any ${x.signer_limit} blocks (⌊N/2⌋+1 of ${p.signers.length} signers), period ${x.period}</dd>
      <dt>proposals</dt><dd class="poa-proposals">${tally.size === 0 ? "none pending" : [...tally].map(([v, n]) => html`<div>
        ${v[0] === "+" ? "add" : "remove"} <${Addr} a=${v.slice(1)} nodes=${nodes} />: ${n} of the ${needed} votes needed</div>`)}</dd>
    </dl>
    <table class="fields poa-signers"><tr><th>#</th><th>signer</th><th>turn</th><th>last signed</th><th>cool-down</th><th>pending votes</th></tr>
    ${p.rows.map((r) => html`<tr data-signer=${r.address} data-votes=${r.votes.join(",")} class=${r.until !== null && r.until > p.next ? "cooling" : ""}>
      <td>${r.index}</td><td><${Addr} a=${r.address} nodes=${nodes} /></td>
      <td>${r.address === p.inTurn ? "in turn" : ""}</td>
      <td>${r.last === undefined ? "—" : `#${r.last}`}</td>
      <td>${r.until !== null && r.until > p.next ? `may sign again at #${r.until}` : "may sign"}</td>
      <td>${r.error ? html`<span class="bad">${r.error}</span>` : r.votes.length === 0 ? "none" : r.votes.map((v) => html`<div><b>${v[0] === "+" ? "add" : "remove"}</b> <${Addr} a=${v.slice(1)} nodes=${nodes} /></div>`)}</td></tr>`)}
    </table>
  </div>`;
}

/** One row per node from its voting status, as `node_status` reports it. */
function VotingTable({ nodes, columns }) {
  return html`<table class="fields voting-progress"><tr><th>node</th>${columns.map(([, label]) => html`<th>${label}</th>`)}</tr>
    ${nodes.map((n) => {
      const v = (n.status && n.status.voting) || {};
      return html`<tr data-node-row=${n.i} ...${Object.fromEntries(columns.map(([k]) => [`data-${k.replace(/_/g, "-")}`, v[k] ?? ""]))}>
        <td>node ${n.i}</td>${columns.map(([k]) => html`<td>${k === "primary" || k === "leader" || k === "voted_for"
          ? html`<${Addr} a=${v[k] && v[k] !== "none" ? v[k] : null} nodes=${nodes} />` : (v[k] ?? "—")}</td>`)}</tr>`;
    })}</table>`;
}

function PbftPanel({ p, nodes }) {
  const x = p.explain;
  const q = (k) => ((nodes.find((n) => n.status && n.status.voting) || {}).status || {}).voting?.[k];
  return html`<div class="pbft" data-validators=${x.validators_at_head} data-quorum=${x.quorum}>
    <h3>vote progress</h3>
    <${VotingTable} nodes=${nodes} columns=${[["height", "deciding"], ["view", "view"], ["primary", "primary"],
      ["role", "role"], ["phase", "phase"], ["prepares", "prepares"], ["commits", "commits"],
      ["view_changes", "view changes"], ["failed_views", "failed views"]]} />
    <p class="hint">Prepares and commits are the votes of the current view seen by each node; ${x.quorum} of ${csv(x.validators_at_head).length} decide (⌈(N+f+1)/2⌉ with f = ${x.max_faulty} tolerated faults)${q("quorum") && q("quorum") !== x.quorum ? ` (the machine counts ${q("quorum")})` : ""}.</p>
    <h3>head #${p.height}</h3>
    <dl>
      <dt>proposed in view</dt><dd>${x.proposed_in_view ?? "—"} by <${Addr} a=${x.primary} nodes=${nodes} /></dd>
      <dt>committed in view</dt><dd>${x.committed_in_view ?? "—"}</dd>
      <dt>commit certificate</dt><dd>${x.commit_votes ?? "—"} signatures: ${csv(x.commit_signers).map((a) => html`<${Addr} a=${a} nodes=${nodes} /> `)}</dd>
      <dt>validators</dt><dd>${csv(x.validators_at_head).map((a) => html`<${Addr} a=${a} nodes=${nodes} /> `)}</dd>
    </dl>
  </div>`;
}

function RaftPanel({ p, nodes }) {
  const x = p.explain;
  return html`<div class="raft" data-servers=${x.servers_at_head} data-majority=${x.majority_at_head}>
    <h3>vote progress</h3>
    <${VotingTable} nodes=${nodes} columns=${[["term", "term"], ["role", "role"], ["leader", "leader"],
      ["commit_index", "commit index"], ["last_index", "last index"], ["voted_for", "voted for"]]} />
    <p class="hint">The servers' match indexes stay inside the leader; each node's commit and last log index are shown instead, and the majority that acked the head below.</p>
    <h3>head #${p.height}</h3>
    <dl>
      <dt>entry</dt><dd>term ${x.term}, log index ${x.log_index}, leader <${Addr} a=${x.leader} nodes=${nodes} /></dd>
      <dt>committed in term</dt><dd>${x.committed_in_term ?? "—"}</dd>
      <dt>acked by</dt><dd>${csv(x.acked_by).map((a) => html`<${Addr} a=${a} nodes=${nodes} /> `)} <small>(majority ${x.majority_at_head} of ${csv(x.servers_at_head).length})</small></dd>
    </dl>
  </div>`;
}

function PaxosPanel({ p, nodes }) {
  const x = p.explain;
  return html`<div class="paxos" data-majority=${x.majority}>
    <h3>vote progress</h3>
    <${VotingTable} nodes=${nodes} columns=${[["ballot", "ballot"], ["role", "role"], ["leader", "leader"],
      ["decided_height", "decided height"], ["accepted_slots", "accepted slots"]]} />
    <p class="hint">A ballot is (round.proposer); a leader ran phase 1 once for every open slot with it, and each block is chosen when ${x.majority} servers accept it in one ballot.</p>
    <h3>head #${p.height}</h3>
    <dl>
      <dt>proposed</dt><dd>in ballot ${x.built_in_ballot} by <${Addr} a=${x.leader} nodes=${nodes} /></dd>
      <dt>chosen in ballot</dt><dd>${x.chosen_in_ballot ?? "—"}</dd>
      <dt>accepted by</dt><dd>${csv(x.accepted_by).map((a) => html`<${Addr} a=${a} nodes=${nodes} /> `)}</dd>
    </dl>
  </div>`;
}

function ZabPanel({ p, nodes }) {
  const x = p.explain;
  return html`<div class="zab" data-quorum=${x.quorum}>
    <h3>vote progress</h3>
    <${VotingTable} nodes=${nodes} columns=${[["epoch", "epoch"], ["role", "role"], ["phase", "phase"],
      ["leader", "leader"], ["last_zxid", "last zxid"], ["committed_height", "committed height"]]} />
    <p class="hint">Phases: election, discovery (a new epoch), synchronization (followers brought to the leader's history), broadcast (proposal, ${x.quorum} acks, commit).</p>
    <h3>head #${p.height}</h3>
    <dl>
      <dt>transaction</dt><dd>zxid ${x.zxid} by <${Addr} a=${x.leader} nodes=${nodes} /></dd>
      <dt>committed in epoch</dt><dd>${x.committed_in_epoch ?? "—"}</dd>
      <dt>acked by</dt><dd>${csv(x.acked_by).map((a) => html`<${Addr} a=${a} nodes=${nodes} /> `)}</dd>
    </dl>
  </div>`;
}

const PANELS = { pow: PowPanel, pos: PosPanel, dpos: DposPanel, poa: PoaPanel, pbft: PbftPanel, raft: RaftPanel,
  paxos: PaxosPanel, zab: ZabPanel };

/** The engine panel card: `p` is what [`loadPanel`] returned (or null while loading). */
export function EnginePanel({ p, nodes }) {
  if (!p) return html`<section class="card engine-panel"><h2>engine</h2><p class="hint">loading…</p></section>`;
  const View = PANELS[p.engine];
  return html`<section class="card engine-panel" data-engine=${p.engine} data-height=${p.height} data-hash=${p.hash}>
    <h2>${p.engine} <small>at node ${p.node}'s head #${p.height} <span class="mono">${hex(p.hash)}</span></small></h2>
    ${p.error && html`<p class="bad">${p.error}</p>`}
    ${!p.explain ? null : View ? html`<${View} p=${p} nodes=${nodes} />`
      : html`<p class="hint">no panel for the ${p.engine} engine</p>`}
  </section>`;
}
