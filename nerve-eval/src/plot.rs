//! Quality against bitrate, one panel per content type, one line per upscaler (PNG).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::ladder::Row;

const FONTS: [&str; 2] = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

/// Registers a system font for labels; without one the plot is drawn unlabelled.
fn register_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

pub fn quality_vs_bitrate(rows: &[Row], metric: &str, path: &Path) -> Result<()> {
    let labelled = register_font();
    let value = |r: &Row| match metric {
        "psnr_y" => r.psnr_y,
        "vmaf_neg" => r.vmaf_neg,
        _ => r.vmaf,
    };
    let mut contents: Vec<&str> = rows.iter().map(|r| r.content.as_str()).collect();
    contents.sort();
    contents.dedup();
    let mut upscalers: Vec<&str> = rows.iter().map(|r| r.upscaler.as_str()).collect();
    upscalers.sort();
    upscalers.dedup();
    let cols = contents.len().clamp(1, 3);
    let rows_n = contents.len().div_ceil(cols).max(1);
    let root = BitMapBackend::new(path, (420 * cols as u32, 320 * rows_n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((rows_n, cols));
    for (panel, content) in panels.iter().zip(&contents) {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.content == *content).collect();
        let (x0, x1) = mine.iter().fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(r.kbps), b.max(r.kbps)));
        let (y0, y1) = mine.iter().fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(value(r)), b.max(value(r))));
        let pad = ((y1 - y0) * 0.1).max(0.5);
        let lines: Vec<(&str, Vec<(f64, f64)>)> = upscalers
            .iter()
            .map(|up| {
                let mut pts: Vec<(f64, f64)> = mine.iter().filter(|r| r.upscaler == *up).map(|r| (r.kbps, value(r))).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (*up, pts)
            })
            .collect();
        let frame = Panel {
            caption: format!("{content}: {metric} vs kbit/s"),
            x: (x0 * 0.9)..(x1 * 1.1),
            y: (y0 - pad)..(y1 + pad),
            legend: SeriesLabelPosition::LowerRight,
        };
        draw_lines(panel, &frame, &lines, labelled)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// `nerve-eval sr`'s quality/speed frontier: each nervesr model's gain over bicubic against its
/// frames per second in the same run, one panel per measure, one colour per CRF, points labelled
/// with the model.
pub fn frontier(summary: &[crate::ladder::Summary], path: &Path) -> Result<()> {
    let labelled = register_font();
    let models: Vec<&crate::ladder::Summary> = summary.iter().filter(|s| s.upscaler.starts_with("nervesr")).collect();
    if models.is_empty() {
        return Err(anyhow!("no nervesr rows to plot a frontier of"));
    }
    let mut crfs: Vec<u32> = models.iter().map(|s| s.crf).collect();
    crfs.sort();
    crfs.dedup();
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 2));
    let measures: [Measure<crate::ladder::Summary>; 2] = [("dPSNR-Y (dB)", |s| s.d_psnr_y), ("dVMAF", |s| s.d_vmaf)];
    let (x0, x1) = models.iter().fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(s.fps), b.max(s.fps)));
    for (panel, (name, value)) in panels.iter().zip(measures) {
        let (y0, y1) = models.iter().fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(value(s)), b.max(value(s))));
        let pad = ((y1 - y0) * 0.15).max(0.2);
        let mut builder = ChartBuilder::on(panel);
        builder.margin(12);
        if labelled {
            builder.caption(format!("{name} over bicubic vs nervesr fps"), ("sans-serif", 16)).x_label_area_size(30).y_label_area_size(40);
        }
        let mut chart = builder
            .build_cartesian_2d((x0 * 0.85)..(x1 * 1.25), (y0 - pad)..(y1 + pad))
            .map_err(|e| anyhow!("{e}"))?;
        if labelled {
            chart.configure_mesh().draw().map_err(|e| anyhow!("{e}"))?;
        }
        for (i, crf) in crfs.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let pts: Vec<&&crate::ladder::Summary> = models.iter().filter(|s| s.crf == *crf).collect();
            let series = chart
                .draw_series(pts.iter().map(|s| Circle::new((s.fps, value(s)), 4, colour.filled())))
                .map_err(|e| anyhow!("{e}"))?;
            if labelled {
                series.label(format!("CRF {crf}")).legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
                let names = pts.iter().map(|s| {
                    let short = s.upscaler.trim_start_matches("nervesr:").trim_start_matches("nerve-sr-").to_string();
                    Text::new(short, (s.fps, value(s)), ("sans-serif", 11))
                });
                chart.draw_series(names).map_err(|e| anyhow!("{e}"))?;
            }
        }
        if labelled {
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// A plotted measure: its axis label and how to read it from a summary row.
type Measure<S> = (&'static str, fn(&S) -> f64);

/// `nerve-eval recover`: PSNR-Y and VMAF against the packet-loss rate, one line per method.
pub fn quality_vs_loss(summary: &[crate::recover::Summary], path: &Path) -> Result<()> {
    let labelled = register_font();
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 2));
    let metrics: [Measure<crate::recover::Summary>; 2] = [("PSNR-Y (dB)", |s| s.psnr_y), ("VMAF", |s| s.vmaf)];
    let mut methods: Vec<&str> = Vec::new();
    for s in summary {
        if !methods.contains(&s.method.as_str()) {
            methods.push(&s.method);
        }
    }
    for (panel, (name, value)) in panels.iter().zip(metrics) {
        let finite: Vec<f64> = summary.iter().map(value).filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            continue;
        }
        let (y0, y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let x1 = summary.iter().map(|s| s.loss * 100.0).fold(1.0, f64::max);
        let pad = ((y1 - y0) * 0.1).max(0.5);
        // Room above the lines for the legend (one row per method), so that it covers none of them.
        let top = pad + (y1 - y0).max(1.0) * 0.065 * methods.len() as f64;
        let lines: Vec<(&str, Vec<(f64, f64)>)> = methods
            .iter()
            .map(|m| {
                let pts = summary.iter().filter(|s| s.method == *m).map(|s| (s.loss * 100.0, value(s))).filter(|p| p.1.is_finite());
                (*m, pts.collect())
            })
            .collect();
        let frame = Panel {
            caption: format!("{name} vs packet loss (%)"),
            x: 0.0..x1 * 1.05,
            y: (y0 - pad)..(y1 + top),
            legend: SeriesLabelPosition::UpperRight,
        };
        draw_lines(panel, &frame, &lines, labelled)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// One chart's frame: caption, axis ranges and where its legend goes.
struct Panel {
    caption: String,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    legend: SeriesLabelPosition,
}

/// Draws labelled lines with point markers into one panel (captions, mesh and legend only when a
/// font is available).
fn draw_lines(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    frame: &Panel,
    lines: &[(&str, Vec<(f64, f64)>)],
    labelled: bool,
) -> Result<()> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if labelled {
        builder.caption(&frame.caption, ("sans-serif", 16)).x_label_area_size(30).y_label_area_size(40);
    }
    let mut chart = builder.build_cartesian_2d(frame.x.clone(), frame.y.clone()).map_err(|e| anyhow!("{e}"))?;
    if labelled {
        chart.configure_mesh().draw().map_err(|e| anyhow!("{e}"))?;
    }
    for (i, (label, pts)) in lines.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let series = chart.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2))).map_err(|e| anyhow!("{e}"))?;
        if labelled {
            series.label(*label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled()))).map_err(|e| anyhow!("{e}"))?;
    }
    if labelled {
        legend(&mut chart, frame.legend.clone())?;
    }
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2df64>;
type Cartesian2df64 = Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;

/// The series legend, boxed, at `position`.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| anyhow!("{e}"))
}

/// Tile size of [`loss_examples`] (each frame fitted inside, aspect kept).
const TILE: (u32, u32) = (240, 150);

/// Heights of [`loss_examples`]' column header (two lines) and of each row's label.
const HEAD_SIDE: (u32, u32) = (40, 22);

/// `nerve-eval recover`: one row per run (clip), the decoder's worst frame as the original and
/// each method show it (luma), so the damage and the repair can be seen, not only scored.
pub fn loss_examples(examples: &[crate::recover::Example], path: &Path) -> Result<()> {
    let labelled = register_font();
    let columns = std::iter::once("original").chain(crate::recover::METHODS).collect::<Vec<_>>();
    let (head, side) = if labelled { HEAD_SIDE } else { (0, 0) };
    let width = TILE.0 * columns.len() as u32;
    let height = head + (TILE.1 + side) * examples.len() as u32;
    let root = BitMapBackend::new(path, (width, height.max(1))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let text = ("sans-serif", 14).into_font();
    if labelled {
        for (c, name) in columns.iter().enumerate() {
            // "nervesalvage + nerverecover low-latency" is wider than a tile: one line per part.
            let parts: Vec<&str> = name.split(" + ").collect();
            for (k, part) in parts.iter().enumerate() {
                let line = if k + 1 < parts.len() { format!("{part} +") } else { part.to_string() };
                root.draw_text(&line, &text.color(&BLACK), (c as i32 * TILE.0 as i32 + 4, 4 + 16 * k as i32)).map_err(|e| anyhow!("{e}"))?;
            }
        }
    }
    for (r, ex) in examples.iter().enumerate() {
        let top = (head + r as u32 * (TILE.1 + side)) as i32;
        if labelled {
            let label = format!("{}  {:.0}% loss, seed {}, frame {}", ex.clip, ex.loss * 100.0, ex.seed, ex.frame);
            root.draw_text(&label, &text.color(&BLACK), (4, top + 3)).map_err(|e| anyhow!("{e}"))?;
        }
        for (c, frame) in ex.views.iter().enumerate() {
            let scale = (frame.width as f64 / TILE.0 as f64).max(frame.height as f64 / TILE.1 as f64);
            let (tw, th) = ((frame.width as f64 / scale) as i32, (frame.height as f64 / scale) as i32);
            for y in 0..th {
                let sy = ((y as f64 * scale) as usize).min(frame.height - 1);
                for x in 0..tw {
                    let sx = ((x as f64 * scale) as usize).min(frame.width - 1);
                    let v = frame.y()[sy * frame.width + sx];
                    root.draw_pixel((c as i32 * TILE.0 as i32 + x, top + side as i32 + y), &RGBColor(v, v, v)).map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    drop(root);
    // Everything drawn is grey (luma tiles, black text): one channel instead of plotters' three
    // keeps the sheet small (seven clips' rows were 2.3 MiB as RGB).
    to_grayscale(path)
}

/// Rewrites an RGB PNG whose pixels are all grey as an 8-bit greyscale PNG.
fn to_grayscale(path: &Path) -> Result<()> {
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?)).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let samples = info.color_type.samples();
    let grey: Vec<u8> = buf[..info.buffer_size()].chunks(samples).map(|p| p[0]).collect();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(std::fs::File::create(path)?), info.width, info.height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    encoder.write_header()?.write_image_data(&grey)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::recover::{Example, METHODS};

    #[test]
    fn loss_examples_draws_one_tile_per_view_and_row_per_run() {
        let flat = |w: usize, h: usize, y: u8| {
            let mut f = Frame::new(w, h);
            f.y_mut().fill(y);
            f
        };
        let example = |w, h| Example { clip: "c".into(), loss: 0.05, seed: 1, frame: 3, views: (0..=METHODS.len() as u8).map(|i| flat(w, h, 20 + 25 * i)).collect() };
        let path = std::env::temp_dir().join(format!("nerve-loss-examples-{}.png", std::process::id()));
        loss_examples(&[example(480, 300), example(160, 200)], &path).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        std::fs::remove_file(&path).ok();
        let labelled = register_font();
        let (head, side) = if labelled { HEAD_SIDE } else { (0, 0) };
        assert_eq!(info.width, TILE.0 * (METHODS.len() as u32 + 1));
        assert_eq!(info.height, head + 2 * (TILE.1 + side));
        let px = |x: u32, y: u32| buf[(y * info.width + x) as usize * info.color_type.samples()];
        // the first run's tiles: each view's luma, left to right
        let mid = head + side + TILE.1 / 2;
        for c in 0..=METHODS.len() as u32 {
            assert_eq!(px(c * TILE.0 + TILE.0 / 2, mid), 20 + 25 * c as u8, "column {c}");
        }
        // the second run's frame is narrower than its tile: fitted by height, white beside it
        let mid2 = head + 2 * side + TILE.1 + TILE.1 / 2;
        assert_eq!(px(TILE.0 / 4, mid2), 20);
        assert_eq!(px(TILE.0 - 2, mid2), 255);
    }
}
