//! `cvs-operator merge`: the same merge the operator publishes, on files or URLs.

use std::process::Command;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/masters/{name}.m3u8",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn merges_files_and_reports_differences_on_stderr() {
    let out = Command::new(env!("CARGO_BIN_EXE_cvs-operator"))
        .args([
            "merge",
            "--instance",
            &format!("us-east-1=d1.cloudfront.net={}", fixture("mediapackage_ts")),
            "--instance",
            &format!("eu-west-1=d2.cloudfront.net={}", fixture("medialive_ts")),
            "--steering-uri",
            "https://d1.cloudfront.net/steering.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let master = String::from_utf8(out.stdout).unwrap();
    assert!(matches!(
        m3u8_rs::parse_playlist_res(master.as_bytes()),
        Ok(m3u8_rs::Playlist::MasterPlaylist(_))
    ));
    assert!(
        master.contains("https://d1.cloudfront.net/index_1.m3u8\n"),
        "{master}"
    );
    assert!(
        master.contains("https://d2.cloudfront.net/channel_1080p30.m3u8\n"),
        "{master}"
    );
    assert!(
        master.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="),
        "{master}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("ladders differ"), "{stderr}");
}

#[test]
fn prints_the_steering_manifest_and_leaves_out_garbage() {
    let garbage = std::env::temp_dir().join(format!("cvs-merge-cli-{}.txt", std::process::id()));
    std::fs::write(&garbage, "<html>not a playlist</html>").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cvs-operator"))
        .args([
            "merge",
            "--instance",
            &format!("us-east-1=d1.cloudfront.net={}", fixture("muxed_ts")),
            "--instance",
            &format!("eu-west-1=d2.cloudfront.net={}", garbage.display()),
            "--steering-uri",
            "https://d1.cloudfront.net/steering.json",
            "--steering-manifest",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&garbage);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["VERSION"], 1);
    assert_eq!(
        manifest["PATHWAY-PRIORITY"],
        serde_json::json!(["us-east-1"])
    );
    assert_eq!(
        manifest["RELOAD-URI"],
        "https://d1.cloudfront.net/steering.json"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("eu-west-1: left out: not a playlist"),
        "{stderr}"
    );
}
