//! Helpers shared by the integration tests: loopback only, bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use hls_sim::{SimConfig, SimHandle, Simulator};

pub const REGION_A: &str = "us-east-1";
pub const REGION_B: &str = "eu-west-1";

/// A simulator with short segments (250 ms) on 127.0.0.1.
pub async fn start(streams: usize, td_ms: u64, ll: bool) -> SimHandle {
    Simulator::start(SimConfig {
        regions: vec![REGION_A.into(), REGION_B.into()],
        streams,
        target_duration: Duration::from_millis(td_ms),
        ll_hls: ll,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client that never reuses connections.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

pub async fn delete(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client.delete(url).send().await.expect("DELETE");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

pub fn media_sequence(playlist: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap_or_else(|| panic!("no media sequence in {playlist}"))
        .parse()
        .expect("number")
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs `f` with an overall bound so a broken simulator fails the test instead of hanging it.
pub async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}
