//! PNG plots of a run from its JSONL metrics: loss, zero-shot accuracy, τ⁻¹ and the eigenvalue
//! spectrum of the last evaluation's embeddings; a run redraws them after each evaluation. Text needs a
//! TrueType font, read from the system, nothing is downloaded: the file `CLOOB_PLOT_FONT` names, else DejaVu
//! Sans or Liberation Sans (Linux; Debian's `fonts-dejavu-core`), Arial or Geneva (macOS), Arial or Segoe UI
//! (Windows), else whatever fontconfig's `fc-match sans-serif` answers.

use super::evaluate::EvalReport;
use super::{err, PretrainError, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONTS: [&str; 8] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Geneva.ttf",
    "/System/Library/Fonts/Supplemental/Verdana.ttf",
];

/// The font files tried, in order: `CLOOB_PLOT_FONT`, [`FONTS`], Windows' own (under `%WINDIR%\Fonts`),
/// then fontconfig's answer for `sans-serif`.
fn font_candidates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os("CLOOB_PLOT_FONT").map(PathBuf::from).into_iter().collect();
    v.extend(FONTS.iter().map(PathBuf::from));
    if let Some(win) = std::env::var_os("WINDIR") {
        v.extend(["arial.ttf", "segoeui.ttf"].map(|f| Path::new(&win).join("Fonts").join(f)));
    }
    let fc = std::process::Command::new("fc-match").args(["-f", "%{file}", "sans-serif:fontformat=TrueType"]).output();
    if let Some(out) = fc.ok().filter(|o| o.status.success() && !o.stdout.is_empty()) {
        v.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    v
}

/// Register a system font under plotters' `sans-serif` once.
fn font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let tried = font_candidates();
        let bytes = tried.iter().find_map(|p| std::fs::read(p).ok()).ok_or_else(|| {
            format!(
                "no TrueType font found (looked at {tried:?}): set CLOOB_PLOT_FONT=FILE.ttf, or on Debian/Ubuntu \
                 apt-get install -y fonts-dejavu-core"
            )
        })?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| "the system font does not parse".to_string())
    })
    .clone()
    .map_err(PretrainError)
}

/// One named line.
type Series = (String, Vec<(f64, f64)>);

/// How a plot is drawn besides its lines.
#[derive(Clone, Debug, Default)]
struct Style {
    /// y on a log scale.
    log_y: bool,
    /// Dashed horizontal lines `(series index, y)` in that series' colour (chance levels).
    hlines: Vec<(usize, f64)>,
    /// Room on the right for the legend, so it hides none of the last points.
    legend_room: bool,
}

/// A short tick label: `1e-5` style on a log axis, at most four significant digits otherwise.
fn tick_label(v: f64, log: bool) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if log || v.abs() >= 1e5 || v.abs() < 1e-3 {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Draw `series` into `path` (800×500), y on a log scale when `log_y`; lines with a marker at every
/// point (so a single point shows). Returns whether there was anything to draw (no file otherwise).
fn line_plot(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[Series], style: &Style) -> Result<bool> {
    let log_y = style.log_y;
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0)) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(false);
    }
    for &(_, y) in style.hlines.iter().filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0)) {
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    // Pad the ranges so that points on the extremes (or a single point) are not drawn on the frame.
    let (dx, dy) = ((x1 - x0) * 0.02, (y1 - y0) * 0.05);
    (x0, x1) = if x1 <= x0 { (x0 - 0.5, x0 + 0.5) } else { (x0 - dx, x1 + dx) };
    if style.legend_room && series.len() > 1 {
        x1 += (x1 - x0) * 0.3; // the legend sits right of the last points
    }
    (y0, y1) = match (log_y, y1 <= y0) {
        (true, _) => (y0 * 0.8, y1 * 1.25),
        (false, true) => (y0 - 1e-3_f64.max(y0.abs() * 0.1), y1 + 1e-3_f64.max(y1.abs() * 0.1)),
        (false, false) => (y0 - dy, y1 + dy),
    };
    let pe = |e: &dyn std::fmt::Display| err(format!("plot {}", path.display()), e);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| pe(&e))?;
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 22)).margin(12).x_label_area_size(40).y_label_area_size(80);
        let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK, RGBColor(255, 140, 0), RGBColor(120, 70, 20)];
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .y_label_formatter(&|v: &f64| tick_label(*v, log_y))
                    .x_label_formatter(&|v: &f64| tick_label(*v, false))
                    .draw()
                    .map_err(|e| pe(&e))?;
                for (i, (name, pts)) in series.iter().enumerate() {
                    let c = colours[i % colours.len()];
                    let shown = || pts.iter().copied().filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0));
                    let marker = if pts.len() > 60 { 0 } else { 3 };
                    chart.draw_series(shown().map(|p| Circle::new(p, marker, c.filled()))).map_err(|e| pe(&e))?;
                    chart
                        .draw_series(LineSeries::new(shown(), c.stroke_width(2)))
                        .map_err(|e| pe(&e))?
                        .label(name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                }
                for &(i, y) in &style.hlines {
                    let c = colours[i % colours.len()];
                    let line = DashedLineSeries::new([(x0, y), (x1, y)], 6, 4, c.mix(0.7).stroke_width(1));
                    chart.draw_series(line).map_err(|e| pe(&e))?;
                }
                if series.len() > 1 {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .background_style(WHITE.mix(0.8))
                        .border_style(BLACK)
                        .draw()
                        .map_err(|e| pe(&e))?;
                }
            }};
        }
        if log_y {
            draw!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(|e| pe(&e))?);
        } else {
            draw!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(|e| pe(&e))?);
        }
        root.present().map_err(|e| pe(&e))?;
    }
    // Written aside and renamed: a viewer refreshing the plot during a run never reads half a file.
    let tmp = path.with_extension("png.tmp");
    image::RgbImage::from_raw(w, h, buf)
        .expect("buffer of w·h·3")
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| err(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path.display(), e))?;
    Ok(true)
}

/// Plots of the run whose metrics are in `metrics`, into `dir` (replacing earlier ones), the spectrum of
/// `last_eval`'s embeddings among them; returns the files written.
pub fn draw_all(metrics: &Path, last_eval: Option<&EvalReport>, dir: &Path) -> Result<Vec<PathBuf>> {
    font()?;
    std::fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
    let f = std::fs::File::open(metrics).map_err(|e| err(metrics.display(), e))?;
    let (mut loss, mut tau, mut lr) = (Vec::new(), Vec::new(), Vec::new());
    let mut zs: Vec<Series> = Vec::new();
    let mut chance: Vec<(String, f64)> = Vec::new();
    for line in std::io::BufReader::new(f).lines().map_while(|l| l.ok()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let step = v["step"].as_f64().unwrap_or(0.0);
        if let Some(l) = v["loss"].as_f64() {
            loss.push((step + 1.0, l));
            tau.push((step + 1.0, v["inv_tau"].as_f64().unwrap_or(f64::NAN)));
            lr.push((step + 1.0, v["lr"].as_f64().unwrap_or(f64::NAN)));
        }
        let sets = v["eval"]["sets"].as_array().map(Vec::as_slice).unwrap_or_default();
        // The first set's tasks by name; a further set's (--imagenet-val) as `set/task`.
        let tasks = sets.iter().enumerate().filter_map(|(i, set)| {
            let prefix = if i == 0 { String::new() } else { format!("{}/", set["set"].as_str().unwrap_or("set")) };
            Some(set["zero_shot"].as_object()?.iter().map(move |(n, s)| (format!("{prefix}{n}"), s)))
        });
        for (name, score) in tasks.flatten() {
            let y = score["top1"].as_f64().unwrap_or(f64::NAN);
            if let Some(c) = score["chance"].as_f64().filter(|_| !chance.iter().any(|(n, _)| *n == name)) {
                chance.push((name.clone(), c));
            }
            match zs.iter_mut().find(|(n, _)| *n == name) {
                Some((_, p)) => p.push((step, y)),
                None => zs.push((name, vec![(step, y)])),
            }
        }
    }
    let mut out = Vec::new();
    let hlines = chance.iter().filter_map(|(n, c)| Some((zs.iter().position(|(m, _)| m == n)?, *c))).collect();
    let zs_style = Style { hlines, legend_room: true, ..Style::default() };
    let linear = Style::default();
    let mut plot = |file: &str, title: &str, x: &str, y: &str, s: Vec<Series>, style: &Style| -> Result<()> {
        let p = dir.join(file);
        if line_plot(&p, title, x, y, &s, style)? {
            out.push(p);
        }
        Ok(())
    };
    plot("loss.png", "training loss", "step", "loss", vec![("loss".into(), loss)], &linear)?;
    let title = "zero-shot top-1 accuracy (dashed: chance, 1/classes)";
    plot("zero_shot.png", title, "step", "accuracy", zs, &zs_style)?;
    plot("inv_tau.png", "inverse temperature τ⁻¹", "step", "τ⁻¹", vec![("τ⁻¹".into(), tau)], &linear)?;
    plot("lr.png", "learning rate", "step", "lr", vec![("lr".into(), lr)], &linear)?;
    if let Some(set) = last_eval.and_then(|r| r.sets.first()) {
        let spectrum = |v: &[f64]| v.iter().enumerate().map(|(i, &e)| ((i + 1) as f64, e)).collect::<Vec<_>>();
        plot(
            "spectrum.png",
            "covariance eigenvalues of the last evaluation's embeddings",
            "index",
            "eigenvalue",
            vec![
                ("image".into(), spectrum(&set.embedding.image_spectrum)),
                ("text".into(), spectrum(&set.embedding.text_spectrum)),
            ],
            &Style { log_y: true, ..Style::default() },
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(1e-5, true), "1e-5");
        assert_eq!(tick_label(0.00031, true), "3.1e-4");
        assert_eq!(tick_label(0.25, false), "0.25");
        assert_eq!(tick_label(120.0, false), "120");
        assert_eq!(tick_label(0.0, false), "0");
        assert_eq!(tick_label(2.5e6, false), "2.5e6");
    }

    #[test]
    fn a_single_point_is_drawn_and_an_empty_plot_is_no_file() {
        font().unwrap();
        let dir = std::env::temp_dir().join(format!("cloob-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = dir.join("one.png");
        assert!(line_plot(&one, "t", "x", "y", &[("a".into(), vec![(100.0, 0.25)])], &Style::default()).unwrap());
        let img = image::open(&one).unwrap().to_rgb8();
        let blue = img.pixels().filter(|p| p.0 == [0, 0, 255]).count();
        assert!(blue > 10, "the point is drawn ({blue} blue pixels)");
        let none = dir.join("none.png");
        assert!(!line_plot(&none, "t", "x", "y", &[("a".into(), vec![])], &Style::default()).unwrap());
        assert!(!none.exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A chance line is drawn dashed in its series' colour across the plot, and the legend is moved right
    /// of the last points: the pixels around the last point are the line's, not the legend's box.
    #[test]
    fn chance_lines_are_drawn_and_the_legend_clears_the_last_points() {
        font().unwrap();
        let dir = std::env::temp_dir().join(format!("cloob-plot-chance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let series: Vec<Series> = vec![
            ("a".into(), (0..=10).map(|i| (i as f64 * 100.0, 0.5 + 0.05 * i as f64)).collect()),
            ("b".into(), (0..=10).map(|i| (i as f64 * 100.0, 0.4 + 0.05 * i as f64)).collect()),
        ];
        let (plain, dashed) = (dir.join("plain.png"), dir.join("dashed.png"));
        line_plot(&plain, "t", "x", "y", &series, &Style { legend_room: true, ..Style::default() }).unwrap();
        let style = Style { hlines: vec![(0, 0.2), (1, 0.1)], legend_room: true, ..Style::default() };
        line_plot(&dashed, "t", "x", "y", &series, &style).unwrap();
        let (p, d) = (image::open(&plain).unwrap().to_rgb8(), image::open(&dashed).unwrap().to_rgb8());
        // The dashed line of `a` is a horizontal run of faded blue (BLUE mixed with white and the grid):
        // one pixel row holds hundreds of such pixels with the chance lines; the sloped series lines never
        // put that many in one row.
        let widest_blue_row = |img: &image::RgbImage| {
            (0..img.height())
                .map(|y| {
                    (0..img.width())
                        .filter(|&x| {
                            let [r, g, b] = img.get_pixel(x, y).0;
                            b >= 200 && r == g && r > 0 && r < 200
                        })
                        .count()
                })
                .max()
                .unwrap_or(0)
        };
        let (wd, wp) = (widest_blue_row(&d), widest_blue_row(&p));
        assert!(wd > 200 && wp < 100, "faded blue pixels in the widest row: {wd} with chance lines, {wp} without");
        // The last point of `a` (1000, 1.0) is drawn: blue pixels right of x = 500 near the top.
        let blue_top_right =
            d.enumerate_pixels().filter(|&(x, y, px)| x > 500 && y < 150 && px.0 == [0, 0, 255]).count();
        assert!(blue_top_right > 10, "{blue_top_right}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
