//! nerve-eval: quality metrics (PSNR-Y, SSIM, VMAF, VMAF NEG) and the evaluation protocols that
//! measure nerve's models the way streaming degrades video.

pub mod active;
pub mod clips;
pub mod frame;
pub mod ladder;
pub mod loss;
pub mod metrics;
pub mod plot;
pub mod recover;
pub mod run;
pub mod table;
pub mod vid4;
pub mod vmaf;

/// Initialises GStreamer and registers the in-tree nerve plugin, so the CLI needs no
/// GST_PLUGIN_PATH.
pub fn init() -> anyhow::Result<()> {
    gst::init()?;
    gstnerve::plugin_register_static()?;
    Ok(())
}
