//! The bitrate ladder of a stream, read from the manifest bytes that flow into the demuxer:
//! DASH MPD (`<Representation bandwidth= width= height=>` of the video adaptation sets) and HLS
//! master playlists (`#EXT-X-STREAM-INF:BANDWIDTH=..,RESOLUTION=WxH`). Plain Rust, no gst: a
//! small attribute scanner, not an XML parser (enough for the ladder; the demuxer parses the rest).

/// One rung as the manifest declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rung {
    /// Declared bandwidth, bit/s (what the demuxer compares with `connection-bitrate`).
    pub bandwidth: u64,
    pub width: u32,
    pub height: u32,
}

/// What the element needs from a manifest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestInfo {
    /// Video rungs, lowest bandwidth first; bandwidths positive and distinct.
    pub rungs: Vec<Rung>,
    /// Presentation duration, seconds, finite (0 if live or unknown).
    pub duration_s: f64,
    /// Segment duration, seconds, finite and at most [`MAX_SEGMENT_S`] (0 if unknown).
    pub segment_s: f64,
}

impl ManifestInfo {
    /// Number of segments, if both durations are known.
    pub fn segments(&self) -> Option<usize> {
        (self.duration_s > 0.0 && self.segment_s > 0.0).then(|| (self.duration_s / self.segment_s).ceil() as usize)
    }
}

/// Longest segment duration taken from a manifest, seconds; a longer (or infinite, NaN,
/// negative) one counts as unknown. The controller turns it into a `Duration`, which has no
/// infinity.
pub const MAX_SEGMENT_S: f64 = 86_400.0;

/// Parse a DASH MPD or an HLS master playlist; `None` if it is neither or has no video rung.
/// A rung of 0 bit/s is left out: set as the demuxer's `connection-bitrate` it would mean "no
/// limit".
pub fn parse(text: &str) -> Option<ManifestInfo> {
    let mut info = if text.contains("<MPD") {
        parse_mpd(text)
    } else if text.trim_start().starts_with("#EXTM3U") {
        parse_hls(text)
    } else {
        return None;
    };
    info.rungs.retain(|r| r.bandwidth > 0);
    info.rungs.sort_by_key(|r| r.bandwidth);
    info.rungs.dedup_by_key(|r| r.bandwidth);
    (!info.rungs.is_empty()).then_some(info)
}

/// Value of `name="..."` (or `'...'`) inside one tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = tag[from..].find(name) {
        let start = from + pos;
        let before_ok = start == 0 || tag[..start].ends_with(|c: char| c.is_whitespace());
        let rest = tag[start + name.len()..].trim_start();
        if before_ok
            && let Some(rest) = rest.strip_prefix('=') {
                let rest = rest.trim_start();
                let quote = rest.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let body = &rest[1..];
                    return body.find(quote).map(|end| &body[..end]);
                }
            }
        from = start + name.len();
    }
    None
}

/// The opening tags named `name` (`<name ...>`), their attribute text.
fn tags<'a>(text: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(&open) {
        let start = from + pos;
        let after = start + open.len();
        let boundary = text[after..].chars().next().is_some_and(|c| c.is_whitespace() || c == '>' || c == '/');
        if let Some(end) = text[after..].find('>') {
            if boundary {
                out.push((start, &text[after..after + end]));
            }
            from = after + end;
        } else {
            break;
        }
    }
    out
}

/// ISO 8601 duration as MPDs write it (`PT1H2M3.5S`, `P1DT...`), seconds.
pub fn iso_duration(s: &str) -> Option<f64> {
    let s = s.strip_prefix('P')?;
    let (days, time) = match s.split_once('T') {
        Some((d, t)) => (d, t),
        None => (s, ""),
    };
    let mut total = 0.0;
    if let Some(d) = days.strip_suffix('D') {
        total += d.parse::<f64>().ok()? * 86400.0;
    } else if !days.is_empty() {
        return None;
    }
    let mut num = String::new();
    for c in time.chars() {
        match c {
            'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                total += v * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => num.push(c),
        }
    }
    num.is_empty().then_some(total)
}

fn parse_mpd(text: &str) -> ManifestInfo {
    let duration_s = tags(text, "MPD")
        .first()
        .and_then(|(_, t)| attr(t, "mediaPresentationDuration"))
        .and_then(iso_duration)
        .filter(|d| d.is_finite() && *d >= 0.0)
        .unwrap_or(0.0);
    let segment_s = tags(text, "SegmentTemplate")
        .iter()
        .find_map(|(_, t)| {
            let d: f64 = attr(t, "duration")?.parse().ok()?;
            let ts: f64 = attr(t, "timescale").and_then(|v| v.parse().ok()).unwrap_or(1.0);
            let s = d / ts;
            (d > 0.0 && ts > 0.0 && s.is_finite() && s <= MAX_SEGMENT_S).then_some(s)
        })
        .unwrap_or(0.0);
    // Video adaptation sets: by contentType/mimeType, or by their representations' sizes.
    let sets = tags(text, "AdaptationSet");
    let set_is_video = |pos: usize| -> Option<bool> {
        let (_, t) = sets.iter().rev().find(|(p, _)| *p < pos)?;
        let kind = attr(t, "contentType").or_else(|| attr(t, "mimeType"))?;
        Some(kind.starts_with("video"))
    };
    let mut rungs = Vec::new();
    for (pos, t) in tags(text, "Representation") {
        let Some(bandwidth) = attr(t, "bandwidth").and_then(|v| v.parse().ok()) else { continue };
        let width = attr(t, "width").and_then(|v| v.parse().ok()).unwrap_or(0);
        let height = attr(t, "height").and_then(|v| v.parse().ok()).unwrap_or(0);
        let video = match attr(t, "mimeType") {
            Some(m) => m.starts_with("video"),
            None => set_is_video(pos).unwrap_or(height > 0),
        };
        if video {
            rungs.push(Rung { bandwidth, width, height });
        }
    }
    ManifestInfo { rungs, duration_s, segment_s }
}

fn parse_hls(text: &str) -> ManifestInfo {
    let mut rungs = Vec::new();
    for line in text.lines() {
        let Some(attrs) = line.trim().strip_prefix("#EXT-X-STREAM-INF:") else { continue };
        let mut bandwidth = None;
        let (mut width, mut height) = (0, 0);
        // CODECS="a,b" holds commas: split outside quotes
        let mut quoted = false;
        let mut fields = Vec::new();
        let mut cur = String::new();
        for c in attrs.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        for f in fields {
            match f.split_once('=') {
                Some(("BANDWIDTH", v)) => bandwidth = v.parse().ok(),
                Some(("RESOLUTION", v)) => {
                    if let Some((w, h)) = v.split_once('x') {
                        width = w.parse().unwrap_or(0);
                        height = h.parse().unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
        if let Some(bandwidth) = bandwidth {
            rungs.push(Rung { bandwidth, width, height });
        }
    }
    ManifestInfo { rungs, duration_s: 0.0, segment_s: 0.0 }
}

/// Parse the `ladder` property: `bandwidth[:height]` items separated by commas (bit/s). The
/// rungs come back sorted; a bandwidth of 0 or one given twice is an error.
pub fn parse_ladder(s: &str) -> Result<Vec<Rung>, String> {
    let mut rungs = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (b, h) = match item.split_once(':') {
            Some((b, h)) => (b, Some(h)),
            None => (item, None),
        };
        let bandwidth = b.trim().parse().ok().filter(|&b: &u64| b > 0).ok_or_else(|| format!("bad bandwidth {b:?} in ladder {s:?}"))?;
        let height = match h {
            Some(h) => h.trim().parse().map_err(|_| format!("bad height {h:?} in ladder {s:?}"))?,
            None => 0,
        };
        rungs.push(Rung { bandwidth, width: 0, height });
    }
    rungs.sort_by_key(|r| r.bandwidth);
    if let Some(w) = rungs.windows(2).find(|w| w[0].bandwidth == w[1].bandwidth) {
        return Err(format!("bandwidth {} given twice in ladder {s:?}", w[0].bandwidth));
    }
    Ok(rungs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPD: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT30.0S" minBufferTime="PT2S">
 <Period>
  <AdaptationSet contentType="video" segmentAlignment="true">
   <SegmentTemplate timescale="1000" duration="2000" media="$RepresentationID$/$Number$.m4s" initialization="$RepresentationID$/init.mp4"/>
   <Representation id="r2" bandwidth="1200000" width="854" height="480" codecs="avc1.64001e"/>
   <Representation id="r0" bandwidth="300000" width="320" height="180"/>
  </AdaptationSet>
  <AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000"/></AdaptationSet>
 </Period>
</MPD>"#;

    #[test]
    fn mpd_video_rungs_sorted_audio_left_out() {
        let m = parse(MPD).unwrap(); // ok: test code
        assert_eq!(m.rungs, vec![Rung { bandwidth: 300_000, width: 320, height: 180 }, Rung { bandwidth: 1_200_000, width: 854, height: 480 }]);
        assert_eq!(m.duration_s, 30.0);
        assert_eq!(m.segment_s, 2.0);
        assert_eq!(m.segments(), Some(15));
    }

    #[test]
    fn hls_master() {
        let m = parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=640x360\nlow.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2400000,RESOLUTION=1280x720\nhi.m3u8\n").unwrap(); // ok: test code
        assert_eq!(m.rungs.len(), 2);
        assert_eq!(m.rungs[0], Rung { bandwidth: 800_000, width: 640, height: 360 });
        assert_eq!(m.rungs[1].height, 720);
    }

    #[test]
    fn not_a_manifest() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("<MPD></MPD>"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(iso_duration("PT1H2M3.5S"), Some(3723.5));
        assert_eq!(iso_duration("P1DT1S"), Some(86401.0));
        assert_eq!(iso_duration("PT"), Some(0.0));
        assert_eq!(iso_duration("1S"), None);
    }

    #[test]
    fn ladder_property() {
        let l = parse_ladder("800000:360, 300000:180,2400000").unwrap(); // ok: test code
        assert_eq!(l.iter().map(|r| r.bandwidth).collect::<Vec<_>>(), vec![300_000, 800_000, 2_400_000]);
        assert_eq!(l[0].height, 180);
        assert_eq!(l[2].height, 0);
        assert!(parse_ladder("fast").is_err());
        assert!(parse_ladder("").unwrap().is_empty()); // ok: test code
    }
}
