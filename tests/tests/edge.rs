//! The copilot's deployment against moto's Lambda and CloudFront. moto drops
//! `LambdaFunctionAssociations` on UpdateDistribution and accepts any `IfMatch`, so an HTTP proxy
//! between the operator and moto records what the operator sends (and the ETags moto answered)
//! and can answer UpdateDistribution with PreconditionFailed, as CloudFront does for a stale ETag.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudfront::types::{
    CacheBehavior, CacheBehaviors, DefaultCacheBehavior, DistributionConfig, Origin, Origins,
    S3OriginConfig, ViewerProtocolPolicy,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cvs_e2e::*;
use cvs_operator::aws::edge::{self, EdgeDeployer, EdgeError};
use cvs_operator::resources::{ClusteredStream, CopilotTrigger};
use kube::ResourceExt;
use kube::api::Api;

const WAIT: Duration = Duration::from_secs(60);

/// One request the proxy passed on (or refused).
#[derive(Clone, Debug)]
struct Captured {
    method: String,
    path: String,
    if_match: Option<String>,
    body: String,
    status: u16,
    /// The ETag moto answered with.
    etag: Option<String>,
}

#[derive(Clone)]
struct CaptureProxy {
    target: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Captured>>>,
    refuse_updates: Arc<AtomicU32>,
}

impl CaptureProxy {
    async fn start(target: &str) -> (String, CaptureProxy) {
        let proxy = CaptureProxy {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            seen: Arc::default(),
            refuse_updates: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, proxy)
    }

    fn seen(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }

    /// UpdateDistribution requests (`PUT .../distribution/ID/config`) for `id`.
    fn updates(&self, id: &str) -> Vec<Captured> {
        self.seen()
            .into_iter()
            .filter(|c| {
                c.method == "PUT" && c.path.ends_with(&format!("/distribution/{id}/config"))
            })
            .collect()
    }

    fn count(&self, method: &str, path_part: &str) -> usize {
        self.seen()
            .iter()
            .filter(|c| c.method == method && c.path.contains(path_part))
            .count()
    }
}

async fn forward(State(p): State<CaptureProxy>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: HeaderMap = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let mut captured = Captured {
        method: method.to_string(),
        path: path.clone(),
        if_match: headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        etag: None,
    };
    let is_update = method == "PUT" && path.contains("/distribution/") && path.ends_with("/config");
    if is_update
        && p.refuse_updates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        captured.status = 412;
        p.seen.lock().unwrap().push(captured);
        let xml = "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Error><Type>Sender</Type><Code>PreconditionFailed</Code><Message>The If-Match version is missing or not valid for the resource.</Message></Error><RequestId>capture-proxy</RequestId></ErrorResponse>";
        return Response::builder()
            .status(StatusCode::PRECONDITION_FAILED)
            .header("content-type", "text/xml")
            .body(Body::from(xml))
            .unwrap();
    }
    let mut up = p.http.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        format!("{}{path}", p.target),
    );
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            up = up.header(k.as_str(), v.as_bytes());
        }
    }
    let answer = match up.body(body.to_vec()).send().await {
        Ok(a) => a,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(e.to_string()))
                .unwrap();
        }
    };
    captured.status = answer.status().as_u16();
    captured.etag = answer
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut out = Response::builder().status(answer.status().as_u16());
    for (k, v) in answer.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    p.seen.lock().unwrap().push(captured);
    out.body(Body::from(bytes)).unwrap()
}

/// A distribution in moto with the default behaviour and two path patterns; returns its id.
async fn create_distribution(cf: &aws_sdk_cloudfront::Client, reference: &str) -> String {
    // AWS's managed CachingOptimized policy.
    const POLICY: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";
    let behaviour = |pattern: &str| {
        CacheBehavior::builder()
            .path_pattern(pattern)
            .target_origin_id("origin")
            .viewer_protocol_policy(ViewerProtocolPolicy::AllowAll)
            .cache_policy_id(POLICY)
            .build()
            .unwrap()
    };
    let config = DistributionConfig::builder()
        .caller_reference(reference)
        .comment("cvs e2e")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(
                    Origin::builder()
                        .id("origin")
                        .domain_name("origin.s3.amazonaws.com")
                        .s3_origin_config(
                            S3OriginConfig::builder().origin_access_identity("").build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("origin")
                .viewer_protocol_policy(ViewerProtocolPolicy::AllowAll)
                .cache_policy_id(POLICY)
                .build()
                .unwrap(),
        )
        .cache_behaviors(
            CacheBehaviors::builder()
                .quantity(2)
                .items(behaviour("*.m3u8"))
                .items(behaviour("*.ts"))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cf.create_distribution()
        .distribution_config(config)
        .send()
        .await
        .unwrap()
        .distribution
        .unwrap()
        .id
}

/// An execution role in moto's IAM (moto's CreateFunction wants the role to exist), created
/// with a plain Query request (no IAM client in this crate); returns its ARN.
async fn create_role(name: &str) -> String {
    let iam = std::env::var("AWS_ENDPOINT_URL_IAM").expect("moto is not up (AWS_ENDPOINT_URL_IAM)");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","edgelambda.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let form = [
        ("Action", "CreateRole"),
        ("Version", "2010-05-08"),
        ("RoleName", name),
        ("AssumeRolePolicyDocument", trust),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let answer = reqwest::Client::new()
        .post(iam)
        .header("content-type", "application/x-www-form-urlencoded")
        // moto picks the service from the credential scope; it does not check the signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(form)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert!(status.is_success(), "CreateRole: {status} {body}");
    let arn = body
        .split("<Arn>")
        .nth(1)
        .and_then(|rest| rest.split("</Arn>").next())
        .unwrap_or_else(|| panic!("no role ARN in {body}"));
    arn.to_owned()
}

fn moto() -> String {
    std::env::var("AWS_ENDPOINT_URL_CLOUDFRONT")
        .expect("moto is not up (AWS_ENDPOINT_URL_CLOUDFRONT)")
}

/// SDK configuration whose Lambda and CloudFront requests go through `proxy`.
async fn through(proxy: &str) -> aws_config::SdkConfig {
    require_env();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(proxy)
        .load()
        .await
}

#[tokio::test]
async fn deployer_publishes_only_on_change_and_retries_a_stale_etag() {
    require_env();
    let ns = namespace("edge-deployer");
    let cf = aws_sdk_cloudfront::Client::new(&aws_config().await);
    let distribution = create_distribution(&cf, &ns).await;
    let (url, proxy) = CaptureProxy::start(&moto()).await;
    let deployer = EdgeDeployer::new(&through(&url).await);
    let role = create_role(&ns).await;
    let base = format!("cvs-{ns}");
    let name = edge::function_name(&base, b"one configuration");
    let zip1 = edge::build_zip(b"{\"version\":1,\"cacheSeconds\":5}");
    let zip2 = edge::build_zip(b"{\"version\":1,\"cacheSeconds\":7}");

    let v1 = deployer
        .ensure_function(&name, &role, CopilotTrigger::OriginResponse, &zip1)
        .await
        .unwrap();
    assert!(v1.ends_with(&format!(":function:{name}:1")), "{v1}");
    assert_eq!(
        proxy.count("POST", "/2015-03-31/functions"),
        1,
        "CreateFunction"
    );

    // The same zip again: no upload, no new version.
    let before = proxy.seen().len();
    let again = deployer
        .ensure_function(&name, &role, CopilotTrigger::OriginResponse, &zip1)
        .await
        .unwrap();
    assert_eq!(again, v1);
    let writes: Vec<Captured> = proxy.seen()[before..]
        .iter()
        .filter(|c| c.method != "GET")
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "nothing written for an unchanged zip: {writes:?}"
    );

    // A changed configuration: new code, one new version.
    let v2 = deployer
        .ensure_function(&name, &role, CopilotTrigger::OriginResponse, &zip2)
        .await
        .unwrap();
    assert!(v2.ends_with(&format!(":function:{name}:2")), "{v2}");
    assert_eq!(proxy.count("PUT", &format!("/functions/{name}/code")), 1);

    // CloudFront refuses the first update as if the ETag were stale: read again, send again.
    proxy.refuse_updates.store(1, Ordering::SeqCst);
    let event = edge::event_type(CopilotTrigger::OriginResponse);
    let changed = deployer
        .attach(&distribution, Some((&v2, &event)), &base)
        .await
        .unwrap();
    assert!(changed);
    let updates = proxy.updates(&distribution);
    assert_eq!(
        updates.iter().map(|u| u.status).collect::<Vec<_>>(),
        vec![412, 200],
        "one refused update, then one from a fresh read"
    );
    let reads: Vec<Captured> = proxy
        .seen()
        .into_iter()
        .filter(|c| {
            c.method == "GET"
                && c.path
                    .ends_with(&format!("/distribution/{distribution}/config"))
        })
        .collect();
    assert_eq!(reads.len(), 2);
    for (read, update) in reads.iter().zip(&updates) {
        assert!(update.if_match.is_some());
        assert_eq!(update.if_match, read.etag, "IfMatch is the ETag just read");
    }
    // What was sent: our version on origin-response on the default behaviour and both patterns.
    let sent = &updates[1].body;
    assert_eq!(
        sent.matches(&format!("<LambdaFunctionARN>{v2}</LambdaFunctionARN>"))
            .count(),
        3,
        "{sent}"
    );
    assert_eq!(
        sent.matches("<EventType>origin-response</EventType>")
            .count(),
        3
    );
    assert_eq!(sent.matches("<IncludeBody>false</IncludeBody>").count(), 3);

    // A distribution that keeps changing: give up after a bounded number of tries.
    proxy.refuse_updates.store(100, Ordering::SeqCst);
    let err = deployer
        .attach(&distribution, Some((&v2, &event)), &base)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EdgeError::Contended(_, n) if n == edge::PRECONDITION_RETRIES),
        "{err}"
    );
}

#[tokio::test]
async fn cluster_reports_edge_deployed_and_its_finalizer_detaches() {
    require_env();
    install_crds();
    let ns = namespace("edge-cluster");
    let cf = aws_sdk_cloudfront::Client::new(&aws_config().await);
    let east = create_distribution(&cf, &format!("{ns}-east")).await;
    let west = create_distribution(&cf, &format!("{ns}-west")).await;
    let (url, proxy) = CaptureProxy::start(&moto()).await;
    let role = create_role(&ns).await;
    let base = format!("cvs-{ns}");
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {ns}-state, region: us-east-1, create: true}}\n  copilot: {{enabled: true, functionName: {base}, roleArn: \"{role}\", trigger: viewer-request, tableCacheSeconds: 3}}\n"
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    for (region, id) in [("us-east-1", &east), ("eu-west-1", &west)] {
        let instance = format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: event-{region}\nspec:\n  clusteredStream: event\n  region: {region}\n  cloudfront: {{domain: d-{region}-{ns}.cloudfront.net, distributionId: {id}}}\n  origin: {{url: \"http://127.0.0.1:9/master.m3u8\"}}\n"
        );
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&instance));
    }
    let env = [
        ("AWS_ENDPOINT_URL_LAMBDA", url.clone()),
        ("AWS_ENDPOINT_URL_CLOUDFRONT", url.clone()),
    ];
    let operator = Operator::start_full("edge-cluster", &ns, &[], &env)
        .await
        .unwrap();
    let api: Api<ClusteredStream> = Api::namespaced(client().await, &ns);
    let message = wait_for("EdgeDeployed=True", WAIT, || async {
        let c = api.get("event").await.ok()?;
        let cond = c
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "EdgeDeployed")?;
        (cond.status == "True").then_some(cond.message)
    })
    .await;
    assert!(message.contains(&format!(":function:{base}-")), "{message}");
    assert!(message.contains(":1 on viewer-request"), "{message}");
    assert!(
        message.contains(&east) && message.contains(&west),
        "{message}"
    );
    let cluster = api.get("event").await.unwrap();
    assert!(cluster.finalizers().iter().any(|f| f == "cvs.dev/copilot"));
    for id in [&east, &west] {
        let sent = proxy.updates(id);
        let last = sent
            .last()
            .unwrap_or_else(|| panic!("no update sent for {id}"));
        assert_eq!(
            last.body
                .matches("<EventType>viewer-request</EventType>")
                .count(),
            3
        );
        assert!(last.if_match.is_some());
    }
    // The published function carries the configuration the cluster asked for.
    let version_arn = message.split(' ').next().unwrap().to_owned();
    let lambda = aws_sdk_lambda::Client::new(&aws_config().await);
    let got = lambda
        .get_function()
        .function_name(&version_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.configuration.unwrap().runtime,
        Some(aws_sdk_lambda::types::Runtime::Nodejs20x)
    );

    // Deleting the ClusteredStream: the finalizer reads each distribution to drop only our
    // association (moto kept none, so nothing is sent), then lets the object go.
    let reads_before = proxy.count("GET", "/config");
    kubectl_ok(
        &[
            "delete",
            "clusteredstream",
            "event",
            "-n",
            &ns,
            "--wait=false",
        ],
        None,
    );
    wait_for("the ClusteredStream to be gone", WAIT, || async {
        api.get_opt("event").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(proxy.count("GET", "/config") >= reads_before + 2);
    drop(operator);
}
