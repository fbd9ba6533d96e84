//! The `nerveabr` element: steers an adaptivedemux2 demuxer (dashdemux2, hlsdemux2) with the
//! policies of `nerve_abr`, the same code `nerveabr-sim` runs.

use gst::glib;
use gst::prelude::*;

mod controller;
mod imp;
pub mod manifest;

pub use controller::{read_battery, table_for, Choice, Config, Controller, Step, DEFAULT_TABLE};

/// What the user asked for (`preference` property); mirrors `nerve_abr::nerve::Preference`.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNerveAbrPreference")]
pub enum AbrPreference {
    #[enum_value(name = "Quality: best picture, enhancement energy not counted", nick = "quality")]
    Quality = 0,
    #[default]
    #[enum_value(name = "Balanced: enhancement energy priced moderately", nick = "balanced")]
    Balanced = 1,
    #[enum_value(name = "Battery saver: enhance only where the gain is large for its energy, fewer bits, downloads in bursts", nick = "battery-saver")]
    BatterySaver = 2,
}

impl From<AbrPreference> for nerve_abr::nerve::Preference {
    fn from(p: AbrPreference) -> Self {
        match p {
            AbrPreference::Quality => Self::Quality,
            AbrPreference::Balanced => Self::Balanced,
            AbrPreference::BatterySaver => Self::BatterySaver,
        }
    }
}

glib::wrapper! {
    pub struct NerveAbr(ObjectSubclass<imp::NerveAbr>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    AbrPreference::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "nerveabr", gst::Rank::NONE, NerveAbr::static_type())
}
