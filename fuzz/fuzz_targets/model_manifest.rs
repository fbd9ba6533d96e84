//! `models/manifest.toml` (`nerve_engine::manifest`): any text loads as a manifest whose every entry is
//! usable, or gives a manifest error; never a panic.
#![no_main]

use std::path::{Component, Path};

use nerve_engine::EngineError;
use nerve_engine::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/nonexistent/models/manifest.toml");
    match Manifest::parse(text, path) {
        Ok(m) => {
            for e in &m.models {
                assert!((1..=8).contains(&e.scale) && (1..=8).contains(&e.frames), "{e:?}");
                assert_eq!(e.sha256.len(), 64);
                let file = m.path_of(e);
                // A model file is always inside the manifest's directory.
                assert!(file.starts_with("/nonexistent/models"), "{}", file.display());
                assert!(Path::new(&e.file).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)));
            }
        }
        Err(EngineError::Manifest(why)) => assert!(why.contains("manifest.toml"), "{why}"),
        Err(other) => panic!("not a manifest error: {other}"),
    }
});
