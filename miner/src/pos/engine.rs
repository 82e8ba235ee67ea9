//! The verifying half of coin-age proof of stake: every node checks every block with it.

use crate::engine_state;
use crate::pos::error::PosError;
use crate::pos::kernel::{
    EntropyEntry, EntropyLog, KernelCheck, StakeInputs, StakeModifier, StakeProof, coin_days,
    kernel_hash, modifier_epoch, stake_reward, weighted_target,
};
use crate::pos::params::PosParams;
use crate::pos::retarget::peercoin_next_bits;
use crate::pow::{CompactTarget, Target};
use crate::seal::verify_signed_seal;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::{
    Account, Address, Amount, ChainView, ConsensusEngine, EngineError, Header, Height,
    SealedHeader, StateKey, StateOverlay, StateRead, StoreError, Timestamp, Weight,
};
use std::collections::BTreeSet;

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "pos";

/// The genesis timestamp, recorded by block 1 (the genesis state is written before any
/// header exists, so it cannot know it).
const KEY_GENESIS_TIME: &[u8] = b"genesis_time";
/// The [`EntropyLog`] of the branch.
const KEY_ENTROPY: &[u8] = b"entropy";
/// The [`ModifierRecord`] of the newest block.
const KEY_MODIFIER: &[u8] = b"modifier";
/// Prefix of an account's age origin (a [`Timestamp`]).
const ORIGIN_PREFIX: &[u8] = b"origin/";

fn origin_key(account: &Address) -> Vec<u8> {
    [ORIGIN_PREFIX, account.0.as_slice()].concat()
}

fn reject(e: PosError) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e)
}

/// Header times are checked to fit in 32 bits before engines see them; saturate anyway so
/// a caller that skipped the check gets a wrong answer for its bad header, not a panic.
fn secs(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// The modifier the newest block staked under and the epoch it belongs to, kept in the
/// engine state for people and tools (the kernel recomputes it from the entropy log).
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct ModifierRecord {
    /// Start of the modifier epoch: when this modifier took effect.
    pub epoch_start: Timestamp,
    pub value: StakeModifier,
}

/// Coin-age proof of stake after Peercoin (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct PosEngine {
    params: PosParams,
    limit: Target,
}

impl PosEngine {
    /// An engine for `params`, refused when they are invalid.
    pub fn new(params: PosParams) -> Result<PosEngine, PosError> {
        params.validate()?;
        let limit = params.pos_limit_target()?;
        Ok(PosEngine { params, limit })
    }

    pub fn params(&self) -> &PosParams {
        &self.params
    }

    /// The target a header's bits stand for, refused when invalid or above the limit.
    pub fn target_of(&self, bits: CompactTarget) -> Result<Target, PosError> {
        let target = bits.to_target().ok_or(PosError::InvalidBits { bits })?;
        if target > self.limit {
            return Err(PosError::TargetAboveLimit {
                target,
                limit: self.limit,
            });
        }
        Ok(target)
    }

    /// The bits a child of `parent` must carry: the genesis bits for blocks 1 and 2, then
    /// Peercoin's retarget from the parent's bits and its spacing from the grandparent.
    pub fn next_bits(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
    ) -> Result<CompactTarget, EngineError> {
        if parent.height() <= Height(1) {
            return Ok(self.params.genesis_bits);
        }
        let grandparent = chain
            .header(&parent.parent)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "header chain",
                reason: format!(
                    "parent {} of {} is not stored",
                    parent.parent,
                    parent.hash()
                ),
            })?;
        Ok(CompactTarget::from_consensus(peercoin_next_bits(
            parent.engine.bits,
            secs(parent.timestamp),
            secs(grandparent.timestamp),
            self.params.target_spacing,
            self.params.target_timespan,
            self.limit,
        )))
    }

    /// The genesis time as seen by a child of `parent` (`state` is the parent's).
    fn genesis_time(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
    ) -> Result<Timestamp, StoreError> {
        if parent.height() == Height::GENESIS {
            return Ok(parent.timestamp);
        }
        engine_state::require(state, ENGINE_NAME, KEY_GENESIS_TIME)
    }

    /// When `account`'s coins started aging, as seen by a child of `parent` (`state` is
    /// the parent's): the time its account last changed or it last staked. Accounts
    /// untouched since genesis have no record and count from the genesis timestamp.
    pub fn age_origin(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
        account: &Address,
    ) -> Result<Timestamp, StoreError> {
        match engine_state::get(state, ENGINE_NAME, &origin_key(account))? {
            Some(origin) => Ok(origin),
            None => self.genesis_time(state, parent),
        }
    }

    /// The modifier record of the newest block in `state` (none before block 1).
    pub fn current_modifier(
        &self,
        state: &dyn StateRead,
    ) -> Result<Option<ModifierRecord>, StoreError> {
        engine_state::get(state, ENGINE_NAME, KEY_MODIFIER)
    }

    /// What `staker` brings to a child of `parent` with target `target`, from the
    /// parent's `state`: the entropy log gains the parent's own entry here.
    fn inputs_from_state(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
        staker: Address,
        target: Target,
    ) -> Result<StakeInputs, StoreError> {
        let mut entropy: EntropyLog =
            engine_state::get(state, ENGINE_NAME, KEY_ENTROPY)?.unwrap_or_default();
        entropy.push(EntropyEntry::of_block(parent.timestamp, &parent.hash()));
        Ok(StakeInputs {
            staker,
            balance: state.account(&staker)?.balance,
            age_origin: self.age_origin(state, parent, &staker)?,
            target,
            entropy,
        })
    }

    /// What `staker` brings to a child of `parent`, read from the chain's head state, which
    /// must be `parent`'s. Evaluate it at a time with [`StakeInputs::evaluate`].
    pub fn stake_inputs(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        staker: Address,
    ) -> Result<StakeInputs, EngineError> {
        let head = chain.head();
        if head.hash() != parent.hash() {
            return Err(reject(PosError::StateNotAtParent {
                parent: parent.hash(),
                head: head.hash(),
            }));
        }
        let target = self
            .target_of(self.next_bits(chain, parent)?)
            .map_err(reject)?;
        Ok(self.inputs_from_state(chain.state(), parent, staker, target)?)
    }

    /// The kernel `staker` would have in a child of `parent` (the head) at `time`.
    pub fn kernel_at(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        staker: Address,
        time: Timestamp,
    ) -> Result<KernelCheck, EngineError> {
        Ok(self
            .stake_inputs(chain, parent, staker)?
            .evaluate(&self.params, time))
    }

    /// The staker's balance before this block: the overlay's base value when the block
    /// changed the account, else the current one.
    fn parent_balance(
        state: &StateOverlay<'_>,
        undo: &[(StateKey, Option<Vec<u8>>)],
        staker: &Address,
    ) -> Result<Amount, StoreError> {
        let key = StateKey::account(staker);
        match undo.iter().find(|(k, _)| *k == key) {
            None => Ok(state.account(staker)?.balance),
            Some((_, None)) => Ok(Amount::ZERO),
            Some((_, Some(bytes))) => borsh::from_slice::<Account>(bytes)
                .map(|a| a.balance)
                .map_err(|e| StoreError::Corrupt {
                    what: "account",
                    reason: e.to_string(),
                }),
        }
    }
}

impl ConsensusEngine for PosEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// The stateless rules, cheapest first: the timestamp's granularity and order, the
    /// bits (valid, within the limit, the retarget's), then the producer's signature. The
    /// kernel needs the parent state and is checked in `begin_block`.
    fn verify_header(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let granularity = self.params.granularity;
        if !header.timestamp.0.is_multiple_of(granularity) {
            return Err(reject(PosError::TimestampNotAligned {
                timestamp: header.timestamp,
                granularity,
            }));
        }
        // Strictly later than the parent, so ages, the entropy log and the retarget's
        // spacing never run backwards.
        if header.timestamp <= parent.timestamp {
            return Err(reject(PosError::TimestampNotAfterParent {
                timestamp: header.timestamp,
                parent_timestamp: parent.timestamp,
            }));
        }
        let got = CompactTarget::from_consensus(header.engine.bits);
        self.target_of(got).map_err(reject)?;
        let expected = self.next_bits(chain, parent)?;
        if got != expected {
            return Err(reject(PosError::WrongBits { expected, got }));
        }
        verify_signed_seal(header)
            .map_err(|e| reject(PosError::Seal(e)))
            .map(|_| ())
    }

    /// Peercoin's chain trust: `2^256 / (target + 1)` of the block's target per coin-day;
    /// zero for bits that encode no target (such a header never passes `verify_header`).
    fn block_weight(&self, header: &SealedHeader) -> Weight {
        CompactTarget::from_consensus(header.engine.bits)
            .to_target()
            .map_or(Weight::ZERO, |t| t.to_work().to_weight())
    }

    /// Recomputes the producer's kernel from the parent state and refuses the block unless
    /// it meets the weighted target and the header's stake proof says the same; then
    /// records the parent's entropy bit and the modifier.
    fn begin_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let target = self
            .target_of(CompactTarget::from_consensus(header.engine.bits))
            .map_err(reject)?;
        let inputs = self.inputs_from_state(state, parent, header.producer, target)?;
        let check = inputs.evaluate(&self.params, header.timestamp);
        check.verdict().map_err(reject)?;

        let claimed = StakeProof::from_bytes(&header.engine.data).map_err(reject)?;
        let actual = check.proof();
        let mismatch = |field, header: String, state: String| {
            reject(PosError::StakeProofMismatch {
                field,
                header,
                state,
            })
        };
        if claimed.age_origin != actual.age_origin {
            return Err(mismatch(
                "age_origin",
                claimed.age_origin.to_string(),
                actual.age_origin.to_string(),
            ));
        }
        if claimed.balance != actual.balance {
            return Err(mismatch(
                "balance",
                claimed.balance.to_string(),
                actual.balance.to_string(),
            ));
        }
        if claimed.modifier != actual.modifier {
            return Err(mismatch(
                "modifier",
                claimed.modifier.to_string(),
                actual.modifier.to_string(),
            ));
        }

        if parent.height() == Height::GENESIS {
            engine_state::put(state, ENGINE_NAME, KEY_GENESIS_TIME, &parent.timestamp);
        }
        let mut entropy = inputs.entropy;
        entropy.prune(&self.params, header.timestamp);
        engine_state::put(state, ENGINE_NAME, KEY_ENTROPY, &entropy);
        let record = ModifierRecord {
            epoch_start: modifier_epoch(&self.params, header.timestamp),
            value: check.modifier,
        };
        if self.current_modifier(state)? != Some(record) {
            engine_state::put(state, ENGINE_NAME, KEY_MODIFIER, &record);
        }
        Ok(())
    }

    /// Pays the reward for the coin age the stake consumed (on the parent balance), then
    /// resets the age origin of the producer and of every account whose value this block
    /// changed to the block's time (an emptied account loses its record).
    fn end_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let producer = header.producer;
        let undo = state.undo()?;
        let balance = Self::parent_balance(state, &undo, &producer)?;
        let origin = self.age_origin(state, parent, &producer)?;
        let age_secs = header.timestamp.0.saturating_sub(origin.0);
        let reward = stake_reward(&self.params, producer, balance, age_secs).map_err(reject)?;
        engine_state::pay_reward(state, ENGINE_NAME, &producer, reward, |address| {
            PosError::RewardOverflow {
                address,
                balance,
                age_secs,
            }
        })?;

        let mut touched = BTreeSet::from([producer]);
        for (key, old) in &undo {
            if let Some(account) = key.as_account()
                && state.get(key)? != *old
            {
                touched.insert(account);
            }
        }
        for account in touched {
            let key = origin_key(&account);
            if state.get(&StateKey::account(&account))?.is_some() {
                engine_state::put(state, ENGINE_NAME, &key, &header.timestamp);
            } else {
                state.delete(StateKey::engine(ENGINE_NAME, &key));
            }
        }
        Ok(())
    }

    /// The kernel inequality with its values, from the stake proof the header carries
    /// (checked against the parent state when the block was executed).
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let bits = CompactTarget::from_consensus(header.engine.bits);
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("staker", header.producer.to_string()),
            ("time", header.timestamp.to_string()),
            ("bits", bits.to_string()),
        ];
        if header.height() == Height::GENESIS {
            return Ok(out);
        }
        match StakeProof::from_bytes(&header.engine.data) {
            Ok(proof) => {
                let age_secs = header.timestamp.0.saturating_sub(proof.age_origin.0);
                let days = coin_days(&self.params, proof.balance, age_secs);
                let kernel = kernel_hash(
                    &proof.modifier,
                    &header.producer,
                    proof.age_origin,
                    header.timestamp,
                );
                out.push(("age_origin", proof.age_origin.to_string()));
                out.push(("age_secs", age_secs.to_string()));
                out.push(("stake", proof.balance.to_string()));
                out.push(("coin_days", days.to_string()));
                out.push(("modifier", proof.modifier.to_string()));
                out.push(("kernel", kernel.to_string()));
                match bits.to_target() {
                    Some(target) => {
                        let weighted = weighted_target(target, days);
                        out.push(("target_per_coin_day", target.to_string()));
                        out.push(("weighted_target", weighted.to_string()));
                        out.push((
                            "kernel_meets_target",
                            (kernel.value() <= weighted.to_u256()).to_string(),
                        ));
                        out.push(("chain_trust", target.to_work().to_string()));
                    }
                    None => out.push(("target_per_coin_day", "invalid bits".to_owned())),
                }
                if let Ok(reward) =
                    stake_reward(&self.params, header.producer, proof.balance, age_secs)
                {
                    out.push(("reward", reward.to_string()));
                }
            }
            Err(e) => out.push(("stake_proof", e.to_string())),
        }
        if let Some(parent) = chain.header(&header.parent)? {
            out.push(("expected_bits", self.next_bits(chain, &parent)?.to_string()));
        }
        Ok(out)
    }

    /// The account's coin age in `state`: when it started, when it may stake (one second
    /// past the minimum age) and when its weight stops growing. Before block 1 has recorded
    /// the genesis time, an untouched account's origin reads "genesis".
    fn account_fields(
        &self,
        state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let origin: Option<Timestamp> =
            match engine_state::get(state, ENGINE_NAME, &origin_key(address))? {
                Some(origin) => Some(origin),
                None => engine_state::get(state, ENGINE_NAME, KEY_GENESIS_TIME)?,
            };
        let Some(origin) = origin else {
            return Ok(vec![("age_origin", "genesis".to_owned())]);
        };
        let stakes_from = origin.saturating_add(self.params.stake_min_age.saturating_add(1));
        let full_weight_from = origin.saturating_add(
            self.params
                .stake_min_age
                .saturating_add(self.params.stake_max_age),
        );
        Ok(vec![
            ("age_origin", origin.to_string()),
            ("stakes_from", stakes_from.to_string()),
            ("full_weight_from", full_weight_from.to_string()),
        ])
    }

    /// Bits, and the stake the header claims: its age origin, balance and coin-days.
    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        let mut fields = vec![(
            "bits",
            CompactTarget::from_consensus(header.engine.bits).to_string(),
        )];
        if let Ok(proof) = StakeProof::from_bytes(&header.engine.data) {
            let age_secs = header.timestamp.0.saturating_sub(proof.age_origin.0);
            fields.push(("age_origin", proof.age_origin.to_string()));
            fields.push(("stake", proof.balance.to_string()));
            fields.push((
                "coin_days",
                coin_days(&self.params, proof.balance, age_secs).to_string(),
            ));
        }
        fields
    }
}
