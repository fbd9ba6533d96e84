// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-nerveabr
 *
 * Enhancement-aware adaptive bitrate for adaptivedemux2 (`dashdemux2`, `hlsdemux2`). Put
 * `nerveabr` in the decoded video path of a pipeline that holds the demuxer; it is a
 * pass-through that:
 *
 * - finds the demuxer (the `demuxer` property, or the first adaptivedemux2 element in the
 *   pipeline, also one a bin adds later) and reads the video ladder from the manifest bytes
 *   that flow into it (or from the `ladder` property);
 * - at every `notify::current-bandwidth` (adaptivedemux2 emits it after each video fragment,
 *   right before it picks the next one) reads `current-bandwidth`,
 *   `current-level-time-video` and `max-buffering-time`, runs the chosen policy (the same
 *   code as `nerveabr-sim`) and steers the next fragment through the demuxer's
 *   `connection-bitrate` and `max-bitrate` (set to the chosen rung's declared bandwidth);
 * - watches the sinks' QoS events (a proportion above 1.2 means the device is not keeping up:
 *   no enhancement is planned) and the bus' buffering messages (counted as stalls);
 * - posts every decision as a `nerveabr-decision` element message: `fragment` (u64), `policy`
 *   (string), `rung` (u32, 0 = lowest), `bitrate` (u64, bit/s, declared), `height` (u32),
 *   `level` (u32, 0 = classical upscale), `model` (string, the table's name of the level),
 *   `upscale` (double, target height / rung height), `throughput` (u64, bit/s), `buffer`
 *   (u64, ns), `battery` (double, -1 = mains), `enhancer` (bool, a nervesr was found),
 *   `qos-proportion` (double), `stalls` (u32), and the session's expected device energy so
 *   far from the same model `nerveabr-sim` uses: `energy-j`, `energy-radio-j`,
 *   `energy-enhance-j` (double, joules) and `battery-pct` (double, of a stated phone battery).
 *
 * The decision is enacted on the enhancer too, per fragment: right before the first frame of
 * fragment k (stream time k x segment duration) nerveabr sends a `nerveabr-enhance` custom
 * downstream event (`enhance`: level > 0, `fragment`, `level`) whenever the enhancement changes,
 * and `nervesr` (in `scale=0`, fit mode, best: it brings every rung to the display size the
 * pipeline negotiates, x2/x3/x4 or pass-through) runs its model or not from that frame on.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m urisourcebin uri=http://127.0.0.1:8080/manifest.mpd ! decodebin3 ! \
 *   nerveabr policy=nerve max-buffering-time=8000000000 ! videoconvert ! nervesr scale=2 ! \
 *   videoscale ! video/x-raw,width=1280,height=720 ! videoconvert ! autovideosink
 * ]|
 * (adaptivedemux2 needs a streams-aware parent: urisourcebin, uridecodebin3 or playbin3, not a
 * bare `souphttpsrc ! dashdemux2`; gst-nerveabr/pipelines/live_dash.sh serves a trace-shaped
 * ladder for this line.)
 *
 * Since: 0.1
 */
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::controller::{read_battery, Choice, Config, Controller, Step, DEFAULT_TABLE};
use super::manifest::{self, ManifestInfo, Rung};
use super::AbrPreference;
use nerve_abr::energy::{resume_below_s, Network};
use nerve_abr::quality::TableFile;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("nerveabr", gst::DebugColorFlags::empty(), Some("nerve enhancement-aware ABR"))
});

// Lock order: `settings` and `state` are never held together; settings are copied out first.
// No lock is held while setting demuxer properties, posting a message or calling into gst.

const PROP_POLICY: &str = "policy";
const PROP_PREFERENCE: &str = "preference";
/// The custom downstream event nervesr takes (its name there: `ENHANCE_EVENT`).
const ENHANCE_EVENT: &str = "nerveabr-enhance";
const PROP_BATTERY_LEVEL: &str = "battery-level";
const PROP_DEMUXER: &str = "demuxer";
const PROP_ENHANCER: &str = "enhancer";
const PROP_LADDER: &str = "ladder";
const PROP_QUALITY_TABLE: &str = "quality-table";
const PROP_DEVICE_SPEED: &str = "device-speed";
const PROP_TARGET_HEIGHT: &str = "target-height";
const PROP_NETWORK: &str = "network";
const PROP_PPO_MODEL: &str = "ppo-model";
const PROP_PPO_SHIELD: &str = "ppo-shield";
const PROP_LAST_DECISION: &str = "last-decision";
const PROP_MAX_BUFFERING_TIME: &str = "max-buffering-time";

const DEFAULT_POLICY: &str = "nerve";
const DEFAULT_BATTERY_LEVEL: f64 = -1.0;
const DEFAULT_DEVICE_SPEED: f64 = 1.0;
const DEFAULT_TARGET_HEIGHT: u32 = 0;
const DEFAULT_MAX_BUFFERING_TIME: u64 = 0;
const DEFAULT_PPO_SHIELD: bool = true;
/// QoS proportion above which the device is taken as not keeping up (no enhancement planned).
const QOS_OVERLOAD: f64 = 1.2;
/// Most manifest bytes collected from the demuxer's sink pad.
const MANIFEST_MAX: usize = 4 << 20;
const DEMUXERS: &[&str] = &["dashdemux2", "hlsdemux2", "mssdemux2"];
const POWER_SUPPLY: &str = "/sys/class/power_supply";

#[derive(Clone, Debug)]
struct Settings {
    policy: String,
    preference: AbrPreference,
    battery_level: f64,
    demuxer: String,
    enhancer: String,
    ladder: String,
    quality_table: String,
    device_speed: f64,
    target_height: u32,
    max_buffering_time: u64,
    network: Network,
    ppo_model: String,
    ppo_shield: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY.into(),
            preference: AbrPreference::default(),
            battery_level: DEFAULT_BATTERY_LEVEL,
            demuxer: String::new(),
            enhancer: String::new(),
            ladder: String::new(),
            quality_table: String::new(),
            device_speed: DEFAULT_DEVICE_SPEED,
            target_height: DEFAULT_TARGET_HEIGHT,
            max_buffering_time: DEFAULT_MAX_BUFFERING_TIME,
            network: Network::Lte,
            ppo_model: String::new(),
            ppo_shield: DEFAULT_PPO_SHIELD,
        }
    }
}

/// What exists while the element is at least READY.
#[derive(Default)]
struct State {
    top: Option<glib::WeakRef<gst::Bin>>,
    deep_added: Option<glib::SignalHandlerId>,
    bus: Option<gst::Bus>,
    bus_handler: Option<glib::SignalHandlerId>,
    demuxer: Option<glib::WeakRef<gst::Element>>,
    bandwidth_handler: Option<glib::SignalHandlerId>,
    probe: Option<(glib::WeakRef<gst::Pad>, gst::PadProbeId)>,
    enhancer: Option<glib::WeakRef<gst::Element>>,
    manifest_bytes: Vec<u8>,
    manifest: Option<ManifestInfo>,
    table: Option<TableFile>,
    controller: Option<Controller>,
    qos_proportion: f64,
    buffering: bool,
    playing_started: bool,
    stalls: u32,
    last: Option<Choice>,
    warned: bool,
    /// Enhancement on/off decided per fragment, enacted when the fragment's frames pass.
    enhance_by_fragment: std::collections::BTreeMap<u64, (bool, usize)>,
    /// What the enhancer was last told (None: nothing yet, or since a flush).
    told: Option<bool>,
}

#[derive(Default)]
pub struct NerveAbr {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not turn into panics here: take the data as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_demuxer(e: &gst::Element, name: &str) -> bool {
    if !name.is_empty() {
        return e.name() == name;
    }
    e.factory().is_some_and(|f| DEMUXERS.contains(&f.name().as_str()))
}

fn is_enhancer(e: &gst::Element, name: &str) -> bool {
    if !name.is_empty() {
        return e.name() == name;
    }
    e.factory().is_some_and(|f| f.name() == "nervesr")
}

/// Read a property only if it exists with that type (never panics).
fn get_prop<T: for<'a> glib::value::FromValue<'a> + 'static>(o: &impl IsA<glib::Object>, name: &str) -> Option<T> {
    let spec = o.find_property(name)?;
    if !spec.flags().contains(glib::ParamFlags::READABLE) {
        return None;
    }
    o.property_value(name).get::<T>().ok()
}

/// Set a property only if it exists, is writable and has the value's type (never panics).
fn set_checked<T: ToValue + StaticType + Into<glib::Value>>(o: &impl IsA<glib::Object>, name: &str, v: T) -> bool {
    match o.find_property(name) {
        Some(spec) if spec.value_type() == T::static_type() && spec.flags().contains(glib::ParamFlags::WRITABLE) => {
            o.set_property(name, v);
            true
        }
        _ => false,
    }
}

impl NerveAbr {
    fn config(&self, s: &Settings) -> Config {
        let battery = if s.battery_level >= 0.0 { Some(s.battery_level) } else { read_battery(Path::new(POWER_SUPPLY)) };
        Config {
            policy: s.policy.clone(),
            preference: s.preference.into(),
            battery,
            device_speed: s.device_speed,
            target_height: s.target_height,
            network: s.network,
            ppo_model: (!s.ppo_model.is_empty()).then(|| s.ppo_model.clone().into()),
            ppo_shield: s.ppo_shield,
        }
    }

    fn load_table(&self, s: &Settings) -> TableFile {
        let fallback = || TableFile::parse(DEFAULT_TABLE).ok();
        if s.quality_table.is_empty() {
            // ok: the embedded table is checked by the controller's unit tests
            return fallback().unwrap_or_else(|| TableFile { name: String::new(), method: String::new(), content: String::new(), device: String::new(), frame_rate: 30.0, chunk_s: 4.0, rungs: vec![] });
        }
        match std::fs::read_to_string(&s.quality_table).map_err(|e| e.to_string()).and_then(|t| TableFile::parse(&t).map_err(|e| e.to_string())) {
            Ok(t) => t,
            Err(e) => {
                gst::element_imp_warning!(self, gst::LibraryError::Settings, ["Cannot read quality table {}: {e}; using the shipped table", s.quality_table]);
                fallback().unwrap_or_else(|| TableFile { name: String::new(), method: String::new(), content: String::new(), device: String::new(), frame_rate: 30.0, chunk_s: 4.0, rungs: vec![] })
            }
        }
    }

    /// Build the controller once the ladder is known (manifest or `ladder` property), or
    /// rebuild it when the settings changed.
    fn ensure_controller(&self, s: &Settings, st: &mut State) -> bool {
        let config = self.config(s);
        if st.controller.as_ref().is_some_and(|c| *c.config() == config) {
            return true;
        }
        let (rungs, segment_s, total): (Vec<Rung>, f64, Option<usize>) = if !s.ladder.is_empty() {
            match manifest::parse_ladder(&s.ladder) {
                Ok(r) => (r, st.manifest.as_ref().map_or(0.0, |m| m.segment_s), st.manifest.as_ref().and_then(ManifestInfo::segments)),
                Err(e) => {
                    gst::warning!(CAT, imp = self, "{e}");
                    return false;
                }
            }
        } else if let Some(m) = &st.manifest {
            (m.rungs.clone(), m.segment_s, m.segments())
        } else {
            return false;
        };
        if st.table.is_none() {
            st.table = Some(self.load_table(s));
        }
        let Some(table) = st.table.as_ref() else { return false };
        match Controller::new(config, table, rungs, segment_s, total) {
            Ok(mut c) => {
                if let Some(previous) = st.controller.as_ref() {
                    c.carry_over(previous);
                }
                gst::info!(CAT, imp = self, "policy {} over {} rungs: {:?}", s.policy, c.rungs().len(), c.rungs().iter().map(|r| r.bandwidth).collect::<Vec<_>>());
                st.controller = Some(c);
                true
            }
            Err(e) => {
                if !st.warned {
                    gst::element_imp_warning!(self, gst::LibraryError::Settings, ["nerveabr cannot steer: {e}"]);
                    st.warned = true;
                }
                false
            }
        }
    }

    /// One decision: observe, decide, steer the demuxer, post the message.
    fn step(&self, demuxer: &gst::Element, measured: bool) {
        let s = lock(&self.settings).clone();
        let bandwidth = if measured { get_prop::<u32>(demuxer, "current-bandwidth").unwrap_or(0) as f64 } else { 0.0 };
        let buffer = Duration::from_nanos(get_prop::<u64>(demuxer, "current-level-time-video").unwrap_or(0));
        let cap = get_prop::<u64>(demuxer, "max-buffering-time").filter(|v| *v > 0).map_or(Duration::from_secs(30), Duration::from_nanos);
        let (choice, battery, enhancer, qos, stalls) = {
            let mut st = lock(&self.state);
            if !self.ensure_controller(&s, &mut st) {
                return;
            }
            let enhancer = st.enhancer.as_ref().and_then(|w| w.upgrade()).is_some();
            let qos = st.qos_proportion;
            let step = Step { bandwidth_bps: bandwidth, buffer, buffer_cap: cap, enhance_available: enhancer && qos <= QOS_OVERLOAD };
            let battery = st.controller.as_ref().and_then(|c| c.config().battery).unwrap_or(-1.0);
            let Some(c) = st.controller.as_mut() else { return };
            let choice = c.decide(step);
            st.last = Some(choice.clone());
            st.enhance_by_fragment.insert(choice.fragment, (choice.level > 0, choice.level));
            (choice, battery, enhancer, qos, st.stalls)
        };
        let target = u32::try_from(choice.bandwidth).unwrap_or(u32::MAX);
        let steered = set_checked(demuxer, "connection-bitrate", target) & set_checked(demuxer, "max-bitrate", target);
        if !steered {
            gst::warning!(CAT, imp = self, "{} has no writable connection-bitrate/max-bitrate", demuxer.name());
        }
        gst::debug!(CAT, imp = self, "fragment {}: rung {} ({} bit/s, {} p), level {} ({}), throughput {:.0}, buffer {:?}", choice.fragment, choice.rung, choice.bandwidth, choice.height, choice.level, choice.model, choice.throughput_bps, choice.buffer);
        let msg = gst::message::Element::builder(decision_structure(&choice, &s.policy, battery, enhancer, qos, stalls)).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }

    /// Before a frame of fragment k goes by: when k's decision changes the enhancement, tell the
    /// enhancer downstream, in the stream, so it switches exactly at this frame.
    fn enact(&self, pts: Option<gst::ClockTime>) {
        let segment = self.obj().segment();
        let Some(seg) = segment.downcast_ref::<gst::format::Time>() else { return };
        let Some(time) = seg.to_stream_time(pts) else { return };
        let (on, level, fragment) = {
            let mut st = lock(&self.state);
            let Some(segment_s) = st.manifest.as_ref().map(|m| m.segment_s).filter(|s| *s > 0.0) else { return };
            let fragment = (time.seconds_f64() / segment_s + 1e-6).floor() as u64;
            // The decision for this fragment, or the latest before it (a fragment decided
            // before the controller existed keeps the previous one).
            let Some((_, &(on, level))) = st.enhance_by_fragment.range(..=fragment).next_back() else { return };
            if st.told == Some(on) {
                return;
            }
            st.told = Some(on);
            (on, level, fragment)
        };
        gst::debug!(CAT, imp = self, "fragment {fragment} from {time}: enhancement {}", if on { "on" } else { "off" });
        let s = gst::Structure::builder(ENHANCE_EVENT).field("enhance", on).field("fragment", fragment).field("level", level as u32).build();
        if !self.obj().src_pad().push_event(gst::event::CustomDownstream::new(s)) {
            gst::debug!(CAT, imp = self, "nobody downstream took {ENHANCE_EVENT}");
        }
    }

    /// Battery saver downloads in bursts ([`resume_below_s`], the simulator's rule): once its
    /// buffer is full the demuxer resumes downloading only below that level (its
    /// `low-watermark-time`, at most half its high watermark), so the radio can sleep between
    /// bursts. Other preferences put back the demuxer's automatic low watermark (0).
    fn apply_bursts(&self, demuxer: &gst::Element) {
        let preference = lock(&self.settings).preference.into();
        let high = get_prop::<u64>(demuxer, "high-watermark-time").unwrap_or(0);
        let low = match resume_below_s(preference) {
            Some(s) if high > 0 => ((s * 1e9) as u64).min(high / 2),
            _ => 0,
        };
        if set_checked(demuxer, "low-watermark-time", low) {
            gst::debug!(CAT, imp = self, "{}: low-watermark-time {low} ns (high {high} ns)", demuxer.name());
        } else if low > 0 {
            gst::warning!(CAT, imp = self, "{} has no low-watermark-time: battery saver cannot download in bursts", demuxer.name());
        }
    }

    /// Start steering `demuxer`: collect its manifest, follow its bandwidth notifications.
    fn adopt_demuxer(&self, demuxer: &gst::Element) {
        {
            let st = lock(&self.state);
            if st.demuxer.as_ref().and_then(|w| w.upgrade()).is_some() {
                return;
            }
        }
        gst::info!(CAT, imp = self, "steering {}", demuxer.name());
        let max_buffering = lock(&self.settings).max_buffering_time;
        if max_buffering > 0 {
            for p in ["max-buffering-time", "high-watermark-time"] {
                if !set_checked(demuxer, p, max_buffering) {
                    gst::warning!(CAT, imp = self, "{} has no {p}", demuxer.name());
                }
            }
        }
        self.apply_bursts(demuxer);
        let weak = self.obj().downgrade();
        let handler = demuxer.connect_notify(Some("current-bandwidth"), move |d, _| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().step(d, true);
            }
        });
        let probe = demuxer.static_pad("sink").and_then(|pad| {
            let weak = self.obj().downgrade();
            let demux_weak = demuxer.downgrade();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let (Some(obj), Some(gst::PadProbeData::Buffer(buf))) = (weak.upgrade(), info.data.as_ref())
                    && let (Some(d), Ok(map)) = (demux_weak.upgrade(), buf.map_readable()) {
                        obj.imp().on_manifest_bytes(&d, map.as_slice());
                    }
                gst::PadProbeReturn::Ok
            })
            .map(|id| (pad.downgrade(), id))
        });
        let mut st = lock(&self.state);
        st.demuxer = Some(demuxer.downgrade());
        st.bandwidth_handler = Some(handler);
        st.probe = probe;
    }

    fn on_manifest_bytes(&self, demuxer: &gst::Element, bytes: &[u8]) {
        let parsed = {
            let mut st = lock(&self.state);
            if st.manifest.is_some() || st.manifest_bytes.len() + bytes.len() > MANIFEST_MAX {
                return;
            }
            st.manifest_bytes.extend_from_slice(bytes);
            let text = String::from_utf8_lossy(&st.manifest_bytes);
            let complete = !text.contains("<MPD") || text.contains("</MPD>");
            match complete.then(|| manifest::parse(&text)).flatten() {
                Some(m) => {
                    gst::info!(CAT, imp = self, "manifest: {} video rungs, {:.1} s, segments {:.2} s", m.rungs.len(), m.duration_s, m.segment_s);
                    st.manifest = Some(m);
                    true
                }
                None => false,
            }
        };
        if parsed {
            // the first fragment's rung, before the demuxer picks one itself
            self.step(demuxer, false);
        }
    }

    fn consider(&self, e: &gst::Element) {
        let s = lock(&self.settings).clone();
        if is_demuxer(e, &s.demuxer) {
            self.adopt_demuxer(e);
        } else if is_enhancer(e, &s.enhancer) {
            gst::info!(CAT, imp = self, "enhancer {}", e.name());
            lock(&self.state).enhancer = Some(e.downgrade());
        }
    }

    /// Find the demuxer and the enhancer in the top-level bin, now and as elements are added.
    fn attach(&self) {
        let mut top: Option<gst::Bin> = None;
        let mut cur = self.obj().parent();
        while let Some(p) = cur {
            cur = p.parent();
            if let Ok(b) = p.downcast::<gst::Bin>() {
                top = Some(b);
            }
        }
        let Some(top) = top else {
            gst::warning!(CAT, imp = self, "not in a bin: nothing to steer");
            return;
        };
        let weak = self.obj().downgrade();
        let deep = top.connect_deep_element_added(move |_, _, e| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().consider(e);
            }
        });
        let weak = self.obj().downgrade();
        let bus = top.bus();
        let bus_handler = bus.as_ref().map(|bus| {
            bus.enable_sync_message_emission();
            bus.connect_sync_message(None, move |_, msg| {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().on_message(msg);
                }
            })
        });
        {
            let mut st = lock(&self.state);
            st.top = Some(top.downgrade());
            st.deep_added = Some(deep);
            st.bus = bus;
            st.bus_handler = bus_handler;
        }
        let mut it = top.iterate_recurse();
        loop {
            match it.next() {
                Ok(Some(e)) => self.consider(&e),
                Ok(None) => break,
                Err(gst::IteratorError::Resync) => it.resync(),
                Err(gst::IteratorError::Error) => break,
            }
        }
    }

    fn detach(&self) {
        let st = std::mem::take(&mut *lock(&self.state));
        if let (Some(top), Some(id)) = (st.top.and_then(|w| w.upgrade()), st.deep_added) {
            top.disconnect(id);
        }
        if let Some(bus) = st.bus {
            if let Some(id) = st.bus_handler {
                bus.disconnect(id);
            }
            bus.disable_sync_message_emission();
        }
        if let (Some(d), Some(id)) = (st.demuxer.and_then(|w| w.upgrade()), st.bandwidth_handler) {
            d.disconnect(id);
        }
        if let Some((pad, id)) = st.probe
            && let Some(pad) = pad.upgrade() {
                pad.remove_probe(id);
            }
    }

    /// Bus messages, on the posting thread: only bookkeeping.
    fn on_message(&self, msg: &gst::Message) {
        match msg.view() {
            gst::MessageView::Buffering(b) => {
                let mut st = lock(&self.state);
                let low = b.percent() < 100;
                if low && !st.buffering && st.playing_started {
                    st.stalls += 1;
                }
                st.buffering = low;
            }
            gst::MessageView::StateChanged(sc) if sc.current() == gst::State::Playing => {
                lock(&self.state).playing_started = true;
            }
            _ => {}
        }
    }
}

fn decision_structure(c: &Choice, policy: &str, battery: f64, enhancer: bool, qos: f64, stalls: u32) -> gst::Structure {
    gst::Structure::builder("nerveabr-decision")
        .field("fragment", c.fragment)
        .field("policy", policy)
        .field("rung", c.rung as u32)
        .field("bitrate", c.bandwidth)
        .field("height", c.height)
        .field("level", c.level as u32)
        .field("model", c.model.as_str())
        .field("upscale", c.upscale)
        .field("throughput", c.throughput_bps as u64)
        .field("buffer", c.buffer.as_nanos() as u64)
        .field("battery", battery)
        .field("enhancer", enhancer)
        .field("qos-proportion", qos)
        .field("stalls", stalls)
        .field("energy-j", c.energy.total_j())
        .field("energy-radio-j", c.energy.radio_j)
        .field("energy-enhance-j", c.energy.enhance_j)
        .field("battery-pct", c.battery_pct)
        .field("decide-us", c.decide_us)
        .build()
}

#[glib::object_subclass]
impl ObjectSubclass for NerveAbr {
    const NAME: &'static str = "GstNerveAbr";
    type Type = super::NerveAbr;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for NerveAbr {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder(PROP_POLICY)
                    .nick("Policy")
                    .blurb("ABR policy, as nerveabr-sim names them: bb, rb, bola, robustmpc, dynamic, nerve (enhancement-aware), ppo (the learned policy, see ppo-model), or X+sr (X, then the best real-time enhancement)")
                    .default_value(Some(DEFAULT_POLICY))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(PROP_PREFERENCE, d.preference)
                    .nick("Preference")
                    .blurb("What the user favours; used by the nerve and ppo policies (ppo's preference weight: quality 0, balanced 0.5, battery-saver 1). battery-saver also downloads in bursts: once the demuxer's buffer is full it resumes below 15 s (its low-watermark-time, at most half its high watermark) so the radio sleeps in between, and nerve charges 1 quality point per megabit, so it leaves the top rung where its gain is small for its bits, and 0.17 per joule of enhancement energy")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder(PROP_BATTERY_LEVEL)
                    .nick("Battery level")
                    .blurb("Battery charge, 0 (empty) to 1 (full); -1 = read /sys/class/power_supply (mains power when no battery is discharging). Below 0.2 nerve prices enhancement energy and bits as battery-saver does")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_BATTERY_LEVEL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder(PROP_DEMUXER)
                    .nick("Demuxer")
                    .blurb("Name of the adaptivedemux2 element to steer; empty = the first dashdemux2/hlsdemux2/mssdemux2 in the pipeline")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_ENHANCER)
                    .nick("Enhancer")
                    .blurb("Name of the super-resolution element; empty = the first nervesr in the pipeline. Without one, no enhancement is planned")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_LADDER)
                    .nick("Ladder")
                    .blurb("Video rungs as bandwidth[:height] in bit/s, comma-separated (e.g. 300000:240,750000:360); empty = read from the manifest. Needed when the demuxer exists before nerveabr (e.g. inside playbin3's video-sink)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_QUALITY_TABLE)
                    .nick("Quality table")
                    .blurb("Quality table JSON (displayed VMAF per rung, classical and per enhancement level, and the device's speed), as in nerve-abr/tables; each stream rung takes the row of the nearest bitrate; empty = the shipped measured all-content table (tables/pensieve_generic_nervesr.json)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder(PROP_DEVICE_SPEED)
                    .nick("Device speed")
                    .blurb("Enhancement speed of this device relative to the table's device (2 = twice as fast)")
                    .minimum(0.01)
                    .maximum(100.0)
                    .default_value(DEFAULT_DEVICE_SPEED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_PPO_MODEL)
                    .nick("PPO model")
                    .blurb("The ppo policy's actor: an ONNX file taking the features of nerve_abr::learned ([1, n] float) and giving one score per (rung, enhancement level) ([1, rungs x levels]); the highest is taken; a quality table beside it (<name>.table.json, the one it was trained on) is what its table features read, while quality-table shields and scores. Empty: abr/ppo.onnx in the model directories (NERVE_MODEL_PATH, the installed models, the source tree's models/)")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder(PROP_PPO_SHIELD)
                    .nick("PPO shield")
                    .blurb("Cap the ppo policy's rung at the highest one the nerve planner holds safe (its hard stall constraint: buffer floor, guard throughput, low-buffer fallback) and let it climb no higher than the planner would play, leaving the actor every choice below; false: the actor alone")
                    .default_value(DEFAULT_PPO_SHIELD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_NETWORK)
                    .nick("Network")
                    .blurb("The network the device streams over, for the energy estimate in each decision (energy-j, battery-pct): 3g, lte, 5g or wifi (radio power model of Huang et al., MobiSys 2012; docs/abr.md#energy)")
                    .default_value(Some("lte"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_TARGET_HEIGHT)
                    .nick("Target height")
                    .blurb("Display height in pixels the upscale aims at (reported as upscale = target / rung height); 0 = the top rung's height")
                    .default_value(DEFAULT_TARGET_HEIGHT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_MAX_BUFFERING_TIME)
                    .nick("Max buffering time")
                    .blurb("Media the demuxer may buffer ahead (in nanoseconds), set as its max-buffering-time and high-watermark-time when nerveabr adopts it; 0 = leave the demuxer's (30 s in adaptivedemux2)")
                    .default_value(DEFAULT_MAX_BUFFERING_TIME)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>(PROP_LAST_DECISION)
                    .nick("Last decision")
                    .blurb("The last nerveabr-decision structure (fields as in the element message), or NULL before the first")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            PROP_POLICY => {
                let v: Option<String> = value.get().expect("type checked upstream"); // ok: GObject type-checks property values; static templates cannot fail
                let v = v.unwrap_or_else(|| DEFAULT_POLICY.into());
                match v.parse::<nerve_abr::spec::PolicySpec>() {
                    Ok(_) => s.policy = v,
                    Err(e) => gst::warning!(CAT, imp = self, "policy not changed: {e}"),
                }
            }
            PROP_PREFERENCE => s.preference = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            PROP_BATTERY_LEVEL => s.battery_level = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            PROP_DEMUXER => s.demuxer = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(), // ok: GObject type-checks property values; static templates cannot fail
            PROP_ENHANCER => s.enhancer = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(), // ok: GObject type-checks property values; static templates cannot fail
            PROP_LADDER => s.ladder = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(), // ok: GObject type-checks property values; static templates cannot fail
            PROP_QUALITY_TABLE => s.quality_table = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(), // ok: GObject type-checks property values; static templates cannot fail
            PROP_DEVICE_SPEED => s.device_speed = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            PROP_TARGET_HEIGHT => s.target_height = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            PROP_PPO_MODEL => s.ppo_model = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(), // ok: GObject type-checks property values; static templates cannot fail
            PROP_PPO_SHIELD => s.ppo_shield = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            PROP_NETWORK => {
                let name = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                match Network::parse(&name) {
                    Ok(n) => s.network = n,
                    Err(e) => gst::warning!(CAT, imp = self, "{e}; keeping {}", s.network.name()),
                }
            }
            PROP_MAX_BUFFERING_TIME => s.max_buffering_time = value.get().expect("type checked upstream"), // ok: GObject type-checks property values; static templates cannot fail
            _ => {}
        }
        drop(s);
        if pspec.name() == PROP_PREFERENCE {
            let demuxer = lock(&self.state).demuxer.as_ref().and_then(|w| w.upgrade());
            if let Some(d) = demuxer {
                self.apply_bursts(&d);
            }
        }
        gst::info!(CAT, imp = self, "{} set", pspec.name());
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == PROP_LAST_DECISION {
            let s = lock(&self.settings).clone();
            let st = lock(&self.state);
            let structure = st.last.as_ref().map(|c| {
                let battery = st.controller.as_ref().and_then(|k| k.config().battery).unwrap_or(-1.0);
                let enhancer = st.enhancer.as_ref().and_then(|w| w.upgrade()).is_some();
                decision_structure(c, &s.policy, battery, enhancer, st.qos_proportion, st.stalls)
            });
            return structure.to_value();
        }
        let s = lock(&self.settings);
        match pspec.name() {
            PROP_POLICY => s.policy.to_value(),
            PROP_PREFERENCE => s.preference.to_value(),
            PROP_BATTERY_LEVEL => s.battery_level.to_value(),
            PROP_DEMUXER => s.demuxer.to_value(),
            PROP_ENHANCER => s.enhancer.to_value(),
            PROP_LADDER => s.ladder.to_value(),
            PROP_QUALITY_TABLE => s.quality_table.to_value(),
            PROP_DEVICE_SPEED => s.device_speed.to_value(),
            PROP_TARGET_HEIGHT => s.target_height.to_value(),
            PROP_NETWORK => s.network.name().to_value(),
            PROP_PPO_MODEL => s.ppo_model.to_value(),
            PROP_PPO_SHIELD => s.ppo_shield.to_value(),
            PROP_MAX_BUFFERING_TIME => s.max_buffering_time.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for NerveAbr {}

impl ElementImpl for NerveAbr {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "nerve enhancement-aware ABR",
                "Filter/Video",
                "Pass-through that steers an adaptivedemux2 demuxer (dashdemux2, hlsdemux2): picks each fragment's rung and the enhancement level jointly from a quality table, the throughput, the buffer, the device's enhancement speed, the battery and a preference",
                "nerve project",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            vec![
                // ok: static template construction cannot fail
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).expect("src template"), // ok: GObject type-checks property values; static templates cannot fail
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).expect("sink template"), // ok: GObject type-checks property values; static templates cannot fail
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            self.attach();
        }
        let ret = self.parent_change_state(transition);
        if transition == gst::StateChange::ReadyToNull {
            self.detach();
        }
        ret
    }
}

impl BaseTransformImpl for NerveAbr {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    // Frames are looked at (never changed) to enact each fragment's enhancement at its start.
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.enact(buf.pts());
        Ok(gst::FlowSuccess::Ok)
    }

    fn transform_ip_passthrough(&self, buf: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.enact(buf.pts());
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) | gst::EventView::StreamStart(_) = event.view() {
            // After a flush the enhancer hears the current fragment's decision again.
            lock(&self.state).told = None;
        }
        self.parent_sink_event(event)
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Qos(q) = event.view() {
            let (_, proportion, _, _) = q.get();
            lock(&self.state).qos_proportion = proportion;
        }
        self.parent_src_event(event)
    }
}
