//! CometBFT's query language, for subscriptions (and the searches of the tx index):
//!
//! ```text
//! query     = condition { "AND" condition }
//! condition = key op operand | key "EXISTS"
//! op        = "=" | "<" | "<=" | ">" | ">=" | "CONTAINS"
//! operand   = 'string' | number | DATE yyyy-mm-dd | TIME rfc3339
//! ```
//!
//! Keys are the composite keys of tally's events: `tm.event` (`NewBlock`,
//! `NewBlockHeader`, `NewBlockEvents`, `Tx`, `ValidatorSetUpdates`), `block.height`,
//! `tx.hash`, `tx.height`, `transfer.sender`, `transfer.recipient`, `transfer.amount`,
//! `transfer.nonce`. A condition holds when any value of its key satisfies it; a key an event
//! does not have satisfies nothing, so a query on an unknown attribute matches nothing and
//! is not an error (CometBFT's rule). Numbers compare as numbers (an attribute that is not a
//! number matches no numeric condition), strings with `=` and `CONTAINS` only. Hashes and
//! accounts are compared in the case tally writes them (tx hashes upper-case, accounts
//! lower-case), whatever case the query gives them in.
//!
//! A query that does not parse is refused with the column (from 1) where parsing failed.

use std::borrow::Cow;
use std::cmp::Ordering;
use tally_ledger::{Tx, TxHash};

/// The values of attribute `key` of a committed transfer (its `tm.event='Tx'` event).
pub fn tx_values(tx: &Tx, hash: &TxHash, height: u64, key: &str) -> Vec<Cow<'static, str>> {
    let t = &tx.transfer;
    let one = |s: String| vec![Cow::Owned(s)];
    match key {
        "tm.event" => vec![Cow::Borrowed("Tx")],
        "tx.hash" => one(hex::encode_upper(hash.0 .0)),
        "tx.height" => one(height.to_string()),
        "transfer.sender" => one(t.from.to_hex()),
        "transfer.recipient" => one(t.to.to_hex()),
        "transfer.amount" => one(t.amount.to_string()),
        "transfer.nonce" => one(t.nonce.to_string()),
        _ => Vec::new(),
    }
}

/// Every attribute key of a transfer's event.
pub const TX_KEYS: [&str; 7] = [
    "tm.event",
    "tx.hash",
    "tx.height",
    "transfer.sender",
    "transfer.recipient",
    "transfer.amount",
    "transfer.nonce",
];

/// The values of attribute `key` of a block's event of kind `kind` (`NewBlock`, ...).
pub fn block_values(kind: &'static str, height: u64, key: &str) -> Vec<Cow<'static, str>> {
    match key {
        "tm.event" => vec![Cow::Borrowed(kind)],
        "block.height" => vec![Cow::Owned(height.to_string())],
        _ => Vec::new(),
    }
}

/// Every attribute key of a block's event.
pub const BLOCK_KEYS: [&str; 2] = ["tm.event", "block.height"];

/// Longest query string accepted; queries are short, this bounds parsing work.
pub const QUERY_BYTES_MAX: usize = 512;
/// Most conditions in one query.
pub const CONDITIONS_MAX: usize = 16;

/// A parsed query, with the text it was parsed from (subscriptions echo it exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    source: String,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: String,
    pub op: Op,
    pub operand: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Str(String),
    Num(Number),
    /// Nanoseconds since the Unix epoch (a DATE is its midnight UTC).
    Time(i128),
    /// For `EXISTS`.
    None,
}

/// An integer, or a decimal with a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn parse(s: &str) -> Option<Number> {
        if let Ok(i) = s.parse::<i128>() {
            return Some(Number::Int(i));
        }
        let valid = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && s.bytes().filter(|b| *b == b'.').count() <= 1;
        valid.then(|| s.parse::<f64>().ok().map(Number::Float)).flatten()
    }

    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("query is longer than {QUERY_BYTES_MAX} bytes")]
    TooLong,
    #[error("query has more than {CONDITIONS_MAX} conditions")]
    TooManyConditions,
    #[error("at column {column}: {what}")]
    Syntax { column: usize, what: String },
}

fn syntax(column: usize, what: impl Into<String>) -> QueryError {
    QueryError::Syntax { column: column + 1, what: what.into() }
}

/// The scanner: a position in the query's bytes.
struct Scanner<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_spaces(&mut self) {
        while self.s.as_bytes().get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn done(&mut self) -> bool {
        self.skip_spaces();
        self.at >= self.s.len()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }

    /// A run of bytes satisfying `f`.
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.at;
        while self.s.as_bytes().get(self.at).is_some_and(|b| f(*b)) {
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    /// The keyword `word` (any case) followed by a space or the end.
    fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest().as_bytes();
        let n = word.len();
        let matches = rest.len() >= n
            && rest[..n].eq_ignore_ascii_case(word.as_bytes())
            && rest.get(n).is_none_or(|b| !is_key_byte(*b));
        if matches {
            self.at += n;
        }
        matches
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl EventQuery {
    pub fn parse(query: &str) -> Result<EventQuery, QueryError> {
        if query.len() > QUERY_BYTES_MAX {
            return Err(QueryError::TooLong);
        }
        let mut sc = Scanner { s: query, at: 0 };
        let mut conditions = Vec::new();
        loop {
            if conditions.len() == CONDITIONS_MAX {
                return Err(QueryError::TooManyConditions);
            }
            conditions.push(condition(&mut sc)?);
            if sc.done() {
                break;
            }
            let at = sc.at;
            if !sc.keyword("AND") {
                return Err(syntax(at, format!("expected AND, found {:?}", head(sc.rest()))));
            }
        }
        // `tm.event` first: it rules out most events at the least cost.
        conditions.sort_by_key(|c| c.key != "tm.event");
        Ok(EventQuery { source: query.to_string(), conditions })
    }

    /// The query's text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether an event whose attribute values `values(key)` gives matches every condition.
    pub fn matches<'v>(&self, values: impl Fn(&str) -> Vec<std::borrow::Cow<'v, str>>) -> bool {
        self.conditions.iter().all(|c| values(&c.key).iter().any(|v| c.holds(v)))
    }

    /// The heights `key` (`tx.height`, `block.height`) may take under this query's
    /// integer conditions on it, as an inclusive range within `lo..=hi`.
    pub fn height_bounds(&self, key: &str, lo: u64, hi: u64) -> (u64, u64) {
        let (mut lo, mut hi) = (i128::from(lo), i128::from(hi));
        for c in self.conditions.iter().filter(|c| c.key == key) {
            let Operand::Num(Number::Int(n)) = c.operand else { continue };
            match c.op {
                Op::Eq => (lo, hi) = (lo.max(n), hi.min(n)),
                Op::Lt => hi = hi.min(n - 1),
                Op::Le => hi = hi.min(n),
                Op::Gt => lo = lo.max(n + 1),
                Op::Ge => lo = lo.max(n),
                Op::Contains | Op::Exists => {}
            }
        }
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
        (clamp(lo), clamp(hi))
    }

    /// The value of an `=` condition on `key` with a string, if there is one.
    pub fn equal_string(&self, key: &str) -> Option<&str> {
        self.conditions.iter().find_map(|c| match (&c.key, c.op, &c.operand) {
            (k, Op::Eq, Operand::Str(s)) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// Whether every condition is on one of `keys` (the others need the event itself).
    pub fn only_on(&self, keys: &[&str]) -> bool {
        self.conditions.iter().all(|c| keys.contains(&c.key.as_str()))
    }

    /// The `tm.event` values this query can match (`None`: any event).
    pub fn event_kinds(&self) -> Option<Vec<&str>> {
        let mut kinds: Option<Vec<&str>> = None;
        for c in self.conditions.iter().filter(|c| c.key == "tm.event") {
            if let (Op::Eq, Operand::Str(s)) = (c.op, &c.operand) {
                match &mut kinds {
                    Some(k) => k.retain(|k| *k == s),
                    None => kinds = Some(vec![s.as_str()]),
                }
            }
        }
        kinds
    }
}

/// The start of `s`, for messages.
fn head(s: &str) -> String {
    s.chars().take(12).collect()
}

fn condition(sc: &mut Scanner<'_>) -> Result<Condition, QueryError> {
    sc.skip_spaces();
    let at = sc.at;
    let key = sc.take_while(is_key_byte);
    if key.is_empty() || !key.as_bytes()[0].is_ascii_alphabetic() {
        let found =
            if sc.rest().is_empty() { "the end".into() } else { format!("{:?}", head(sc.rest())) };
        return Err(syntax(
            at,
            format!("expected an event attribute (like tx.height), found {found}"),
        ));
    }
    sc.skip_spaces();
    let at_op = sc.at;
    let op = if sc.keyword("EXISTS") {
        return Ok(Condition { key: key.to_string(), op: Op::Exists, operand: Operand::None });
    } else if sc.keyword("CONTAINS") {
        Op::Contains
    } else {
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt)];
        let found = ops.iter().find(|(text, _)| sc.rest().starts_with(text));
        let Some((text, op)) = found else {
            return Err(syntax(
                at_op,
                format!(
                    "expected an operator (=, <, <=, >, >=, CONTAINS, EXISTS), found {:?}",
                    head(sc.rest())
                ),
            ));
        };
        sc.at += text.len();
        *op
    };
    sc.skip_spaces();
    let at_operand = sc.at;
    let operand = operand(sc)?;
    match (&operand, op) {
        (Operand::Str(_), Op::Eq | Op::Contains) => {}
        (Operand::Str(_), _) => {
            return Err(syntax(at_op, "a string compares with = or CONTAINS only"));
        }
        (_, Op::Contains) => return Err(syntax(at_operand, "CONTAINS takes a 'string'")),
        _ => {}
    }
    let operand = match (key, operand) {
        // A hash as base64 (how CometBFT's clients send bytes) is compared as hex.
        ("tx.hash", Operand::Str(s)) if s.len() == 44 && s.ends_with('=') => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(&s) {
                Ok(bytes) if bytes.len() == 32 => Operand::Str(hex::encode_upper(bytes)),
                _ => Operand::Str(s),
            }
        }
        ("tx.hash", Operand::Str(s)) => {
            Operand::Str(s.strip_prefix("0x").unwrap_or(&s).to_ascii_uppercase())
        }
        ("transfer.sender" | "transfer.recipient", Operand::Str(s)) => {
            Operand::Str(s.strip_prefix("0x").unwrap_or(&s).to_ascii_lowercase())
        }
        (_, operand) => operand,
    };
    Ok(Condition { key: key.to_string(), op, operand })
}

fn operand(sc: &mut Scanner<'_>) -> Result<Operand, QueryError> {
    let at = sc.at;
    if sc.rest().starts_with('\'') {
        sc.at += 1;
        let body = sc.take_while(|b| b != b'\'');
        if sc.at >= sc.s.len() {
            return Err(syntax(at, "a string opened here is not closed with '"));
        }
        sc.at += 1;
        return Ok(Operand::Str(body.to_string()));
    }
    if sc.keyword("DATE") || sc.keyword("TIME") {
        let is_date = sc.s[at..].to_ascii_uppercase().starts_with("DATE");
        sc.skip_spaces();
        let at_value = sc.at;
        let text = sc.take_while(|b| !b.is_ascii_whitespace());
        let parsed = if is_date { parse_date(text) } else { parse_time(text) };
        return parsed.map(Operand::Time).ok_or_else(|| {
            let want = if is_date { "a date yyyy-mm-dd" } else { "an RFC 3339 time" };
            syntax(at_value, format!("expected {want}, found {:?}", head(text)))
        });
    }
    let text = sc.take_while(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    match Number::parse(text) {
        Some(n) => Ok(Operand::Num(n)),
        None => {
            let found = if sc.rest().is_empty() && text.is_empty() {
                "the end".to_string()
            } else {
                format!("{:?}", head(&sc.s[at..]))
            };
            Err(syntax(
                at,
                format!("expected a value ('string', number, DATE or TIME), found {found}"),
            ))
        }
    }
}

impl Condition {
    /// Whether the attribute value `v` satisfies this condition.
    pub fn holds(&self, v: &str) -> bool {
        let ord = match &self.operand {
            Operand::None => return true,
            Operand::Str(s) => {
                return match self.op {
                    Op::Eq => v == s,
                    Op::Contains => v.contains(s.as_str()),
                    _ => false,
                }
            }
            Operand::Num(n) => Number::parse(v).and_then(|x| x.compare(*n)),
            Operand::Time(t) => parse_time(v).or_else(|| parse_date(v)).map(|x| x.cmp(t)),
        };
        let Some(ord) = ord else { return false };
        match self.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Contains | Op::Exists => false,
        }
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = s.get(range)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
}

/// `yyyy-mm-dd` as nanoseconds since the epoch (midnight UTC).
fn parse_date(s: &str) -> Option<i128> {
    if s.len() != 10 || &s[4..5] != "-" || &s[7..8] != "-" {
        return None;
    }
    let (y, m, d) = (digits(s, 0..4)?, digits(s, 5..7)?, digits(s, 8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(i128::from(days_from_civil(y, m, d)) * 86_400 * 1_000_000_000)
}

/// An RFC 3339 time (`2026-12-07T10:00:00Z`, fractions and offsets allowed) as nanoseconds
/// since the epoch.
fn parse_time(s: &str) -> Option<i128> {
    let date = parse_date(s.get(0..10)?)?;
    let t = s.get(10..)?;
    if !(t.starts_with('T') || t.starts_with('t')) || t.len() < 9 {
        return None;
    }
    if &t[3..4] != ":" || &t[6..7] != ":" {
        return None;
    }
    let (h, mi, se) = (digits(t, 1..3)?, digits(t, 4..6)?, digits(t, 7..9)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &t[9..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = frac[..n].parse::<i128>().ok()? * 10i128.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let secs = digits(o, 1..3)? * 3600 + digits(o, 4..6)? * 60;
            if o.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let secs = h * 3600 + mi * 60 + se - offset_secs;
    Some(date + i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn q(s: &str) -> EventQuery {
        EventQuery::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn height_bounds_follow_the_integer_conditions() {
        assert_eq!(
            q("tx.height > 5 AND tx.height <= 9").height_bounds("tx.height", 1, 100),
            (6, 9)
        );
        assert_eq!(q("tx.height = 7").height_bounds("tx.height", 1, 100), (7, 7));
        assert_eq!(q("tx.height < 1").height_bounds("tx.height", 1, 100), (1, 0));
        assert_eq!(q("block.height >= 3").height_bounds("tx.height", 1, 100), (1, 100));
        assert_eq!(q("transfer.sender = 'AB'").equal_string("transfer.sender"), Some("ab"));
    }

    fn matches(query: &str, attrs: &[(&str, &str)]) -> bool {
        q(query).matches(|key| {
            attrs.iter().filter(|(k, _)| *k == key).map(|(_, v)| Cow::Borrowed(*v)).collect()
        })
    }

    #[test]
    fn cometbft_queries_parse_and_keep_their_text() {
        let query = "tm.event = 'Tx' AND transfer.amount >= 5 AND tx.height < 10";
        let parsed = q(query);
        assert_eq!(parsed.source(), query);
        assert_eq!(parsed.conditions().len(), 3);
        assert_eq!(parsed.event_kinds(), Some(vec!["Tx"]));
        assert_eq!(q("tx.height > 5").event_kinds(), None);
        assert_eq!(q("tm.event='NewBlock' and block.height EXISTS").conditions().len(), 2);
        assert_eq!(q("transfer.sender CONTAINS 'ab'").conditions()[0].op, Op::Contains);
    }

    #[test]
    fn conditions_compare_strings_numbers_and_times() {
        let tx = [("tm.event", "Tx"), ("tx.height", "12"), ("transfer.amount", "250")];
        assert!(matches("tm.event='Tx'", &tx));
        assert!(!matches("tm.event='NewBlock'", &tx));
        assert!(matches("tm.event='Tx' AND tx.height >= 12 AND tx.height <= 12", &tx));
        assert!(!matches("tx.height > 12", &tx));
        assert!(matches("transfer.amount > 249.5", &tx));
        assert!(matches("transfer.amount = 250", &tx));
        assert!(matches("transfer.amount EXISTS", &tx));
        assert!(!matches("transfer.fee EXISTS", &tx));
        // An unknown attribute matches nothing and is no error.
        assert!(!matches("nobody.knows = 'x'", &tx));
        assert!(matches("tm.event CONTAINS 'T'", &tx));
        let timed = [("block.time", "2026-12-07T10:00:00.5Z")];
        assert!(matches("block.time > TIME 2026-12-07T09:00:00Z", &timed));
        assert!(matches("block.time >= DATE 2026-12-07", &timed));
        assert!(!matches("block.time < DATE 2026-12-07", &timed));
        assert!(matches(
            "block.time < TIME 2026-12-07T11:00:00+01:00",
            &[("block.time", "2026-12-07T09:59:59Z")]
        ));
        // A number condition on a value that is not a number does not hold.
        assert!(!matches("tm.event > 5", &tx));
    }

    #[test]
    fn hashes_and_accounts_compare_in_tallys_case() {
        let hex = "ab".repeat(32);
        let c = q(&format!("tx.hash='0x{hex}'")).conditions()[0].clone();
        assert_eq!(c.operand, Operand::Str(hex.to_uppercase()));
        let c = q(&format!("transfer.sender='{}'", hex.to_uppercase())).conditions()[0].clone();
        assert_eq!(c.operand, Operand::Str(hex.clone()));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        let c = q(&format!("tx.hash='{b64}'")).conditions()[0].clone();
        assert_eq!(c.operand, Operand::Str(hex.to_uppercase()));
    }

    #[test]
    fn bad_queries_point_at_the_column() {
        let e = |s: &str| EventQuery::parse(s).unwrap_err().to_string();
        assert_eq!(e("tm.event = 'Tx"), "at column 12: a string opened here is not closed with '");
        assert!(
            e("tm.event ~ 'Tx'").starts_with("at column 10: expected an operator"),
            "{}",
            e("tm.event ~ 'Tx'")
        );
        assert!(e("tm.event='Tx' OR tx.height=1").starts_with("at column 15: expected AND"));
        assert!(e("").starts_with("at column 1: expected an event attribute"));
        assert!(e("tx.height > ").starts_with("at column 13: expected a value"));
        assert!(e("tx.height < 'x'").contains("= or CONTAINS only"));
        assert!(e("tx.height CONTAINS 5").contains("CONTAINS takes"));
        assert!(e("block.time > DATE 2026-13-01").starts_with("at column 19: expected a date"));
        assert!(e(&"x".repeat(QUERY_BYTES_MAX + 1)).contains("longer"));
        let many = vec!["a EXISTS"; CONDITIONS_MAX + 1].join(" AND ");
        assert!(e(&many).contains("more than"));
    }

    #[test]
    fn and_inside_quotes_does_not_split() {
        assert!(matches("a='x AND y' AND b='z'", &[("a", "x AND y"), ("b", "z")]));
    }
}
