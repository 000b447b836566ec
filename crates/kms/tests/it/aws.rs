//! The AWS KMS backend against moto's KMS: conformance with a key created
//! for the test, including that a wrong encryption context fails.

use kms::{AwsKms, AwsKmsConfig, Kms};

use crate::peer_env;

async fn fresh_key(endpoint: &str) -> String {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&conf);
    let out = client.create_key().description("strongroom conformance").send().await;
    out.ok().and_then(|o| o.key_metadata).map(|m| m.key_id).unwrap_or_else(|| panic!("moto CreateKey failed"))
}

// claim 000.6 003.6 003.8
#[tokio::test]
async fn moto_kms_passes_the_conformance_suite() {
    let endpoint = peer_env("STRONGROOM_TEST_AWS_ENDPOINT");
    let key_id = fresh_key(&endpoint).await;
    let kms = AwsKms::open(AwsKmsConfig { key_id, region: Some("us-east-1".into()), endpoint: Some(endpoint) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    crate::conformance::run(&Kms::Aws(kms), "aws-kms", false).await;
}
