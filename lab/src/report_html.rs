//! `report.html`: the report of `compare` or `simulate` as one self-contained page — the
//! tables of `report.md` (rendered with `pulldown-cmark`) and every chart written beside
//! it, inlined as SVG, with its own small stylesheet. Nothing is fetched when it opens:
//! it works offline and can be mailed as one file.

use anyhow::Context;
use pulldown_cmark::{Options, Parser, html};
use std::path::{Path, PathBuf};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;\
padding:0 1em;color:#1d232a}table{border-collapse:collapse;margin:1em 0;font-size:13px}\
th,td{border:1px solid #c9d1d9;padding:.25em .6em;text-align:right}th{background:#f0f3f6}\
td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}\
figcaption{color:#57606a;font-size:13px}svg{max-width:100%;height:auto}code{font-size:13px}";

/// Writes `report.html` into `out` from the `report.md` and the `.svg` charts among
/// `written`; returns its path.
pub fn write(out: &Path, written: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let markdown_path = written
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "report.md"))
        .context("report.html needs report.md, which was not written")?;
    let markdown = std::fs::read_to_string(markdown_path)
        .with_context(|| format!("cannot read {}", markdown_path.display()))?;
    let mut charts = Vec::new();
    for path in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
    {
        let svg = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        charts.push((name, svg));
    }
    let page = page(&markdown, &charts);
    let path = out.join("report.html");
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The page: the Markdown as HTML, then each chart (file name, SVG text) as a figure.
fn page(markdown: &str, charts: &[(String, String)]) -> String {
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    let title = markdown
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("toychain report");
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}",
        escape(title)
    );
    if !charts.is_empty() {
        out.push_str("<h2>Charts</h2>\n");
    }
    for (name, svg) in charts {
        // The XML prolog is for a file of its own; inside HTML the <svg> element is enough.
        let element = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]);
        out.push_str(&format!(
            "<figure>{element}<figcaption>{}</figcaption></figure>\n",
            escape(name)
        ));
    }
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_the_tables_and_the_charts_and_fetches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let md = dir.path().join("report.md");
        std::fs::write(
            &md,
            "# toychain compare\n\n| engine | blocks |\n|---|---:|\n| pow | 12 |\n| poa & co | 3 |\n",
        )
        .expect("md");
        let svg = dir.path().join("intervals.svg");
        std::fs::write(
            &svg,
            "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" \
             height=\"10\"><rect width=\"4\" height=\"4\"/></svg>\n",
        )
        .expect("svg");
        let csv = dir.path().join("metrics.csv");
        let path = write(dir.path(), &[md, csv, svg]).expect("written");
        let html = std::fs::read_to_string(path).expect("read");
        assert!(html.starts_with("<!doctype html>"), "{html}");
        assert!(html.contains("<title>toychain compare</title>"), "{html}");
        assert!(html.contains("<td>pow</td>"), "{html}");
        assert!(html.contains("poa &amp; co"), "{html}");
        assert!(
            html.contains("<rect width=\"4\""),
            "the chart is inline: {html}"
        );
        assert!(!html.contains("<?xml"), "{html}");
        assert!(
            html.contains("<figcaption>intervals.svg</figcaption>"),
            "{html}"
        );
        for fetch in ["src=\"http", "href=\"http", "<script", "<link"] {
            assert!(!html.contains(fetch), "the page fetches something: {fetch}");
        }
    }

    #[test]
    fn without_report_md_it_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write(dir.path(), &[]).expect_err("no report.md");
        assert!(err.to_string().contains("report.md"), "{err}");
    }
}
