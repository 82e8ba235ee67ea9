//! The SVG charts: the block interval distribution (a histogram per engine), time to
//! finality (one cumulative curve per engine) and producer shares (bars per engine).
//! Each engine keeps its colour across the three.

use super::metrics::EngineResult;
use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The files written, with the title the report shows them under.
pub const FILES: [(&str, &str); 3] = [
    ("intervals.svg", "Block interval distribution"),
    ("finality.svg", "Time to finality"),
    ("producers.svg", "Producer shares"),
];

const WIDTH: u32 = 800;
const PANEL_HEIGHT: u32 = 220;
/// Narrowest histogram bin: near the collector's 200 ms polling, finer would show noise.
const MIN_BIN: f64 = 0.25;
const MAX_BINS: f64 = 80.0;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Plotters' errors as one line naming the chart.
fn failed<E: std::fmt::Display>(file: &'static str) -> impl Fn(E) -> anyhow::Error {
    move |e| anyhow!("cannot draw {file}: {e}")
}

/// Draws the three charts into `out`; returns their paths.
pub fn write(out: &Path, results: &[EngineResult]) -> anyhow::Result<Vec<PathBuf>> {
    let drawings = [intervals(results)?, finality(results)?, producers(results)?];
    let mut written = Vec::new();
    for ((file, _), svg) in FILES.iter().zip(drawings) {
        let path = out.join(file);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// One panel per engine, stacked: `draw` fills panel i with engine i's chart.
fn stacked(
    results: &[EngineResult],
    file: &'static str,
    mut draw: impl FnMut(
        &DrawingArea<SVGBackend<'_>, Shift>,
        usize,
        &EngineResult,
    ) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * u32::try_from(results.len().max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(failed(file))?;
        let panels = root.split_evenly((results.len().max(1), 1));
        for (i, (panel, result)) in panels.iter().zip(results).enumerate() {
            draw(panel, i, result)?;
        }
        root.present().map_err(failed(file))?;
    }
    Ok(svg)
}

/// Bin width and count covering `0..max` with at most [`MAX_BINS`] bins.
fn bins(max: f64) -> (f64, usize) {
    let width = (max / MAX_BINS).max(MIN_BIN);
    let count = ((max / width).ceil() as usize).max(1);
    (width, count)
}

fn intervals(results: &[EngineResult]) -> anyhow::Result<String> {
    const FILE: &str = "intervals.svg";
    let max = results
        .iter()
        .flat_map(|r| r.intervals.iter().copied())
        .fold(1.0_f64, f64::max);
    let (width, count) = bins(max);
    let x_max = width * count as f64;
    stacked(results, FILE, |panel, i, result| {
        let n = result.intervals.len();
        let mut counts = vec![0usize; count];
        for v in &result.intervals {
            let bin = ((v / width) as usize).min(count - 1);
            counts[bin] += 1;
        }
        let fractions: Vec<f64> = counts
            .iter()
            .map(|c| if n == 0 { 0.0 } else { *c as f64 / n as f64 })
            .collect();
        let y_max = fractions.iter().copied().fold(0.1_f64, f64::max) * 1.1;
        let caption = match result.metrics.block_interval_s {
            Some(s) => format!(
                "{}: {n} intervals, mean {:.2} s, stdev {:.2} s (target {} s)",
                result.metrics.engine, s.mean, s.stdev, result.metrics.block_time_s
            ),
            None => format!("{}: no intervals measured", result.metrics.engine),
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(failed(FILE))?;
        chart
            .configure_mesh()
            .x_desc("seconds between blocks")
            .y_desc("share")
            .draw()
            .map_err(failed(FILE))?;
        let fill = colour(i).filled();
        chart
            .draw_series(
                fractions
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| **f > 0.0)
                    .map(|(b, f)| {
                        let x0 = b as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, *f)], fill)
                    }),
            )
            .map_err(failed(FILE))?;
        Ok(())
    })
}

fn finality(results: &[EngineResult]) -> anyhow::Result<String> {
    const FILE: &str = "finality.svg";
    let x_max = results
        .iter()
        .flat_map(|r| r.finality.iter().copied())
        .fold(1.0_f64, f64::max)
        * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(failed(FILE))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Time to finality: share of blocks final within x seconds of being seen",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)
            .map_err(failed(FILE))?;
        chart
            .configure_mesh()
            .x_desc("seconds from first sighting to final")
            .y_desc("share of blocks")
            .draw()
            .map_err(failed(FILE))?;
        for (i, result) in results.iter().enumerate() {
            let mut sorted = result.finality.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len() as f64;
            // A step curve: it rises by 1/n at each block's latency.
            let mut points = vec![(0.0, 0.0)];
            for (k, v) in sorted.iter().enumerate() {
                points.push((*v, k as f64 / n));
                points.push((*v, (k + 1) as f64 / n));
            }
            let line = colour(i).stroke_width(2);
            let label = format!(
                "{} ({}, {} blocks)",
                result.metrics.engine,
                result.metrics.finality_rule,
                sorted.len()
            );
            chart
                .draw_series(LineSeries::new(points, line))
                .map_err(failed(FILE))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(failed(FILE))?;
        root.present().map_err(failed(FILE))?;
    }
    Ok(svg)
}

fn producers(results: &[EngineResult]) -> anyhow::Result<String> {
    const FILE: &str = "producers.svg";
    stacked(results, FILE, |panel, i, result| {
        let producers = &result.metrics.producers;
        let names: Vec<String> = producers.iter().map(|p| p.name.clone()).collect();
        // Integer ranges are inclusive in plotters: `0..last` has a segment per producer.
        let last = u32::try_from(producers.len().max(1) - 1).unwrap_or(0);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{}: blocks of the final chain per producer (Gini {:.3})",
                    result.metrics.engine, result.metrics.gini
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d((0..last).into_segmented(), 0.0..1.0)
            .map_err(failed(FILE))?;
        let label = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(k) | SegmentValue::Exact(k) => {
                names.get(*k as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len().max(1))
            .x_label_formatter(&label)
            .y_desc("share")
            .draw()
            .map_err(failed(FILE))?;
        // One bar per producer, in producer order: plotters' `Histogram` gathers its bars
        // in a `HashMap`, whose order would make the SVG differ between identical runs.
        let style = colour(i).filled();
        chart
            .draw_series(producers.iter().enumerate().map(|(k, p)| {
                let k = u32::try_from(k).unwrap_or(u32::MAX);
                let right = if k < last {
                    SegmentValue::Exact(k + 1)
                } else {
                    SegmentValue::Last
                };
                let mut bar =
                    Rectangle::new([(SegmentValue::Exact(k), p.share), (right, 0.0)], style);
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(failed(FILE))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_range_with_a_bounded_count() {
        assert_eq!(bins(1.0), (0.25, 4));
        assert_eq!(bins(5.1), (0.25, 21));
        let (width, count) = bins(100.0);
        assert!(
            (width - 1.25).abs() < 1e-9 && count == 80,
            "{width} {count}"
        );
    }
}
