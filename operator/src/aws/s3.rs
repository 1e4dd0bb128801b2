//! Publication of the merged master playlist and the steering manifest as S3 objects.
//!
//! Clients come from the operator's AWS configuration (the standard credential chain; the
//! endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` when set), one per bucket region.
//! With an overridden endpoint, path-style addressing is used (`http://host/bucket/key`): S3
//! compatible servers on an IP address or a private name (moto, MinIO) do not serve
//! `bucket.host` names.

use aws_sdk_s3::primitives::ByteStream;
use std::collections::HashMap;
use std::sync::Mutex;

/// Why an object could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PutObject s3://{bucket}/{key} in {region}: {message}")]
pub struct PutError {
    pub region: String,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// One object to write.
#[derive(Clone, Copy, Debug)]
pub struct Object<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub cache_control: &'a str,
}

/// S3 clients by region, built on first use.
pub struct Buckets {
    aws: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, aws_sdk_s3::Client>>,
}

impl Buckets {
    pub fn new(aws: aws_config::SdkConfig) -> Self {
        Self {
            aws,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let custom_endpoint = self.aws.endpoint_url().is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
                let conf = aws_sdk_s3::config::Builder::from(&self.aws)
                    .region(aws_config::Region::new(region.to_owned()))
                    .force_path_style(custom_endpoint)
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            })
            .clone()
    }

    /// Writes one object in `region`.
    pub async fn put(&self, region: &str, object: Object<'_>) -> Result<(), PutError> {
        let result = self
            .client(region)
            .put_object()
            .bucket(object.bucket)
            .key(object.key)
            .body(ByteStream::from(object.body.to_vec()))
            .content_type(object.content_type)
            .cache_control(object.cache_control)
            .send()
            .await;
        result.map(|_| ()).map_err(|e| {
            use std::error::Error as _;
            let mut message = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            if message.is_empty() {
                message = e.source().map(|s| s.to_string()).unwrap_or_default();
            }
            if message.len() > 300 {
                let mut cut = 300;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push('…');
            }
            PutError {
                region: region.to_owned(),
                bucket: object.bucket.to_owned(),
                key: object.key.to_owned(),
                message,
            }
        })
    }
}
