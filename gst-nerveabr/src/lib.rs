//! nerveabr: enhancement-aware adaptive bitrate.
//!
//! - `policy`: the ABR policies (BBA-0, rate-based, BOLA, RobustMPC, Dynamic, `nerve`) and the
//!   shared throughput estimators. Plain Rust: observations in, decision out, no clock, no gst.
//! - `abr`: the `nerveabr` element, which steers adaptivedemux2 with those policies.
//! - `sim`: the trace-driven simulators (`nerveabr-sim`): a Pensieve-style chunk simulator and
//!   the BONES scenario.

use gst::glib;

pub mod abr;
pub mod policy;
pub mod sim;

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
