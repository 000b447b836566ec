//! Benchmarks of the key hierarchy's hot path: encrypting and decrypting
//! the personal fields of a 1 KB profile, and unwrapping a record key.
//! `bench/crypto` prints these beside `openssl speed` on the same machine.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crypto::{Key256, KeyVersion, decrypt_field, encrypt_field, unwrap_record_key, wrap_record_key};
use domain::{OrgId, ProfileId};

/// A 1 KB profile: ten fields of about 100 bytes, four of them encrypted.
const FIELDS: usize = 4;
const FIELD_LEN: usize = 100;

fn benches(c: &mut Criterion) {
    let (Ok(record_key), Ok(org_key)) = (Key256::generate(), Key256::generate()) else { return };
    let (org, profile, v) = (OrgId::new(), ProfileId::new(), KeyVersion::FIRST);
    let value = vec![b'x'; FIELD_LEN];
    let names = ["email", "phone", "date_of_birth", "address"];

    let mut g = c.benchmark_group("profile_1kb");
    g.throughput(Throughput::Bytes((FIELDS * FIELD_LEN) as u64));
    g.bench_function("encrypt_4_fields", |b| {
        b.iter(|| {
            for name in names {
                black_box(encrypt_field(&record_key, v, org, profile, name, black_box(&value)).ok());
            }
        })
    });
    let cts: Vec<Vec<u8>> =
        names.iter().map(|n| encrypt_field(&record_key, v, org, profile, n, &value).unwrap_or_default()).collect();
    g.bench_function("decrypt_4_fields", |b| {
        b.iter(|| {
            for (name, ct) in names.iter().zip(&cts) {
                black_box(decrypt_field(&record_key, v, org, profile, name, black_box(ct)).ok());
            }
        })
    });
    g.finish();

    let wrapped = wrap_record_key(&org_key, v, org, profile, &record_key).unwrap_or_default();
    c.bench_function("record_key_unwrap", |b| {
        b.iter(|| black_box(unwrap_record_key(&org_key, v, org, profile, black_box(&wrapped)).ok()))
    });

    let block = vec![0u8; 1024];
    let mut g = c.benchmark_group("aes_256_gcm");
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("seal_1024_bytes", |b| {
        b.iter(|| black_box(crypto::seal(&record_key, b"", black_box(&block)).ok()))
    });
    g.finish();
}

criterion_group!(envelope, benches);
criterion_main!(envelope);
