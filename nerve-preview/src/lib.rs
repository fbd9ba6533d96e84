//! nerve-preview: an enhanced, low-latency transcoding preview for media servers.
//!
//! A live input (file, RTSP, SRT, UDP) is decoded, repaired by `nerverecover` when it came over a
//! lossy network, upscaled by `nervesr`, encoded by `x264enc tune=zerolatency` and served over
//! RTSP (gst-rtsp-server) on loopback, for a media server to relay or a viewer to open.
//!
//! - `chain`: the preview pipeline as a `gst-launch` description (shared by server and report);
//! - `server`: the RTSP server on its own main context and thread;
//! - `report`: added latency, CPU per stream and how many streams run in real time.

pub mod chain;
pub mod report;
pub mod server;

pub use chain::{PreviewConfig, Recover};
pub use server::PreviewServer;

/// `gst::init()` and the nerve elements, linked into this binary and registered statically, so the
/// preview needs no GST_PLUGIN_PATH (the decoders, x264enc and the RTSP server are the system's).
pub fn init() -> anyhow::Result<()> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|e| format!("GStreamer does not initialise: {e}"))?;
        gstnerve::plugin_register_static().map_err(|e| format!("the nerve plugin does not register: {e}"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}
