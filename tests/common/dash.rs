//! A DASH ladder from a real clip and a loopback HTTP server for it.
//!
//! The ladder is encoded with x264enc + fragmented mp4mux (one keyframe per fragment, the same
//! keyframe positions on every rung), split into an init segment and one media segment per
//! fragment, and described by a hand-written MPD with a `SegmentTemplate` (dashsink is not used:
//! its per-representation segment alignment is not guaranteed in 1.22). Adapted from
//! gst-nerveabr/tests/live_dash.rs, without its trace shaping.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gst::prelude::*;

/// One representation of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// Encoder target and declared `bandwidth`, in bit/s.
    pub bitrate: u32,
}

/// An encoded ladder on disk: `manifest.mpd`, `r<i>/init.mp4`, `r<i>/seg-<n>.m4s` (n from 1).
#[derive(Debug, Clone)]
pub struct Ladder {
    pub dir: PathBuf,
    pub rungs: Vec<Rung>,
    /// Media segments per rung (the same on every rung).
    pub segments: usize,
    /// Frames per rung (what a player must decode, whatever rungs it picks).
    pub frames: u64,
    pub fps: u32,
}

/// Splits a fragmented MP4 into its init part (every box before the first `moof`) and one
/// `moof`+`mdat` segment per fragment. Trailing index boxes (`mfra`) are dropped.
pub fn split_fmp4(bytes: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let mut pos = 0;
    let mut init = Vec::new();
    let mut segments: Vec<Vec<u8>> = Vec::new();
    while pos < bytes.len() {
        let header = bytes.get(pos..pos + 8).ok_or_else(|| format!("truncated box header at byte {pos}"))?;
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        if size < 8 || pos + size > bytes.len() {
            return Err(format!("box {:?} at byte {pos} has a bad size {size}", String::from_utf8_lossy(kind)));
        }
        let data = &bytes[pos..pos + size];
        match (kind, segments.last_mut()) {
            (b"moof", _) => segments.push(data.to_vec()),
            (b"mdat", Some(last)) => last.extend_from_slice(data),
            (b"mfra", _) => {}
            (_, None) => init.extend_from_slice(data),
            (other, Some(_)) => return Err(format!("unexpected box {:?} after the first fragment", String::from_utf8_lossy(other))),
        }
        pos += size;
    }
    Ok((init, segments))
}

/// The child boxes of a box payload: (type, payload).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        if size < 8 || size > data.len() {
            return None;
        }
        let (b, rest) = data.split_at(size);
        data = rest;
        Some((&b[4..8], &b[8..]))
    })
}

/// The number of samples (frames) of a `moof`+`mdat` segment: the sum of its `trun` counts.
pub fn segment_samples(segment: &[u8]) -> u64 {
    boxes(segment)
        .filter(|(kind, _)| *kind == b"moof")
        .flat_map(|(_, moof)| boxes(moof).filter(|(k, _)| *k == b"traf"))
        .flat_map(|(_, traf)| boxes(traf).filter(|(k, _)| *k == b"trun"))
        .filter_map(|(_, trun)| trun.get(4..8).and_then(|c| c.try_into().ok()).map(u32::from_be_bytes))
        .map(u64::from)
        .sum()
}

/// The RFC 6381 `codecs` string (`avc1.PPCCLL`) from the `avcC` box of an init segment.
pub fn avc_codecs(init: &[u8]) -> Option<String> {
    let at = init.windows(4).position(|w| w == b"avcC")?;
    let c = init.get(at + 5..at + 8)?;
    Some(format!("avc1.{:02x}{:02x}{:02x}", c[0], c[1], c[2]))
}

/// Encodes the first `frames` frames of `clip` (a `fps` clip) at every rung, one keyframe and one
/// fragment per second, into `dir`, and writes the MPD. mp4mux cuts a fragment at each keyframe
/// and, as a backstop, after 2 s: a 1 s limit cuts early when the clip's millisecond timestamps
/// add up to a little over 1 s (a fragment would then start without a keyframe). No videorate:
/// it adds frames at EOS. The cut is a pad probe, not `identity eos-after`: that one passes
/// `eos-after - 1` buffers, or `eos-after` depending on how the decoder's first push races
/// (a CI run got 143 of 144 frames once in many runs).
pub fn encode_ladder(clip: &Path, rungs: &[Rung], frames: u32, fps: u32, dir: &Path) -> Result<Ladder, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut desc = format!("filesrc location=\"{}\" ! decodebin ! identity name=cut ! videoconvert ! tee name=t ", clip.display());
    for (i, r) in rungs.iter().enumerate() {
        desc += &format!(
            "t. ! queue max-size-time=0 max-size-bytes=0 max-size-buffers=100 ! videoscale ! \
             video/x-raw,width={},height={},pixel-aspect-ratio=1/1 ! \
             x264enc bitrate={} speed-preset=ultrafast key-int-max={fps} bframes=0 option-string=scenecut=0 threads=1 ! \
             video/x-h264,profile=constrained-baseline ! h264parse ! mp4mux fragment-duration=2000 streamable=true ! \
             filesink location=\"{}\" ",
            r.width,
            r.height,
            r.bitrate / 1000,
            dir.join(format!("r{i}.mp4")).display()
        );
    }
    let pipeline = gst::parse::launch(&desc).map_err(|e| format!("encoder pipeline: {e}"))?;
    // Frame n at exactly n / fps: the manifest declares 1 s segments of `fps` frames, and a
    // player maps stream time to segments by that declaration (the source's own millisecond
    // timestamps, with their gaps, would make fragment k start away from k seconds). Frames
    // past `frames` are dropped with EOS returned upstream: the demuxer stops and sends EOS.
    let cut = pipeline.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("cut")).ok_or("no identity")?;
    let pad = cut.static_pad("src").ok_or("no identity src pad")?;
    let next = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= frames as u64 {
            info.flow_res = Err(gst::FlowError::Eos);
            return gst::PadProbeReturn::Drop;
        }
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::SECOND.mul_div_floor(n, fps as u64));
            b.set_duration(gst::ClockTime::SECOND.mul_div_floor(1, fps as u64));
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("encoder does not start: {e}"))?;
    let outcome = super::wait(&bus, Duration::from_secs(60));
    pipeline.set_state(gst::State::Null).map_err(|e| format!("encoder does not stop: {e}"))?;
    if !outcome.errors.is_empty() || !outcome.eos {
        return Err(format!("encoding the ladder failed: {:?}", outcome.errors));
    }

    let mut segments = Vec::new();
    let mut samples = Vec::new();
    let mut codecs = Vec::new();
    for i in 0..rungs.len() {
        let file = dir.join(format!("r{i}.mp4"));
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (init, segs) = split_fmp4(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        codecs.push(avc_codecs(&init).ok_or_else(|| format!("{}: no avcC box", file.display()))?);
        let rd = dir.join(format!("r{i}"));
        std::fs::create_dir_all(&rd).map_err(|e| e.to_string())?;
        std::fs::write(rd.join("init.mp4"), init).map_err(|e| e.to_string())?;
        for (k, s) in segs.iter().enumerate() {
            std::fs::write(rd.join(format!("seg-{}.m4s", k + 1)), s).map_err(|e| e.to_string())?;
        }
        segments.push(segs.len());
        samples.push(segs.iter().map(|s| segment_samples(s)).collect::<Vec<_>>());
    }
    let count = segments[0];
    if samples.iter().any(|s| *s != samples[0]) {
        return Err(format!("the rungs' fragments are not aligned (frames per fragment): {samples:?}"));
    }
    let frames_out: u64 = samples[0].iter().sum();
    if frames_out != frames as u64 {
        return Err(format!("{frames_out} frames encoded instead of {frames} (frames per fragment: {:?})", samples[0]));
    }
    let reps: String = rungs
        .iter()
        .zip(&codecs)
        .enumerate()
        .map(|(i, (r, c))| {
            format!(
                "   <Representation id=\"r{i}\" bandwidth=\"{}\" width=\"{}\" height=\"{}\" frameRate=\"{fps}\" codecs=\"{c}\"/>\n",
                r.bitrate, r.width, r.height
            )
        })
        .collect();
    let duration = frames as f64 / fps as f64;
    let mpd = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" \
         mediaPresentationDuration=\"PT{duration:.3}S\" minBufferTime=\"PT2S\">\n \
         <Period id=\"0\" start=\"PT0S\">\n  \
         <AdaptationSet contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n   \
         <SegmentTemplate timescale=\"1000\" duration=\"1000\" startNumber=\"1\" \
         initialization=\"$RepresentationID$/init.mp4\" media=\"$RepresentationID$/seg-$Number$.m4s\"/>\n\
         {reps}  </AdaptationSet>\n </Period>\n</MPD>\n"
    );
    std::fs::write(dir.join("manifest.mpd"), mpd).map_err(|e| e.to_string())?;
    Ok(Ladder { dir: dir.to_path_buf(), rungs: rungs.to_vec(), segments: count, frames: frames as u64, fps })
}

/// A loopback HTTP/1.1 file server (GET and HEAD, keep-alive) on 127.0.0.1 and a free port.
/// It records every request path, in order. Stopped (and its threads joined) on drop.
pub struct Server {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(root: &Path) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (root, s, r) = (root.to_path_buf(), stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (root, s, r) = (root.clone(), s.clone(), r.clone());
                        connections.push(std::thread::spawn(move || serve(conn, &root, &s, &r)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in connections {
                let _ = c.join();
            }
        });
        Ok(Self { port, requests, stop, thread: Some(thread) })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    /// Every request path so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many times each path was requested.
    pub fn request_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.requests() {
            *counts.entry(r).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, root: &Path, stop: &AtomicBool, requests: &Mutex<Vec<String>>) {
    let _ = conn.set_nodelay(true);
    // Short reads so that the thread notices `stop` while a client keeps the connection open.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(read_half) = conn.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut out = conn;
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if !line.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let request = std::mem::take(&mut line);
        let mut parts = request.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/").to_string());
        // The headers, up to the empty line (none of them changes the answer).
        let mut header = String::new();
        loop {
            header.clear();
            match reader.read_line(&mut header) {
                Ok(0) => return,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let rel = target.trim_start_matches('/').split('?').next().unwrap_or("").to_string();
        if let Ok(mut r) = requests.lock() {
            r.push(rel.clone());
        }
        let body = if rel.split('/').any(|c| c == "..") { None } else { std::fs::read(root.join(&rel)).ok() };
        let Some(body) = body else {
            if out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err() {
                return;
            }
            continue;
        };
        let kind = if rel.ends_with(".mpd") { "application/dash+xml" } else { "video/mp4" };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n", body.len());
        let sent = out.write_all(head.as_bytes()).and_then(|()| if method == "HEAD" { Ok(()) } else { out.write_all(&body) });
        if sent.and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn fragments_split_into_init_and_one_segment_each() {
        let init = [mp4_box(b"ftyp", b"isom"), mp4_box(b"moov", &[1, 2, 3])].concat();
        let file =
            [init.clone(), mp4_box(b"moof", &[4]), mp4_box(b"mdat", &[5, 6]), mp4_box(b"moof", &[7]), mp4_box(b"mdat", &[8]), mp4_box(b"mfra", &[9])].concat();
        let (got_init, segs) = split_fmp4(&file).expect("splits");
        assert_eq!(got_init, init);
        assert_eq!(segs, vec![[mp4_box(b"moof", &[4]), mp4_box(b"mdat", &[5, 6])].concat(), [mp4_box(b"moof", &[7]), mp4_box(b"mdat", &[8])].concat()]);
    }

    #[test]
    fn a_truncated_file_is_an_error() {
        let mut file = mp4_box(b"moof", &[1, 2, 3]);
        file.pop();
        assert!(split_fmp4(&file).is_err());
        assert!(split_fmp4(&[0, 0, 0, 4, b'f', b't', b'y', b'p']).is_err(), "a box smaller than its header");
    }

    #[test]
    fn codecs_come_from_avcc() {
        let init = mp4_box(b"avcC", &[1, 0x42, 0xc0, 0x1e, 0xff]);
        assert_eq!(avc_codecs(&init).as_deref(), Some("avc1.42c01e"));
        assert_eq!(avc_codecs(b"nothing"), None);
    }
}
