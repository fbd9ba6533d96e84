//! CDF plots of per-trace QoE as PNG (plotters' bitmap backend). Text needs a font: we load a
//! TrueType file from the usual system places at run time (nothing links fontconfig); without
//! one the plot is drawn with no labels.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

fn have_font() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                // plotters keeps registered fonts for the whole process: leak once.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One CDF line per policy: `series = [(name, per-trace values)]`.
pub fn cdf_png(path: &Path, title: &str, x_label: &str, series: &[(String, Vec<f64>)]) -> Result<(), String> {
    let text = have_font();
    let all: Vec<f64> = series.iter().flat_map(|s| s.1.iter().copied()).filter(|x| x.is_finite()).collect();
    if all.is_empty() {
        return Err("nothing to plot".into());
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut b = ChartBuilder::on(&root);
    b.margin(15).x_label_area_size(if text { 45 } else { 10 }).y_label_area_size(if text { 55 } else { 10 });
    if text {
        b.caption(title, ("sans-serif", 22));
    }
    let mut chart = b.build_cartesian_2d((lo - pad)..(hi + pad), 0.0..1.0).map_err(|e| e.to_string())?;
    if text {
        chart.configure_mesh().x_desc(x_label).y_desc("CDF over traces").draw().map_err(|e| e.to_string())?;
    } else {
        chart.configure_mesh().disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0).draw().map_err(|e| e.to_string())?;
    }
    for (i, (name, vals)) in series.iter().enumerate() {
        let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let pts: Vec<(f64, f64)> = v.iter().enumerate().map(|(k, x)| (*x, (k + 1) as f64 / n)).collect();
        let color = Palette99::pick(i).to_rgba();
        let s = chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(|e| e.to_string())?;
        if text {
            s.label(name.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
