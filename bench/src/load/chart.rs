//! The run as an SVG chart: committed tx/s per second (left axis) and submit-to-commit
//! latency p50 and p99 per second (right axis), with the target rate if there was one.

use super::follow::Followed;
use super::percentile;
use std::fmt::Write as _;

const W: f64 = 960.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 50.0;

/// A round number at or above `v` for an axis top (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&c| c >= v).unwrap_or(10.0 * p)
}

fn polyline(points: &[(f64, f64)], color: &str, dash: &str) -> String {
    let mut d = String::new();
    for (x, y) in points {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>\n",
        d.trim_end()
    )
}

pub fn svg(followed: &Followed, seconds: u64, target: f64, title: &str) -> String {
    let n = followed.seconds.len().max(seconds as usize).max(1);
    let tps: Vec<f64> = followed.seconds.iter().map(|s| s.committed as f64).collect();
    let (p50, p99): (Vec<f64>, Vec<f64>) = followed
        .seconds
        .iter()
        .map(|s| {
            let mut l = s.latencies_ms.clone();
            l.sort_unstable();
            (f64::from(percentile(&l, 50.0)), f64::from(percentile(&l, 99.0)))
        })
        .unzip();
    let tps_top = nice_ceiling(tps.iter().copied().fold(target, f64::max));
    let ms_top = nice_ceiling(p99.iter().copied().fold(0.0, f64::max));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: f64| LEFT + pw * t / n as f64;
    let y_tps = |v: f64| TOP + ph * (1.0 - v / tps_top);
    let y_ms = |v: f64| TOP + ph * (1.0 - v / ms_top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{}</text>", escape(title));
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let yy = TOP + ph * (1.0 - f);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>",
            W - RIGHT
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1f77b4\">{:.0}</text>",
            LEFT - 6.0,
            yy + 4.0,
            tps_top * f
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" fill=\"#d62728\">{:.0}</text>",
            W - RIGHT + 6.0,
            yy + 4.0,
            ms_top * f
        );
    }
    let step = nice_ceiling(n as f64 / 10.0).max(1.0);
    let mut t = 0.0;
    while t <= n as f64 {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{t:.0}</text>",
            x(t),
            H - BOTTOM + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds</text>",
        LEFT + pw / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        "<text x=\"14\" y=\"{}\" fill=\"#1f77b4\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">committed tx/s</text>",
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" fill=\"#d62728\" transform=\"rotate(90 {} {})\" text-anchor=\"middle\">latency ms (p50 solid, p99 dashed)</text>",
        W - 14.0,
        TOP + ph / 2.0,
        W - 14.0,
        TOP + ph / 2.0
    );
    if target > 0.0 {
        let yy = y_tps(target);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#1f77b4\" stroke-dasharray=\"2 4\"/>",
            W - RIGHT
        );
    }
    let at = |v: &[f64], y: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        v.iter().enumerate().map(|(t, &v)| (x(t as f64 + 0.5), y(v))).collect()
    };
    s.push_str(&polyline(&at(&tps, &y_tps), "#1f77b4", "none"));
    s.push_str(&polyline(&at(&p50, &y_ms), "#d62728", "none"));
    s.push_str(&polyline(&at(&p99, &y_ms), "#d62728", "6 4"));
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>"
    );
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::follow::Second;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(19_000.0), 20_000.0);
        assert_eq!(nice_ceiling(420.0), 500.0);
    }

    #[test]
    fn the_chart_has_a_line_per_series() {
        let followed = Followed {
            seconds: (0..10)
                .map(|t| Second { committed: 100 * t, latencies_ms: vec![200, 300], blocks: 2 })
                .collect(),
            ..Followed::default()
        };
        let svg = svg(&followed, 10, 1000.0, "a <run>");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("a &lt;run&gt;"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
