//! The genesis file: the chain id, the validators, the initial accounts and the consensus
//! parameters every validator must agree on. JSON on disk; its identity ([`Genesis::hash`]) is
//! blake3 over a domain tag and its borsh encoding, so whitespace and key order in the file
//! do not matter.

use crate::account::Account;
use crate::codec::encode;
use crate::limits::{
    BLOCK_BYTES_MAX, BLOCK_BYTES_MIN, BLOCK_INTERVAL_MS_MAX, BLOCK_TXS_MAX, GENESIS_ACCOUNTS_MAX,
    GENESIS_FILE_BYTES_MAX, TIMEOUT_MS_MAX, VALIDATOR_NAME_BYTES_MAX,
};
use crate::state_tree::StateTree;
use borsh::BorshSerialize;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use tally_consensus::limits::{TOTAL_VOTING_POWER_MAX, VALIDATORS_MAX};
use tally_consensus::{TimeoutParams, Validator, ValidatorSet, ValidatorSetError, VotingPower};
use tally_crypto::{ChainId, Hash, PublicKey};

/// Domain tag of [`Genesis::hash`]; changing it changes every chain's identity.
const GENESIS_HASH_TAG: &[u8] = b"tally/genesis/v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    /// Milliseconds since the Unix epoch; block 1's time must be later.
    pub genesis_time_ms: u64,
    /// The validator set, in index order (index = position).
    pub validators: Vec<GenesisValidator>,
    pub accounts: Vec<GenesisAccount>,
    pub params: ConsensusParams,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// A human name for logs and tools, 1 to [`VALIDATOR_NAME_BYTES_MAX`] bytes, unique.
    pub name: String,
    pub public_key: PublicKey,
    /// Voting power, > 0.
    pub power: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub public_key: PublicKey,
    pub balance: u64,
}

/// Parameters that every validator must share, or they would disagree about block validity
/// (limits) or fall out of step (timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    pub timeouts: TimeoutParams,
    /// Most txs in a block, 1 to [`BLOCK_TXS_MAX`].
    pub block_txs_max: u32,
    /// Most bytes of an encoded block, [`BLOCK_BYTES_MIN`] to [`BLOCK_BYTES_MAX`].
    pub block_bytes_max: u64,
    /// How long a validator waits after a commit before starting the next height (CometBFT's
    /// `timeout_commit`), so that blocks gather txs instead of racing each other. 0 to
    /// [`BLOCK_INTERVAL_MS_MAX`]; 1000 when absent from the file. Not a validity rule: block
    /// times are only required to increase.
    #[serde(default = "default_block_interval_ms")]
    pub block_interval_ms: u64,
}

fn default_block_interval_ms() -> u64 {
    1000
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            timeouts: TimeoutParams::default(),
            // A height carries up to about 2.9 MB of txs: under load, fewer and larger
            // blocks spread the per-height costs (votes, the commit's fsync, the state root
            // update) over more txs. At 10,000 txs the local testnet fell behind an offered
            // 21,000 tx/s and committed 19,153; at 20,000 it kept up (docs/performance.md).
            block_txs_max: 20_000,
            block_bytes_max: 4 * 1024 * 1024,
            block_interval_ms: default_block_interval_ms(),
        }
    }
}

/// Written by hand because `TimeoutParams` (consensus) has no borsh encoding: the six timeouts
/// in declaration order, then the limits, all little endian.
impl BorshSerialize for ConsensusParams {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        let t = &self.timeouts;
        for ms in [
            t.propose_base_ms,
            t.propose_delta_ms,
            t.prevote_base_ms,
            t.prevote_delta_ms,
            t.precommit_base_ms,
            t.precommit_delta_ms,
        ] {
            BorshSerialize::serialize(&ms, writer)?;
        }
        BorshSerialize::serialize(&self.block_txs_max, writer)?;
        BorshSerialize::serialize(&self.block_bytes_max, writer)?;
        BorshSerialize::serialize(&self.block_interval_ms, writer)
    }
}

/// Why a genesis is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis lists no validators")]
    NoValidators,
    #[error("genesis lists {count} validators, more than the maximum {max}")]
    TooManyValidators { count: usize, max: usize },
    #[error("validator {index} has an empty name")]
    EmptyValidatorName { index: usize },
    #[error("validator name {name:?} is longer than {max} bytes")]
    ValidatorNameTooLong { name: String, max: usize },
    #[error("two validators are named {name:?}")]
    DuplicateValidatorName { name: String },
    #[error("validators {first:?} and {second:?} have the same public key {public_key}")]
    DuplicateValidator { public_key: PublicKey, first: String, second: String },
    #[error("validator {name:?} has zero voting power")]
    ZeroPower { name: String },
    #[error("total voting power exceeds the maximum {max}")]
    TotalPowerTooHigh { max: u64 },
    #[error("the validators do not form a valid set: {0}")]
    ValidatorSet(#[from] ValidatorSetError),
    #[error("genesis lists {count} accounts, more than the maximum {max}")]
    TooManyAccounts { count: usize, max: usize },
    #[error("account {public_key} is listed twice")]
    DuplicateAccount { public_key: PublicKey },
    #[error("the sum of the genesis balances overflows a u64")]
    TotalSupplyOverflow,
    #[error("params.{field} = {value}, want {min} ..= {max}")]
    ParamOutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
}

/// Why a genesis file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GenesisLoadError {
    #[error("cannot read genesis file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("genesis file {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("genesis file {path} is not valid genesis JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("genesis file {path} is invalid: {source}")]
    Invalid { path: PathBuf, source: GenesisError },
}

/// Why a genesis file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisSaveError {
    #[error("cannot write genesis file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode genesis as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Genesis {
    /// A genesis with the default [`ConsensusParams`].
    pub fn new(
        chain_id: ChainId,
        genesis_time_ms: u64,
        validators: Vec<GenesisValidator>,
        accounts: Vec<GenesisAccount>,
    ) -> Genesis {
        Genesis { chain_id, genesis_time_ms, validators, accounts, params: Default::default() }
    }

    /// Reads, parses and validates a genesis file of at most [`GENESIS_FILE_BYTES_MAX`] bytes.
    pub fn load(path: &Path) -> Result<Genesis, GenesisLoadError> {
        let io = |source| GenesisLoadError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(GENESIS_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > GENESIS_FILE_BYTES_MAX {
            let path = path.to_path_buf();
            return Err(GenesisLoadError::TooLarge { path, max: GENESIS_FILE_BYTES_MAX });
        }
        let genesis: Genesis = serde_json::from_slice(&bytes)
            .map_err(|source| GenesisLoadError::Json { path: path.to_path_buf(), source })?;
        genesis
            .validate()
            .map_err(|source| GenesisLoadError::Invalid { path: path.to_path_buf(), source })?;
        Ok(genesis)
    }

    /// Writes pretty-printed JSON.
    pub fn save(&self, path: &Path) -> Result<(), GenesisSaveError> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        std::fs::write(path, json)
            .map_err(|source| GenesisSaveError::Io { path: path.to_path_buf(), source })
    }

    /// Checks every rule, validators first, then accounts, then parameters.
    pub fn validate(&self) -> Result<(), GenesisError> {
        self.validate_validators()?;
        self.validator_set()?;
        self.validate_accounts()?;
        self.params.validate()
    }

    fn validate_validators(&self) -> Result<(), GenesisError> {
        let count = self.validators.len();
        if count == 0 {
            return Err(GenesisError::NoValidators);
        }
        if count > VALIDATORS_MAX {
            return Err(GenesisError::TooManyValidators { count, max: VALIDATORS_MAX });
        }
        let mut names = BTreeSet::new();
        let mut keys: BTreeMap<PublicKey, &str> = BTreeMap::new();
        let mut total: u64 = 0;
        for (index, v) in self.validators.iter().enumerate() {
            if v.name.is_empty() {
                return Err(GenesisError::EmptyValidatorName { index });
            }
            if v.name.len() > VALIDATOR_NAME_BYTES_MAX {
                let name = v.name.clone();
                return Err(GenesisError::ValidatorNameTooLong {
                    name,
                    max: VALIDATOR_NAME_BYTES_MAX,
                });
            }
            if !names.insert(v.name.as_str()) {
                return Err(GenesisError::DuplicateValidatorName { name: v.name.clone() });
            }
            if let Some(first) = keys.insert(v.public_key, &v.name) {
                return Err(GenesisError::DuplicateValidator {
                    public_key: v.public_key,
                    first: first.to_string(),
                    second: v.name.clone(),
                });
            }
            if v.power == 0 {
                return Err(GenesisError::ZeroPower { name: v.name.clone() });
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= TOTAL_VOTING_POWER_MAX)
                .ok_or(GenesisError::TotalPowerTooHigh { max: TOTAL_VOTING_POWER_MAX })?;
        }
        Ok(())
    }

    fn validate_accounts(&self) -> Result<(), GenesisError> {
        let count = self.accounts.len();
        if count > GENESIS_ACCOUNTS_MAX {
            return Err(GenesisError::TooManyAccounts { count, max: GENESIS_ACCOUNTS_MAX });
        }
        let mut seen = BTreeSet::new();
        let mut supply: u64 = 0;
        for account in &self.accounts {
            if !seen.insert(account.public_key) {
                return Err(GenesisError::DuplicateAccount { public_key: account.public_key });
            }
            // A supply that fits in a u64 means no balance can ever overflow.
            supply =
                supply.checked_add(account.balance).ok_or(GenesisError::TotalSupplyOverflow)?;
        }
        Ok(())
    }

    /// The consensus validator set, in genesis order.
    pub fn validator_set(&self) -> Result<ValidatorSet, ValidatorSetError> {
        ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| Validator { public_key: v.public_key, voting_power: VotingPower(v.power) })
                .collect(),
        )
    }

    /// `blake3("tally/genesis/v1" || borsh(genesis))`.
    pub fn hash(&self) -> Hash {
        Hash::digest_parts(&[GENESIS_HASH_TAG, &encode(self)])
    }

    /// The state before block 1.
    pub fn state_tree(&self) -> StateTree {
        StateTree::from_accounts(self.initial_accounts())
    }

    /// The genesis accounts as state entries (nonce 0).
    pub fn initial_accounts(&self) -> impl Iterator<Item = (PublicKey, Account)> + '_ {
        self.accounts.iter().map(|a| (a.public_key, Account { balance: a.balance, nonce: 0 }))
    }
}

impl ConsensusParams {
    pub fn validate(&self) -> Result<(), GenesisError> {
        let t = &self.timeouts;
        let ms_max = TIMEOUT_MS_MAX;
        check("timeouts.propose_base_ms", t.propose_base_ms, 1, ms_max)?;
        check("timeouts.propose_delta_ms", t.propose_delta_ms, 0, ms_max)?;
        check("timeouts.prevote_base_ms", t.prevote_base_ms, 1, ms_max)?;
        check("timeouts.prevote_delta_ms", t.prevote_delta_ms, 0, ms_max)?;
        check("timeouts.precommit_base_ms", t.precommit_base_ms, 1, ms_max)?;
        check("timeouts.precommit_delta_ms", t.precommit_delta_ms, 0, ms_max)?;
        check("block_txs_max", u64::from(self.block_txs_max), 1, u64::from(BLOCK_TXS_MAX))?;
        check("block_bytes_max", self.block_bytes_max, BLOCK_BYTES_MIN, BLOCK_BYTES_MAX as u64)?;
        check("block_interval_ms", self.block_interval_ms, 0, BLOCK_INTERVAL_MS_MAX)
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), GenesisError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(GenesisError::ParamOutOfRange { field, value, min, max })
    }
}
