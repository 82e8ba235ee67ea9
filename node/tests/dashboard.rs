//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol by
//! `headless_chrome`, opens the page of an in-process devnet and must follow it — heads as
//! the RPC reports them, a partition as a fork, the heal as a reorg, a clicked block's
//! `engine_explain`, the engine panels' values as the RPC has them — without a console error.
//!
//! Without Chromium the test says so and passes, except under `CI=true`, where it fails:
//! `.ci/run` installs Debian's `chromium`. Set `CHROMIUM=/path/to/chrome` to use another.
//! `dashboard_screenshots_of_every_engine` (ignored; run with `--ignored`) writes the
//! README's screenshots to `docs/`.

use headless_chrome::browser::tab::Tab;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};
use node::testnet::{TestBuilder, TestNet};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);

/// The Chromium to drive, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&dirs) {
        for name in names {
            let path = dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    Err(format!(
        "none of {names:?} is on PATH and CHROMIUM is not set"
    ))
}

/// A browser, or `None` (with the reason printed) when the test may be skipped.
fn browser() -> Option<Browser> {
    let path = match chromium() {
        Ok(path) => path,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: no Chromium ({why}); `apt-get install chromium` to run it");
            return None;
        }
        Err(why) => panic!("CI=true and no Chromium: {why}"),
    };
    let options = LaunchOptions::default_builder()
        .path(Some(path))
        .headless(true)
        // Root in a container has no user namespace for Chromium's sandbox.
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .idle_browser_timeout(Duration::from_secs(300))
        .build()
        .expect("launch options");
    Some(Browser::new(options).expect("Chromium starts"))
}

/// The page's address for every node of `net`.
fn dashboard_url(net: &TestNet) -> String {
    let nodes: Vec<String> = (0..net.len())
        .filter_map(|i| net.node(i))
        .map(|n| n.rpc_url().trim_start_matches("http://").to_owned())
        .collect();
    let first = net.node(0).expect("node 0 runs").rpc_url();
    format!("{first}/?nodes={}", nodes.join(","))
}

/// Console errors, log errors and uncaught exceptions of `tab`, as they happen.
fn collect_errors(tab: &Tab) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    tab.enable_log()
        .and_then(|t| t.enable_runtime())
        .expect("log and runtime domains");
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let text = match event {
            Event::LogEntryAdded(e) => {
                let entry = &e.params.entry;
                (format!("{:?}", entry.level) == "Error").then(|| entry.text.clone())
            }
            Event::RuntimeConsoleAPICalled(e) => (format!("{:?}", e.params.Type) == "Error")
                .then(|| format!("console.error {:?}", e.params.args)),
            Event::RuntimeExceptionThrown(e) => Some(format!("{:?}", e.params.exception_details)),
            _ => None,
        };
        if let Some(text) = text
            && let Ok(mut list) = sink.lock()
        {
            list.push(text);
        }
    }))
    .expect("listener");
    errors
}

/// The value of a JavaScript expression on the page.
fn eval(tab: &Tab, expression: &str) -> Value {
    tab.evaluate(expression, false)
        .expect("the expression runs")
        .value
        .unwrap_or(Value::Null)
}

/// Waits until `expression` is truthy on the page.
fn wait_js(tab: &Tab, expression: &str, what: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        let value = eval(tab, expression);
        if value.as_bool() == Some(true) {
            return;
        }
        assert!(Instant::now() < until, "{what}: `{expression}` is {value}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The head height node `i`'s card shows.
fn page_height(tab: &Tab, i: usize) -> Option<u64> {
    let text = eval(
        tab,
        &format!("document.querySelector('[data-node=\"{i}\"] .head-height')?.textContent"),
    );
    text.as_str()?.parse().ok()
}

fn rpc_height(net: &TestNet, i: usize) -> u64 {
    net.heights()[i].unwrap_or_else(|| panic!("node {i} answers"))
}

/// What the engine panel shows, read in one go once it is drawn for `engine`: the hash of
/// the head it describes, and the `attributes` of its element `selector`.
fn panel_values(
    tab: &Tab,
    engine: &str,
    selector: &str,
    attributes: &[&str],
) -> (String, Vec<String>) {
    let panel = format!(".engine-panel[data-engine=\"{engine}\"]");
    wait_js(
        tab,
        &format!("document.querySelector('{panel} {selector}') !== null"),
        &format!("the {engine} panel is drawn"),
    );
    let names = serde_json::to_string(attributes).expect("a list of names");
    // The panel is redrawn on every head: between the wait above and this read it may be
    // gone for a moment, so read until one read finds it whole.
    let script = format!(
        "(() => {{ const p = document.querySelector('{panel}'); \
         const e = p && p.querySelector('{selector}'); \
         if (!e) return null; \
         return JSON.stringify([p.getAttribute('data-hash'), \
           {names}.map((a) => e.getAttribute(a))]); }})()"
    );
    let until = Instant::now() + DEADLINE;
    let read = loop {
        if let Some(read) = eval(tab, &script).as_str() {
            break read.to_owned();
        }
        assert!(
            Instant::now() < until,
            "the {engine} panel's {selector} stays drawn"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (hash, values): (String, Vec<Option<String>>) =
        serde_json::from_str(&read).expect("hash and values");
    let values = values
        .into_iter()
        .zip(attributes)
        .map(|(v, a)| v.unwrap_or_else(|| panic!("{selector} has no {a}")))
        .collect();
    (hash, values)
}

/// `engine_explain` of `hash`, as node 0's RPC answers it.
fn explain(net: &TestNet, hash: &str) -> Value {
    net.node(0)
        .expect("node 0 runs")
        .client()
        .call("engine_explain", serde_json::json!([hash]))
        .expect("engine_explain")
}

/// `voter` (a dev account) votes to add `target` as a PoA authority, through node 0's
/// `tx_submit`; returns the target's address.
fn propose_authority(net: &TestNet, voter: &str, target: &str) -> chain::Address {
    use chain::Canonical;
    let client = net.node(0).expect("node 0 runs").client();
    let key = chain::dev::dev_key(voter).expect("a dev account");
    let address = chain::dev::dev_address(target).expect("a dev account");
    let info = client
        .call("chain_info", serde_json::json!([]))
        .expect("chain_info");
    let account = client
        .call(
            "state_getAccount",
            serde_json::json!([key.address().to_string()]),
        )
        .expect("state_getAccount");
    let tx = chain::Transaction::signed(
        &key,
        chain::ChainId(info["chain_id"].as_u64().expect("a chain id")),
        account["pending_nonce"].as_u64().expect("a nonce"),
        chain::Amount::from_toy(1).expect("the fee fits"),
        chain::TxKind::ProposeAuthority { address, add: true },
    );
    client
        .call("tx_submit", serde_json::json!([hex::encode(tx.encode())]))
        .expect("the vote is accepted");
    address
}

/// The `key` field of an `engine_explain` answer.
fn field(explained: &Value, key: &str) -> String {
    explained[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {explained}"))
        .to_owned()
}

/// Two PoW miners: the page follows node 0's head; cut apart, the two branches show as a
/// fork; healed, the reorg is listed and the reverted blocks are marked; a click on a block
/// shows its header and its `engine_explain`; the account page shows a balance; no console
/// error all along.
#[test]
fn dashboard_follows_heads_shows_fork_and_reorg_explains_blocks_and_shows_accounts() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Pow)
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("two nodes start");
    net.wait_until(2, DEADLINE).expect("both mine");
    let tab = browser.new_tab().expect("a tab");
    let errors = collect_errors(&tab);
    tab.navigate_to(&dashboard_url(&net))
        .and_then(|t| t.wait_until_navigated())
        .expect("the page loads");
    wait_js(
        &tab,
        "document.querySelectorAll('svg.tree g.block').length > 0",
        "the block tree is drawn",
    );

    // The PoW panel: the difficulty of the head it names is the RPC's, and the hash rate
    // says over how many blocks it was estimated.
    let (hash, shown) = panel_values(&tab, "pow", ".pow", &["data-bits", "data-work"]);
    let explained = explain(&net, &hash);
    assert_eq!(
        shown,
        [field(&explained, "bits"), field(&explained, "work")]
    );
    wait_js(
        &tab,
        "Number(document.querySelector('.pow-hashrate')?.getAttribute('data-window')) > 0 \
         && document.querySelector('.pow-hashrate').textContent.includes('H/s')",
        "an estimated hash rate over at least one block",
    );

    // The page's head follows the RPC's.
    let target = rpc_height(&net, 0) + 2;
    net.wait_nodes(&[0], target, DEADLINE)
        .expect("node 0 mines");
    let until = Instant::now() + DEADLINE;
    while page_height(&tab, 0).is_none_or(|h| h < target) {
        assert!(
            Instant::now() < until,
            "the page stays at {:?}",
            page_height(&tab, 0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = page_height(&tab, 0).expect("a height");
    assert!(
        shown <= rpc_height(&net, 0),
        "the page is not ahead of the node"
    );

    // A partition: each side mines its own branch, drawn on two lanes.
    net.partition(&[1]).expect("split 1 | 1");
    let split = net.heights().into_iter().flatten().max().expect("heights");
    net.wait_until(split + 2, DEADLINE)
        .expect("both sides mine");
    wait_js(
        &tab,
        "document.querySelectorAll('svg.tree g.block.side').length > 0",
        "the fork is drawn as a side branch",
    );
    net.heal().expect("healed");
    wait_js(
        &tab,
        "document.querySelectorAll('li.reorg').length > 0 \
         && document.querySelectorAll('svg.tree g.block.reorged').length > 0",
        "the heal shows as a reorg",
    );

    // A click on a block shows its explain fields. New blocks move the tree under the
    // pointer now and then, so the click is tried again until it lands on its block.
    let mut hash = String::new();
    for _ in 0..5 {
        hash = eval(
            &tab,
            "[...document.querySelectorAll('svg.tree g.block[data-lane=\"0\"]')] \
             .slice(-3)[0]?.getAttribute('data-block')",
        )
        .as_str()
        .expect("a block hash")
        .to_owned();
        let clicked = tab
            .find_element(&format!("svg.tree g.block[data-block=\"{hash}\"] rect"))
            .and_then(|e| e.click().map(|_| ()));
        std::thread::sleep(Duration::from_millis(500));
        let selected = eval(
            &tab,
            "document.querySelector('.block-detail')?.getAttribute('data-selected')",
        );
        if clicked.is_ok() && selected.as_str() == Some(hash.as_str()) {
            break;
        }
    }
    wait_js(
        &tab,
        &format!(
            "document.querySelector('.block-detail')?.getAttribute('data-selected') === '{hash}' \
             && (document.querySelector('.block-detail .explain')?.textContent || '') \
                .includes('hash_meets_target')"
        ),
        "the clicked block's engine_explain",
    );
    let explained = eval(&tab, "document.querySelector('.block-detail').textContent");
    let explained = explained.as_str().unwrap_or_default();
    for field in ["state_root", "bits", "target", "work"] {
        assert!(
            explained.contains(field),
            "{field} missing from {explained}"
        );
    }

    // The account page: a dev account's balance and nonce, as the RPC has them.
    let dave = chain::dev::dev_address("dave").expect("a dev account");
    let account = net
        .node(0)
        .expect("node 0 runs")
        .client()
        .call("state_getAccount", serde_json::json!([dave.to_string()]))
        .expect("state_getAccount");
    tab.find_element("input[placeholder^=\"account\"]")
        .and_then(|e| e.click().map(|_| ()))
        .and_then(|()| tab.type_str(&dave.to_string()).map(|_| ()))
        .and_then(|()| tab.press_key("Enter").map(|_| ()))
        .expect("the address is typed");
    wait_js(
        &tab,
        &format!(
            "(document.querySelector('.account')?.textContent || '').includes('{}')",
            account["balance"]
        ),
        "the account page shows the balance",
    );

    let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The engine panels of PoA, DPoS and PBFT (three nodes each) show what the RPC returns for
/// the head they name: PoA's signers and the signer in turn for the next block, the DPoS
/// slot table's owner of the head's slot, PBFT's validators and quorum with a vote-progress
/// row per node; no console error.
/// Three nodes of `kind` making 1 s blocks, under `dir`.
fn three_nodes(dir: &std::path::Path, kind: config::EngineKind) -> node::testnet::TestNet {
    TestBuilder::new(&dir.join("net"), kind)
        .add_node()
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("three nodes start")
}

#[test]
fn engine_panels_of_poa_dpos_pbft_paxos_and_zab_show_what_the_rpc_returns() {
    let Some(browser) = browser() else { return };
    for kind in [
        config::EngineKind::Poa,
        config::EngineKind::Dpos,
        config::EngineKind::Pbft,
        config::EngineKind::Paxos,
        config::EngineKind::Zab,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = three_nodes(dir.path(), kind);
        net.wait_until(2, DEADLINE).expect("blocks");
        let tab = browser.new_tab().expect("a tab");
        let errors = collect_errors(&tab);
        tab.navigate_to(&dashboard_url(&net))
            .and_then(|t| t.wait_until_navigated())
            .expect("the page loads");
        match kind {
            config::EngineKind::Poa => {
                let (hash, shown) = panel_values(
                    &tab,
                    "poa",
                    ".poa",
                    &["data-signers", "data-in-turn", "data-next"],
                );
                let explained = explain(&net, &hash);
                let signers = field(&explained, "authorities_at_head");
                assert_eq!(shown[0], signers);
                let list: Vec<&str> = signers.split(',').collect();
                assert_eq!(list.len(), 3, "{signers}");
                let next = explained["height"].as_u64().expect("a height") + 1;
                assert_eq!(shown[2], next.to_string());
                let in_turn = list[usize::try_from(next).expect("small") % list.len()];
                assert_eq!(shown[1], in_turn, "signers[n mod N] is in turn for n");
                let rows = eval(
                    &tab,
                    "document.querySelectorAll('.poa-signers tr[data-signer]').length",
                );
                assert_eq!(rows.as_u64(), Some(3));
                // A vote to add dave is pending on alice's row once a block includes it,
                // as alice's account fields have it.
                let alice = chain::dev::dev_address("alice").expect("a dev account");
                assert!(list.contains(&alice.to_string().as_str()), "{signers}");
                let dave = propose_authority(&net, "alice", "dave");
                let client = net.node(0).expect("node 0 runs").client();
                let until = Instant::now() + DEADLINE;
                let pending = loop {
                    let account = client
                        .call("state_getAccount", serde_json::json!([alice.to_string()]))
                        .expect("state_getAccount");
                    let votes = account["engine"]["pending_votes"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if !votes.is_empty() {
                        break votes;
                    }
                    assert!(Instant::now() < until, "the vote is never included");
                    std::thread::sleep(Duration::from_millis(200));
                };
                assert_eq!(pending, format!("+{dave}"));
                wait_js(
                    &tab,
                    &format!(
                        "document.querySelector('.poa-signers tr[data-signer=\"{alice}\"]') \
                         ?.getAttribute('data-votes') === '{pending}'"
                    ),
                    "alice's pending vote on the PoA panel",
                );
            }
            config::EngineKind::Dpos => {
                panel_values(&tab, "dpos", ".dpos-slots tr[data-slot]", &["data-owner"]);
                // The head and its slot table, read in one go (a block a second redraws it;
                // a read in the middle of a redraw finds no rows and is taken again).
                let until = Instant::now() + DEADLINE;
                let (hash, rows) = loop {
                    let read = eval(
                        &tab,
                        "JSON.stringify([document.querySelector('.engine-panel')?.getAttribute('data-hash') ?? null, \
                           [...document.querySelectorAll('.dpos-slots tr[data-slot]')] \
                             .map((r) => [r.getAttribute('data-slot'), r.getAttribute('data-owner')])])",
                    );
                    let (hash, rows): (Option<String>, Vec<(String, String)>) =
                        serde_json::from_str(read.as_str().expect("a JSON string"))
                            .expect("the head and its slots");
                    assert!(
                        Instant::now() < until,
                        "the DPoS panel stays drawn: {rows:?}"
                    );
                    if let Some(hash) = hash.filter(|_| !rows.is_empty()) {
                        break (hash, rows);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                let explained = explain(&net, &hash);
                assert_eq!(
                    rows.len().to_string(),
                    field(&explained, "slots_per_round"),
                    "a row per slot of the round: {rows:?}"
                );
                let slot = field(&explained, "slot");
                let owner = rows
                    .iter()
                    .find(|(s, _)| *s == slot)
                    .map(|(_, o)| o.clone());
                assert_eq!(
                    owner,
                    Some(field(&explained, "producer")),
                    "the slot table gives the head's slot {slot} to the head's producer: {rows:?}"
                );
            }
            config::EngineKind::Paxos | config::EngineKind::Zab => {
                let (name, attribute, explain_field, round) = if kind == config::EngineKind::Paxos {
                    ("paxos", "data-majority", "majority", "data-ballot")
                } else {
                    ("zab", "data-quorum", "quorum", "data-epoch")
                };
                let (hash, shown) = panel_values(&tab, name, &format!(".{name}"), &[attribute]);
                let explained = explain(&net, &hash);
                assert_eq!(shown, [field(&explained, explain_field)], "{name}");
                assert_eq!(field(&explained, explain_field), "2", "a majority of three");
                wait_js(
                    &tab,
                    &format!(
                        "[0, 1, 2].every((i) => (document.querySelector( \
                           `.voting-progress tr[data-node-row=\"${{i}}\"]`)?.getAttribute('{round}') || '') !== '')"
                    ),
                    "a vote-progress row with a round for every node",
                );
            }
            _ => {
                let (hash, shown) =
                    panel_values(&tab, "pbft", ".pbft", &["data-validators", "data-quorum"]);
                let explained = explain(&net, &hash);
                assert_eq!(
                    shown,
                    [
                        field(&explained, "validators_at_head"),
                        field(&explained, "quorum")
                    ]
                );
                wait_js(
                    &tab,
                    "[0, 1, 2].every((i) => (document.querySelector( \
                       `.voting-progress tr[data-node-row=\"${i}\"]`)?.getAttribute('data-view') || '') !== '')",
                    "a vote-progress row with a view for every node",
                );
            }
        }
        let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
        assert!(
            errors.is_empty(),
            "{}: console errors: {errors:#?}",
            kind.name()
        );
        let _ = tab.close(false);
    }
}

/// Writes `docs/dashboard-<engine>.png` for every engine: three nodes, a few blocks, the
/// engine panel drawn (on PoA with one vote pending), a block clicked.
#[test]
#[ignore = "writes the README's screenshots; run with --ignored"]
fn dashboard_screenshots_of_every_engine() {
    let Some(browser) = browser() else { return };
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for kind in [
        config::EngineKind::Pow,
        config::EngineKind::Pos,
        config::EngineKind::Dpos,
        config::EngineKind::Poa,
        config::EngineKind::Pbft,
        config::EngineKind::Raft,
        config::EngineKind::Paxos,
        config::EngineKind::Zab,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = three_nodes(dir.path(), kind);
        net.wait_until(3, DEADLINE).expect("blocks");
        if kind == config::EngineKind::Poa {
            propose_authority(&net, "alice", "dave");
        }
        let tab = browser.new_tab().expect("a tab");
        // Tall enough for the node cards, the engine panel, the tree and the block panel.
        tab.set_bounds(headless_chrome::types::Bounds::Normal {
            left: Some(0),
            top: Some(0),
            width: Some(1400.0),
            height: Some(1500.0),
        })
        .expect("the window is resized");
        tab.navigate_to(&dashboard_url(&net))
            .and_then(|t| t.wait_until_navigated())
            .expect("the page loads");
        let height = rpc_height(&net, 0);
        let until = Instant::now() + DEADLINE;
        while page_height(&tab, 0).is_none_or(|h| h < height) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        wait_js(
            &tab,
            &format!(
                "document.querySelector('.engine-panel[data-engine=\"{}\"] dl') !== null",
                kind.name()
            ),
            "the engine panel is drawn",
        );
        if kind == config::EngineKind::Poa {
            wait_js(
                &tab,
                "(document.querySelector('.poa-proposals')?.textContent || '').includes('votes needed')",
                "the pending vote is on the PoA panel",
            );
        }
        // Something to click, so the block panel is part of the picture; then back to the top.
        let _ = tab
            .find_element("svg.tree g.block:last-of-type rect")
            .and_then(|e| e.click().map(|_| ()));
        std::thread::sleep(Duration::from_secs(2));
        eval(&tab, "window.scrollTo(0, 0), true");
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("a screenshot");
        let path = docs.join(format!("dashboard-{}.png", kind.name()));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let _ = tab.close(false);
    }
}
