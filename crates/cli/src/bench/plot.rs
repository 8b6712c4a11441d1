//! `--plot FILE.svg`: speedup over the best dense path vs M (log scale), one panel per layer shape, one line
//! per contender, with the 1.0 line and the 2:4 limit (dense roofline time over sparse roofline
//! time from the measured ceilings: ≈1.78× where bandwidth-bound, 2× where compute-bound).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::report::{Report, CPU_SPARSE, CUSPARSELT, SPARSEFLOW};

/// The best possible sparse-over-dense speedup at (m, n, k) under the measured ceilings.
pub fn limit_speedup(m: usize, n: usize, k: usize, es: usize, tbps: f64, tflops: f64) -> f64 {
    let io = (m * k + m * n) * es;
    let flops = 2.0 * (m * n * k) as f64;
    let t = |w: usize, f: f64| ((w + io) as f64 / (tbps * 1e12)).max(f / (tflops * 1e12));
    t(n * k * es, flops) / t(n * k / 2 * es + n * k / 8, flops / 2.0)
}

pub fn draw(report: &Report, path: &Path) -> Result<()> {
    let mut shapes: Vec<(String, usize, usize)> = Vec::new();
    for r in &report.rows {
        if !shapes.iter().any(|s| s.1 == r.n && s.2 == r.k) {
            shapes.push((r.layer.clone(), r.n, r.k));
        }
    }
    if shapes.is_empty() {
        return Err(anyhow!("--plot: nothing was measured"));
    }
    let cols = shapes.len().min(2);
    let rows_n = shapes.len().div_ceil(cols);
    let root =
        SVGBackend::new(path, (620 * cols as u32, 380 * rows_n as u32 + 40)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("plot: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let (title, body) = root.split_vertically(40);
    let dev = &report.device.name;
    title
        .titled(
            &format!(
                "sparseflow benchmark — speedup over {}, {} {} ({dev})",
                if report.mode == "cpu" {
                    "CPU dense"
                } else {
                    "the best dense path"
                },
                report.config.dtype,
                report.date_utc
            ),
            ("sans-serif", 18),
        )
        .map_err(e)?;
    let (subject, subject_label) = if report.mode == "cpu" {
        (CPU_SPARSE, "CPU sparse")
    } else {
        (SPARSEFLOW, "SparseFlow")
    };
    let es = if report.config.dtype == "f32" { 4 } else { 2 };
    let (bw, tc) = (
        report.device.copy_tbps.unwrap_or(3.0),
        report.device.dense_tflops.unwrap_or(700.0),
    );
    for (area, (name, n, k)) in body.split_evenly((rows_n, cols)).iter().zip(&shapes) {
        let rows: Vec<_> = report
            .rows
            .iter()
            .filter(|r| r.n == *n && r.k == *k)
            .collect();
        let sp = |c: &str| -> Vec<(f64, f64)> {
            rows.iter()
                .filter_map(|r| Some((r.m as f64, r.dense_median()? / r.median(c)?)))
                .collect()
        };
        let (sf, lt) = (sp(subject), sp(CUSPARSELT));
        let lim: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.m as f64, limit_speedup(r.m, *n, *k, es, bw, tc)))
            .collect();
        let xmin = rows.iter().map(|r| r.m).min().unwrap_or(1) as f64;
        let xmax = (rows.iter().map(|r| r.m).max().unwrap_or(2) as f64).max(xmin * 2.0);
        let ymax = sf
            .iter()
            .chain(&lt)
            .chain(&lim)
            .map(|p| p.1)
            .fold(2.2f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} {n}×{k}"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| format!("{}", x.round() as u64))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .x_desc("M (tokens)")
            .y_desc("speedup vs best dense")
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(
                vec![(xmin, 1.0), (xmax, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(e)?
            .label("1.0 (best dense)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart
            .draw_series(LineSeries::new(
                lim,
                RGBColor(150, 150, 150).stroke_width(2),
            ))
            .map_err(e)?
            .label("2:4 limit (roofline)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(150, 150, 150)));
        for (pts, color, label) in [(sf, RED, subject_label), (lt, BLUE, "cuSPARSELt")] {
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_bytes_ratio_when_bandwidth_bound_and_two_when_compute_bound() {
        let small = limit_speedup(1, 14336, 4096, 2, 3.0, 700.0);
        assert!((small - 1.0 / 0.5625).abs() < 0.01, "{small}");
        let large = limit_speedup(16384, 14336, 4096, 2, 3.0, 700.0);
        assert!((large - 2.0).abs() < 1e-9, "{large}");
    }
}
