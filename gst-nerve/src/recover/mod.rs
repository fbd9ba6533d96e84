//! `nerverecover`: repairs what packet loss did to decoded video, instead of freezing or
//! showing the decoder's damage.
//!
//! ```text
//! gst-launch-1.0 udpsrc ... ! rtpjitterbuffer ! rtph264depay ! avdec_h264 ! nerverecover ! autovideosink
//! ```
//!
//! One frame comes out per expected timestamp: a frame the decoder never produced (a timestamp
//! gap against the frame rate, or a GAP event) is synthesised, a damaged one (flagged
//! corrupted, or with damaged blocks found by [`detect`]) is repaired from the frame shown before
//! it (and the next one in `lookahead` mode), a clean one is passed through untouched (the same
//! buffer, no copy). Letterbox and pillarbox bars the decoder's concealment breaks after a loss
//! are kept from the frame shown ([`bars`]). Counters are posted as `nerverecover-stats` element messages.

use gst::glib;
use gst::prelude::*;

pub mod bars;
pub mod blend;
pub mod detect;
mod imp;
pub mod repair;
pub mod timeline;

/// Which frames a repair may use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNerveRecoverMode")]
pub enum Mode {
    /// Past frames only: no added latency.
    #[default]
    #[enum_value(name = "Low latency: past frames only, no added latency", nick = "low-latency")]
    LowLatency = 0,
    /// Waits for the next frame (one frame of latency, reported in the latency query).
    #[enum_value(name = "Lookahead: also uses the next frame, one frame of latency", nick = "lookahead")]
    Lookahead = 1,
}

/// Input planes of a recovery model (the manifest's `frames`), in both modes: the decoder's
/// frame, the decoder's frame before it, the frame shown before it, and a plane of 1.0 when a
/// packet was reported lost since the frame before (0.0 otherwise). Its output is the luma to
/// show ([`blend`] makes a whole frame of it).
pub const INPUT_PLANES: usize = 4;

glib::wrapper! {
    pub struct NerveRecover(ObjectSubclass<imp::NerveRecover>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "nerverecover", gst::Rank::NONE, NerveRecover::static_type())
}
