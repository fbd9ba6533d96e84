// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-nervesalvage
 *
 * Keeps what arrived of an H.264 slice whose later RTP packets were lost. Put it between the
 * jitter buffer and `rtph264depay`. When a fragmentation unit (FU-A) loses a fragment, the
 * depayloader drops the whole slice; this element closes the fragments that arrived before the
 * loss as a complete, shorter unit (end bit set; the RTP marker too when the access unit ended
 * among the lost packets), so the decoder decodes the slice's first macroblocks and conceals only
 * the rest. Every other packet goes through untouched. Only the last fragment of an unfinished
 * unit waits, for the next packet; no frame is delayed, so the element reports no latency.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 udpsrc port=5000 caps="application/x-rtp,media=video,encoding-name=H264,clock-rate=90000" ! \
 *   rtpjitterbuffer do-lost=true ! nervesalvage ! rtph264depay ! avdec_h264 ! nerverecover ! videoconvert ! autovideosink
 * ]|
 *
 * Since: 0.1
 */
// Lock order: one lock (`state`), never held while pushing or posting.
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::fragment::{Out, Rtp, Salvager, close};
use crate::sync::lock;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("nervesalvage", gst::DebugColorFlags::empty(), Some("nerve H.264 slice salvage"))
});

#[derive(Debug, Default)]
struct State {
    salvager: Salvager<gst::Buffer>,
    packets: u64,
    not_rtp: u64,
}

pub struct NerveSalvage {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for NerveSalvage {
    const NAME: &'static str = "GstNerveSalvage";
    type Type = super::NerveSalvage;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sink_templ = klass.pad_template("sink").expect("sink template"); // ok: static template
        let src_templ = klass.pad_template("src").expect("src template"); // ok: static template
        let sinkpad = gst::Pad::builder_from_template(&sink_templ)
            .chain_function(|pad, parent, buffer| {
                NerveSalvage::catch_panic_pad_function(parent, || Err(gst::FlowError::Error), |imp| imp.chain(pad, buffer))
            })
            .event_function(|pad, parent, event| {
                NerveSalvage::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&src_templ)
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        Self { sinkpad, srcpad, state: Mutex::new(State::default()) }
    }
}

impl ObjectImpl for NerveSalvage {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // ok: fresh pads with unique names on a new element; adding cannot fail.
        obj.add_pad(&self.sinkpad).expect("add sink pad"); // ok: see above
        obj.add_pad(&self.srcpad).expect("add src pad"); // ok: see above
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counters: packets (RTP packets in), units-salvaged (fragmentation units closed after a loss), \
                         not-rtp (buffers passed through that were not RTP packets)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => self.stats().to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for NerveSalvage {}

impl ElementImpl for NerveSalvage {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Nerve H.264 slice salvage",
                "Filter/Network/RTP",
                "Closes an H.264 fragmentation unit that lost its later fragments, so the decoder keeps the \
                 macroblocks that arrived instead of concealing the whole slice",
                "nerve developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("encoding-name", "H264")
                .field("clock-rate", 90000i32)
                .build();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            *lock(&self.state) = State::default();
        }
        self.parent_change_state(transition)
    }
}

impl NerveSalvage {
    fn stats(&self) -> gst::Structure {
        let s = lock(&self.state);
        gst::Structure::builder("nervesalvage-stats")
            .field("packets", s.packets)
            .field("units-salvaged", s.salvager.closed)
            .field("not-rtp", s.not_rtp)
            .build()
    }

    /// Sends one decision on; a closed fragment is edited in place (a copy only if shared).
    fn push(&self, out: Out<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let buffer = match out {
            Out::Pass(b) => b,
            Out::Close { mut packet, rtp, marker } => {
                let b = packet.make_mut();
                match b.map_writable() {
                    Ok(mut map) => {
                        close(&mut map, &rtp, marker);
                        gst::debug!(CAT, imp = self, "closed the unit of packet {} after a loss (marker {marker})", rtp.seq);
                    }
                    Err(_) => gst::warning!(CAT, imp = self, "cannot map packet {}; sent on unchanged", rtp.seq),
                }
                packet
            }
        };
        self.srcpad.push(buffer)
    }

    fn chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let parsed = buffer.map_readable().ok().and_then(|map| Rtp::parse(&map).map(|rtp| (rtp, rtp.fragment(&map))));
        let outs = {
            let mut s = lock(&self.state);
            s.packets += 1;
            if parsed.is_none() {
                s.not_rtp += 1;
                gst::warning!(CAT, imp = self, "a buffer that is not an RTP packet ({} bytes): passed through", buffer.size());
            }
            s.salvager.packet(buffer, parsed)
        };
        let mut ret = Ok(gst::FlowSuccess::Ok);
        for out in outs {
            ret = self.push(out);
            if ret.is_err() {
                break;
            }
        }
        ret
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "event {event:?}");
        // Serialized events keep their place after the held fragment: it goes first.
        let out = match event.view() {
            gst::EventView::CustomDownstream(c) if c.structure().is_some_and(|s| s.name() == "GstRTPPacketLost") => {
                lock(&self.state).salvager.lost()
            }
            gst::EventView::Eos(_) => lock(&self.state).salvager.finish(),
            gst::EventView::FlushStop(_) => {
                lock(&self.state).salvager.forget();
                None
            }
            // Any other serialized event (a new stream, caps, segment, a gap): the held fragment
            // goes first, as it is.
            _ if event.is_serialized() => lock(&self.state).salvager.release().map(Out::Pass),
            _ => None,
        };
        if let Some(out) = out {
            let _ = self.push(out);
        }
        if let gst::EventView::Eos(_) = event.view() {
            let msg = gst::message::Element::builder(self.stats()).src(&*self.obj()).build();
            let _ = self.obj().post_message(msg);
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }
}
