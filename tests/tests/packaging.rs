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

/// The units the README shows are the files in the repository, word for word.
#[test]
fn the_readme_shows_the_shipped_units() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    for (unit, _) in UNITS {
        let shipped = std::fs::read_to_string(repository().join(unit)).unwrap();
        assert!(
            readme.contains(&shipped),
            "README.md's copy of {unit} differs from the file"
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
