//! DASH MPDs and HLS master playlists as `nerveabr` reads them (`abr::manifest::parse`) and the
//! `ladder` property (`parse_ladder`): a ladder as promised, which every policy steers along, or
//! none; never a panic.
#![no_main]

use std::time::Duration;

use gstnerveabr::abr::manifest::{parse, parse_ladder, MAX_SEGMENT_S};
use gstnerveabr::abr::{Config, Controller, Step, DEFAULT_TABLE};
use nerve_abr::energy::Network;
use nerve_abr::nerve::Preference;
use nerve_abr::quality::TableFile;
use libfuzzer_sys::fuzz_target;

const POLICIES: &[&str] = &["bb", "rb", "bola", "robustmpc", "dynamic", "nerve", "robustmpc+sr"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rungs) = parse_ladder(text) {
        assert!(rungs.windows(2).all(|w| w[0].bandwidth < w[1].bandwidth) && rungs.iter().all(|r| r.bandwidth > 0));
    }
    let Some(info) = parse(text) else { return };
    assert!(!info.rungs.is_empty());
    assert!(info.rungs.windows(2).all(|w| w[0].bandwidth < w[1].bandwidth) && info.rungs[0].bandwidth > 0);
    assert!(info.duration_s.is_finite() && info.duration_s >= 0.0, "duration {}", info.duration_s);
    assert!(info.segment_s.is_finite() && (0.0..=MAX_SEGMENT_S).contains(&info.segment_s), "segment {}", info.segment_s);
    let total = info.segments();
    let table: TableFile = serde_json::from_str(DEFAULT_TABLE).expect("the shipped default table");
    for policy in POLICIES {
        let config = Config { policy: (*policy).into(), preference: Preference::Balanced, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: None, ppo_shield: true };
        let mut c = Controller::new(config, &table, info.rungs.clone(), info.segment_s, total).expect("a controller for a ladder");
        for (bw, buffer_s) in [(0.0, 0.0), (3e5, 1.0), (2e7, 25.0), (f64::from(u32::MAX), 3.0)] {
            let choice = c.decide(Step { bandwidth_bps: bw, buffer: Duration::from_secs_f64(buffer_s), buffer_cap: Duration::from_secs(30), enhance_available: true });
            assert!(choice.rung < info.rungs.len());
            assert_eq!(choice.bandwidth, info.rungs[choice.rung].bandwidth);
        }
    }
});
