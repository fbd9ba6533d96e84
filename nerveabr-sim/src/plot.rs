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

/// One panel of [`scatter_panels_png`]: a title, points `(label, x, y, highlighted)`, and
/// optional guide lines (a vertical one at `x_limit`, horizontal ones at `y_lines`).
pub struct Panel {
    pub title: String,
    pub points: Vec<(String, f64, f64, bool)>,
    pub x_limit: Option<f64>,
    pub y_lines: Vec<f64>,
}

/// Panels side by side (three a row), each a labelled scatter: used for the leave-one-family-out
/// figure (x = rebuffering per session, y = QoE_vmaf, one point per policy, nerve highlighted,
/// the stall limit and the quality bar as guide lines).
pub fn scatter_panels_png(path: &Path, x_label: &str, y_label: &str, panels: &[Panel]) -> Result<(), String> {
    if panels.is_empty() {
        return Err("nothing to plot".into());
    }
    let text = have_font();
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (560 * cols as u32, 460 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let xs: Vec<f64> = panel.points.iter().map(|p| p.1).chain(panel.x_limit).filter(|x| x.is_finite()).collect();
        let ys: Vec<f64> = panel.points.iter().map(|p| p.2).chain(panel.y_lines.iter().copied()).filter(|y| y.is_finite()).collect();
        if xs.is_empty() || ys.is_empty() {
            continue;
        }
        let x_hi = xs.iter().copied().fold(0.0, f64::max) * 1.25 + 0.05;
        let (y_lo, y_hi) = (ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        let pad = ((y_hi - y_lo) * 0.08).max(0.2);
        let mut b = ChartBuilder::on(area);
        b.margin(12).x_label_area_size(if text { 38 } else { 8 }).y_label_area_size(if text { 48 } else { 8 });
        if text {
            b.caption(&panel.title, ("sans-serif", 17));
        }
        let mut chart = b.build_cartesian_2d(0.0..x_hi, (y_lo - pad)..(y_hi + pad)).map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE);
        if text {
            mesh.x_desc(x_label).y_desc(y_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        // the stall limit (orange, vertical) and the quality bar (green, horizontal)
        if let Some(x) = panel.x_limit {
            chart.draw_series(LineSeries::new(vec![(x, y_lo - pad), (x, y_hi + pad)], RGBColor(230, 120, 0).stroke_width(2))).map_err(|e| e.to_string())?;
        }
        for &y in &panel.y_lines {
            chart.draw_series(LineSeries::new(vec![(0.0, y), (x_hi, y)], RGBColor(0, 150, 60).stroke_width(2))).map_err(|e| e.to_string())?;
        }
        for (label, x, y, hi) in &panel.points {
            let color = if *hi { RED } else { BLUE };
            let dot = EmptyElement::at((*x, *y)) + Circle::new((0, 0), if *hi { 6 } else { 3 }, color.filled());
            chart.draw_series(std::iter::once(dot)).map_err(|e| e.to_string())?;
            if text {
                let tag = EmptyElement::at((*x, *y)) + Text::new(label.clone(), (7, -7), ("sans-serif", if *hi { 15 } else { 12 }).into_font().color(&color));
                chart.draw_series(std::iter::once(tag)).map_err(|e| e.to_string())?;
            }
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
