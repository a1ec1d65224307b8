//! The files an operator installs: the systemd units and the sample configs in
//! `nameserver/dist/` and `updater/dist/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{require, text};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (unit file, the program its ExecStart runs).
const UNITS: [(&str, &str); 2] = [
    ("nameserver/dist/dial-nameserver.service", "nameserver"),
    ("updater/dist/dial-updater.service", "updater"),
];

/// `systemd-analyze verify` accepts each unit, with its ExecStart pointing at the binary
/// this build made (verify checks that the program exists).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    let tmp = tempfile::tempdir().unwrap();
    for (unit, program) in UNITS {
        let shipped = std::fs::read_to_string(repository().join(unit)).unwrap();
        let installed = format!("/usr/local/bin/{program}");
        assert!(shipped.contains(&installed), "{unit} runs {installed}");
        let built = support::binary(program);
        let local = shipped.replace(&installed, built.to_str().unwrap());
        let path = tmp.path().join(Path::new(unit).file_name().unwrap());
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        // Other units on the machine may draw warnings; none may be about this one.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let about_ours: Vec<&str> = stderr.lines().filter(|l| l.contains(&name)).collect();
        assert!(
            out.status.success() && about_ours.is_empty(),
            "systemd-analyze verify {unit}: {}",
            text(&out)
        );
    }
}

/// The units the manual shows are the files in the repository, word for word.
#[test]
fn the_manual_shows_the_shipped_units() {
    let mut readme = String::new();
    for chapter in ["operations.md", "terminals.md"] {
        let path = repository().join("docs/src").join(chapter);
        readme.push_str(&std::fs::read_to_string(path).unwrap());
    }
    for (unit, _) in UNITS {
        let shipped = std::fs::read_to_string(repository().join(unit)).unwrap();
        assert!(
            readme.contains(&shipped),
            "the manual's copy of {unit} differs from the file"
        );
    }
}

/// The sample configs in the repository are what the binaries print, and the nameserver
/// starts its config check with its own.
#[test]
fn the_shipped_sample_configs_are_what_the_binaries_print() {
    for (program, file) in [
        ("nameserver", "nameserver/dist/nameserver.toml"),
        ("updater", "updater/dist/updater.toml"),
    ] {
        let out = Command::new(support::binary(program))
            .arg("sample-config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} sample-config: {}",
            text(&out)
        );
        let shipped = std::fs::read_to_string(repository().join(file)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            shipped,
            "{file} is stale"
        );
    }
    let out = Command::new(support::binary("nameserver"))
        .args(["serve", "--check-config", "--config"])
        .arg(repository().join("nameserver/dist/nameserver.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// `packaging/docs.sh` writes a man page for every command and subcommand of both
/// binaries, each of which `man -l` renders without a warning, and completions that bash
/// loads and that complete a subcommand.
#[test]
fn man_pages_render_and_the_bash_completions_complete() {
    require("man", "man-db");
    require("bash", "bash");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repository().join("packaging/docs.sh"))
        .arg(tmp.path())
        .env("NAMESERVER", support::binary("nameserver"))
        .env("UPDATER", support::binary("updater"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pages = [
        "nameserver.1",
        "nameserver-serve.1",
        "nameserver-register.1",
        "nameserver-import.1",
        "nameserver-dnssec-ds.1",
        "updater.1",
        "updater-run.1",
        "updater-dial.1",
        "updater-identity.1",
    ];
    let written: Vec<String> = std::fs::read_dir(tmp.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for page in pages {
        assert!(written.iter().any(|w| w == page), "{page} in {written:?}");
    }
    assert!(
        !written.iter().any(|w| w.contains("generate")),
        "the hidden generator has no page: {written:?}"
    );
    for page in &written {
        let rendered = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(tmp.path().join("man").join(page))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&rendered.stdout).into_owned();
        assert!(
            rendered.status.success(),
            "{page}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        assert!(
            shown.contains("NAME") && shown.contains("SYNOPSIS"),
            "{page}: {shown}"
        );
        assert!(
            String::from_utf8_lossy(&rendered.stderr).trim().is_empty(),
            "{page} renders with warnings: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
    for (program, typed, expected) in [
        ("nameserver", "se", "serve"),
        ("nameserver", "rot", "rotate-key"),
        ("updater", "di", "dial"),
    ] {
        let script = format!(
            "source {}/completions/{program}.bash && complete -p {program} >/dev/null && \
             COMP_WORDS=({program} {typed}) COMP_CWORD=1 COMP_LINE='{program} {typed}' \
             COMP_POINT=${{#COMP_LINE}} && _{program} {program} {typed} {program} && \
             echo \"${{COMPREPLY[@]}}\"",
            tmp.path().display()
        );
        let completed = Command::new("bash")
            .args(["--norc", "-c", &script])
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&completed.stdout).into_owned();
        assert!(
            completed.status.success() && offered.split_whitespace().any(|w| w == expected),
            "{program} {typed}<TAB> offered {offered:?}: {}",
            String::from_utf8_lossy(&completed.stderr)
        );
    }
}
