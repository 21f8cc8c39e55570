//! The twelve ed25519 edge cases of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko,
//! SSR 2020), as published in ed25519-speccheck's cases.txt, against tally's rule (see
//! `tally_crypto::verify`): cofactored equation, canonical S, canonical A and R, A and R not
//! of small order. Single verification, batch verification (alone and mixed into a batch of
//! valid signatures) and the caching `Verifier` must give every case the same verdict.

use tally_crypto::{
    verify, verify_batch, ChainId, Domain, Keypair, ParsedKey, PublicKey, Signature, SignedItem,
    Verifier, VerifierConfig, VerifyError,
};

struct Case {
    msg: Vec<u8>,
    key: PublicKey,
    sig: Signature,
}

fn load_cases() -> Vec<Case> {
    let text = include_str!("data/ed25519-edge-cases.txt");
    let mut lines = text.lines();
    let count: usize = lines.next().expect("count line").trim().parse().expect("count");
    let mut cases = Vec::new();
    let mut fields: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    fields.reverse();
    for _ in 0..count {
        let mut take = |prefix: &str| {
            let line = fields.pop().expect("field line");
            let value = line.strip_prefix(prefix).unwrap_or_else(|| panic!("{prefix} in {line}"));
            hex::decode(value).expect("hex")
        };
        let msg = take("msg=");
        let key = PublicKey(take("pbk=").try_into().expect("32-byte key"));
        let sig = Signature(take("sig=").try_into().expect("64-byte signature"));
        cases.push(Case { msg, key, sig });
    }
    cases
}

/// tally's verdict for each case, with why. `Ok` = accepted.
const EXPECTED: [Result<(), VerifyError>; 12] = [
    // 0: A and R of small order, S = 0: "valid" for any message under naive rules.
    Err(VerifyError::KeySmallOrder),
    // 1: A of small order, R of mixed order.
    Err(VerifyError::KeySmallOrder),
    // 2: A of mixed order, R of small order.
    Err(VerifyError::RSmallOrder),
    // 3: A and R of mixed order; both the cofactored and cofactorless equations hold.
    Ok(()),
    // 4: A and R of mixed order; only the cofactored equation holds. tally accepts it, in
    //    batch and alone alike (a cofactorless rule would reject it alone, and a batch would
    //    accept it 1 time in 8).
    Ok(()),
    // 5: like 4 with a mixed-order A: cofactored holds.
    Ok(()),
    // 6: S above the group order.
    Err(VerifyError::SNotCanonical),
    // 7: S far above the group order.
    Err(VerifyError::SNotCanonical),
    // 8: R = (0, -1) encoded with the sign bit set: a non-canonical encoding of a point of
    //    order 2. Caught by the small-order check (which covers every x = 0 encoding).
    Err(VerifyError::RSmallOrder),
    // 9: the same non-canonical R with another S.
    Err(VerifyError::RSmallOrder),
    // 10: A is a non-canonical encoding.
    Err(VerifyError::KeyEncoding),
    // 11: A is a non-canonical encoding.
    Err(VerifyError::KeyEncoding),
];

#[test]
fn single_verification_gives_the_documented_verdicts() {
    let cases = load_cases();
    assert_eq!(cases.len(), 12);
    let got: Vec<Result<(), VerifyError>> =
        cases.iter().map(|c| verify(&c.key, &c.msg, &c.sig)).collect();
    for (i, (g, e)) in got.iter().zip(EXPECTED.iter()).enumerate() {
        assert_eq!(g, e, "case {i}");
    }
}

#[test]
fn batch_alone_and_mixed_agree_with_single() {
    let cases = load_cases();
    let chain = ChainId::new("vectors").expect("chain id");
    let honest: Vec<(ParsedKey, Vec<u8>, Signature)> = (0..15)
        .map(|i| {
            let kp = Keypair::derive_insecure(&format!("honest/{i}"));
            let m = tally_crypto::signing_bytes(Domain::Tx, &chain, &[i as u8]);
            let s = kp.sign_raw(&m);
            (ParsedKey::parse(&kp.public()).expect("honest key"), m, s)
        })
        .collect();
    for (i, case) in cases.iter().enumerate() {
        let single = verify(&case.key, &case.msg, &case.sig);
        let Ok(key) = ParsedKey::parse(&case.key) else {
            // A bad key never reaches a batch: both paths parse keys the same way.
            assert!(single.is_err(), "case {i}");
            continue;
        };
        // Run the batch many times: random coefficients must never change the verdict.
        for _ in 0..32 {
            let alone = verify_batch(&[(&key, &case.msg, &case.sig)]);
            assert_eq!(alone.is_ok(), single.is_ok(), "case {i} alone");
            let mut mixed: Vec<(&ParsedKey, &[u8], &Signature)> =
                honest.iter().map(|(k, m, s)| (k, m.as_slice(), s)).collect();
            mixed.insert(7, (&key, &case.msg, &case.sig));
            match verify_batch(&mixed) {
                Ok(()) => assert!(single.is_ok(), "case {i} mixed accepted"),
                Err(e) => {
                    assert_eq!(e.failures, vec![(7, single.expect_err("rejected"))], "case {i}")
                }
            }
        }
    }
}

#[test]
fn caching_verifier_agrees_with_single_twice() {
    let cases = load_cases();
    let verifier = Verifier::new(VerifierConfig { batch_size: 5, ..Default::default() });
    let items: Vec<SignedItem<'_>> = cases
        .iter()
        .map(|c| SignedItem { key: &c.key, message: &c.msg, signature: &c.sig })
        .collect();
    for round in 0..2 {
        // The second round is answered from the caches and must not change a verdict.
        let verdicts = verifier.verify_many(&items);
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(*v, EXPECTED[i], "case {i}, round {round}");
            assert_eq!(verifier.verify(items[i]), EXPECTED[i], "case {i}, round {round}");
        }
    }
}
