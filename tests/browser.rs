//! The web page in a real browser: `storecast demo` (on the test PostgreSQL) serves it, and
//! headless Chromium loads it, picks a store, sees the chart (closed days as gaps), the node
//! owning its model, its versions with metrics, the cluster and the jobs, clicks retrain and
//! sees the model version go up, draws a days-ahead forecast, and fits a phone-sized screen.
//! Screenshots are saved to `target/test-artifacts/`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::browser::Browser;

/// The demo, serving its page until stopped; its output lines arrive on `lines`.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(dir: &std::path::Path, url: &str) -> Demo {
        let mut child = support::storecast(dir)
            .args(["--database-url", url, "--set", "gateway.listen=127.0.0.1:0"])
            .args(["demo", "--stores", "4", "--days", "200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("the demo's output");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the line that starts with `prefix` (after trimming); returns it.
    fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.trim_start().starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the demo printed no line starting {prefix:?} within {limit:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Stops it as Ctrl-C would; it must exit cleanly.
    fn stop(mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().expect("the demo exits");
        assert!(status.success(), "the demo exited with {status}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifact(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(name)
}

#[test]
fn the_page_shows_a_store_retrains_it_and_forecasts_days_ahead() {
    let Some(url) = support::postgres::fresh_database("browser") else {
        return;
    };
    let Some(browser) = Browser::start("browser") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(dir.path(), &url);
    let line = demo.wait_for_line("10. web page", Duration::from_secs(300));
    let page = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(page.contains("/#token="), "{page}");
    demo.wait_for_line("serving until Ctrl-C", Duration::from_secs(10));

    browser.open(&page);
    let minute = Duration::from_secs(60);
    browser.wait_for(
        "the store picker",
        "return document.querySelectorAll('#store option').length === 4",
        minute,
    );
    assert_eq!(
        browser.run("return location.hash"),
        "",
        "the token is taken out of the address"
    );

    // Pick store 3: its chart, with the weekly forecast of version 1.
    browser.click("#store option[value='3']");
    browser.wait_for(
        "store 3's chart",
        "return document.getElementById('title').textContent === 'Store 3 · product_A' \
         && document.querySelector('#chart path.actual') !== null \
         && document.querySelector('#chart path.forecast') !== null \
         && document.querySelector('#chart path.band') !== null \
         && document.getElementById('model-version')?.textContent === '1'",
        minute,
    );
    let subtitle = browser.run("return document.getElementById('subtitle').textContent");
    let subtitle = subtitle.as_str().unwrap();
    assert!(
        subtitle.contains("Model default, version 1, trained "),
        "{subtitle}"
    );

    // The system around the store: the node owning its model actor (marked in the cluster
    // table of three nodes with the scheduler's leader), its version with cross-validation
    // metrics and the node that trained it, and the train-all job that did.
    let panels = browser.wait_for(
        "the owner, versions, cluster and jobs panels",
        "const owner = document.getElementById('owner').textContent;          const version = [...document.querySelectorAll('#versions tbody tr:first-child td')].map((cell) => cell.textContent);          const nodes = [...document.querySelectorAll('#cluster tbody tr')].map((row) => row.firstChild.textContent);          const marked = [...document.querySelectorAll('#cluster tbody tr.owner')].map((row) => row.firstChild.textContent);          const jobs = [...document.querySelectorAll('#jobs li')].map((item) => item.textContent);          const leader = document.getElementById('leader').textContent;          return document.getElementById('versions').dataset.store === '3'            && owner.startsWith('demo-') && version.length === 6 && nodes.length === 3            && marked.length === 1 && marked[0] === owner && jobs.length > 0 && leader.includes('scheduler leader demo-')            && { owner, version, nodes, marked, jobs }",
        minute,
    );
    let owner = panels["owner"].as_str().unwrap();
    assert_eq!(panels["marked"][0], owner, "{panels}");
    assert_eq!(
        panels["nodes"],
        serde_json::json!(["demo-1", "demo-2", "demo-3"])
    );
    let version = &panels["version"];
    assert_eq!(version[0], "1", "{panels}");
    assert_eq!(version[2], owner, "trained where it lives: {panels}");
    assert_eq!(version[3], "default", "{panels}");
    for metric in [&version[4], &version[5]] {
        let metric = metric.as_str().unwrap();
        assert!(metric.ends_with('%') && metric != "0.0%", "{panels}");
    }
    let jobs = panels["jobs"].to_string();
    assert!(jobs.contains("train-all · succeeded"), "{panels}");

    // Closed days are gaps: a store closed on Sundays draws its actual sales in several runs.
    let runs = browser.run(
        "return document.querySelector('#chart path.actual').getAttribute('d').split('M').length - 1",
    );
    assert!(runs.as_u64().unwrap() > 4, "one unbroken line: {runs}");

    // Retrain: progress, then version 2 in the subtitle.
    browser.click("#retrain");
    browser.wait_for(
        "version 2 after retraining",
        "return document.getElementById('model-version')?.textContent === '2'",
        Duration::from_secs(180),
    );
    let status = browser.run("return document.getElementById('status').textContent");
    assert!(
        status.as_str().unwrap().contains("version 2 trained"),
        "{status}"
    );
    browser.wait_for(
        "version 2 in the history and the retrain in the jobs",
        "return document.querySelector('#versions tbody tr:first-child td')?.textContent === '2'          && [...document.querySelectorAll('#jobs li')].some((item) => item.textContent.includes('retrain of store 3 · succeeded, version 2'))",
        minute,
    );

    // A days-ahead forecast, drawn with its band.
    browser.run("document.getElementById('days').value = '12'; return true");
    browser.click("#forecast-days");
    let drawn = browser.wait_for(
        "the days-ahead forecast",
        "return document.querySelector('#chart path.online') !== null \
         && document.getElementById('status').textContent",
        minute,
    );
    assert!(
        drawn
            .as_str()
            .unwrap()
            .contains("12 days ahead by model default version 2"),
        "{drawn}"
    );
    browser.screenshot(&artifact("page-desktop.png"));

    // Kill a node as the demo suggests: the demo reports it, and within seconds the page
    // shows two nodes, with the store's model on a survivor.
    let pid: i32 = demo
        .seen
        .iter()
        .find_map(|line| {
            line.trim_start()
                .strip_prefix("demo-3 (pid ")?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .expect("the demo printed demo-3's pid");
    // SAFETY: a signal to the demo's child process, which the demo has not reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    demo.wait_for_line("demo-3 stopped (killed by signal 9)", minute);
    let moved = browser.wait_for(
        "the cluster without demo-3",
        "const nodes = [...document.querySelectorAll('#cluster tbody tr')].map((row) => row.firstChild.textContent);          const owner = document.getElementById('owner').textContent;          return nodes.length === 2 && ['demo-1', 'demo-2'].includes(owner) && { nodes, owner }",
        Duration::from_secs(30),
    );
    assert_eq!(moved["nodes"], serde_json::json!(["demo-1", "demo-2"]));

    // A phone-sized screen: nothing wider than the screen.
    browser.resize(390, 844);
    let overflow = browser.wait_for(
        "the narrow layout",
        "return window.innerWidth <= 420 && \
         [document.documentElement.scrollWidth, window.innerWidth]",
        minute,
    );
    let (scroll_width, screen_width) = (
        overflow[0].as_u64().expect("a scroll width"),
        overflow[1].as_u64().expect("a screen width"),
    );
    assert!(scroll_width <= screen_width, "{overflow}");
    browser.screenshot(&artifact("page-phone.png"));
    drop(browser);
    demo.stop();
}
