//! The RTP packet-loss pipeline: a clip is encoded as H.264 with several slices per frame,
//! packetised (`rtph264pay`, a small MTU so slices spread over packets), packets are dropped by
//! a seeded random process, and the stream goes through `rtpjitterbuffer ! rtph264depay !
//! avdec_h264` the way a receiver plays it.
//!
//! The encoded RTP stream is teed before the loss, so the same packets are also decoded without
//! loss: that clean decode is what the damage (and the detector's precision/recall) is measured
//! against. The lossy decode can go on through further branches (e.g. `nerverecover` in each
//! mode), all fed by the same decoder output.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use gstnerve::recover::detect::BLOCK;
use gstnerve::recover::repair::{PlaneBlocks, PlaneMut, PlaneRef, blend_blocks};

use crate::frame::{Clip, Frame};

/// SplitMix64: a tiny, well-mixed PRNG, so a loss pattern is fixed by its seed and needs no
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the stream is sent.
#[derive(Debug, Clone)]
pub struct LossConfig {
    /// Probability that each RTP packet is lost (independent losses).
    pub loss: f64,
    pub seed: u64,
    /// x264 target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Slices per frame: a lost packet damages one slice, not the whole frame.
    pub slices: u32,
    /// RTP payload size limit in bytes.
    pub mtu: u32,
    /// Frames between IDR frames (no scene-cut IDRs, so the schedule is fixed).
    pub keyint: u32,
    /// The decoder element and its settings.
    pub decoder: String,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { loss: 0.05, seed: 1, bitrate_kbps: 1500, slices: 4, mtu: 600, keyint: 60, decoder: DECODER.into() }
    }
}

impl LossConfig {
    /// The sender's gst-launch fragment, from raw I420 to RTP.
    pub fn sender(&self) -> String {
        format!(
            "x264enc tune=zerolatency speed-preset=veryfast threads=1 bitrate={} key-int-max={} \
             option-string=\"slices={}:scenecut=0:min-keyint={}\" ! rtph264pay mtu={} config-interval=-1 name=pay",
            self.bitrate_kbps, self.keyint, self.slices, self.keyint, self.mtu
        )
    }
}

/// The receiver's fragment up to the decoder, from RTP to H.264 access units. `do-lost=true`
/// reports each lost packet downstream (the depayloader turns it into a GAP event), as a real
/// receiver that wants to react to loss sets it.
pub const RECEIVER: &str = "rtpjitterbuffer do-lost=true ! rtph264depay";

/// The same receiver with `nervesalvage` before the depayloader: a slice that lost a later
/// fragment reaches the decoder as the prefix that arrived instead of not at all.
pub const SALVAGING_RECEIVER: &str = "rtpjitterbuffer do-lost=true ! nervesalvage ! rtph264depay";

/// Which receiver an extra branch's decoder output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// [`RECEIVER`]: what a GStreamer player does.
    Plain,
    /// [`SALVAGING_RECEIVER`].
    Salvaging,
}

/// GStreamer's H.264 decoder, on one thread. With its default frame threads `avdec_h264` is not
/// deterministic on a damaged stream: whether a lost slice is concealed or left black depends on
/// thread timing (the same packets gave a clip 12.0 dB in one run and 32.5 dB in the next), so
/// no comparison would mean anything. One thread decodes the same packets to the same frames
/// every time, and FFmpeg's error concealment is always on.
pub const DECODER: &str = "avdec_h264 max-threads=1";

/// One decoded branch: a frame per input index (None where nothing came out for that timestamp),
/// the corrupted flags, and how many buffers came out in all.
#[derive(Debug, Clone, Default)]
pub struct Branch {
    pub frames: Vec<Option<Frame>>,
    pub corrupted: Vec<bool>,
    pub buffers: usize,
}

/// What one run of the loss pipeline produced.
#[derive(Debug, Clone)]
pub struct LossRun {
    /// The lossless decode of the same packets.
    pub clean: Branch,
    /// The decoder's output after the loss.
    pub lossy: Branch,
    /// The decoder's output after the loss with [`SALVAGING_RECEIVER`].
    pub salvaged: Branch,
    /// One branch per extra fragment given to [`run`], in order.
    pub extra: Vec<Branch>,
    /// Per input frame: at least one of its packets was lost.
    pub hit: Vec<bool>,
    /// Per input frame: an IDR frame (from the encoder's output).
    pub keyframe: Vec<bool>,
    pub packets: u64,
    pub dropped: u64,
}

impl LossRun {
    /// Per frame: the frame and every frame it depends on since the last IDR arrived intact.
    /// This is what a receiver knows from RTP sequence numbers; a freezing player shows only
    /// these.
    pub fn intact(&self) -> Vec<bool> {
        let mut ok = false;
        self.hit
            .iter()
            .zip(&self.keyframe)
            .map(|(&hit, &key)| {
                if key {
                    ok = true;
                }
                ok &= !hit;
                ok
            })
            .collect()
    }
}

/// One decoded frame as an appsink gave it: timestamp, corrupted flag, pixels.
type Decoded = (Option<u64>, bool, Frame);

#[derive(Default)]
struct Record {
    /// PTS of every dropped packet.
    dropped_pts: BTreeSet<u64>,
    keyframe_pts: BTreeSet<u64>,
    first_pts: Option<u64>,
    packets: u64,
    dropped: u64,
}

/// Runs `clip` through sender -> loss -> receiver, and the same lossy packets through the
/// salvaging receiver. `extra` fragments (e.g. `nerverecover mode=lookahead`) each get their own
/// copy of the decoder output of their receiver.
pub fn run(clip: &Clip, cfg: &LossConfig, extra: &[(Receiver, String)]) -> Result<LossRun> {
    let first = clip.frames.first().context("no frames")?;
    let (w, h) = (first.width, first.height);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w as u32, h as u32).fps(clip.fps).build()?;
    let caps = info.to_caps()?.to_string();
    let to_i420 = "videoconvert ! video/x-raw,format=I420";
    let mut desc = format!(
        "appsrc name=src format=time caps=\"{caps}\" ! {} ! tee name=rtp \
         rtp. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {RECEIVER} ! {dec} ! {to_i420} ! appsink name=clean sync=false async=false \
         rtp. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 name=lossq ! tee name=lost \
         lost. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {RECEIVER} ! {dec} ! tee name=dec \
         dec. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {to_i420} ! appsink name=lossy sync=false async=false \
         lost. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {SALVAGING_RECEIVER} ! {dec} ! tee name=sdec \
         sdec. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {to_i420} ! appsink name=salvaged sync=false async=false",
        cfg.sender(),
        dec = cfg.decoder
    );
    for (i, (receiver, f)) in extra.iter().enumerate() {
        let tee = match receiver {
            Receiver::Plain => "dec",
            Receiver::Salvaging => "sdec",
        };
        desc.push_str(&format!(
            " {tee}. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! {f} ! {to_i420} ! appsink name=extra{i} sync=false async=false"
        ));
    }
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("cannot build `{desc}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let record = Arc::new(Mutex::new(Record::default()));

    // The encoder's output: which frames are IDR frames, and the first timestamp (x264enc shifts
    // timestamps by 1000 hours to keep DTS positive).
    let pay = pipeline.by_name("pay").context("payloader")?;
    let pay_sink = pay.static_pad("sink").context("payloader sink pad")?;
    let rec = record.clone();
    pay_sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(b) = info.buffer()
            && let (Some(pts), Ok(mut r)) = (b.pts(), rec.lock())
        {
            r.first_pts.get_or_insert(pts.nseconds());
            if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                r.keyframe_pts.insert(pts.nseconds());
            }
        }
        gst::PadProbeReturn::Ok
    });

    // The loss: a seeded coin per packet on the lossy branch only.
    let lossq = pipeline.by_name("lossq").context("loss queue")?;
    let loss_pad = lossq.static_pad("src").context("loss queue src pad")?;
    let rec = record.clone();
    let rng = Mutex::new(SplitMix64::new(cfg.seed));
    let p = cfg.loss;
    // The payloader pushes fragments as buffer lists: each packet in a list gets its own coin.
    let coin = move |pts: Option<u64>| -> bool {
        let drop = rng.lock().map(|mut r| r.next_f64() < p).unwrap_or(false);
        if let Ok(mut r) = rec.lock() {
            r.packets += 1;
            if drop {
                r.dropped += 1;
                if let Some(pts) = pts {
                    r.dropped_pts.insert(pts);
                }
            }
        }
        drop
    };
    loss_pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
        match &mut info.data {
            Some(gst::PadProbeData::Buffer(b)) if coin(b.pts().map(|t| t.nseconds())) => {
                return gst::PadProbeReturn::Drop;
            }
            Some(gst::PadProbeData::BufferList(list)) => {
                let mut kept = gst::BufferList::new();
                if let Some(k) = kept.get_mut() {
                    for b in list.iter() {
                        if !coin(b.pts().map(|t| t.nseconds())) {
                            k.add(b.to_owned());
                        }
                    }
                }
                if kept.is_empty() {
                    return gst::PadProbeReturn::Drop;
                }
                *list = kept;
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });

    let src = pipeline.by_name("src").context("appsrc")?.downcast::<gst_app::AppSrc>().map_err(|_| anyhow::anyhow!("appsrc"))?;
    src.set_max_bytes(0);
    let appsink = |name: &str| -> Result<gst_app::AppSink> {
        pipeline.by_name(name).context("appsink")?.downcast::<gst_app::AppSink>().map_err(|_| anyhow::anyhow!("appsink"))
    };
    let mut sinks = vec![appsink("clean")?, appsink("lossy")?, appsink("salvaged")?];
    for i in 0..extra.len() {
        sinks.push(appsink(&format!("extra{i}"))?);
    }
    // The sinks must be past READY before anyone pulls: pull_sample returns at once otherwise.
    pipeline.set_state(gst::State::Playing)?;
    // Every branch is drained on its own thread so that no branch's full sink stalls the tee.
    let collected: Vec<Arc<Mutex<Vec<Decoded>>>> =
        sinks.iter().map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let mut threads = Vec::new();
    for (sink, out) in sinks.iter().zip(&collected) {
        let sink = sink.clone();
        let out = out.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            while let Ok(sample) = sink.pull_sample() {
                let info = gst_video::VideoInfo::from_caps(sample.caps().context("caps")?)?;
                let buffer = sample.buffer().context("buffer")?;
                let corrupted = buffer.flags().contains(gst::BufferFlags::CORRUPTED);
                let pts = buffer.pts().map(|t| t.nseconds());
                let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
                    .map_err(|_| anyhow::anyhow!("map"))?;
                let frame = Frame::from_video(&vf, info.width() as usize, info.height() as usize)?;
                out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((pts, corrupted, frame));
            }
            Ok(())
        }));
    }
    let frame_ns = 1_000_000_000u64 * clip.fps.denom().max(1) as u64 / clip.fps.numer().max(1) as u64;
    for (i, f) in clip.frames.iter().enumerate() {
        let mut b = f.to_buffer(&info)?;
        let bm = b.get_mut().context("fresh buffer")?;
        bm.set_pts(gst::ClockTime::from_nseconds(i as u64 * frame_ns));
        bm.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        src.push_buffer(b)?;
    }
    src.end_of_stream()?;
    let bus = pipeline.bus().context("bus")?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null)?;
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a sink thread panicked"))??;
    }
    if let Some(msg) = msg
        && let gst::MessageView::Error(e) = msg.view() {
            bail!("loss pipeline: {} ({:?})", e.error(), e.debug());
        }

    let r = record.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let base = r.first_pts.context("the encoder produced nothing")?;
    let n = clip.frames.len();
    let index = |pts: u64| -> Option<usize> {
        let rel = pts.checked_sub(base)?;
        let i = ((rel + frame_ns / 2) / frame_ns) as usize;
        (i < n).then_some(i)
    };
    let mut hit = vec![false; n];
    for &pts in &r.dropped_pts {
        if let Some(i) = index(pts) {
            hit[i] = true;
        }
    }
    let mut keyframe = vec![false; n];
    for &pts in &r.keyframe_pts {
        if let Some(i) = index(pts) {
            keyframe[i] = true;
        }
    }
    let mut branches = Vec::new();
    for c in &collected {
        let c = std::mem::take(&mut *c.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        let mut b = Branch { frames: vec![None; n], corrupted: vec![false; n], buffers: c.len() };
        let mut by_index: HashMap<usize, (bool, Frame)> = HashMap::new();
        for (pts, corrupted, frame) in c {
            if let Some(i) = pts.and_then(index) {
                by_index.insert(i, (corrupted, frame));
            }
        }
        for (i, (corrupted, frame)) in by_index {
            b.corrupted[i] = corrupted;
            b.frames[i] = Some(frame);
        }
        branches.push(b);
    }
    let mut it = branches.into_iter();
    let clean = it.next().context("clean branch")?;
    let lossy = it.next().context("lossy branch")?;
    let salvaged = it.next().context("salvaged branch")?;
    Ok(LossRun { clean, lossy, salvaged, extra: it.collect(), hit, keyframe, packets: r.packets, dropped: r.dropped })
}

/// What a player shows from a branch: each expected frame, the previous one held where
/// nothing came out (black before the first frame).
pub fn held(branch: &Branch, width: usize, height: usize) -> Vec<Frame> {
    let mut last = Frame::new(width, height);
    last.y_mut().fill(16);
    branch
        .frames
        .iter()
        .map(|f| {
            if let Some(f) = f {
                last = f.clone();
            }
            last.clone()
        })
        .collect()
}

/// Freeze on the last good frame: show a decoded frame only while the stream is intact since
/// the last IDR (a receiver knows this from RTP sequence numbers), hold the last such frame
/// otherwise.
pub fn frozen(run: &LossRun, width: usize, height: usize) -> Vec<Frame> {
    let intact = run.intact();
    let mut last = Frame::new(width, height);
    last.y_mut().fill(16);
    run.lossy
        .frames
        .iter()
        .zip(intact)
        .map(|(f, ok)| {
            if let (Some(f), true) = (f, ok) {
                last = f.clone();
            }
            last.clone()
        })
        .collect()
}

/// The most a receiver-side repair can show while it keeps the decoder's guess where no packet
/// ever carried the content: the lossless decode everywhere, except in the blocks the stream's
/// first IDR frame lost, which keep what the decoder shows (`shown`: [`held`] of `run.salvaged`,
/// the receiver that gets the most of the packets) until an IDR frame arrives intact. Content
/// lost later has an earlier frame that stands in for it; those blocks have none. A better guess
/// there (the decoder may leave them black) can beat it. Not a method: it reads the lossless
/// decode.
pub fn receivable(run: &LossRun, shown: &[Frame], width: usize, height: usize) -> Vec<Frame> {
    let clean = held(&run.clean, width, height);
    let cols = width.div_ceil(BLOCK);
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let planes = [PlaneBlocks::new(width, height, 0, 0, 1), PlaneBlocks::new(cw, ch, 1, 1, 1), PlaneBlocks::new(cw, ch, 1, 1, 1)];
    let mut never = first_idr_losses(run, &clean, width, height);
    clean
        .into_iter()
        .zip(shown)
        .enumerate()
        .map(|(i, (mut out, shown))| {
            if i > 0 && run.keyframe.get(i) == Some(&true) && run.hit.get(i) == Some(&false) {
                never.fill(false);
            }
            // Plane by plane, the never-received blocks from what the decoder shows.
            let (mut dst, mut src) = (&mut out.data[..], &shown.data[..]);
            for geometry in planes {
                let n = geometry.row_bytes * geometry.rows;
                let (d, rest) = std::mem::take(&mut dst).split_at_mut(n);
                let (a, next) = src.split_at(n);
                blend_blocks(&mut PlaneMut { data: d, stride: geometry.row_bytes }, PlaneRef { data: a, stride: geometry.row_bytes }, None, 0, geometry, &never, cols);
                (dst, src) = (rest, next);
            }
            out
        })
        .collect()
}

/// Per block: the stream's first frame, an IDR, lost it (its salvaging receiver's decode differs
/// from the lossless one by more than 2 levels of luma anywhere in the block; every block when no
/// frame came out).
fn first_idr_losses(run: &LossRun, clean: &[Frame], width: usize, height: usize) -> Vec<bool> {
    let (bw, bh) = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
    let mut lost = vec![false; bw * bh];
    if run.keyframe.first() != Some(&true) || run.hit.first() != Some(&true) {
        return lost;
    }
    let Some(Some(first)) = run.salvaged.frames.first() else {
        lost.fill(true);
        return lost;
    };
    for y in 0..height {
        let (a, c) = (&first.y()[y * width..(y + 1) * width], &clean[0].y()[y * width..(y + 1) * width]);
        for (x, (&p, &q)) in a.iter().zip(c).enumerate() {
            if p.abs_diff(q) > 2 {
                lost[(y / BLOCK) * bw + x / BLOCK] = true;
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_seeded_and_uniform() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(xs.iter().zip((0..10_000).map(|_| b.next_f64())).all(|(x, y)| *x == y));
        let below = xs.iter().filter(|&&x| x < 0.05).count();
        assert!((400..600).contains(&below), "{below} of 10000 below 0.05");
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    fn branch(frames: Vec<Frame>) -> Branch {
        Branch { buffers: frames.len(), corrupted: vec![false; frames.len()], frames: frames.into_iter().map(Some).collect() }
    }

    fn flat(w: usize, h: usize, y: u8) -> Frame {
        let mut f = Frame::new(w, h);
        f.y_mut().fill(y);
        f
    }

    #[test]
    fn receivable_keeps_the_decoder_only_where_the_first_idr_was_lost() {
        let (w, h) = (40, 20);
        let clean: Vec<Frame> = (0..4).map(|i| flat(w, h, 100 + i)).collect();
        let mut lossy = clean.clone();
        // the first IDR lost its top-left block, the next frame builds on it, a later loss
        // damaged the whole third frame
        lossy[0].y_mut()[0] = 30;
        lossy[0].data[w * h] = 60; // and the chroma under that block, and under the next one
        lossy[0].data[w * h + 8] = 61;
        lossy[1].y_mut()[0] = 31;
        lossy[2] = flat(w, h, 50);
        let run = |keyframe: Vec<bool>, hit: Vec<bool>| LossRun {
            clean: branch(clean.clone()),
            lossy: branch(lossy.clone()),
            salvaged: branch(lossy.clone()),
            extra: vec![],
            hit,
            keyframe,
            packets: 0,
            dropped: 0,
        };
        let shown = |r: &LossRun| held(&r.salvaged, w, h);
        let a = run(vec![true, false, false, true], vec![true, false, true, false]);
        let r = receivable(&a, &shown(&a), w, h);
        assert_eq!((r[0].y()[0], r[0].u()[0], r[0].u()[8]), (30, 60, 128), "never received: the decoder's pixels stay, chroma too, and only there");
        assert_eq!(r[0].y()[17], 100, "a block the first IDR did not lose is the lossless decode");
        assert_eq!((r[1].y()[0], r[2].y()[0]), (31, 50), "still never received before an intact IDR");
        assert_eq!(r[2].y()[w * 19 + 39], 102, "later damage elsewhere counts as repairable");
        assert_eq!(r[3].y()[0], 103, "an intact IDR ends it");
        // an intact first IDR leaves nothing unreceivable
        let b = run(vec![true, false, false, false], vec![false, false, true, false]);
        let r = receivable(&b, &shown(&b), w, h);
        assert!(r.iter().zip(&clean).all(|(a, b)| a == b));
    }

    #[test]
    fn intact_follows_idr_and_hits() {
        let run = LossRun {
            clean: Branch::default(),
            lossy: Branch::default(),
            salvaged: Branch::default(),
            extra: vec![],
            hit: vec![false, false, true, false, false, false],
            keyframe: vec![true, false, false, false, true, false],
            packets: 0,
            dropped: 0,
        };
        assert_eq!(run.intact(), vec![true, true, false, false, true, true]);
    }
}
