//! The test vectors of docs/wire-format.md, recomputed from the code. A change of encoding,
//! tag or hashing that forgets the document fails here.

use std::collections::BTreeMap;
use tally_consensus::{BlockHash, Height, Round, ValidatorIndex, Vote, VoteType};
use tally_crypto::{ChainId, Hash, Keypair, PublicKey};
use tally_ledger::{
    tx_proof, tx_root, Account, AccountProof, StateTree, Transfer, Tx, TxHash, TxProof,
};

/// `name = value` lines of the ```vectors blocks.
fn vectors() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire-format.md");
    let text = std::fs::read_to_string(path).expect("docs/wire-format.md");
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        match line.trim() {
            "```vectors" => inside = true,
            "```" => inside = false,
            l if inside => {
                let (k, v) = l.split_once(" = ").expect("name = value");
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => {}
        }
    }
    out
}

fn hashes(list: &str) -> Vec<Hash> {
    list.split(',').map(|h| Hash::from_hex(h.trim()).expect("hex hash")).collect()
}

#[test]
fn transfer_vector() {
    let v = vectors();
    let chain = ChainId::new(v["tx.chain_id"].clone()).expect("chain id");
    let seed: [u8; 32] = hex::decode(&v["tx.from_seed"]).expect("hex").try_into().expect("32");
    let from = Keypair::from_seed(seed);
    assert_eq!(from.public(), Keypair::derive_insecure("tally-testnet/account/0").public());
    assert_eq!(from.public().to_hex(), v["tx.from"]);
    let to = PublicKey::from_hex(&v["tx.to"]).expect("to");
    let transfer = Transfer {
        from: from.public(),
        to,
        amount: v["tx.amount"].parse().expect("amount"),
        nonce: v["tx.nonce"].parse().expect("nonce"),
    };
    let tx = Tx::sign(transfer, &from, &chain);
    assert_eq!(hex::encode(borsh::to_vec(&transfer).expect("borsh")), v["tx.transfer_bytes"]);
    assert_eq!(hex::encode(tx.signing_bytes(&chain)), v["tx.signing_bytes"]);
    assert_eq!(tx.signature.to_hex(), v["tx.signature"]);
    assert_eq!(hex::encode(tx.encode()), v["tx.bytes"]);
    assert_eq!(tx.hash().0.to_hex(), v["tx.hash"]);
    let decoded = Tx::decode(&hex::decode(&v["tx.bytes"]).expect("hex")).expect("decodes");
    assert_eq!(decoded, tx);
    tally_crypto::verify(
        &from.public(),
        &hex::decode(&v["tx.signing_bytes"]).expect("hex"),
        &tx.signature,
    )
    .expect("the documented signature verifies");
}

#[test]
fn precommit_vector() {
    let v = vectors();
    let chain = ChainId::new(v["vote.chain_id"].clone()).expect("chain id");
    let key = Keypair::derive_insecure(&v["vote.validator_seed_label"]);
    assert_eq!(key.public().to_hex(), v["vote.validator_public_key"]);
    assert_eq!(v["vote.block_hash"], "blake3(\"tally vector block\")");
    let vote = Vote {
        height: Height(v["vote.height"].parse().expect("height")),
        round: Round(v["vote.round"].parse().expect("round")),
        vote_type: VoteType::Precommit,
        block_hash: Some(BlockHash(Hash::digest(b"tally vector block"))),
        validator: ValidatorIndex(v["vote.validator"].parse().expect("index")),
    };
    assert_eq!(hex::encode(borsh::to_vec(&vote).expect("borsh")), v["vote.bytes"]);
    assert_eq!(hex::encode(vote.signing_bytes(&chain)), v["vote.signing_bytes"]);
    let signed = vote.sign(&chain, &key);
    assert_eq!(signed.signature.to_hex(), v["vote.signature"]);
}

#[test]
fn tx_proof_vector() {
    let v = vectors();
    let tx_hashes: Vec<TxHash> =
        (0..5).map(|i| TxHash(Hash::digest(format!("tx {i}").as_bytes()))).collect();
    assert_eq!(tx_hashes[0].0.to_hex(), v["txtree.tx_hash0"]);
    assert_eq!(tx_hashes[3].0.to_hex(), v["txtree.tx_hash3"]);
    let root = tx_root(&tx_hashes);
    assert_eq!(root.to_hex(), v["txtree.root"]);
    let proof = tx_proof(&tx_hashes, 3).expect("proof");
    let documented = TxProof {
        index: v["txtree.proof3.index"].parse().expect("index"),
        total: v["txtree.proof3.total"].parse().expect("total"),
        path: hashes(&v["txtree.proof3.path"]),
    };
    assert_eq!(proof, documented);
    documented
        .verify(&Hash::from_hex(&v["txtree.root"]).expect("root"), &tx_hashes[3])
        .expect("verifies");
}

#[test]
fn account_proof_vectors() {
    let v = vectors();
    let key = |i: u64| Keypair::derive_insecure(&format!("tally-testnet/account/{i}")).public();
    let tree =
        StateTree::from_accounts((0..8).map(|i| (key(i), Account { balance: 1000 + i, nonce: i })));
    let root = Hash::from_hex(&v["state.root"]).expect("root");
    assert_eq!(tree.root(), root);

    let present = AccountProof { siblings: hashes(&v["state.present.siblings"]), other_leaf: None };
    assert_eq!(tree.prove(&key(3)).1, present);
    present.verify(&root, &key(3), Some(&Account { balance: 1003, nonce: 3 })).expect("presence");

    let (other_key, other_account) =
        v["state.absent.other_leaf"].split_once(' ').expect("key {..}");
    assert_eq!(other_account, "{ balance: 1002, nonce: 2 }");
    let absent = AccountProof {
        siblings: hashes(&v["state.absent.siblings"]),
        other_leaf: Some(tally_ledger::OtherLeaf {
            key: Hash::from_hex(other_key).expect("key"),
            account: Account { balance: 1002, nonce: 2 },
        }),
    };
    assert_eq!(tree.prove(&key(100)).1, absent);
    absent.verify(&root, &key(100), None).expect("absence");
}

#[test]
fn snapshot_chunk_vector() {
    use tally_ledger::snapshot::{chunk_hash, decode_chunk, make_snapshot};
    let v = vectors();
    let key = |i: u32| Keypair::derive_insecure(&format!("tally-testnet/account/{i}")).public();
    let state = StateTree::from_accounts([
        (key(0), Account { balance: 5, nonce: 1 }),
        (key(1), Account { balance: 7, nonce: 0 }),
    ]);
    let header = tally_ledger::Header {
        chain_id: ChainId::new("tally-local").expect("chain id"),
        height: Height(100),
        time_ms: 1_700_000_000_000,
        prev_block_hash: BlockHash(Hash::ZERO),
        tx_root: Hash::ZERO,
        tx_count: 0,
        state_root: state.root(),
        proposer: key(0),
        validators_hash: Hash::ZERO,
    };
    let certificate = tally_consensus::CommitCertificate {
        height: Height(100),
        round: Round(0),
        block_hash: header.hash(),
        signatures: vec![],
    };
    let (offer, chunks) = make_snapshot(&state, &header, &certificate);
    assert_eq!(hex::encode(&chunks[0]), v["snapshot.chunk"]);
    assert_eq!(chunk_hash(&chunks[0]).to_hex(), v["snapshot.chunk_hash"]);
    assert_eq!(offer.manifest.chunk_hashes, vec![chunk_hash(&chunks[0])]);
    assert_eq!(state.root().to_hex(), v["snapshot.state_root"]);
    let decoded = decode_chunk(&hex::decode(&v["snapshot.chunk"]).expect("hex")).expect("chunk");
    assert_eq!(StateTree::from_accounts(decoded).root(), state.root());
}
