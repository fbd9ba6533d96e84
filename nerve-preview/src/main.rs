//! `nerve-preview serve`: the preview over RTSP; `nerve-preview report`: what it costs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nerve_preview::{PreviewConfig, PreviewServer, Recover, report};

#[derive(Parser)]
#[command(version, about = "Enhanced low-latency transcoding preview (nervesr, nerverecover) served over RTSP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Chain {
    /// nervesr's scale (2: 360p in, 720p out)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
    scale: u32,
    /// nervesr's model (a manifest name; empty: nerve-sr-x2-s2d-temporal-int8 at scale 2, the fastest that keeps quality, else nervesr's default of the scale)
    #[arg(long, default_value = "")]
    model: String,
    /// Frame recovery: auto runs it on network inputs (rtsp, srt, udp, rtp)
    #[arg(long, value_enum, default_value_t = Recover::Auto)]
    recover: Recover,
    /// x264enc bitrate in kbit/s
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u32).range(64..=100_000))]
    bitrate: u32,
    /// ONNX Runtime intra-op threads for nervesr (0: one per physical core)
    #[arg(long, default_value_t = 0)]
    threads: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the preview of INPUT at rtsp://ADDRESS:PORT/MOUNT until interrupted
    Serve {
        /// The live input: file:///..., rtsp://..., srt://..., udp://...
        input: String,
        /// Address to listen on (loopback by default: a media server in front relays it)
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
        /// Port (0: any free port, printed at start)
        #[arg(long, default_value_t = 8554)]
        port: u16,
        #[arg(long, default_value = "/preview")]
        mount: String,
        #[command(flatten)]
        chain: Chain,
    },
    /// Measure added latency, CPU per stream and the number of real-time streams; write JSON
    Report {
        /// The clip the preview streams are made from (decoded, scaled to --height, x264-encoded)
        clip: PathBuf,
        /// Input height of the streams (360: 640x360 -> 1280x720 at scale 2)
        #[arg(long, default_value_t = 360)]
        height: u32,
        /// Seconds of video per measurement
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Try 1..=N concurrent streams (stops at the first count that does not keep up)
        #[arg(long, default_value_t = 4)]
        max_streams: u32,
        #[arg(long, default_value = "nerve-preview/results/preview.json")]
        out: PathBuf,
        #[command(flatten)]
        chain: Chain,
    },
}

fn config(input: String, c: &Chain) -> PreviewConfig {
    let mut config = PreviewConfig::new(input);
    config.scale = c.scale;
    config.model = c.model.clone();
    config.recover = c.recover;
    config.bitrate_kbps = c.bitrate;
    config.threads = c.threads;
    config
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { input, address, port, mount, chain } => {
            let server = PreviewServer::start(&config(input, &chain), &address, port, &mount)?;
            println!("serving {}", server.url().replace("127.0.0.1", &address));
            server.wait();
        }
        Command::Report { clip, height, seconds, max_streams, out, chain } => {
            let template = config(String::new(), &chain);
            let r = report::run(&report::Plan { clip, height, seconds, max_streams, template }, &mut std::io::stderr())?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&r)? + "\n")?;
            println!("{}", report::summary(&r));
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
