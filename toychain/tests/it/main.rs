//! End-to-end tests of the `toychain` binary: a devnet launched as users launch it, and
//! the wallet CLI run against it. Every test uses its own temp dir and free ports, waits
//! for conditions with deadlines, and stops what it started even when it fails.
//!
//! The devnets here run a test chain spec with regtest-easy proof of work and
//! `--on-demand` production: a block follows each transaction within moments, and idle
//! nodes do not compete for the CI machine's cores.

mod bad_input;
mod compare;
mod dev_mine;
mod devnet;
mod faults;
mod load;
mod network;
mod reliability;
mod security;
mod simulate;
mod support;
mod voting;
mod wallet_engines;
mod wallet_errors;
mod wallet_keys;
mod wallet_send;
