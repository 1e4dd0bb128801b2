//! The `hls-origin-sim` binary: ready line, ready file, serving, and graceful exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_ready_line_serves_and_exits_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("hls-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready_file = dir.join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hls-origin-sim"))
        .args([
            "--regions",
            "us-east-1,eu-west-1,ap-south-1",
            "--streams",
            "3",
            "--renditions",
            "2",
            "--target-duration",
            "0.5",
            "--ll-hls",
            "--ready-file",
        ])
        .arg(&ready_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hls-origin-sim");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("ready line in time")
        .unwrap()
        .unwrap();
    let ready: hls_sim::Ready = serde_json::from_str(line.trim()).expect("ready JSON");
    assert_eq!(ready.regions.len(), 3);
    assert!(ready.control.starts_with("http://127.0.0.1:"));
    let file: hls_sim::Ready =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).unwrap()).unwrap();
    assert_eq!(file, ready);

    let c = client();
    bounded(20, async {
        let base = &ready.regions["ap-south-1"];
        let (st, master) = get(&c, &format!("{base}/s0003/master.m3u8")).await;
        assert_eq!(st, 200);
        assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 2);
        let (st, media) = get(&c, &format!("{base}/s0003/720p/index.m3u8")).await;
        assert_eq!(st, 200);
        assert!(media.contains("#EXT-X-PART-INF:PART-TARGET=0.125"));
        let (st, _) = get(&c, &format!("{}/topology", ready.control)).await;
        assert_eq!(st, 200);
    })
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("no exit after SIGTERM");
        }
        sleep_ms(50).await;
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_hls-origin-sim"))
        .args(["--target-duration", "0", "--streams", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("target-duration"));
}
