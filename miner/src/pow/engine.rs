//! The verifying half of proof of work: every node checks every header with it.

use crate::engine_state;
use crate::pow::error::PowError;
use crate::pow::params::PowParams;
use crate::pow::retarget::{AsertParams, BitcoinRetarget, asert_next_bits, bitcoin_next_bits};
use crate::pow::target::{CompactTarget, Target};
use chain::{
    ChainView, ConsensusEngine, EngineError, Header, Height, SealedHeader, StateOverlay,
    StoreError, Timestamp, Weight,
};

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "pow";

/// Proof of work: `sha256d(header) ≤ target(bits)`, with `bits` fixed by the retarget rule
/// and each block weighing `2^256 / (target + 1)`. Pays `block_reward` to the producer.
#[derive(Clone, Debug)]
pub struct PowEngine {
    params: PowParams,
    pow_limit: Target,
    rule: Rule,
    /// Whether `verify_header` checks the hash against the target. Off only in
    /// [`PowEngine::for_simulation`].
    check_seal: bool,
}

#[derive(Clone, Copy, Debug)]
enum Rule {
    Asert(AsertParams),
    Bitcoin(BitcoinRetarget),
}

fn reject(e: PowError) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e)
}

/// Header times are checked to fit in 32 bits before engines see them; saturate anyway so
/// a caller that skipped the check gets a wrong answer for its bad header, not a panic.
fn secs(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// Block 1 of the branch ending at `parent` (height ≥ 1), the ASERT anchor. On the best
/// chain that is one index read, not a walk over every header; a side branch is walked
/// only down to where it joins the best chain.
fn block_one_below(
    chain: &dyn ChainView,
    parent: &SealedHeader,
) -> Result<SealedHeader, EngineError> {
    let missing = |what: String| StoreError::Corrupt {
        what: "header chain",
        reason: what,
    };
    let mut current = parent.clone();
    while current.height() > Height(1) {
        if chain.best_hash_at(current.height())? == Some(current.hash()) {
            let hash = chain
                .best_hash_at(Height(1))?
                .ok_or_else(|| missing("no block 1 on the best chain".into()))?;
            return chain
                .header(&hash)?
                .ok_or_else(|| missing(format!("block 1 ({hash}) is not stored")).into());
        }
        current = chain.header(&current.parent)?.ok_or_else(|| {
            missing(format!(
                "parent {} of {} is not stored",
                current.parent,
                current.hash()
            ))
        })?;
    }
    Ok(current)
}

impl PowEngine {
    /// An engine for `params`, refused when they are invalid.
    pub fn new(params: PowParams) -> Result<PowEngine, PowError> {
        params.validate()?;
        let pow_limit = params.pow_limit_target()?;
        let rule = match (params.asert()?, params.bitcoin()?) {
            (Some(asert), _) => Rule::Asert(asert),
            (None, Some(bitcoin)) => Rule::Bitcoin(bitcoin),
            (None, None) => {
                return Err(PowError::InvalidParams {
                    field: "retarget",
                    reason: "no retarget rule".into(),
                });
            }
        };
        Ok(PowEngine {
            params,
            pow_limit,
            rule,
            check_seal: true,
        })
    }

    /// The engine for a discrete-event simulation, where a solve is an event drawn from
    /// the exponential distribution of the miner's hash rate instead of a nonce search:
    /// everything is checked as usual (bits from the retarget rule, limits, timewarp, the
    /// weight of the target's work) except that the hash meets the target, which the
    /// simulator's oracle guarantees instead.
    pub fn for_simulation(params: PowParams) -> Result<PowEngine, PowError> {
        let mut engine = PowEngine::new(params)?;
        engine.check_seal = false;
        Ok(engine)
    }

    pub fn params(&self) -> &PowParams {
        &self.params
    }

    /// The bits a child of `parent` must carry.
    ///
    /// ASERT anchors at block 1: block 1 carries the genesis bits, and later blocks are
    /// scheduled from block 1's timestamp (anchor parent time = its time − one target
    /// block time). Bitcoin mode keeps the parent's bits inside a period and at a period
    /// boundary retargets from the period's first block (`interval − 1` blocks before the
    /// parent).
    pub fn next_bits(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
    ) -> Result<CompactTarget, EngineError> {
        // Every retarget starts from the genesis bits, so a genesis built with other bits
        // than the parameters' is a configuration error worth naming.
        let genesis_bits = CompactTarget::from_consensus(chain.genesis().engine.bits);
        if genesis_bits != self.params.genesis_bits {
            return Err(reject(PowError::GenesisBitsMismatch {
                genesis: genesis_bits,
                params: self.params.genesis_bits,
            }));
        }
        let bits = match &self.rule {
            Rule::Asert(asert) => {
                // The anchor is block 1, not genesis: a chain spec fixes its genesis time
                // (every `--dev` node must share one genesis), possibly long before the chain
                // really starts, and anchoring there would make ASERT think the chain is
                // years behind and drop to the pow limit. Block 1 keeps the genesis bits; its
                // timestamp starts the schedule, as if its parent came one interval earlier.
                if parent.height() == Height::GENESIS {
                    genesis_bits.to_consensus()
                } else {
                    let anchor = block_one_below(chain, parent)?;
                    let anchor_parent_time = secs(anchor.timestamp)
                        .saturating_sub(i64::try_from(asert.target_block_time).unwrap_or(i64::MAX));
                    asert_next_bits(
                        anchor.height().0,
                        anchor_parent_time,
                        anchor.engine.bits,
                        parent.height().0,
                        secs(parent.timestamp),
                        asert,
                    )
                }
            }
            Rule::Bitcoin(bitcoin) => {
                let next = parent.height().0.saturating_add(1);
                if !next.is_multiple_of(bitcoin.interval) {
                    parent.engine.bits
                } else {
                    let first_height = Height(next - bitcoin.interval);
                    let first = chain.ancestor_at(parent, first_height)?.ok_or_else(|| {
                        StoreError::Corrupt {
                            what: "header chain",
                            reason: format!(
                                "ancestor at height {first_height} of {} is missing",
                                parent.hash()
                            ),
                        }
                    })?;
                    bitcoin_next_bits(
                        secs(first.timestamp),
                        secs(parent.timestamp),
                        parent.engine.bits,
                        bitcoin,
                    )
                }
            }
        };
        Ok(CompactTarget::from_consensus(bits))
    }

    /// The earliest timestamp a child of `parent` at `height` may carry under BIP94 (only
    /// the first block of a Bitcoin-mode period is constrained).
    pub fn earliest_timestamp(&self, parent: &Header, height: Height) -> Option<Timestamp> {
        self.timewarp_bound(parent, height)
            .map(|(earliest, _)| earliest)
    }

    /// BIP94's bound for a child of `parent` at `height`, with the allowance it came from.
    fn timewarp_bound(&self, parent: &Header, height: Height) -> Option<(Timestamp, u64)> {
        match &self.rule {
            Rule::Bitcoin(b) if height.0.is_multiple_of(b.interval) => Some((
                Timestamp(parent.timestamp.0.saturating_sub(b.max_timewarp)),
                b.max_timewarp,
            )),
            _ => None,
        }
    }

    /// The target a header's bits stand for, refused when invalid or above the limit.
    pub fn target_of(&self, bits: CompactTarget) -> Result<Target, PowError> {
        let target = bits.to_target().ok_or(PowError::InvalidBits { bits })?;
        if target > self.pow_limit {
            return Err(PowError::TargetAboveLimit {
                target,
                limit: self.pow_limit,
            });
        }
        Ok(target)
    }
}

impl ConsensusEngine for PowEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// Cheapest first, so a flood of junk headers costs one hash each: the target from the
    /// bits, the hash against it, the timewarp rule, and last the expected bits (which in
    /// Bitcoin mode walks back a whole period at each boundary).
    fn verify_header(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let got = CompactTarget::from_consensus(header.engine.bits);
        let target = self.target_of(got).map_err(reject)?;
        if self.check_seal && !target.is_met_by(&header.hash()) {
            return Err(reject(PowError::HashAboveTarget {
                hash: header.hash(),
                target,
            }));
        }
        if let Some((earliest, max_timewarp)) = self.timewarp_bound(parent, header.height())
            && header.timestamp < earliest
        {
            return Err(reject(PowError::TimewarpViolation {
                height: header.height(),
                timestamp: header.timestamp,
                parent_timestamp: parent.timestamp,
                max_timewarp,
            }));
        }
        let expected = self.next_bits(chain, parent)?;
        if got != expected {
            return Err(reject(PowError::WrongBits { expected, got }));
        }
        Ok(())
    }

    /// The work of the header's target; zero for bits that encode no target (such a header
    /// never passes `verify_header`).
    fn block_weight(&self, header: &SealedHeader) -> Weight {
        CompactTarget::from_consensus(header.engine.bits)
            .to_target()
            .map_or(Weight::ZERO, |t| t.to_work().to_weight())
    }

    /// The proof: the hash against the target its bits encode, the work it adds, and the
    /// bits the retarget rule asked for (when the parent is stored).
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let bits = CompactTarget::from_consensus(header.engine.bits);
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("hash", header.hash().to_string()),
            ("bits", bits.to_string()),
        ];
        match bits.to_target() {
            Some(target) => {
                out.push(("target", target.to_string()));
                out.push((
                    "hash_meets_target",
                    target.is_met_by(&header.hash()).to_string(),
                ));
                out.push(("work", target.to_work().to_string()));
            }
            None => out.push(("target", "invalid bits".to_owned())),
        }
        if header.height() > Height::GENESIS
            && let Some(parent) = chain.header(&header.parent)?
        {
            out.push(("expected_bits", self.next_bits(chain, &parent)?.to_string()));
        }
        out.push((
            "retarget",
            match &self.rule {
                Rule::Asert(a) => format!(
                    "asert, half-life {} s, target block time {} s",
                    a.half_life, a.target_block_time
                ),
                Rule::Bitcoin(b) => format!(
                    "bitcoin, every {} blocks, timespan {} s",
                    b.interval, b.target_timespan
                ),
            },
        ));
        Ok(out)
    }

    /// Bits, nonce and the extra-nonce the miner rolled.
    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (
                "bits",
                CompactTarget::from_consensus(header.engine.bits).to_string(),
            ),
            ("nonce", header.engine.nonce.to_string()),
        ];
        if let Ok(extra) = <[u8; 8]>::try_from(header.engine.data.as_slice()) {
            fields.push(("extra_nonce", u64::from_le_bytes(extra).to_string()));
        }
        fields
    }

    /// Pays the block reward to the producer (fees are paid by the core per transaction).
    fn end_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        engine_state::pay_reward(
            state,
            ENGINE_NAME,
            &header.producer,
            self.params.block_reward,
            |address| PowError::RewardOverflow { address },
        )
    }
}
