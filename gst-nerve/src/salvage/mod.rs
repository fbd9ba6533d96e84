//! `nervesalvage`: keeps what arrived of an H.264 slice whose later RTP packets were lost.
//!
//! ```text
//! gst-launch-1.0 udpsrc ... ! rtpjitterbuffer ! nervesalvage ! rtph264depay ! avdec_h264 ! nerverecover ! autovideosink
//! ```
//!
//! A slice larger than the MTU travels as several FU-A fragments. When one is lost,
//! `rtph264depay` drops the whole slice, and the decoder conceals all of it. The fragments before
//! the loss hold the slice's header and first macroblocks: closing them as a shorter fragmentation
//! unit ([`fragment`]) lets the decoder decode those macroblocks and conceal only the rest. Packets
//! of unbroken units go through untouched; the last fragment of an unfinished unit waits for the
//! next packet (never a whole frame).

use gst::glib;
use gst::prelude::*;

pub mod fragment;
mod imp;

glib::wrapper! {
    pub struct NerveSalvage(ObjectSubclass<imp::NerveSalvage>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "nervesalvage", gst::Rank::NONE, NerveSalvage::static_type())
}
