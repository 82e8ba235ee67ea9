//! Free ports on 127.0.0.1 for devnets and test networks.

use anyhow::{Context, anyhow};
use std::net::TcpListener;

/// Tries before giving up on finding a free range.
const PORT_ATTEMPTS: usize = 200;

/// Bases of two ranges of `n` consecutive ports on 127.0.0.1 free right now, for the
/// devnet's scheme (node i on `rpc + i` and `p2p + i`). The first range is still held
/// while the second is looked for, so they cannot overlap.
pub fn free_port_bases(n: usize) -> anyhow::Result<(u16, u16)> {
    let (rpc, _held) = reserve_ports(n)?;
    let (p2p, _) = reserve_ports(n)?;
    Ok((rpc, p2p))
}

fn reserve_ports(n: usize) -> anyhow::Result<(u16, Vec<TcpListener>)> {
    for _ in 0..PORT_ATTEMPTS {
        let first = TcpListener::bind(("127.0.0.1", 0)).context("cannot bind 127.0.0.1:0")?;
        let base = first.local_addr().context("no local address")?.port();
        let mut held = vec![first];
        for i in 1..n {
            let Some(port) = u16::try_from(i).ok().and_then(|i| base.checked_add(i)) else {
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
}
