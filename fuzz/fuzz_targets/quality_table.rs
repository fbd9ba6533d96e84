//! Quality tables (`nerve_abr::quality::TableFile::parse`, what `nerveabr`'s `quality-table` reads):
//! a table every policy can steer with, or an error; never a panic.
#![no_main]

use std::time::Duration;

use gstnerveabr::abr::manifest::Rung;
use gstnerveabr::abr::{Config, Controller, Step};
use nerve_abr::energy::Network;
use nerve_abr::nerve::Preference;
use nerve_abr::quality::{QualityTable, TableFile};
use libfuzzer_sys::fuzz_target;

const POLICIES: &[&str] = &["bb", "rb", "bola", "robustmpc", "dynamic", "nerve", "robustmpc+sr"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = TableFile::parse(text) else { return };
    let table = QualityTable::from_file(&file, 1.0);
    for r in 0..table.rungs() {
        for l in 0..table.levels() {
            let cost = table.cost(r, l);
            assert!(cost >= 0.0 && !cost.is_nan(), "cost {cost} at ({r}, {l})");
            if let Some(q) = table.get(r, l) {
                assert!(q.is_finite(), "quality {q} at ({r}, {l})");
            }
        }
        let _ = table.best_level_within(r, 1.0, file.chunk_s);
    }
    let rungs: Vec<Rung> = (0..file.rungs.len().min(8))
        .map(|i| Rung { bandwidth: 300_000 * (i as u64 + 1), width: 320 * (i as u32 + 1), height: 180 * (i as u32 + 1) })
        .collect();
    for policy in POLICIES {
        let config = Config { policy: (*policy).into(), preference: Preference::Balanced, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: None, ppo_shield: true };
        let Ok(mut c) = Controller::new(config, &file, rungs.clone(), 2.0, Some(30)) else { continue };
        for (bw, buffer_s) in [(0.0, 0.0), (3e5, 1.0), (2e7, 25.0), (1e6, 10.0)] {
            let choice = c.decide(Step { bandwidth_bps: bw, buffer: Duration::from_secs_f64(buffer_s), buffer_cap: Duration::from_secs(30), enhance_available: true });
            assert!(choice.rung < rungs.len());
            assert!(choice.upscale.is_finite() && choice.upscale > 0.0);
        }
    }
});
