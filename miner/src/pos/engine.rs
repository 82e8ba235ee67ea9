//! The verifying half of coin-age proof of stake: every node checks every block with it.

use crate::engine_state;
use crate::pos::age::CoinAge;
use crate::pos::error::PosError;
use crate::pos::kernel::{
    EntropyEntry, EntropyLog, KernelCheck, StakeInputs, StakeModifier, StakeProof, kernel_hash,
    modifier_epoch, weighted_target,
};
use crate::pos::params::PosParams;
use crate::pos::retarget::peercoin_next_bits;
use crate::pow::{CompactTarget, Target};
use crate::seal::verify_signed_seal;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::validation::check_begin_block_on_parent;
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
/// Prefix of an account's coins by age (a [`CoinAge`]).
const AGE_PREFIX: &[u8] = b"age/";

fn age_key(account: &Address) -> Vec<u8> {
    [AGE_PREFIX, account.0.as_slice()].concat()
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

    /// `account`'s coins by age, as seen by a child of `parent` (`state` is the
    /// parent's). Accounts untouched since genesis have no record: their whole balance
    /// counts from the genesis timestamp.
    pub fn coin_age(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
        account: &Address,
    ) -> Result<CoinAge, StoreError> {
        let balance = state.account(account)?.balance;
        self.recorded_age(state, parent, account, balance)
    }

    /// The coin-age record of `account` in `state`, or for an account without one,
    /// `parent_balance` aging since genesis. In `end_block` the state already holds the
    /// block's transfers, so the caller passes the balance before them.
    fn recorded_age(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
        account: &Address,
        parent_balance: Amount,
    ) -> Result<CoinAge, StoreError> {
        match engine_state::get::<CoinAge>(state, ENGINE_NAME, &age_key(account))? {
            Some(age) => {
                age.check_shape().map_err(|reason| StoreError::Corrupt {
                    what: ENGINE_NAME,
                    reason: format!("coin age of {account}: {reason}"),
                })?;
                Ok(age)
            }
            None => Ok(CoinAge::single(
                parent_balance,
                self.genesis_time(state, parent)?,
            )),
        }
    }

    /// When `account`'s oldest coins started aging, as seen by a child of `parent`
    /// (`state` is the parent's): the time of its own last spend or stake, or of genesis,
    /// unless all it holds was received since. Coins received later age on their own
    /// ([`PosEngine::coin_age`]). An account without coins reads the genesis time.
    pub fn age_origin(
        &self,
        state: &dyn StateRead,
        parent: &SealedHeader,
        account: &Address,
    ) -> Result<Timestamp, StoreError> {
        match self.coin_age(state, parent, account)?.oldest_origin() {
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
            age: self.coin_age(state, parent, &staker)?,
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

    /// An account as it was before this block: the overlay's base value when the block
    /// changed it, else the current one.
    fn parent_account(
        state: &StateOverlay<'_>,
        undo: &[(StateKey, Option<Vec<u8>>)],
        address: &Address,
    ) -> Result<Account, StoreError> {
        let key = StateKey::account(address);
        match undo.iter().find(|(k, _)| *k == key) {
            None => state.account(address),
            Some((_, None)) => Ok(Account::default()),
            Some((_, Some(bytes))) => {
                borsh::from_slice::<Account>(bytes).map_err(|e| StoreError::Corrupt {
                    what: "account",
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Writes `account`'s coins by age (an account without coins keeps no record).
    fn put_coin_age(state: &mut StateOverlay<'_>, account: &Address, age: &CoinAge) {
        let key = age_key(account);
        if age.is_empty() {
            state.delete(StateKey::engine(ENGINE_NAME, &key));
        } else {
            engine_state::put(state, ENGINE_NAME, &key, age);
        }
    }
}

impl ConsensusEngine for PosEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// The stateless rules, cheapest first: the timestamp's granularity and order, the
    /// bits (valid, within the limit, the retarget's), the producer's signature; then, on
    /// the parent's state and before the block is stored or weighed, the stake kernel and
    /// the header's stake proof ([`ConsensusEngine::begin_block`]'s checks).
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
        verify_signed_seal(header).map_err(|e| reject(PosError::Seal(e)))?;
        check_begin_block_on_parent(self, chain, header, parent)
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
        if claimed.age != actual.age {
            return Err(mismatch(
                "age",
                claimed.age.to_string(),
                actual.age.to_string(),
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

    /// Pays the reward for the coin age the stake consumed (every bucket of the parent
    /// state's), then ages the coins this block moved: the producer's and every sender's
    /// whole balance restarts at the block's time (staking and spending consume age); an
    /// account that only received adds a young bucket and keeps the age of what it held.
    fn end_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let producer = header.producer;
        let time = header.timestamp;
        // What the block's transactions changed, before the reward adds to it.
        let undo = state.undo()?;
        let mut touched = BTreeSet::from([producer]);
        for (key, old) in &undo {
            if let Some(account) = key.as_account()
                && state.get(key)? != *old
            {
                touched.insert(account);
            }
        }
        let before = |state: &StateOverlay<'_>, account: &Address| {
            Self::parent_account(state, &undo, account)
        };

        let staked_balance = before(state, &producer)?.balance;
        let staked = self.recorded_age(state, parent, &producer, staked_balance)?;
        let reward = staked
            .reward(&self.params, producer, time)
            .map_err(reject)?;
        let age_secs = staked
            .oldest_origin()
            .map_or(0, |o| time.0.saturating_sub(o.0));
        engine_state::pay_reward(state, ENGINE_NAME, &producer, reward, |address| {
            PosError::RewardOverflow {
                address,
                balance: staked_balance,
                age_secs,
            }
        })?;

        for account in touched {
            let was = before(state, &account)?;
            let now = state.account(&account)?;
            let spent = account == producer || now.nonce != was.nonce || now.balance < was.balance;
            let age = if spent {
                CoinAge::single(now.balance, time)
            } else {
                let mut age = self.recorded_age(state, parent, &account, was.balance)?;
                // Only the received coins are new: they age from this block on.
                let received = now.balance.checked_sub(was.balance).unwrap_or_default();
                age.received(received, time);
                age
            };
            Self::put_coin_age(state, &account, &age);
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
                let origin = proof.age_origin().unwrap_or(header.timestamp);
                let age_secs = header.timestamp.0.saturating_sub(origin.0);
                let days = proof.age.coin_days(&self.params, header.timestamp);
                let kernel =
                    kernel_hash(&proof.modifier, &header.producer, origin, header.timestamp);
                out.push(("age_origin", origin.to_string()));
                out.push(("age_secs", age_secs.to_string()));
                out.push(("stake", proof.balance().to_string()));
                out.push(("age_buckets", proof.age.to_string()));
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
                    proof
                        .age
                        .reward(&self.params, header.producer, header.timestamp)
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
        let recorded: Option<CoinAge> = engine_state::get(state, ENGINE_NAME, &age_key(address))?;
        let origin = match &recorded {
            Some(age) => age.oldest_origin(),
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
        let buckets = match &recorded {
            Some(age) => age.to_string(),
            None => format!("{}@{origin}", state.account(address)?.balance),
        };
        Ok(vec![
            ("age_origin", origin.to_string()),
            ("stakes_from", stakes_from.to_string()),
            ("full_weight_from", full_weight_from.to_string()),
            ("age_buckets", buckets),
        ])
    }

    /// Bits, and the stake the header claims: its age origin, balance and coin-days.
    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        let mut fields = vec![(
            "bits",
            CompactTarget::from_consensus(header.engine.bits).to_string(),
        )];
        if let Ok(proof) = StakeProof::from_bytes(&header.engine.data) {
            let origin = proof.age_origin().unwrap_or(header.timestamp);
            fields.push(("age_origin", origin.to_string()));
            fields.push(("stake", proof.balance().to_string()));
            fields.push((
                "coin_days",
                proof
                    .age
                    .coin_days(&self.params, header.timestamp)
                    .to_string(),
            ));
        }
        fields
    }
}
