//! An origin that requires credentials: every playlist and segment request without the exact
//! header gets a 401; `/healthz` stays open.

mod common;

use std::time::Duration;

use hls_sim::{OriginAuth, SimConfig, Simulator};

#[tokio::test]
async fn requests_without_the_required_credentials_get_401() {
    for (auth, good, bad) in [
        (
            OriginAuth::Basic {
                username: "alice".into(),
                password: "S3cret".into(),
            },
            ("authorization", "Basic YWxpY2U6UzNjcmV0"),
            ("authorization", "Basic YWxpY2U6d3Jvbmc="),
        ),
        (
            OriginAuth::Bearer("t0k".into()),
            ("authorization", "Bearer t0k"),
            ("authorization", "Bearer other"),
        ),
        (
            OriginAuth::parse("header:X-CDN-Id:abc").unwrap(),
            ("x-cdn-id", "abc"),
            ("authorization", "abc"),
        ),
    ] {
        let sim = Simulator::start(SimConfig {
            regions: vec![common::REGION_A.into()],
            streams: 1,
            target_duration: Duration::from_millis(500),
            auth: Some(auth.clone()),
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let client = common::client();
        let master = sim.master_url(common::REGION_A, "s0001").unwrap();
        let media = sim.media_url(common::REGION_A, "s0001", "720p").unwrap();
        for url in [&master, &media] {
            let none = client.get(url.as_str()).send().await.unwrap();
            assert_eq!(none.status(), 401, "{auth:?} {url}");
            assert!(none.headers().contains_key("www-authenticate"));
            let wrong = client
                .get(url.as_str())
                .header(bad.0, bad.1)
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{auth:?} {url}");
            let right = client
                .get(url.as_str())
                .header(good.0, good.1)
                .send()
                .await
                .unwrap();
            assert_eq!(right.status(), 200, "{auth:?} {url}");
        }
        assert_eq!(sim.auth_rejections(), 4);
        let health = format!("{}/healthz", sim.region_url(common::REGION_A).unwrap());
        assert_eq!(client.get(health).send().await.unwrap().status(), 200);
        sim.shutdown().await;
    }
    assert!(OriginAuth::parse("basic:nopassword").is_err());
    assert!(OriginAuth::parse("digest:x").is_err());
}
