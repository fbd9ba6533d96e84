//! Models and manifests from somewhere untrusted (a registry, a server, a federated round): the
//! engine refuses, at start and with the reason in the error, model files that ask ONNX Runtime
//! for more than a self-contained network of standard operators (external data, custom-op
//! domains, absurd tensors), model files reached through a symbolic link out of their models
//! directory, and manifests naming files outside it; the run-time output guard catches a model
//! that outputs NaN. The hostile models are made by `tests/fixtures/make_fixtures.py`.
//!
//! `cargo test --release -p gst-nerve --test untrusted`

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gstnerve::engine::guard::{OutputFault, check_model, check_output};
use gstnerve::engine::manifest::{Task, resolve_in};
use gstnerve::engine::{Model, SessionConfig};

/// Starts `nervesr` on `fixture` (copied into a fresh models directory with a manifest entry
/// carrying its real sha256) and returns the start error.
fn refusal(fixture_name: &str) -> String {
    let dir = model_dir(&[Entry { name: "m", source: &fixture(fixture_name), scale: 2, frames: 1 }]);
    start_error(&[("model", dir.join("m.onnx").to_str().expect("utf-8 path"))])
}

#[test]
fn external_data_leaving_the_model_directory_is_refused() {
    for f in ["hostile_external_parent.onnx", "hostile_external_absolute.onnx"] {
        let e = refusal(f);
        assert!(e.contains("refused") && e.contains("external data") && e.contains("outside the model's directory"), "{f}: {e}");
    }
}

#[test]
fn external_data_through_a_symlink_out_is_refused_and_inside_is_not_supported() {
    let dir = model_dir(&[Entry { name: "m", source: &fixture("hostile_external_inside.onnx"), scale: 2, frames: 1 }]);
    let model = dir.join("m.onnx");
    // weights.bin -> /etc/passwd: the name is inside, the file is not.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("weights.bin")).expect("symlink");
    let e = start_error(&[("model", model.to_str().expect("utf-8"))]);
    assert!(e.contains("outside the model's directory"), "{e}");
    // A real file beside the model: not covered by the sha256, so still refused, saying why.
    std::fs::remove_file(dir.join("weights.bin")).expect("rm");
    std::fs::write(dir.join("weights.bin"), [0u8; 16]).expect("write");
    let e = start_error(&[("model", model.to_str().expect("utf-8"))]);
    assert!(e.contains("external file") && e.contains("sha256"), "{e}");
}

#[test]
fn custom_operator_domains_are_refused_in_the_graph_and_in_subgraphs() {
    for f in ["hostile_custom_domain.onnx", "hostile_subgraph_domain.onnx"] {
        let e = refusal(f);
        assert!(e.contains("custom operator domain 'com.example.evil'"), "{f}: {e}");
    }
}

#[test]
fn absurd_tensor_shapes_and_sizes_are_refused() {
    for (f, why) in [
        ("hostile_huge_initializer.onnx", "absurdly large"),
        ("hostile_negative_dims.onnx", "negative dimension"),
        ("hostile_constant_of_shape.onnx", "ConstantOfShape node asks for a tensor of shape [100000, 100000, 100]"),
        ("hostile_resize_scales.onnx", "Resize node scales or repeats an axis by 100000"),
    ] {
        let e = refusal(f);
        assert!(e.contains(why), "{f}: {e}");
    }
}

/// The guard must not refuse what ships: every model of models/ and every plain test fixture.
#[test]
fn every_shipped_model_and_plain_fixture_passes_the_model_check() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for dir in [&models, &fixtures] {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.ends_with(".onnx") || name.starts_with("hostile_") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            assert_eq!(check_model(&bytes, dir), Ok(()), "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} models checked");
}

/// A directory with the nearest fixture and its manifest, where `m.onnx` is a symbolic link to
/// `target` (a byte-identical copy, so the sha256 matches).
fn linked_model(target: &Path) -> PathBuf {
    let dir = model_dir(&[Entry { name: "m", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 }]);
    std::fs::copy(dir.join("m.onnx"), target).expect("copy");
    std::fs::remove_file(dir.join("m.onnx")).expect("rm");
    std::os::unix::fs::symlink(target, dir.join("m.onnx")).expect("symlink");
    dir
}

#[test]
fn a_symlink_out_of_the_models_directory_is_refused_one_inside_is_followed() {
    let outside = std::env::temp_dir().join(format!("nerve-untrusted-outside-{}.onnx", std::process::id()));
    let dir = linked_model(&outside);
    // By file path and by manifest name (what model-location swaps follow).
    let e = start_error(&[("model", dir.join("m.onnx").to_str().expect("utf-8"))]);
    assert!(e.contains("outside the directory of its manifest") && e.contains("symbolic links"), "{e}");
    refused_by_name(&dir, &outside);

    // A link to a file in a subdirectory of the models directory is inside: it loads.
    let inner = model_dir(&[Entry { name: "m", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 }]);
    std::fs::create_dir_all(inner.join("store")).expect("mkdir");
    std::fs::rename(inner.join("m.onnx"), inner.join("store/real.onnx")).expect("mv");
    std::os::unix::fs::symlink(inner.join("store/real.onnx"), inner.join("m.onnx")).expect("symlink");
    let _h = harness(&[("model", inner.join("m.onnx").to_str().expect("utf-8"))]);
    let _ = std::fs::remove_file(outside);
}

/// The same refusal through a manifest lookup by name, the way `model-location` resolves.
fn refused_by_name(dir: &Path, outside: &Path) {
    let resolved = resolve_in("m", Task::SuperResolution, 2, &[dir.to_path_buf()]).expect("the entry resolves");
    let err = Model::load(resolved, &SessionConfig { threads: 1, ..SessionConfig::default() }).expect_err("refused");
    assert!(err.to_string().contains(&outside.display().to_string()), "{err}");
}

#[test]
fn a_manifest_naming_a_file_outside_its_directory_is_refused() {
    let dir = model_dir(&[Entry { name: "m", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 }]);
    let text = std::fs::read_to_string(dir.join("manifest.toml")).expect("read");
    std::fs::write(dir.join("manifest.toml"), text.replace("file = \"m.onnx\"", "file = \"../m.onnx\"")).expect("write");
    let err = resolve_in("m", Task::SuperResolution, 2, &[dir]).expect_err("refused");
    assert!(err.to_string().contains("must be a relative path inside the manifest's directory"), "{err}");
}

/// A well-formed model whose output is NaN: the model check cannot know, the output guard does.
#[test]
fn a_model_that_outputs_nan_is_caught_by_the_output_guard() {
    let dir = model_dir(&[Entry { name: "nan", source: &fixture("nan_x2.onnx"), scale: 2, frames: 1 }]);
    let resolved = resolve_in("nan", Task::SuperResolution, 2, &[dir]).expect("resolves");
    let mut model = Model::load(resolved, &SessionConfig { threads: 1, ..SessionConfig::default() }).expect("a well-formed model loads");
    let input: Vec<f32> = (0..8 * 6).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut verdict = None;
    let v = &mut verdict;
    model.run(&input, 8, 6, |out| *v = Some(check_output(&input, out))).expect("runs");
    match verdict.take().expect("consumed") {
        Err(OutputFault::NotFinite { count, total, first }) => assert_eq!((count, total, first), (8 * 6 * 4, 8 * 6 * 4, 0)),
        other => panic!("expected NaN to be caught, got {other:?}"),
    }
    // The same guard passes the nearest fixture's output.
    let dir = model_dir(&[Entry { name: "nearest", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 }]);
    let mut model = Model::load(resolve_in("nearest", Task::SuperResolution, 2, &[dir]).expect("resolves"), &SessionConfig::default()).expect("loads");
    let v = &mut verdict;
    model.run(&input, 8, 6, |out| *v = Some(check_output(&input, out))).expect("runs");
    assert_eq!(verdict, Some(Ok(())));
}

#[test]
fn nervesr_falls_back_to_the_classical_upscale_when_the_model_outputs_nan() {
    let dir = model_dir(&[Entry { name: "nan", source: &fixture("nan_x2.onnx"), scale: 2, frames: 1 }]);
    let mut h = harness(&[("model", &dir.join("nan.onnx").to_string_lossy())]);
    let info = info(gst_video::VideoFormat::I420, 32, 24);
    h.set_src_caps(info.to_caps().expect("caps"));
    for i in 0..5 {
        let out = push_frame(&mut h, &info, i * 33, |x, y| ((x * 7 + y * 5) % 200 + 20) as u8);
        // every output sample is a real grey level from the classical upscale, not the NaN's
        assert!(luma_of(&out).iter().any(|&v| v > 20), "frame {i} is not the classical upscale");
    }
    let s = stats(&h);
    assert_eq!(s.get::<u64>("output-faults").unwrap(), 5, "{s}");
    assert_eq!(s.get::<u64>("frames-enhanced").unwrap(), 0, "{s}");
    assert_eq!(s.get::<u64>("frames-classical").unwrap(), 5, "{s}");
}
