//! nerve: neural video enhancement elements for GStreamer.
//!
//! - `nervesr`: real-time super-resolution of decoded video (luma through a model, chroma
//!   upscaled classically), with a classical fallback under QoS pressure.
//! - `nerverecover`: one frame per expected timestamp after a lossy network: lost frames
//!   synthesised, damaged blocks repaired from neighbouring frames, clean frames untouched.
//! - `nervesalvage`: before the RTP depayloader, keeps what arrived of an H.264 slice whose
//!   later packets were lost, so the decoder conceals less.

use gst::glib;

/// The ONNX Runtime engine, its own crate so that `nerveabr` runs its learned policy through it too.
pub use nerve_engine as engine;
pub mod recover;
pub mod salvage;
pub mod sr;
mod sync;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    sr::register(plugin)?;
    recover::register(plugin)?;
    salvage::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    nerve,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
