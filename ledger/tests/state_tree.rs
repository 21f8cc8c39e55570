//! The account-state sparse Merkle tree: incremental updates against rebuilds, proofs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use tally_crypto::{Hash, PublicKey};
use tally_ledger::state_tree::EMPTY_SUBTREE;
use tally_ledger::{Account, AccountProofError, StateTree};

fn key(i: u64) -> PublicKey {
    PublicKey(Hash::digest(&i.to_le_bytes()).0)
}

fn account(rng: &mut StdRng) -> Account {
    Account { balance: rng.gen(), nonce: rng.gen_range(0..1000) }
}

#[test]
fn empty_tree_root_and_absence_proof() {
    let tree = StateTree::new();
    assert_eq!(tree.root(), EMPTY_SUBTREE);
    let (found, proof) = tree.prove(&key(1));
    assert_eq!(found, None);
    assert_eq!(proof.verify(&tree.root(), &key(1), None), Ok(()));
    assert!(proof.verify(&tree.root(), &key(1), Some(&Account::default())).is_err());
}

#[test]
fn single_account_root_is_its_leaf_hash() {
    let acc = Account { balance: 5, nonce: 1 };
    let tree = StateTree::from_accounts([(key(7), acc)]);
    let state_key = tally_ledger::state_tree::state_key(&key(7));
    assert_eq!(tree.root(), tally_ledger::state_tree::account_leaf_hash(&state_key, &acc));
}

#[test]
fn incremental_updates_equal_rebuild_from_scratch_for_random_updates() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<PublicKey, Account> = BTreeMap::new();
    let mut tree = StateTree::new();
    for round in 0..60 {
        let changes: BTreeMap<PublicKey, Account> = (0..rng.gen_range(1..40))
            .map(|_| (key(rng.gen_range(0..300)), account(&mut rng)))
            .collect();
        let before = tree.clone();
        let before_root = before.root();
        tree = tree.apply(&changes);
        model.extend(changes.iter().map(|(k, v)| (*k, *v)));
        let rebuilt = StateTree::from_accounts(model.iter().map(|(k, v)| (*k, *v)));
        assert_eq!(tree.root(), rebuilt.root(), "round {round}");
        assert_eq!(tree.len(), model.len() as u64);
        // The old snapshot is untouched.
        assert_eq!(before.root(), before_root);
    }
    for (k, v) in &model {
        assert_eq!(tree.get(k), Some(*v));
    }
    assert_eq!(tree.get(&key(10_000)), None);
    let mut listed = tree.accounts();
    listed.sort_by_key(|(k, _)| *k);
    assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
}

#[test]
fn root_does_not_depend_on_update_order() {
    let mut rng = StdRng::seed_from_u64(3);
    let entries: Vec<(PublicKey, Account)> =
        (0..100).map(|i| (key(i), account(&mut rng))).collect();
    let mut one_by_one = StateTree::new();
    for (k, v) in entries.iter().rev() {
        one_by_one = one_by_one.apply(&BTreeMap::from([(*k, *v)]));
    }
    assert_eq!(one_by_one.root(), StateTree::from_accounts(entries).root());
}

#[test]
fn applying_k_changes_costs_about_k_log_n_hashes() {
    let mut rng = StdRng::seed_from_u64(11);
    let n = 20_000u64;
    let tree = StateTree::from_accounts((0..n).map(|i| (key(i), account(&mut rng))));
    let k = 16u64;
    let changes: BTreeMap<PublicKey, Account> =
        (0..k).map(|_| (key(rng.gen_range(0..n)), account(&mut rng))).collect();
    let (_, hashes) = tree.apply_counting(&changes);
    // log2(20_000) is about 14.3; allow for the random depth of a compact tree.
    let bound = k * (2 * 15 + 4);
    assert!(hashes <= bound, "{hashes} hashes for {k} changes, bound {bound}");
    // A rebuild would hash about 2n times.
    assert!(hashes * 100 < 2 * n);
}

#[test]
fn presence_and_both_kinds_of_absence_proofs_verify() {
    let mut rng = StdRng::seed_from_u64(5);
    let tree = StateTree::from_accounts((0..500).map(|i| (key(i), account(&mut rng))));
    let root = tree.root();
    for i in 0..500 {
        let (found, proof) = tree.prove(&key(i));
        let acc = found.expect("present");
        assert_eq!(proof.verify(&root, &key(i), Some(&acc)), Ok(()));
        let mut wrong = acc;
        wrong.balance ^= 1;
        assert!(matches!(
            proof.verify(&root, &key(i), Some(&wrong)),
            Err(AccountProofError::RootMismatch { .. })
        ));
        assert!(proof.verify(&root, &key(i), None).is_err());
    }
    let (mut saw_empty, mut saw_other_leaf) = (false, false);
    for i in 500..1500 {
        let (found, proof) = tree.prove(&key(i));
        assert_eq!(found, None);
        assert_eq!(proof.verify(&root, &key(i), None), Ok(()));
        assert!(proof.verify(&root, &key(i), Some(&Account::default())).is_err());
        saw_empty |= proof.other_leaf.is_none();
        saw_other_leaf |= proof.other_leaf.is_some();
    }
    assert!(saw_empty && saw_other_leaf, "both absence shapes exercised");
}

#[test]
fn tampered_proofs_fail() {
    let mut rng = StdRng::seed_from_u64(9);
    let tree = StateTree::from_accounts((0..64).map(|i| (key(i), account(&mut rng))));
    let root = tree.root();
    let (acc, proof) = tree.prove(&key(3));
    let acc = acc.unwrap();
    let mut bad = proof.clone();
    bad.siblings[0].0[5] ^= 1;
    assert!(bad.verify(&root, &key(3), Some(&acc)).is_err());
    let mut bad = proof.clone();
    bad.siblings.pop();
    assert!(bad.verify(&root, &key(3), Some(&acc)).is_err());
    let mut bad = proof.clone();
    bad.siblings = vec![Hash::ZERO; 257];
    assert!(matches!(
        bad.verify(&root, &key(3), Some(&acc)),
        Err(AccountProofError::TooLong { .. })
    ));
    // A present account cannot be proven absent by pointing at its own leaf.
    let mut bad = proof;
    bad.other_leaf = Some(tally_ledger::OtherLeaf {
        key: tally_ledger::state_tree::state_key(&key(3)),
        account: acc,
    });
    assert_eq!(bad.verify(&root, &key(3), None), Err(AccountProofError::OtherLeafHasSameKey));
}

#[test]
fn absence_proof_cannot_use_an_off_path_leaf() {
    let mut rng = StdRng::seed_from_u64(13);
    let tree = StateTree::from_accounts((0..64).map(|i| (key(i), account(&mut rng))));
    let root = tree.root();
    let absent = (64..10_000).map(key).find(|k| tree.prove(k).1.other_leaf.is_some()).unwrap();
    let (_, proof) = tree.prove(&absent);
    assert_eq!(proof.verify(&root, &absent, None), Ok(()));
    // Replace the other leaf with an account whose key leaves the path near the root.
    let absent_key = tally_ledger::state_tree::state_key(&absent);
    let off_path = (0..64)
        .map(key)
        .find(|k| {
            let sk = tally_ledger::state_tree::state_key(k);
            (sk.0[0] >> 7) != (absent_key.0[0] >> 7)
        })
        .unwrap();
    let mut bad = proof;
    let other = bad.other_leaf.as_mut().unwrap();
    other.key = tally_ledger::state_tree::state_key(&off_path);
    other.account = tree.get(&off_path).unwrap();
    assert!(matches!(
        bad.verify(&root, &absent, None),
        Err(AccountProofError::OtherLeafOffPath { .. })
    ));
}

#[test]
fn proofs_serialize_to_json_and_borsh() {
    let tree =
        StateTree::from_accounts((0..10).map(|i| (key(i), Account { balance: i, nonce: 0 })));
    let (_, proof) = tree.prove(&key(4));
    let json = serde_json::to_string(&proof).unwrap();
    let back: tally_ledger::AccountProof = serde_json::from_str(&json).unwrap();
    assert_eq!(back, proof);
    let bytes = borsh::to_vec(&proof).unwrap();
    assert_eq!(borsh::from_slice::<tally_ledger::AccountProof>(&bytes).unwrap(), proof);
}
