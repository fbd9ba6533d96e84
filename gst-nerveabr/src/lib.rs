//! The GStreamer plugin `nerveabr`: the `nerveabr` element (`abr`), which steers adaptivedemux2
//! with the policies of the `nerve_abr` crate (the same code `nerveabr-sim`, the trace-driven
//! simulator, runs).

use gst::glib;

pub mod abr;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    abr::register(plugin)
}

gst::plugin_define!(
    nerveabr,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
