//! Genesis files: validation errors, JSON round trips, the hash.

mod common;

use common::{genesis, user, validator};
use tally_crypto::PublicKey;
use tally_ledger::{GenesisAccount, GenesisError, GenesisLoadError, GenesisValidator};

#[test]
fn a_good_genesis_validates_and_gives_a_validator_set() {
    let g = genesis(3);
    assert_eq!(g.validate(), Ok(()));
    let set = g.validator_set().unwrap();
    assert_eq!(set.len(), 4);
    assert_eq!(set.index_of(&validator(2).public()).map(|i| i.0), Some(2));
}

#[test]
fn each_rule_has_its_own_error() {
    let mut g = genesis(2);
    g.validators.clear();
    assert_eq!(g.validate(), Err(GenesisError::NoValidators));

    let mut g = genesis(2);
    g.validators[2].public_key = g.validators[0].public_key;
    assert!(matches!(g.validate(), Err(GenesisError::DuplicateValidator { .. })));

    let mut g = genesis(2);
    g.validators[1].name = "validator-0".into();
    assert!(matches!(g.validate(), Err(GenesisError::DuplicateValidatorName { .. })));

    let mut g = genesis(2);
    g.validators[1].name = String::new();
    assert_eq!(g.validate(), Err(GenesisError::EmptyValidatorName { index: 1 }));

    let mut g = genesis(2);
    g.validators[3].power = 0;
    assert_eq!(g.validate(), Err(GenesisError::ZeroPower { name: "validator-3".into() }));

    let mut g = genesis(2);
    g.validators[0].power = u64::MAX / 2;
    assert!(matches!(g.validate(), Err(GenesisError::TotalPowerTooHigh { .. })));

    let mut g = genesis(2);
    g.accounts.push(GenesisAccount { public_key: user(1).public(), balance: 1 });
    assert_eq!(g.validate(), Err(GenesisError::DuplicateAccount { public_key: user(1).public() }));

    let mut g = genesis(2);
    g.accounts[0].balance = u64::MAX;
    assert_eq!(g.validate(), Err(GenesisError::TotalSupplyOverflow));

    let mut g = genesis(2);
    g.params.block_txs_max = 0;
    assert!(matches!(
        g.validate(),
        Err(GenesisError::ParamOutOfRange { field: "block_txs_max", .. })
    ));
    let mut g = genesis(2);
    g.params.block_bytes_max = tally_ledger::BLOCK_BYTES_MAX as u64 + 1;
    assert!(matches!(
        g.validate(),
        Err(GenesisError::ParamOutOfRange { field: "block_bytes_max", .. })
    ));
    let mut g = genesis(2);
    g.params.timeouts.prevote_base_ms = 0;
    assert!(matches!(
        g.validate(),
        Err(GenesisError::ParamOutOfRange { field: "timeouts.prevote_base_ms", .. })
    ));
}

#[test]
fn save_load_round_trip_and_hash_ignores_json_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let g = genesis(3);
    g.save(&path).unwrap();
    let loaded = tally_ledger::Genesis::load(&path).unwrap();
    assert_eq!(loaded, g);
    assert_eq!(loaded.hash(), g.hash());
    let compact = serde_json::to_string(&g).unwrap();
    let reparsed: tally_ledger::Genesis = serde_json::from_str(&compact).unwrap();
    assert_eq!(reparsed.hash(), g.hash());
    let json: serde_json::Value = serde_json::from_str(&compact).unwrap();
    assert_eq!(json["validators"][0]["public_key"], validator(0).public().to_hex());
    assert_eq!(json["params"]["timeouts"]["propose_base_ms"], g.params.timeouts.propose_base_ms);
}

#[test]
fn hash_covers_every_field() {
    let g = genesis(3);
    let mut other = g.clone();
    other.params.block_interval_ms += 1;
    assert_ne!(other.hash(), g.hash());
    let mut other = g.clone();
    other.params.timeouts.precommit_delta_ms += 1;
    assert_ne!(other.hash(), g.hash());
    let mut other = g.clone();
    other.accounts[2].balance += 1;
    assert_ne!(other.hash(), g.hash());
    let mut other = g.clone();
    other.validators[0].name.push('x');
    assert_ne!(other.hash(), g.hash());
}

#[test]
fn load_reports_bad_json_unknown_fields_and_invalid_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(tally_ledger::Genesis::load(&path), Err(GenesisLoadError::Json { .. })));

    let mut json = serde_json::to_value(genesis(1)).unwrap();
    json["surprise"] = serde_json::json!(1);
    std::fs::write(&path, json.to_string()).unwrap();
    assert!(matches!(tally_ledger::Genesis::load(&path), Err(GenesisLoadError::Json { .. })));

    let mut json = serde_json::to_value(genesis(1)).unwrap();
    json["params"].as_object_mut().unwrap().remove("block_interval_ms");
    std::fs::write(&path, json.to_string()).unwrap();
    let g = tally_ledger::Genesis::load(&path).unwrap();
    assert_eq!(g.params.block_interval_ms, 1000);

    let mut g = genesis(1);
    g.validators.push(GenesisValidator {
        name: "x".into(),
        public_key: PublicKey([7; 32]),
        power: 0,
    });
    g.save(&path).unwrap();
    assert!(matches!(
        tally_ledger::Genesis::load(&path),
        Err(GenesisLoadError::Invalid { source: GenesisError::ZeroPower { .. }, .. })
    ));
    let missing = dir.path().join("missing.json");
    assert!(matches!(tally_ledger::Genesis::load(&missing), Err(GenesisLoadError::Io { .. })));
}
