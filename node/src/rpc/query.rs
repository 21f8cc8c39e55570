//! The CometBFT query form WebSocket clients subscribe with, and which notifications a
//! query yields for one committed block.
//!
//! The consensus room publishes one [`BlockEvent`] per committed block through the notify
//! room's bounded broadcast channel (capacity `rpc.subscription_lag_blocks_max`).
//! Publishing never waits: a subscriber that falls further behind than the capacity is
//! dropped (tokio's `Lagged`), so no client can slow consensus down. Tx events are derived
//! from the block event by each subscription, so the channel holds blocks, not txs.
//!
//! Queries follow CometBFT's syntax for the two events tally has:
//! `tm.event='NewBlock'`, `tm.event='Tx'`, and `tm.event='Tx' AND tx.hash='<hex>'`
//! (the conditions in any order; `=` with single or double quotes). Anything else is
//! refused with a message that lists what is supported.

use super::json::{new_block_event, tx_event};
use crate::notify::BlockEvent;
use serde_json::Value;
use tally_crypto::Hash;
use tally_ledger::TxHash;

/// Longest query string accepted; queries are short, this bounds parsing work.
pub const QUERY_BYTES_MAX: usize = 512;

/// What a subscription asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventQuery {
    NewBlock,
    /// Every committed tx, or only the one with this hash.
    Tx(Option<TxHash>),
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("query is longer than {QUERY_BYTES_MAX} bytes")]
    TooLong,
    #[error("query condition {0:?} is not of the form key='value'")]
    Malformed(String),
    #[error("query has no tm.event condition; supported: tm.event='NewBlock', tm.event='Tx' [AND tx.hash='<hex>']")]
    NoEvent,
    #[error("unsupported event {0:?}; supported: NewBlock, Tx")]
    UnsupportedEvent(String),
    #[error("unsupported query key {0:?}; supported: tm.event, tx.hash (with tm.event='Tx')")]
    UnsupportedKey(String),
    #[error("tx.hash: {0}")]
    BadHash(String),
    #[error("condition {0:?} appears twice")]
    Duplicate(String),
}

impl EventQuery {
    pub fn parse(query: &str) -> Result<EventQuery, QueryError> {
        if query.len() > QUERY_BYTES_MAX {
            return Err(QueryError::TooLong);
        }
        let mut event: Option<String> = None;
        let mut hash: Option<TxHash> = None;
        for cond in split_and(query) {
            let (key, value) = parse_condition(cond)?;
            match key {
                "tm.event" if event.is_some() => return Err(QueryError::Duplicate(key.into())),
                "tm.event" => event = Some(value.to_string()),
                "tx.hash" if hash.is_some() => return Err(QueryError::Duplicate(key.into())),
                "tx.hash" => {
                    let hex = value.strip_prefix("0x").unwrap_or(value).to_ascii_lowercase();
                    let h = Hash::from_hex(&hex).map_err(|e| QueryError::BadHash(e.to_string()))?;
                    hash = Some(TxHash(h));
                }
                other => return Err(QueryError::UnsupportedKey(other.to_string())),
            }
        }
        match (event.as_deref(), hash) {
            (None, _) => Err(QueryError::NoEvent),
            (Some("NewBlock"), None) => Ok(EventQuery::NewBlock),
            (Some("NewBlock"), Some(_)) => Err(QueryError::UnsupportedKey("tx.hash".into())),
            (Some("Tx"), hash) => Ok(EventQuery::Tx(hash)),
            (Some(other), _) => Err(QueryError::UnsupportedEvent(other.to_string())),
        }
    }

    /// The notifications this query yields for one committed block, in order.
    pub fn notifications(&self, query: &str, event: &BlockEvent) -> Vec<Value> {
        match self {
            EventQuery::NewBlock => vec![new_block_event(query, event)],
            EventQuery::Tx(want) => event
                .tx_hashes
                .iter()
                .enumerate()
                .filter(|(_, h)| want.is_none_or(|w| w == **h))
                .map(|(i, h)| tx_event(query, event, i, h))
                .collect(),
        }
    }
}

/// Splits on the keyword AND (any case), outside quotes.
fn split_and(query: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let bytes = query.as_bytes();
    let (mut start, mut quote, mut i) = (0, None::<u8>, 0);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if i + 5 <= bytes.len()
                && bytes[i] == b' '
                && bytes[i + 1..i + 4].eq_ignore_ascii_case(b"AND")
                && bytes[i + 4] == b' ' =>
            {
                parts.push(&query[start..i]);
                start = i + 5;
                i += 4;
            }
            None => {}
        }
        i += 1;
    }
    parts.push(&query[start..]);
    parts
}

fn parse_condition(cond: &str) -> Result<(&str, &str), QueryError> {
    let malformed = || QueryError::Malformed(cond.trim().to_string());
    let (key, value) = cond.split_once('=').ok_or_else(malformed)?;
    let value = value.trim();
    let unquoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .ok_or_else(malformed)?;
    Ok((key.trim(), unquoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cometbft_queries_parse() {
        assert_eq!(EventQuery::parse("tm.event='NewBlock'"), Ok(EventQuery::NewBlock));
        assert_eq!(EventQuery::parse(" tm.event = \"Tx\" "), Ok(EventQuery::Tx(None)));
        let hex = "ab".repeat(32);
        let want = Ok(EventQuery::Tx(Some(TxHash(Hash::from_hex(&hex).unwrap()))));
        assert_eq!(EventQuery::parse(&format!("tm.event='Tx' AND tx.hash='{hex}'")), want);
        assert_eq!(
            EventQuery::parse(&format!("tx.hash='{}' and tm.event='Tx'", hex.to_uppercase())),
            want
        );
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let e = |q: &str| EventQuery::parse(q).unwrap_err().to_string();
        assert!(e("tm.event='Vote'").contains("unsupported event"));
        assert!(e("tm.event=NewBlock").contains("key='value'"));
        assert!(e("tx.height='5'").contains("unsupported query key"));
        assert!(e("").contains("key='value'"));
        assert!(e("tm.event='Tx' AND tx.hash='zz'").contains("tx.hash"));
        assert!(e("tm.event='Tx' AND tm.event='Tx'").contains("twice"));
        assert!(e(&"x".repeat(QUERY_BYTES_MAX + 1)).contains("longer"));
        assert!(e("tm.event='NewBlock' AND tx.hash='00'").contains("tx.hash"));
    }

    #[test]
    fn and_inside_quotes_does_not_split() {
        assert_eq!(split_and("a='x AND y' AND b='z'"), vec!["a='x AND y'", "b='z'"]);
    }
}
