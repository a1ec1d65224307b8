//! The README and the manual (`docs/src`): every relative link resolves, to a file and, with
//! a `#fragment`, to a heading in it; and the Getting started chapter runs as typed.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, require, text};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The README and every chapter of the manual.
fn pages() -> Vec<PathBuf> {
    let root = workspace();
    let mut pages = vec![root.join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root.join("docs/src"))
        .expect("docs/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    pages.extend(chapters);
    pages
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors of a page's headings, as mdBook and GitHub make them: lower case, letters,
/// digits, `-` and `_` kept, spaces made `-`, everything else dropped.
fn anchors(text: &str) -> HashSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| heading.trim_start_matches('#').trim())
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The targets of the Markdown links `[text](target)` in a page's prose, outside inline code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        // Inline code spans hold examples, not links.
        let outside: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = outside.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_link_in_the_readme_and_the_manual_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let linked = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&linked).contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: the scan is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_broken_link() {
    let text = "See [a](missing.md) and [b](#nowhere), not `[c](code.md)`.\n## A heading\n";
    assert_eq!(links(text), ["missing.md", "#nowhere"]);
    assert!(anchors(text).contains("a-heading"));
    assert!(!anchors(text).contains("nowhere"));
}

#[test]
fn every_chapter_is_in_the_summary() {
    let root = workspace().join("docs/src");
    let summary = std::fs::read_to_string(root.join("SUMMARY.md")).unwrap();
    let listed: HashSet<String> = links(&summary).into_iter().collect();
    for page in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if name != "SUMMARY.md" {
            assert!(listed.contains(&name), "{name} is not in SUMMARY.md");
        }
    }
}

/// The ```sh blocks of a chapter, in order.
fn shell_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs the Getting started chapter's commands as typed, in a scratch directory beside a
/// link to the repository's `zones/` (for the sample zone file), with the binaries this
/// build made on `PATH`. The build block (`apt-get`, `cargo build`) is what the test
/// harness has done already; the `serve` block runs in the background, as in its own
/// terminal; every other block runs in order in one shell, which stops at the first
/// failure.
/// The walkthroughs below both serve on the default address, 127.0.0.1:5353: one at a time.
static DEFAULT_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn getting_started_runs_as_typed() {
    let _port = DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner());
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    require("nc", "netcat-openbsd");
    let chapter = workspace().join("docs/src/getting-started.md");
    let blocks = shell_blocks(&std::fs::read_to_string(&chapter).unwrap());
    assert!(blocks.len() >= 6, "{} blocks", blocks.len());
    let (build, rest) = blocks.split_first().unwrap();
    assert!(build.contains("cargo build --release"), "{build}");
    let (serve, steps) = rest.split_first().unwrap();
    assert!(serve.trim().starts_with("nameserver serve"), "{serve}");

    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(workspace().join("zones"), tmp.path().join("zones")).unwrap();
    let bin = binary("nameserver").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let state = tmp.path().join("state");
    let shell = |script: &str| {
        let mut command = Command::new("bash");
        command
            .args(["-e", "-o", "pipefail", "-c", script])
            .current_dir(tmp.path())
            .env("PATH", &path)
            .env("XDG_STATE_HOME", &state)
            .env("HOME", tmp.path());
        command
    };
    let mut server = shell(serve)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the serve block");
    let started = Instant::now();
    let answering = || {
        Command::new("dig")
            .args(["@127.0.0.1", "-p", "5353", "+short", "+time=1", "+tries=1"])
            .args(["dial.example", "SOA"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    };
    while !answering() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = steps.join("\n");
    let run = shell(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run the chapter's commands");
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &server.id().to_string()])
        .status();
    let _ = server.kill();
    let served = server.wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "the chapter's commands failed: {}\nserver: {}",
        text(&run),
        String::from_utf8_lossy(&served.stderr)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    // What the chapter says each step prints.
    for expected in ["127.0.0.1\n", "hello\n", "5550001 5550001."] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    assert_eq!(out.matches("hello\n").count(), 2, "{out}");
}

/// A `bash -e` for a script run as typed in `dir`: beside a link to the repository's
/// `zones/` (the sample zone file), with this build's binaries first on `PATH` and the
/// default data directory inside `dir`.
fn scratch_shell(dir: &Path) -> impl Fn(&str) -> Command {
    std::os::unix::fs::symlink(workspace().join("zones"), dir.join("zones")).unwrap();
    let bin = binary("nameserver").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = dir.to_path_buf();
    move |script: &str| {
        let mut command = Command::new("bash");
        command
            .args(["-e", "-o", "pipefail", "-c", script])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("HOME", &dir);
        command
    }
}

/// The README's shortest walkthrough, as typed but for its build lines (the test harness
/// built the binaries), with the directory it starts in the background stopped at the end.
#[test]
fn the_readme_walkthrough_runs_as_typed() {
    let _port = DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner());
    require("dig", "bind9-dnsutils");
    require("nc", "netcat-openbsd");
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let walkthrough = readme
        .split("## The shortest walkthrough")
        .nth(1)
        .expect("a walkthrough section");
    let block = shell_blocks(walkthrough)
        .into_iter()
        .next()
        .expect("its commands");
    assert!(block.contains("cargo build --release"), "{block}");
    let typed: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with("cargo build") && !l.starts_with("export PATH"))
        .collect();
    let script = format!(
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{}\n",
        typed.join("\n")
    );
    let tmp = tempfile::tempdir().unwrap();
    let run = scratch_shell(tmp.path())(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run the walkthrough");
    assert!(
        run.status.success(),
        "the walkthrough failed: {}",
        text(&run)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    for expected in ["5550001 5550001.", "127.0.0.1\n", "hello\n"] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
}

/// The README's cluster of three, as typed: three nodes on loopback found a cluster, and
/// `cluster status` names one leader and two followers that have applied the same entries.
#[test]
fn the_readme_cluster_runs_as_typed() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("## A cluster of three, NSD in front")
        .nth(1)
        .expect("a cluster section");
    let block = shell_blocks(section)
        .into_iter()
        .next()
        .expect("its commands");
    assert!(block.contains("nameserver cluster status"), "{block}");
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{block}\n");
    let tmp = tempfile::tempdir().unwrap();
    let run = scratch_shell(tmp.path())(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run the cluster section");
    assert!(
        run.status.success(),
        "the cluster section failed: {}",
        text(&run)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    let roles: Vec<(&str, &str)> = out
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(2)?, *f.get(3)?))
        })
        .collect();
    let leaders = roles.iter().filter(|(role, _)| *role == "leader").count();
    let followers = roles.iter().filter(|(role, _)| *role == "follower").count();
    assert_eq!((leaders, followers), (1, 2), "{out}");
    assert!(
        roles.windows(2).all(|w| w[0].1 == w[1].1),
        "the same applied index: {out}"
    );
}
