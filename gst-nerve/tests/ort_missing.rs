//! In its own test binary (its own process): ONNX Runtime must not be loaded yet when the element
//! is asked to load it from a path where it is absent.

mod common;

use gst::prelude::*;

#[test]
fn absent_onnx_runtime_library_fails_start_with_what_to_install() {
    let err = common::start_error(&[
        ("model", common::nearest_model().to_str().unwrap()),
        ("ort-library", "/nonexistent/libonnxruntime.so"),
    ]);
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    assert!(err.contains("pip install onnxruntime"), "{err}");
}

#[test]
fn inspecting_the_element_needs_no_onnx_runtime() {
    common::init();
    let factory = gst::ElementFactory::find("nervesr").expect("registered");
    assert_eq!(factory.metadata("klass"), Some("Filter/Effect/Converter/Video/Scaler"));
    let element = factory.create().build().expect("created without loading ONNX Runtime");
    assert_eq!(element.property::<u32>("scale"), 2);
    assert!(gstnerve::engine::library::loaded_path().is_none());
}
