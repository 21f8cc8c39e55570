//! A CometBFT client written by others (informalsystems' `tendermint-rpc`, its v0.38
//! dialect, over HTTP and WebSocket) against a four-validator tally testnet: every method
//! the library offers is called and its response decodes into the library's types, a
//! NewBlock subscription delivers blocks in order, and a Tx subscription filtered on the
//! sender delivers the transfer sent.

mod common;

use common::Testnet;
use futures::StreamExt as _;
use std::str::FromStr as _;
use std::time::Duration;
use tendermint::block::Height;
use tendermint::Hash;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{Client, HttpClient, Paging, SubscriptionClient, WebSocketClient};

fn height(h: u64) -> Height {
    Height::try_from(h).expect("height")
}

#[test]
fn a_cometbft_client_decodes_every_method_it_offers_slow() {
    let net = Testnet::start(4, 4);
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = net.rpc_url(0);
        let http = HttpClient::builder(url.parse().expect("url"))
            .compat_mode(CompatMode::V0_38)
            .build()
            .expect("http client");

        // Identity, health, the node's view of the chain.
        http.health().await.expect("health");
        let status = http.status().await.expect("status");
        assert!(status.node_info.network.as_str().starts_with("tally-"));
        assert_eq!(
            CompatMode::from_version(status.node_info.version.clone()).expect("0.38 dialect"),
            CompatMode::V0_38
        );
        assert!(status.sync_info.latest_block_height.value() >= 2);
        assert!(status.validator_info.power.value() > 0, "node0 is a validator");
        let genesis = http.genesis::<serde_json::Value>().await.expect("genesis");
        assert_eq!(genesis.validators.len(), 4);
        let chunk = http.genesis_chunked(0).await.expect("genesis_chunked");
        assert_eq!(chunk.total, 1);
        let info = http.abci_info().await.expect("abci_info");
        assert!(info.last_block_height.value() >= 2);
        let net_info = http.net_info().await.expect("net_info");
        assert!(net_info.listening);
        http.consensus_state().await.expect("consensus_state");
        http.latest_consensus_params().await.expect("consensus_params");
        http.consensus_params(height(1)).await.expect("consensus_params at 1");

        // Validators, by page and all at once.
        let page = http.validators(
            height(1),
            Paging::Specific { page_number: 2usize.into(), per_page: 3u8.into() },
        );
        let page = page.await.expect("validators page 2");
        assert_eq!((page.validators.len(), page.total), (1, 4));
        let all = http.validators(height(2), Paging::All).await.expect("validators all");
        assert_eq!(all.validators.len(), 4);
        for v in &all.validators {
            let tendermint::PublicKey::Ed25519(key) = v.pub_key else { panic!("ed25519") };
            assert_eq!(tendermint::account::Id::from(key), v.address, "address of the key");
        }

        // Blocks, headers, commits, results, by height and by hash.
        let block1 = http.block(height(1)).await.expect("block 1");
        assert_eq!(block1.block.header.height.value(), 1);
        assert!(block1.block.header.last_block_id.is_none());
        let block2 = http.block(height(2)).await.expect("block 2");
        assert_eq!(block2.block.header.last_block_id.map(|id| id.hash), Some(block1.block_id.hash));
        http.latest_block().await.expect("latest block");
        let by_hash = http.block_by_hash(block1.block_id.hash).await.expect("block_by_hash");
        assert_eq!(by_hash.block.expect("found").header.height.value(), 1);
        let unknown = http.block_by_hash(Hash::Sha256([7; 32])).await.expect("unknown hash");
        assert!(unknown.block.is_none());
        let header = http.header(height(2)).await.expect("header");
        assert_eq!(header.header.height.value(), 2);
        let header = http.header_by_hash(block1.block_id.hash).await.expect("header_by_hash");
        assert_eq!(header.header.expect("found").height.value(), 1);
        let commit = http.commit(height(2)).await.expect("commit");
        assert_eq!(commit.signed_header.commit.block_id, block2.block_id);
        assert!(commit.signed_header.commit.signatures.len() == 4);
        http.latest_commit().await.expect("latest commit");
        http.block_results(height(1)).await.expect("block_results");
        http.latest_block_results().await.expect("latest block_results");
        let chain = http.blockchain(height(1), height(2)).await.expect("blockchain");
        assert_eq!(chain.block_metas.len(), 2);
        assert_eq!(chain.block_metas[0].header.height.value(), 2, "newest first");

        // Txs: refused as a result with a code, accepted, committed, found by hash.
        let tx = |nonce: u64| common::b64(&net.signed_transfer(0, 1, 5, nonce)).into_bytes();
        let raw = |nonce: u64| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(tx(nonce)).expect("base64")
        };
        let refused = http.broadcast_tx_sync(raw(9)).await.expect("broadcast_tx_sync refused");
        assert_eq!(refused.code.value(), 5, "bad_nonce: {}", refused.log);
        assert_eq!(refused.codespace, "tally");
        let sync = http.broadcast_tx_sync(raw(0)).await.expect("broadcast_tx_sync");
        assert!(sync.code.is_ok(), "{}", sync.log);
        let async_ = http.broadcast_tx_async(raw(1)).await.expect("broadcast_tx_async");
        assert!(async_.code.is_ok(), "{}", async_.log);
        let commit = http.broadcast_tx_commit(raw(2)).await.expect("broadcast_tx_commit");
        assert!(commit.check_tx.code.is_ok() && commit.height.value() > 0);
        let found = http.tx(commit.hash, true).await.expect("tx");
        assert_eq!(found.height, commit.height);
        let proof = found.proof.expect("proved");
        assert_eq!(proof.data, raw(2));
        // The index follows the ledger a moment behind (off the consensus path).
        let sender =
            Query::from_str(&format!("transfer.sender='{}'", net.account_key(0).public().to_hex()))
                .expect("query");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let search =
                http.tx_search(sender.clone(), false, 1, 10, tendermint_rpc::Order::Ascending);
            let search = search.await.expect("tx_search");
            if search.txs.iter().any(|t| t.hash == commit.hash) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "tx_search did not find the transfer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let blocks = http.block_search(
            Query::from_str("block.height <= 2").expect("query"),
            1,
            10,
            tendermint_rpc::Order::Descending,
        );
        let blocks = blocks.await.expect("block_search");
        assert_eq!(blocks.total_count, 2);
        let query = http.abci_query(
            Some("/account".into()),
            net.account_key(1).public().0.to_vec(),
            None,
            true,
        );
        let query = query.await.expect("abci_query");
        assert!(query.code.is_ok(), "{}", query.log);
        assert!(!query.value.is_empty() && query.proof.is_some());
        // At height 1, before any transfer: account 0 as genesis funded it, nonce 0; now its
        // nonce is 3 (the refused tx with nonce 9 is not counted).
        let account = |value: &[u8]| -> tally_ledger::Account {
            borsh::from_slice(value).expect("a borsh Account")
        };
        let sender = net.account_key(0).public().0.to_vec();
        // The index may be a moment behind the tip; the query says so and is retried.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let then = loop {
            let q =
                http.abci_query(Some("/account".into()), sender.clone(), Some(height(1)), false);
            match q.await {
                Ok(then) => break then,
                Err(e)
                    if e.to_string().contains("behind") && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("abci_query at height 1: {e}"),
            }
        };
        assert!(then.code.is_ok(), "{}", then.log);
        let genesis = tokio::task::block_in_place(|| net.rpc(0, "genesis", serde_json::json!({})));
        let funded = genesis.expect("genesis")["genesis"]["app_state"]["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["public_key"] == net.account_key(0).public().to_hex())
            .and_then(|a| a["balance"].as_u64())
            .expect("account 0 is funded at genesis");
        assert_eq!(account(&then.value), tally_ledger::Account { balance: funded, nonce: 0 });
        let now = http.abci_query(Some("/account".into()), sender, None, false);
        let now = account(&now.await.expect("abci_query now").value);
        assert_eq!(now.nonce, 3);
        assert_eq!(now.balance, funded - 15);

        // Evidence: tally's own (two conflicting prevotes of node0's validator), checked and
        // gossiped: every other node counts it. CometBFT's evidence is refused, as an error
        // the client decodes.
        let key =
            tally_node::config::keys::load_key(&net.nodes[0].home.join("keys/validator_key.json"))
                .expect("node0's validator key");
        let set = net.validator_set();
        let index = set.index_of(&key.public()).expect("node0 validates");
        let vote = |block: &[u8]| {
            tally_consensus::Vote {
                height: tally_consensus::Height(1_000_000),
                round: tally_consensus::Round(0),
                vote_type: tally_consensus::VoteType::Prevote,
                block_hash: Some(tally_consensus::BlockHash(tally_crypto::Hash::digest(block))),
                validator: index,
            }
            .sign(&net.chain_id, &key)
        };
        let evidence =
            tally_consensus::Evidence::DuplicateVote { first: vote(b"a"), second: vote(b"b") };
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(borsh::to_vec(&evidence).expect("borsh"))
        };
        let answer = tokio::task::block_in_place(|| {
            net.rpc(0, "broadcast_evidence", serde_json::json!({ "evidence": encoded }))
        });
        assert!(answer.expect("accepted")["hash"].is_string());
        let forged =
            tally_consensus::Evidence::DuplicateVote { first: vote(b"a"), second: vote(b"a") };
        let refused = tokio::task::block_in_place(|| {
            net.rpc(0, "broadcast_evidence", serde_json::json!({ "evidence": forged }))
        });
        let refused = refused.expect_err("no conflict");
        assert!(
            refused["message"].as_str().unwrap_or("").contains("nothing conflicts"),
            "{refused}"
        );
        let tm_vote = |b: u8| tendermint::vote::Vote {
            vote_type: tendermint::vote::Type::Prevote,
            height: height(5),
            round: tendermint::block::Round::from(0u8),
            block_id: Some(tendermint::block::Id {
                hash: Hash::Sha256([b; 32]),
                part_set_header: Default::default(),
            }),
            timestamp: Some(tendermint::Time::from_unix_timestamp(1_800_000_000, 0).expect("time")),
            validator_address: tendermint::account::Id::new([1; 20]),
            validator_index: tendermint::vote::ValidatorIndex::try_from(0u32).expect("index"),
            signature: None,
            extension: Vec::new(),
            extension_signature: None,
        };
        let theirs = tendermint::evidence::DuplicateVoteEvidence::new(tm_vote(1), tm_vote(2));
        let theirs =
            tendermint::evidence::Evidence::DuplicateVote(Box::new(theirs.expect("evidence")));
        let e = http.broadcast_evidence(theirs).await.expect_err("CometBFT's evidence is refused");
        assert!(e.to_string().contains("CometBFT's evidence types"), "{e}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let counted = || (1..4).all(|i| net.metric(i, "tally_evidence_total") == 1);
        while !tokio::task::block_in_place(counted) {
            assert!(std::time::Instant::now() < deadline, "the evidence reached every node");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Subscriptions over the WebSocket: blocks in order, the tx by its sender.
        let (ws, driver) = WebSocketClient::builder(
            format!("{}/websocket", net.ws_url(0)).parse().expect("ws url"),
        )
        .compat_mode(CompatMode::V0_38)
        .build()
        .await
        .expect("ws client");
        let driver = tokio::spawn(driver.run());
        let mut blocks =
            ws.subscribe(EventType::NewBlock.into()).await.expect("subscribe NewBlock");
        let sender = net.account_key(0).public().to_hex();
        let txs = Query::from(EventType::Tx).and_eq("transfer.sender", sender);
        let mut txs = ws.subscribe(txs).await.expect("subscribe Tx");
        // Calls answer on the WebSocket too.
        ws.status().await.expect("status over ws");
        let mut last = 0;
        for _ in 0..3 {
            let event = tokio::time::timeout(Duration::from_secs(30), blocks.next()).await;
            let event = event.expect("a block within 30 s").expect("open").expect("decodes");
            let tendermint_rpc::event::EventData::NewBlock { block: Some(block), .. } = event.data
            else {
                panic!("a NewBlock event: {:?}", event.data)
            };
            let h = block.header.height.value();
            assert!(h > last, "in order: {h} after {last}");
            last = h;
        }
        http.broadcast_tx_sync(raw(3)).await.expect("a 4th transfer");
        let event = tokio::time::timeout(Duration::from_secs(30), txs.next()).await;
        let event = event.expect("the tx within 30 s").expect("open").expect("decodes");
        assert!(
            matches!(event.data, tendermint_rpc::event::EventData::Tx { .. }),
            "{:?}",
            event.data
        );
        ws.close().expect("close");
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    });
}
