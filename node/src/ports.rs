//! Free ports on 127.0.0.1 for devnets and test networks.
//!
//! A port found free is released before the node that is to use it binds it, so something
//! else may take it in between. The system gives ports to every `bind` on port 0 and every
//! outgoing connection (an RPC call, a peer dial) from its ephemeral range, so ports are
//! looked for below that range, where only an explicit bind can take them; the base is
//! random, so two callers at once seldom look at the same ports.

use anyhow::{Context, anyhow};
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// Tries before giving up on finding a free range.
const PORT_ATTEMPTS: usize = 200;
/// The lowest port handed out (well above the ports of common services).
const LOWEST: u16 = 10_000;
/// Linux's ephemeral range, when the system does not say.
const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);

/// Bases of two ranges of `n` consecutive ports on 127.0.0.1 free right now, for the
/// devnet's scheme (node i on `rpc + i` and `p2p + i`). The first range is still held
/// while the second is looked for, so they cannot overlap.
pub fn free_port_bases(n: usize) -> anyhow::Result<(u16, u16)> {
    let (rpc, _held) = reserve_ports(n)?;
    let (p2p, _) = reserve_ports(n)?;
    Ok((rpc, p2p))
}

/// The first of `n` consecutive ports on 127.0.0.1 free right now.
pub fn free_ports(n: usize) -> anyhow::Result<u16> {
    reserve_ports(n).map(|(base, _)| base)
}

/// The system's ephemeral port range, from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            match (parts.next(), parts.next()) {
                (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// A random base for `n` ports outside `ephemeral` (the system's range), or `None` if no
/// room is left there (then the caller asks the system for port 0).
fn random_base(n: u16, ephemeral: (u16, u16), attempt: usize) -> Option<u16> {
    let (low, high) = ephemeral;
    // A fresh `RandomState` has fresh keys, so each call draws anew.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(attempt);
    let random = hasher.finish();
    // Below the range, else above it.
    let below = low
        .checked_sub(n)
        .filter(|top| *top > LOWEST)
        .map(|top| (LOWEST, top));
    let above = high
        .checked_add(1)
        .zip(u16::MAX.checked_sub(n))
        .filter(|(from, top)| from < top);
    let (from, top) = below.or(above)?;
    let span = u64::from(top - from);
    u16::try_from(random % span)
        .ok()
        .map(|offset| from + offset)
}

fn reserve_ports(n: usize) -> anyhow::Result<(u16, Vec<TcpListener>)> {
    let count = u16::try_from(n).map_err(|_| anyhow!("cannot reserve {n} ports"))?;
    let ephemeral = ephemeral_range();
    for attempt in 0..PORT_ATTEMPTS {
        let first = match random_base(count, ephemeral, attempt) {
            Some(base) => match TcpListener::bind(("127.0.0.1", base)) {
                Ok(listener) => listener,
                Err(_) => continue,
            },
            None => TcpListener::bind(("127.0.0.1", 0)).context("cannot bind 127.0.0.1:0")?,
        };
        let base = first.local_addr().context("no local address")?.port();
        let mut held = vec![first];
        for i in 1..count {
            let Some(port) = base.checked_add(i) else {
                break;
            };
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => held.push(listener),
                Err(_) => break,
            }
        }
        if held.len() == n {
            return Ok((base, held));
        }
    }
    Err(anyhow!(
        "found no {n} consecutive free ports on 127.0.0.1 in {PORT_ATTEMPTS} tries; \
         stop other servers or use fewer --nodes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_free_and_apart() {
        let (rpc, p2p) = free_port_bases(4).expect("free ports on loopback");
        assert!(rpc.abs_diff(p2p) >= 4, "{rpc} {p2p}");
        for port in (rpc..rpc + 4).chain(p2p..p2p + 4) {
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port}");
        }
    }

    #[test]
    fn ports_are_looked_for_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        assert!(low <= high, "{low} {high}");
        for attempt in 0..100 {
            if let Some(base) = random_base(4, (low, high), attempt) {
                assert!(base >= LOWEST, "{base}");
                assert!(
                    base + 4 <= low || base > high,
                    "{base}..{} overlaps the ephemeral range {low}-{high}",
                    base + 4
                );
            }
        }
        // Bases vary, so two callers at once seldom pick the same ports.
        let bases: std::collections::HashSet<_> = (0..20)
            .filter_map(|a| random_base(4, (low, high), a))
            .collect();
        assert!(
            bases.len() > 1 || random_base(4, (low, high), 0).is_none(),
            "{bases:?}"
        );
    }
}
