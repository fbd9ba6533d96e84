//! The C player linked statically against libgstnerve.a and libgstnerveabr.a (cargo-c) plays a
//! DASH ladder (two rungs from a real clip, 1 s fragments) from a loopback HTTP server through
//! `nerveabr` and `nervesr`.
//!
//! Asserts: the binary has the plugins inside (gst_plugin_nerve_register is defined in it, no
//! libgstnerve.so is loaded: GST_PLUGIN_PATH and the system path are emptied for the run), it
//! reaches EOS with exit status 0, nerveabr decided once per fragment, nervesr enhanced every
//! frame the ladder holds (enhanced + classical = frames, enhanced > 0) and its output is twice a
//! rung's size.

use std::process::Command;

use nerve_e2e::dash::{Rung, Server, encode_ladder};
use nerve_player::{Run, player_path};

const CLIP: &str = "videos/animation/big_buck_bunny_0_30.webm";
const FPS: u32 = 24;
const FRAMES: u32 = 3 * FPS;
const RUNGS: [Rung; 2] = [
    Rung { width: 320, height: 180, bitrate: 300_000 },
    Rung { width: 480, height: 270, bitrate: 700_000 },
];

#[test]
fn the_static_c_player_plays_dash_through_nerveabr_and_nervesr() {
    let _t = nerve_e2e::Timer::start("static C player");
    let player = player_path();
    if !player.is_file() {
        nerve_e2e::missing(&format!("{} (build it with examples/player/build.sh)", player.display()));
        return;
    }
    // The plugins are in the binary itself, not loaded from a .so.
    let nm = Command::new("nm").arg("--defined-only").arg(&player).output().expect("nm runs");
    let symbols = String::from_utf8_lossy(&nm.stdout);
    for f in ["gst_plugin_nerve_register", "gst_plugin_nerveabr_register"] {
        assert!(symbols.lines().any(|l| l.ends_with(&format!(" {f}"))), "{f} is defined in {}", player.display());
    }

    let Some(clip) = nerve_e2e::input(CLIP) else { return };
    gst::init().expect("GStreamer (to encode the ladder)");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("static-player-dash");
    let _ = std::fs::remove_dir_all(&dir);
    let ladder = encode_ladder(&clip, &RUNGS, FRAMES, FPS, &dir).unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&ladder.dir).expect("loopback server");

    // No plugin path: a libgstnerve.so found there would hide a broken static registration.
    let registry = dir.join("registry.bin");
    let out = Command::new(&player)
        .arg(server.url("manifest.mpd"))
        .env("GST_PLUGIN_PATH", "")
        .env("GST_REGISTRY", &registry)
        .env_remove("GST_PLUGIN_PATH_1_0")
        .output()
        .expect("the player runs");
    let run = Run::parse(out.status.code(), &String::from_utf8_lossy(&out.stdout), &String::from_utf8_lossy(&out.stderr));
    drop(server);
    assert_eq!(run.status, Some(0), "exit status; stderr: {}", run.stderr);
    assert!(run.eos, "played to EOS: {run:?}");

    let decisions: Vec<gst::Structure> =
        run.decisions.iter().map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))).collect();
    assert_eq!(decisions.len(), ladder.segments, "one nerveabr decision per fragment: {decisions:?}");
    for d in &decisions {
        let height = d.get::<u32>("height").expect("height");
        assert!(RUNGS.iter().any(|r| r.height == height), "a rung of the ladder: {d}");
    }

    let stats: gst::Structure = run.stats.last().expect("nervesr-stats at EOS").parse().expect("a structure");
    let enhanced = stats.get::<u64>("frames-enhanced").expect("frames-enhanced");
    let classical = stats.get::<u64>("frames-classical").expect("frames-classical");
    assert_eq!(enhanced + classical, u64::from(FRAMES), "every frame of the ladder through nervesr: {stats}");
    assert!(enhanced > 0, "the model ran: {stats}");

    let output: gst::Structure = run.output.as_deref().expect("output caps").parse().expect("caps structure");
    let size = (output.get::<i32>("width").expect("width"), output.get::<i32>("height").expect("height"));
    assert!(
        RUNGS.iter().any(|r| size == (2 * r.width as i32, 2 * r.height as i32)),
        "twice a rung's size: {size:?}"
    );
}
