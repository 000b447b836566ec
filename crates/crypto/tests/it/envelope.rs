//! Properties of the key hierarchy's formats: everything round-trips, and a
//! ciphertext moved to another organisation, record, field or version, or
//! with any bit flipped, fails to decrypt.

use crypto::{
    BlindIndexKey, CryptoError, Key256, KeyVersion, decrypt_field, encrypt_field, unwrap_record_key, wrap_record_key,
    wrapped_record_key_version,
};
use domain::{OrgId, ProfileId};
use proptest::prelude::*;

fn key() -> Key256 {
    Key256::generate().unwrap_or_else(|e| panic!("{e}"))
}

fn v(n: u32) -> KeyVersion {
    KeyVersion::new(n).unwrap_or(KeyVersion::FIRST)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fields_round_trip(value in proptest::collection::vec(any::<u8>(), 0..2048), field in "[a-z_]{1,20}") {
        let (k, org, profile) = (key(), OrgId::new(), ProfileId::new());
        let ct = encrypt_field(&k, v(3), org, profile, &field, &value).unwrap_or_default();
        let pt = decrypt_field(&k, v(3), org, profile, &field, &ct).map(|p| p.to_vec());
        prop_assert_eq!(pt, Ok(value));
    }

    // claim 000.2
    #[test]
    fn any_flipped_bit_fails(value in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>()) {
        let (k, org, profile) = (key(), OrgId::new(), ProfileId::new());
        let mut ct = encrypt_field(&k, v(1), org, profile, "email", &value).unwrap_or_default();
        let bit = bit % (ct.len() * 8);
        ct[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decrypt_field(&k, v(1), org, profile, "email", &ct).is_err());
    }
}

// claim 000.2 003.6
#[test]
fn a_field_moved_to_another_org_record_field_or_version_fails() {
    let (k, org, profile) = (key(), OrgId::new(), ProfileId::new());
    let ct = encrypt_field(&k, v(2), org, profile, "email", b"jane@example.com").unwrap_or_default();
    assert!(decrypt_field(&k, v(2), org, profile, "email", &ct).is_ok());
    let moved = [
        decrypt_field(&k, v(2), OrgId::new(), profile, "email", &ct),
        decrypt_field(&k, v(2), org, ProfileId::new(), "email", &ct),
        decrypt_field(&k, v(2), org, profile, "phone", &ct),
        decrypt_field(&k, v(3), org, profile, "email", &ct),
        decrypt_field(&key(), v(2), org, profile, "email", &ct),
    ];
    for (i, r) in moved.iter().enumerate() {
        assert!(r.is_err(), "case {i} decrypted");
    }
    assert_eq!(moved[3].as_ref().err(), Some(&CryptoError::WrongVersion { expected: 3, found: 2 }));
}

// claim 000.2
#[test]
fn rewriting_the_version_header_does_not_help() {
    let (k, org, profile) = (key(), OrgId::new(), ProfileId::new());
    let mut ct = encrypt_field(&k, v(1), org, profile, "email", b"x").unwrap_or_default();
    ct[4] = 2; // claim version 2 in the header
    assert_eq!(decrypt_field(&k, v(2), org, profile, "email", &ct).err(), Some(CryptoError::Decrypt));
}

// claim 000.2 003.6
#[test]
fn record_keys_unwrap_only_for_their_org_record_and_org_key_version() {
    let (org_key, record_key, org, profile) = (key(), key(), OrgId::new(), ProfileId::new());
    let wrapped = wrap_record_key(&org_key, v(4), org, profile, &record_key).unwrap_or_default();
    assert_eq!(wrapped_record_key_version(&wrapped), Ok(v(4)));
    let back = unwrap_record_key(&org_key, v(4), org, profile, &wrapped);
    assert_eq!(back.map(|k| *k.expose_for_cipher()).ok(), Some(*record_key.expose_for_cipher()));
    assert!(unwrap_record_key(&org_key, v(4), OrgId::new(), profile, &wrapped).is_err());
    assert!(unwrap_record_key(&org_key, v(4), org, ProfileId::new(), &wrapped).is_err());
    assert!(unwrap_record_key(&key(), v(4), org, profile, &wrapped).is_err());
    assert!(unwrap_record_key(&org_key, v(5), org, profile, &wrapped).is_err());
}

#[test]
fn malformed_inputs_are_refused_not_panicked_on() {
    let (k, org, profile) = (key(), OrgId::new(), ProfileId::new());
    for bad in [
        &b""[..],
        &[1u8],
        &[1, 0, 0, 0, 1],
        &[9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[1, 0, 0, 0, 0],
    ] {
        assert!(decrypt_field(&k, v(1), org, profile, "f", bad).is_err(), "{bad:?}");
        assert!(unwrap_record_key(&k, v(1), org, profile, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn blind_tokens_match_equal_values_only_within_one_org_and_field() {
    let (org_key, org) = (key(), OrgId::new());
    let bi = BlindIndexKey::derive(&org_key, org).unwrap_or_else(|e| panic!("{e}"));
    let again = BlindIndexKey::derive(&org_key, org).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bi.token("email", b"jane@example.com"), again.token("email", b"jane@example.com"));
    assert_ne!(bi.token("email", b"jane@example.com"), bi.token("email", b"john@example.com"));
    assert_ne!(bi.token("email", b"jane@example.com"), bi.token("work_email", b"jane@example.com"));
    let other_org = BlindIndexKey::derive(&org_key, OrgId::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(bi.token("email", b"jane@example.com"), other_org.token("email", b"jane@example.com"));
    assert_eq!(format!("{:?}", bi.token("email", b"x")), "BlindToken([redacted])");
}

#[test]
fn sealing_key_derivation_is_deterministic_per_salt_and_secret() {
    let kdf = crypto::SealingKdf { m_kib: 1024, t_cost: 1, p_cost: 1, salt: [1; 16] };
    let a = crypto::derive_sealing_key(b"correct horse", &kdf).map(|k| *k.expose_for_cipher());
    let b = crypto::derive_sealing_key(b"correct horse", &kdf).map(|k| *k.expose_for_cipher());
    let c = crypto::derive_sealing_key(b"wrong horse", &kdf).map(|k| *k.expose_for_cipher());
    let d = crypto::derive_sealing_key(b"correct horse", &crypto::SealingKdf { salt: [2; 16], ..kdf.clone() })
        .map(|k| *k.expose_for_cipher());
    assert!(a.is_ok());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
}
