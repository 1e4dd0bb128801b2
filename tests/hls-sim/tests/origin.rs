//! The simulator in-process on 127.0.0.1, exercised with a plain HTTP client.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::*;
use hls_sim::hls::{MediaKind, render_media};
use hls_sim::{
    BlockingMisbehaviour, FaultKind, FaultParams, FaultRequest, ResourceFilter, TruncateMode,
    now_ms,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_advance_in_sync_across_regions() {
    let sim = start(2, 250, false).await;
    let c = client();
    bounded(20, async {
        let (st, master) = get(&c, &sim.master_url(REGION_A, "s0001").unwrap()).await;
        assert_eq!(st, 200);
        assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 3);
        assert_eq!(master.matches("#EXT-X-I-FRAME-STREAM-INF:").count(), 3);
        assert!(master.contains("TYPE=AUDIO,GROUP-ID=\"aud\""));
        let (_, master_b) = get(&c, &sim.master_url(REGION_B, "s0001").unwrap()).await;
        assert_eq!(master, master_b);

        // Every media playlist (video, audio, I-frame) of the topology answers.
        let topo = sim.topology(Some("s0001"), None);
        assert_eq!(topo.regions.len(), 2);
        for region in &topo.regions {
            for m in &region.streams[0].media {
                let (st, body) = get(&c, &m.url).await;
                assert_eq!(st, 200, "{}", m.url);
                assert!(body.starts_with("#EXTM3U\n"));
            }
        }

        // Content is a pure function of time: a response equals the rendering for some instant
        // between just before the request and just after it.
        let tl = sim.timeline("s0001").unwrap();
        let url_a = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        let url_b = sim.media_url(REGION_B, "s0001", "720p").unwrap();
        for url in [&url_a, &url_b] {
            let before = now_ms();
            let (_, body) = get(&c, url).await;
            let after = now_ms();
            let seq = media_sequence(&body);
            let lo = tl.snapshot(before).first;
            let hi = tl.snapshot(after).first;
            assert!((lo..=hi).contains(&seq), "{seq} not in {lo}..={hi}");
            let t = (before..=after)
                .find(|&t| tl.snapshot(t).first == seq)
                .unwrap();
            let mut expected = String::new();
            render_media(&mut expected, &tl, MediaKind::Media, t, 0);
            assert_eq!(body, expected);
            assert_eq!(body.matches("#EXTINF:0.250,").count(), 6);
        }

        // And it advances.
        let s1 = media_sequence(&get(&c, &url_a).await.1);
        sleep_ms(600).await;
        let s2 = media_sequence(&get(&c, &url_a).await.1);
        assert!(s2 >= s1 + 2, "{s1} -> {s2}");

        // Segments answer; unknown things 404.
        let seg = format!("{}/s0001/720p/{}.ts", sim.region_url(REGION_A).unwrap(), s2);
        let r = c.get(&seg).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "video/mp2t");
        assert_eq!(r.bytes().await.unwrap()[0], 0x47);
        let future = format!(
            "{}/s0001/720p/{}.ts",
            sim.region_url(REGION_A).unwrap(),
            s2 + 100
        );
        assert_eq!(get(&c, &future).await.0, 404);
        for path in [
            "/s9999/master.m3u8",
            "/s0001/999p/index.m3u8",
            "/s0001/audio-en/iframes.m3u8",
            "/x",
        ] {
            let url = format!("{}{path}", sim.region_url(REGION_A).unwrap());
            assert_eq!(get(&c, &url).await.0, 404, "{path}");
        }
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_stops_one_rendition_in_one_region_and_heals() {
    let sim = start(2, 200, false).await;
    let c = client();
    let tl = sim.timeline("s0001").unwrap();
    bounded(20, async {
        let applied = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Freeze)
                    .region(REGION_A)
                    .stream("s0001")
                    .rendition("720p"),
            )
            .await
            .unwrap();
        let t = applied.applied_at_unix_ms;
        let frozen = applied.frozen.expect("freeze info");
        let last = tl.last_complete(t).unwrap();
        assert_eq!(
            frozen.last_segment_published_unix_ms,
            Some(tl.segment_published_ms(last))
        );
        assert!(frozen.last_segment_published_unix_ms.unwrap() <= t);
        assert!(t - frozen.last_segment_published_unix_ms.unwrap() < 200);
        assert_eq!(frozen.streams["s0001"].last_msn, Some(last));

        // The frozen playlist is exactly the one of the freeze instant, for 3 target durations.
        let mut expected = String::new();
        render_media(&mut expected, &tl, MediaKind::Media, t, 0);
        let url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        for _ in 0..4 {
            assert_eq!(get(&c, &url).await.1, expected);
            sleep_ms(150).await;
        }
        // Its I-frame playlist is frozen too; other renditions and regions go on.
        let iframes = url.replace("index.m3u8", "iframes.m3u8");
        assert_eq!(media_sequence(&get(&c, &iframes).await.1), last - 5);
        let other = sim.media_url(REGION_A, "s0001", "1080p").unwrap();
        assert!(media_sequence(&get(&c, &other).await.1) > last - 5 + 1);
        let region_b = sim.media_url(REGION_B, "s0001", "720p").unwrap();
        assert!(media_sequence(&get(&c, &region_b).await.1) > last - 5 + 1);

        // Heal: back to the wall-clock sequence at once.
        let healed = sim.heal_fault(applied.id).await.unwrap();
        let seq = media_sequence(&get(&c, &url).await.1);
        let now_first = tl.snapshot(healed.healed_at_unix_ms).first;
        assert!(seq >= now_first && seq > last - 5, "{seq} vs {now_first}");
        assert!(sim.faults().is_empty());
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_faults_and_heal() {
    let sim = start(2, 250, false).await;
    let c = client();
    bounded(20, async {
        let r720 = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        let r1080 = sim.media_url(REGION_A, "s0001", "1080p").unwrap();
        let master = sim.master_url(REGION_A, "s0001").unwrap();
        let f404 = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Http404)
                    .stream("s0001")
                    .rendition("720p"),
            )
            .await
            .unwrap();
        assert_eq!(get(&c, &r720).await.0, 404);
        assert_eq!(
            get(&c, &sim.media_url(REGION_B, "s0001", "720p").unwrap())
                .await
                .0,
            404
        );
        assert_eq!(get(&c, &r1080).await.0, 200);
        assert_eq!(get(&c, &master).await.0, 200);

        let f503 = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Http500)
                    .region(REGION_A)
                    .stream("s0002")
                    .params(FaultParams {
                        status: Some(503),
                        ..Default::default()
                    }),
            )
            .await
            .unwrap();
        let f500 = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Http500)
                    .region(REGION_B)
                    .resource(ResourceFilter::Master),
            )
            .await
            .unwrap();
        assert_eq!(
            get(&c, &sim.master_url(REGION_A, "s0002").unwrap()).await.0,
            503
        );
        assert_eq!(
            get(&c, &sim.media_url(REGION_A, "s0002", "360p").unwrap())
                .await
                .0,
            503
        );
        assert_eq!(
            get(&c, &sim.master_url(REGION_B, "s0002").unwrap()).await.0,
            500
        );
        assert_eq!(
            get(&c, &sim.media_url(REGION_B, "s0002", "360p").unwrap())
                .await
                .0,
            200
        );

        sim.heal_fault(f404.id).await.unwrap();
        assert_eq!(get(&c, &r720).await.0, 200);
        sim.heal_fault(f503.id).await.unwrap();
        sim.heal_fault(f500.id).await.unwrap();
        assert_eq!(
            get(&c, &sim.master_url(REGION_A, "s0002").unwrap()).await.0,
            200
        );
        assert_eq!(
            get(&c, &sim.master_url(REGION_B, "s0002").unwrap()).await.0,
            200
        );
        assert!(sim.heal_fault(f404.id).await.is_err());
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_refuse_closes_the_listener_and_reopens_on_the_same_port() {
    let sim = start(1, 250, false).await;
    let addr_a = sim.region_addr(REGION_A).unwrap();
    let url = sim.master_url(REGION_A, "s0001").unwrap();
    bounded(20, async {
        // A kept-alive connection from before the fault.
        let pooled = client();
        assert_eq!(get(&pooled, &url).await.0, 200);

        let applied = sim
            .apply_fault(FaultRequest::new(FaultKind::Refuse).region(REGION_A))
            .await
            .unwrap();
        assert_eq!(applied.closed_regions, [REGION_A]);
        let err = tokio::net::TcpStream::connect(addr_a).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        assert!(!sim.topology(None, Some(REGION_A)).regions[0].listening);
        // The old connection gets no answer either.
        assert!(pooled.get(&url).send().await.is_err());
        // The other region is untouched.
        let fresh = fresh_client();
        assert_eq!(
            get(&fresh, &sim.master_url(REGION_B, "s0001").unwrap())
                .await
                .0,
            200
        );

        sim.heal_fault(applied.id).await.unwrap();
        tokio::net::TcpStream::connect(addr_a)
            .await
            .expect("listening again");
        assert_eq!(sim.region_addr(REGION_A), Some(addr_a));
        assert_eq!(get(&fresh, &url).await.0, 200);

        // Every region at once, healed with DELETE-all semantics.
        sim.apply_fault(FaultRequest::new(FaultKind::Refuse))
            .await
            .unwrap();
        for (_, addr) in sim.regions() {
            assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        }
        sim.heal_all().await;
        for (_, addr) in sim.regions() {
            tokio::net::TcpStream::connect(addr)
                .await
                .expect("listening again");
        }
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_refuse_drops_the_connection_without_a_response() {
    let sim = start(1, 250, false).await;
    let c = fresh_client();
    bounded(20, async {
        let f = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Refuse)
                    .region(REGION_A)
                    .stream("s0001")
                    .rendition("720p"),
            )
            .await
            .unwrap();
        assert!(f.closed_regions.is_empty());
        let url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        assert!(c.get(&url).send().await.is_err());
        // Connect still works, and other renditions answer.
        tokio::net::TcpStream::connect(sim.region_addr(REGION_A).unwrap())
            .await
            .unwrap();
        assert_eq!(
            get(&c, &sim.media_url(REGION_A, "s0001", "1080p").unwrap())
                .await
                .0,
            200
        );
        sim.heal_fault(f.id).await.unwrap();
        assert_eq!(get(&c, &url).await.0, 200);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_holds_until_heal_and_slow_delays() {
    let sim = start(1, 250, false).await;
    let c = client();
    bounded(20, async {
        let url = sim.media_url(REGION_A, "s0001", "360p").unwrap();
        let f = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Hang)
                    .region(REGION_A)
                    .rendition("360p"),
            )
            .await
            .unwrap();
        // A client that gives up gets nothing.
        let impatient = c.get(&url).timeout(Duration::from_millis(300)).send().await;
        assert!(impatient.unwrap_err().is_timeout());
        // A patient one gets its answer right after the heal.
        let pending = tokio::spawn({
            let c = c.clone();
            let url = url.clone();
            async move { get(&c, &url).await }
        });
        sleep_ms(400).await;
        assert!(!pending.is_finished());
        let healed_at = Instant::now();
        sim.heal_fault(f.id).await.unwrap();
        let (status, body) = pending.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with("#EXTM3U"));
        assert!(healed_at.elapsed() < Duration::from_secs(1));

        let slow = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Slow)
                    .stream("s0001")
                    .resource(ResourceFilter::Master)
                    .params(FaultParams {
                        delay_ms: Some(400),
                        ..Default::default()
                    }),
            )
            .await
            .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            get(&c, &sim.master_url(REGION_A, "s0001").unwrap()).await.0,
            200
        );
        assert!(t0.elapsed() >= Duration::from_millis(400));
        let t0 = Instant::now();
        assert_eq!(get(&c, &url).await.0, 200);
        assert!(t0.elapsed() < Duration::from_millis(380));
        sim.heal_fault(slow.id).await.unwrap();
        let t0 = Instant::now();
        get(&c, &sim.master_url(REGION_A, "s0001").unwrap()).await;
        assert!(t0.elapsed() < Duration::from_millis(380));
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_makes_the_media_sequence_go_backwards() {
    let sim = start(1, 250, false).await;
    let c = client();
    bounded(20, async {
        let url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        let before = media_sequence(&get(&c, &url).await.1);
        assert!(before >= 990);
        let f = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Reset)
                    .region(REGION_A)
                    .stream("s0001"),
            )
            .await
            .unwrap();
        let offset = f.reset_offset.unwrap();
        assert!(offset >= before);
        let during = get(&c, &url).await.1;
        let seq = media_sequence(&during);
        assert!(seq < 5, "{seq}");
        assert!(during.contains(&format!("\n{seq}.ts\n")));
        // Region B is unaffected.
        assert!(
            media_sequence(
                &get(&c, &sim.media_url(REGION_B, "s0001", "720p").unwrap())
                    .await
                    .1
            ) >= before
        );
        // The restarted stream keeps advancing.
        sleep_ms(550).await;
        assert!(media_sequence(&get(&c, &url).await.1) >= seq + 2);
        // An explicit offset, clamped to what is left.
        let f2 =
            sim.apply_fault(FaultRequest::new(FaultKind::Reset).stream("s0001").params(
                FaultParams {
                    offset: Some(1_000_000),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        assert!(f2.reset_offset.unwrap() < 20);
        sim.heal_all().await;
        assert!(media_sequence(&get(&c, &url).await.1) >= before + 2);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_faults() {
    let sim = start(1, 250, false).await;
    let c = client();
    bounded(30, async {
        let master_url = sim.master_url(REGION_A, "s0001").unwrap();
        let (_, master) = get(&c, &master_url).await;
        let apply = |kind, params| {
            sim.apply_fault(
                FaultRequest::new(kind)
                    .stream("s0001")
                    .resource(ResourceFilter::Master)
                    .params(params),
            )
        };

        let f = apply(FaultKind::Truncate, FaultParams::default())
            .await
            .unwrap();
        let (st, body) = get(&c, &master_url).await;
        assert_eq!(st, 200);
        assert_eq!(body, master[..master.len() / 2]);
        sim.heal_fault(f.id).await.unwrap();

        let f = apply(
            FaultKind::Truncate,
            FaultParams {
                mode: Some(TruncateMode::Abort),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let r = c.get(&master_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(master.len() as u64));
        assert!(r.bytes().await.is_err(), "body must end early");
        sim.heal_fault(f.id).await.unwrap();

        let f = apply(FaultKind::Garbage, FaultParams::default())
            .await
            .unwrap();
        let r = c.get(&master_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 4096);
        assert!(!body.starts_with(b"#EXTM3U"));
        sim.heal_fault(f.id).await.unwrap();

        // Default oversize: 8 MiB, starting with the real playlist.
        let f = apply(FaultKind::Oversize, FaultParams::default())
            .await
            .unwrap();
        let r = c.get(&master_url).send().await.unwrap();
        assert_eq!(r.content_length(), Some(8 << 20));
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 8 << 20);
        assert!(body.starts_with(master.as_bytes()));
        sim.heal_fault(f.id).await.unwrap();
        // Chunked: no Content-Length.
        let f = apply(
            FaultKind::Oversize,
            FaultParams {
                bytes: Some(1 << 20),
                chunked: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let r = c.get(&master_url).send().await.unwrap();
        assert_eq!(r.content_length(), None);
        assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
        sim.heal_fault(f.id).await.unwrap();

        // Hostile shapes: a long line after the first, thousands of variants.
        let f = apply(
            FaultKind::LongLine,
            FaultParams {
                bytes: Some(100_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let (_, body) = get(&c, &master_url).await;
        let line = body.lines().nth(1).unwrap();
        assert!(line.starts_with("#EXT-X-SIM-LONG-LINE:xxx"));
        assert_eq!(line.len(), 100_000);
        assert_eq!(body.replace(&format!("{line}\n"), ""), master);
        sim.heal_fault(f.id).await.unwrap();
        let f = apply(
            FaultKind::ManyVariants,
            FaultParams {
                entries: Some(3_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let (_, body) = get(&c, &master_url).await;
        assert!(body.starts_with(&master));
        assert_eq!(
            body.matches("#EXT-X-STREAM-INF").count(),
            3_000 + master.matches("#EXT-X-STREAM-INF").count()
        );
        sim.heal_fault(f.id).await.unwrap();
        // A DVR window: 500 of the 1,000 segments published so far, as an EVENT playlist.
        let media_url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
        let f = sim
            .apply_fault(
                FaultRequest::new(FaultKind::LongWindow)
                    .stream("s0001")
                    .params(FaultParams {
                        entries: Some(500),
                        ..Default::default()
                    }),
            )
            .await
            .unwrap();
        let (_, body) = get(&c, &media_url).await;
        assert_eq!(body.matches("#EXTINF:").count(), 500);
        assert!(body.contains("\n#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        sim.heal_fault(f.id).await.unwrap();

        assert_eq!(get(&c, &master_url).await.1, master);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_parts_and_blocking_reload() {
    // 400 ms segments of four 100 ms parts.
    let sim = start(1, 400, true).await;
    let c = client();
    let tl = sim.timeline("s0001").unwrap();
    assert_eq!((tl.part_ms, tl.parts_per_segment()), (100, 4));
    let url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
    bounded(20, async {
        let (_, pl) = get(&c, &url).await;
        assert!(pl.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.300\n"));
        assert!(pl.contains("#EXT-X-PART-INF:PART-TARGET=0.100\n"));
        let hint = pl
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
            .unwrap()
            .trim_end_matches(".ts\"")
            .to_string();
        let (msn, part) = hint.split_once('.').unwrap();
        let (msn, part): (u64, u64) = (msn.parse().unwrap(), part.parse().unwrap());

        // Blocking reload for the hinted part: answered as soon as it is out.
        let t0 = Instant::now();
        let (st, next) = get(&c, &format!("{url}?_HLS_msn={msn}&_HLS_part={part}")).await;
        assert_eq!(st, 200);
        assert!(
            t0.elapsed() < Duration::from_millis(350),
            "{:?}",
            t0.elapsed()
        );
        assert!(next.contains(&format!("URI=\"{msn}.{part}.ts\"")), "{next}");
        assert!(now_ms() >= tl.part_published_ms(msn, part));

        // The hinted part itself is held until published.
        let (msn2, part2) = if part + 1 < 4 {
            (msn, part + 1)
        } else {
            (msn + 1, 0)
        };
        let seg_url = url.replace("index.m3u8", &format!("{msn2}.{part2}.ts"));
        let (st, _) = get(&c, &seg_url).await;
        assert_eq!(st, 200);
        assert!(now_ms() >= tl.part_published_ms(msn2, part2));

        // Blocking on a whole segment.
        let (st, pl) = get(&c, &format!("{url}?_HLS_msn={}", msn + 1)).await;
        assert_eq!(st, 200);
        assert!(pl.contains(&format!("\n{}.ts\n", msn + 1)));
        // Too far ahead, or malformed: 400.
        assert_eq!(
            get(&c, &format!("{url}?_HLS_msn={}", msn + 50)).await.0,
            400
        );
        assert_eq!(get(&c, &format!("{url}?_HLS_part=1")).await.0, 400);
        assert_eq!(
            get(&c, &format!("{url}?_HLS_msn={msn}&_HLS_part=9"))
                .await
                .0,
            400
        );

        // Frozen: a blocking request for the next part gets 503 after 3 x target duration.
        let f = sim
            .apply_fault(FaultRequest::new(FaultKind::Freeze).stream("s0001"))
            .await
            .unwrap();
        let frozen = f.frozen.unwrap();
        let t = f.applied_at_unix_ms;
        let last_part = frozen.last_part_published_unix_ms.unwrap();
        assert!(last_part <= t && t - last_part < 100);
        let s = tl.snapshot(t);
        let t0 = Instant::now();
        let (st, _) = get(
            &c,
            &format!("{url}?_HLS_msn={}&_HLS_part={}", s.current, s.parts_done),
        )
        .await;
        assert_eq!(st, 503);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1200) && waited < Duration::from_millis(2500),
            "{waited:?}"
        );

        // A blocked request is released by the heal.
        let pending = tokio::spawn({
            let c = c.clone();
            let u = format!("{url}?_HLS_msn={}&_HLS_part={}", s.current, s.parts_done);
            async move { get(&c, &u).await.0 }
        });
        sleep_ms(200).await;
        sim.heal_fault(f.id).await.unwrap();
        assert_eq!(pending.await.unwrap(), 200);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_misbehaves_on_command() {
    // 1 s segments of two 500 ms parts.
    let sim = start(1, 1000, true).await;
    let c = client();
    let url = sim.media_url(REGION_A, "s0001", "720p").unwrap();
    let tl = sim.timeline("s0001").unwrap();
    let fault = |mode: BlockingMisbehaviour| {
        FaultRequest::new(FaultKind::BlockingReload)
            .stream("s0001")
            .params(FaultParams {
                blocking: Some(mode),
                ..FaultParams::default()
            })
    };
    // The part after the next one: a well-behaved server holds it for 500-1000 ms.
    let ahead = || {
        let per = tl.parts_per_segment();
        let s = tl.snapshot(now_ms());
        let n = s.current * per + s.parts_done + 1;
        format!("{url}?_HLS_msn={}&_HLS_part={}", n / per, n % per)
    };
    bounded(30, async {
        // ignore: answered at once, without the part asked for.
        let f = sim
            .apply_fault(fault(BlockingMisbehaviour::Ignore))
            .await
            .unwrap();
        let asked = ahead();
        let t0 = Instant::now();
        let (st, pl) = get(&c, &asked).await;
        assert_eq!(st, 200);
        assert!(
            t0.elapsed() < Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
        let part = asked
            .rsplit_once("_HLS_msn=")
            .unwrap()
            .1
            .replace("&_HLS_part=", ".");
        assert!(!pl.contains(&format!("URI=\"{part}.ts\"")), "{asked}\n{pl}");
        // Plain reloads and parts are served as usual.
        assert_eq!(get(&c, &url).await.0, 200);
        sim.heal_fault(f.id).await.unwrap();
        let t0 = Instant::now();
        let (st, pl) = get(&c, &ahead()).await;
        assert_eq!(st, 200);
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
        assert!(pl.contains("#EXT-X-PART:"));

        // error: 400 to blocking requests only.
        let f = sim
            .apply_fault(fault(BlockingMisbehaviour::Error))
            .await
            .unwrap();
        assert_eq!(get(&c, &ahead()).await.0, 400);
        assert_eq!(get(&c, &url).await.0, 200);
        sim.heal_fault(f.id).await.unwrap();

        // hang: held past the RFC's three target durations, released (503) by the heal.
        let f = sim
            .apply_fault(fault(BlockingMisbehaviour::Hang))
            .await
            .unwrap();
        let pending = tokio::spawn({
            let (c, u) = (c.clone(), ahead());
            async move { get(&c, &u).await.0 }
        });
        sleep_ms(3_500).await;
        assert!(!pending.is_finished(), "answered within the hang");
        assert_eq!(get(&c, &url).await.0, 200);
        sim.heal_fault(f.id).await.unwrap();
        assert_eq!(pending.await.unwrap(), 503);

        // The parameter belongs to blocking_reload only; unknown values are refused.
        let (st, _) = post_json(
            &c,
            &format!("{}/faults", sim.control_url()),
            r#"{"kind":"freeze","params":{"blocking":"hang"}}"#,
        )
        .await;
        assert_eq!(st, 400);
        let (st, _) = post_json(
            &c,
            &format!("{}/faults", sim.control_url()),
            r#"{"kind":"blocking_reload","params":{"blocking":"sometimes"}}"#,
        )
        .await;
        assert_eq!(st, 400);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_over_http_and_rendition_changes() {
    let sim = start(3, 250, false).await;
    let c = client();
    let ctl = sim.control_url();
    bounded(20, async {
        let (st, body) = get(&c, &format!("{ctl}/healthz")).await;
        assert_eq!((st, body.trim()), (200, r#"{"ok":true}"#));

        let (st, topo) = get(&c, &format!("{ctl}/topology")).await;
        assert_eq!(st, 200);
        let topo: hls_sim::Topology = serde_json::from_str(&topo).unwrap();
        assert_eq!(topo.regions.len(), 2);
        assert_eq!(topo.streams.len(), 3);
        assert_eq!(topo.regions[0].streams[2].master_url, sim.master_url(REGION_A, "s0003").unwrap());
        assert_eq!(topo.regions[1].streams[0].media.len(), 3 + 1 + 3);

        // Faults through HTTP.
        let (st, applied) = post_json(
            &c,
            &format!("{ctl}/faults"),
            r#"{"kind":"http_404","region":"eu-west-1","stream":"s0002","rendition":"1080p","params":{}}"#,
        )
        .await;
        assert_eq!(st, 200, "{applied}");
        let id = applied["id"].as_u64().unwrap();
        assert!(applied["applied_at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(get(&c, &sim.media_url(REGION_B, "s0002", "1080p").unwrap()).await.0, 404);
        let (_, list) = get(&c, &format!("{ctl}/faults")).await;
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list["faults"][0]["kind"], "http_404");
        assert_eq!(list["faults"][0]["stream"], "s0002");
        let (st, healed) = delete(&c, &format!("{ctl}/faults/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(healed["id"], id);
        assert!(healed["healed_at_unix_ms"].as_u64().is_some());
        assert_eq!(delete(&c, &format!("{ctl}/faults/{id}")).await.0, 404);
        assert_eq!(get(&c, &sim.media_url(REGION_B, "s0002", "1080p").unwrap()).await.0, 200);

        // Invalid requests are refused with a reason.
        for bad in [
            r#"{"kind":"melt"}"#,
            r#"{"kind":"freeze","region":"mars-1"}"#,
            r#"{"kind":"freeze","stream":"s0999"}"#,
            r#"{"kind":"freeze","rendition":"4320p"}"#,
            r#"{"kind":"slow","params":{"bytes":1}}"#,
            r#"{"kind":"http_500","params":{"status":200}}"#,
            r#"not json"#,
        ] {
            let (st, e) = post_json(&c, &format!("{ctl}/faults"), bad).await;
            assert_eq!(st, 400, "{bad}");
            assert!(e["error"].as_str().is_some());
        }

        // Renditions change mid-stream; the master follows.
        let (st, changed) = post_json(
            &c,
            &format!("{ctl}/streams/s0001/renditions"),
            r#"{"add":["540p",{"name":"4k","width":3840,"height":2160,"bandwidth":20000000}],"remove":["360p"]}"#,
        )
        .await;
        assert_eq!(st, 200, "{changed}");
        assert_eq!(changed["renditions"], serde_json::json!(["4k", "1080p", "720p", "540p"]));
        let (_, master) = get(&c, &sim.master_url(REGION_A, "s0001").unwrap()).await;
        assert!(master.contains("\n540p/index.m3u8\n"));
        assert!(master.contains("RESOLUTION=3840x2160"));
        assert!(master.contains("URI=\"540p/iframes.m3u8\""));
        assert!(!master.contains("360p/"));
        assert_eq!(get(&c, &sim.media_url(REGION_B, "s0001", "360p").unwrap()).await.0, 404);
        assert_eq!(get(&c, &sim.media_url(REGION_B, "s0001", "540p").unwrap()).await.0, 200);
        // Other streams are unchanged.
        let (_, master2) = get(&c, &sim.master_url(REGION_A, "s0002").unwrap()).await;
        assert!(master2.contains("\n360p/index.m3u8\n"));
        let topo = sim.topology(Some("s0001"), Some(REGION_B));
        let names: Vec<_> = topo.streams[0].video.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["4k", "1080p", "720p", "540p"]);
        // Bad updates change nothing.
        let (st, _) = post_json(&c, &format!("{ctl}/streams/s0001/renditions"), r#"{"remove":["4k","1080p","720p","540p"]}"#).await;
        assert_eq!(st, 400);
        let (st, _) = post_json(&c, &format!("{ctl}/streams/s0001/renditions"), r#"{"add":["720p"]}"#).await;
        assert_eq!(st, 400);
        let (st, _) = post_json(&c, &format!("{ctl}/streams/nope/renditions"), r#"{"add":["720p"]}"#).await;
        assert_eq!(st, 404);
        // Every stream at once.
        let (st, changed) = post_json(&c, &format!("{ctl}/streams/*/renditions"), r#"{"remove":["1080p"]}"#).await;
        assert_eq!(st, 200);
        assert_eq!(changed["streams"].as_array().unwrap().len(), 3);
        let (_, master3) = get(&c, &sim.master_url(REGION_B, "s0003").unwrap()).await;
        assert!(!master3.contains("1080p"));

        // DELETE /faults heals everything.
        for kind in ["freeze", "slow"] {
            let (st, _) = post_json(&c, &format!("{ctl}/faults"), &format!(r#"{{"kind":"{kind}","stream":"s0003"}}"#)).await;
            assert_eq!(st, 200);
        }
        let (st, all) = delete(&c, &format!("{ctl}/faults")).await;
        assert_eq!(st, 200);
        assert_eq!(all["healed"].as_array().unwrap().len(), 2);
        assert!(sim.faults().is_empty());
    })
    .await;
    sim.shutdown().await;
}
