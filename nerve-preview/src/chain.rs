//! The preview chain: what runs between a live input and the viewer, as a `gst-launch` description.
//!
//! `uridecodebin` (video only) -> `videoconvert` -> [`nerverecover`] -> `nervesr` -> `videoconvert`
//! -> `x264enc tune=zerolatency` -> `rtph264pay`. The server and the report build the very same
//! description, so what the report measures is what a viewer gets.

use std::fmt::Write as _;

/// Element names in the description, for probes and stats.
pub const ENTER: &str = "enter";
pub const RECOVER: &str = "recover";
pub const SR: &str = "sr";
pub const ENCODER: &str = "enc";
/// The payloader: `pay0` is the name the RTSP server looks for.
pub const PAYLOADER: &str = "pay0";

/// The preview's x2 model unless one is named: the int8 folded temporal model keeps two 360p -> 720p
/// streams in real time on a 2-core machine where `nervesr`'s default x2 model keeps none
/// (docs/preview.md), and on clips from sources no training used it gains more PSNR-Y than that
/// default (+0.83 against +0.73 dB at CRF 23) for 0.4 VMAF less (docs/models.md). A preview has a
/// frame's time per frame; a player with a phone's NPU can afford the default.
pub const PREVIEW_X2_MODEL: &str = "nerve-sr-x2-s2d-temporal-int8";

/// Whether frame recovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Recover {
    /// On network inputs (RTSP, SRT, UDP/RTP), where packets get lost; off for files and HTTP.
    #[default]
    Auto,
    On,
    Off,
}

/// Everything that shapes the preview chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PreviewConfig {
    /// The live input: a `file://`, `rtsp://`, `srt://`, `udp://` or `http(s)://` URI.
    pub input: String,
    /// nervesr's `scale` (2: 360p -> 720p).
    pub scale: u32,
    /// nervesr's `model` (empty: [`PREVIEW_X2_MODEL`] at scale 2, `nervesr`'s default of the
    /// scale otherwise).
    pub model: String,
    pub recover: Recover,
    /// x264enc's target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// A keyframe at least every this many frames, so a viewer joining mid-stream starts fast.
    pub key_int: u32,
    /// ONNX Runtime intra-op threads for nervesr (0: one per physical core).
    pub threads: u32,
}

impl PreviewConfig {
    pub fn new(input: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            scale: 2,
            model: String::new(),
            recover: Recover::Auto,
            bitrate_kbps: 2500,
            key_int: 30,
            threads: 0,
        }
    }

    /// The input's URI scheme, checked against the inputs the preview knows how to take.
    pub fn scheme(&self) -> Result<&str, String> {
        let (scheme, rest) = self.input.split_once("://").ok_or_else(|| {
            format!("input '{}' is not a URI (file:///path, rtsp://host/path, srt://host:port, udp://host:port)", self.input)
        })?;
        if rest.is_empty() {
            return Err(format!("input '{}' has nothing after {scheme}://", self.input));
        }
        match scheme {
            "file" | "rtsp" | "rtsps" | "rtspt" | "srt" | "udp" | "rtp" | "http" | "https" => Ok(scheme),
            other => Err(format!(
                "input scheme '{other}' is not supported (file, rtsp, srt, udp, rtp, http, https)"
            )),
        }
    }

    /// Whether packets can be lost on the way in, so lost and damaged frames are to be expected.
    pub fn lossy(&self) -> Result<bool, String> {
        Ok(matches!(self.scheme()?, "rtsp" | "rtsps" | "rtspt" | "srt" | "udp" | "rtp"))
    }

    pub fn recovers(&self) -> Result<bool, String> {
        Ok(match self.recover {
            Recover::Auto => self.lossy()?,
            Recover::On => true,
            Recover::Off => false,
        })
    }

    /// The chain up to and including the payloader, as a `gst-launch` description.
    pub fn describe(&self) -> Result<String, String> {
        self.scheme()?;
        // The URI goes inside double quotes; one with a quote or backslash could break out.
        if self.input.contains(['"', '\\']) {
            return Err(format!("input '{}' contains a quote or backslash", self.input));
        }
        if !(1..=4).contains(&self.scale) {
            return Err(format!("scale {} is outside 1..=4", self.scale));
        }
        if self.model.contains(['"', '\\']) {
            return Err(format!("model '{}' contains a quote or backslash", self.model));
        }
        let mut d = String::new();
        // Video only: audio is not decoded into a pad nobody links (caps + expose-all-streams).
        let _ = write!(d, "uridecodebin uri=\"{}\" caps=\"video/x-raw(ANY)\" expose-all-streams=false ! ", self.input);
        let _ = write!(d, "videoconvert name={ENTER} ! video/x-raw,format=I420 ! ");
        if self.recovers()? {
            // low-latency: repairs from past frames only, so it adds no frame of delay.
            let _ = write!(d, "nerverecover name={RECOVER} mode=low-latency ! ");
        }
        let _ = write!(d, "nervesr name={SR} scale={} threads={} stats-interval=0", self.scale, self.threads);
        let model = if self.model.is_empty() && self.scale == 2 { PREVIEW_X2_MODEL } else { self.model.as_str() };
        if !model.is_empty() {
            let _ = write!(d, " model=\"{model}\"");
        }
        // zerolatency: no lookahead, no B-frames, sliced threads: a frame in, its packets out.
        let _ = write!(
            d,
            " ! videoconvert ! x264enc name={ENCODER} tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={} \
             ! video/x-h264,profile=constrained-baseline ! rtph264pay name={PAYLOADER} pt=96 config-interval=-1",
            self.bitrate_kbps, self.key_int
        );
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_follows_the_input_when_auto() {
        assert!(!PreviewConfig::new("file:///a.mp4").recovers().unwrap());
        assert!(PreviewConfig::new("rtsp://127.0.0.1:8554/cam").recovers().unwrap());
        assert!(PreviewConfig::new("srt://127.0.0.1:7001").recovers().unwrap());
        assert!(PreviewConfig::new("udp://127.0.0.1:5000").recovers().unwrap());
        let mut forced = PreviewConfig::new("file:///a.mp4");
        forced.recover = Recover::On;
        assert!(forced.describe().unwrap().contains("nerverecover"));
        let mut off = PreviewConfig::new("udp://127.0.0.1:5000");
        off.recover = Recover::Off;
        assert!(!off.describe().unwrap().contains("nerverecover"));
    }

    #[test]
    fn bad_inputs_are_refused_with_the_reason() {
        let e = PreviewConfig::new("/tmp/a.mp4").describe().unwrap_err();
        assert!(e.contains("not a URI"), "{e}");
        let e = PreviewConfig::new("ftp://host/a.mp4").describe().unwrap_err();
        assert!(e.contains("'ftp' is not supported"), "{e}");
        let e = PreviewConfig::new("file:///a\" ! filesink location=\"/etc/x").describe().unwrap_err();
        assert!(e.contains("quote"), "{e}");
        let mut big = PreviewConfig::new("file:///a.mp4");
        big.scale = 8;
        assert!(big.describe().unwrap_err().contains("scale 8"));
    }

    #[test]
    fn the_description_names_what_probes_and_the_server_look_for() {
        let d = PreviewConfig::new("file:///a.mp4").describe().unwrap();
        for name in [ENTER, SR, ENCODER, PAYLOADER] {
            assert!(d.contains(&format!("name={name}")), "{name} in {d}");
        }
        assert!(d.contains("tune=zerolatency"), "{d}");
    }

    #[test]
    fn the_preview_runs_its_real_time_model_unless_told_otherwise() {
        let d = PreviewConfig::new("file:///a.mp4").describe().unwrap();
        assert!(d.contains(&format!("model=\"{PREVIEW_X2_MODEL}\"")), "{d}");
        let named = PreviewConfig { model: "nerve-sr-x2".into(), ..PreviewConfig::new("file:///a.mp4") };
        assert!(named.describe().unwrap().contains("model=\"nerve-sr-x2\""));
        let x4 = PreviewConfig { scale: 4, ..PreviewConfig::new("file:///a.mp4") };
        assert!(!x4.describe().unwrap().contains("model="), "x4: nervesr's own default");
    }
}
