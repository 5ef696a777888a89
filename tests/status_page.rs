//! The public status page as a person's browser shows it: headless Chromium (Debian's package,
//! which infra/test.sh installs) renders it from the local stack, in Spanish and in English, and
//! its screenshot has something on it.

use e2e::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        path.exists(),
        "{} is missing: run the suite with infra/test.sh, which installs Debian's chromium",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `args` (a fresh profile, nothing fetched but the page);
/// returns what it printed.
async fn render(url: &str, args: &[String], profile: &Path) -> String {
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=900,600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The screenshot's pixels: how many differ from its first one, of how many.
fn painted(png_path: &Path) -> (usize, usize) {
    let file = std::fs::File::open(png_path).expect("screenshot written");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let first = &bytes[..px];
    let differing = bytes.chunks(px).filter(|p| *p != first).count();
    (differing, bytes.len() / px)
}

#[tokio::test]
async fn a_browser_shows_the_status_page_in_spanish_and_english() {
    let e = E2e::on_emulators().await;
    // Someone of whom nothing is stored asks to be erased: the request completes, no data found.
    let (status, created) = e
        .admin_post(
            "/admin/privacy-requests",
            &json!({"kind": "erasure", "identifiers": [{"type": "phone", "value": "+5491170000001"}],
                    "source": "email"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let code = created["confirmation_code"].as_str().expect("code");
    let (status, _) = e
        .admin_post(
            &format!("/admin/privacy-requests/{id}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200);
    e.drain().await;

    let dir = std::env::temp_dir().join(format!("status-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A browser set to Spanish, as most people writing to these businesses have; one set to
    // English; and the page's own switch, which wins over the browser's language.
    for (browser, query, lang, status_text, heading) in [
        ("es-AR", "", "es", "Completada", "Estado de tu pedido de privacidad"),
        ("en-US", "", "en", "Completed", "privacy request"),
        ("es-AR", "?lang=en", "en", "Completed", "privacy request"),
    ] {
        let url = format!("{}/privacy/requests/{code}{query}", e.stack.url());
        let browser = format!("--accept-lang={browser}");
        let run = format!("{lang}{}", query.len());
        let dom = render(
            &url,
            &["--dump-dom".to_owned(), browser.clone()],
            &dir.join(format!("profile-dom-{run}")),
        )
        .await;
        assert!(dom.contains(&format!("lang=\"{lang}\"")), "{lang}: {dom}");
        assert!(dom.contains(status_text), "{lang}: the status is shown: {dom}");
        assert!(dom.contains(heading), "{lang}: {dom}");
        let shot = dir.join(format!("status-{run}.png"));
        render(
            &url,
            &[format!("--screenshot={}", shot.display()), browser],
            &dir.join(format!("profile-shot-{run}")),
        )
        .await;
        let (differing, total) = painted(&shot);
        assert!(
            differing * 200 > total,
            "{lang}: the screenshot is blank: {differing} of {total} pixels differ from the background"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    e.stack.stop().await;
}
