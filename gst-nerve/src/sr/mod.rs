//! `nervesr`: neural super-resolution of decoded video.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! nervesr scale=2 ! autovideosink
//! ```
//!
//! Luma goes through the model (a residual on a classical upscale), chroma is upscaled
//! classically (Catmull-Rom); I420 and NV12 go in and come out without a trip through RGB. When
//! the sink reports that frames arrive late (QoS), frames are upscaled classically until the
//! pipeline catches up, instead of being dropped. Counters are posted as `nervesr-stats` element
//! messages and are readable from the `stats` property.
//!
//! Models swap live (`swap`: background load, taken between two frames), and at scale 1 the
//! element passes frames through and can harvest training patches (`harvest`) and judge a
//! candidate model beside the champion on the real frames (`shadow`).

use gst::glib;
use gst::prelude::*;

mod harvest;
mod imp;
mod shadow;
mod swap;

glib::wrapper! {
    pub struct NerveSr(ObjectSubclass<imp::NerveSr>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    crate::engine::Provider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "nervesr", gst::Rank::NONE, NerveSr::static_type())
}
