//! Keeps every server on core 1, whatever it does with its own threads' affinity.
//!
//! `taskset -c 1` only sets the affinity a process starts with; a thread may set its own
//! afterwards. Knot does: it pins UDP worker *i* to CPU *i* mod the number of online CPUs,
//! which put one of its two UDP workers on core 0 beside dnsperf (the worker answered from
//! the load generator's core, where no wake-up has to cross cores, and used a second core).
//! A cpuset cgroup that holds only core 1 bounds every thread of the server and of its
//! children, and [`check`] reads each thread's allowed CPUs back once the server answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The cgroup every server runs in: its file of member processes.
static CPUSET: OnceLock<PathBuf> = OnceLock::new();

/// The name of the cgroup made for the servers.
const GROUP: &str = "dial-bench-core1";

/// Makes (or reuses) a cpuset cgroup holding only core 1; returns its `cgroup.procs`.
/// cgroup v2 (a unified hierarchy with the cpuset controller) or v1 (a `cpuset` hierarchy).
fn make_cpuset() -> Result<PathBuf, String> {
    let v2 = Path::new("/sys/fs/cgroup");
    let v1 = Path::new("/sys/fs/cgroup/cpuset");
    let dir = if v2.join("cgroup.controllers").exists() {
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if !controllers.split_whitespace().any(|c| c == "cpuset") {
            return Err("the cgroup v2 hierarchy has no cpuset controller".into());
        }
        std::fs::write(v2.join("cgroup.subtree_control"), "+cpuset")
            .map_err(|e| format!("cannot enable cpuset for child cgroups: {e}"))?;
        let dir = v2.join(GROUP);
        create(&dir)?;
        write(&dir.join("cpuset.cpus"), "1")?;
        dir
    } else if v1.join("cpuset.cpus").exists() {
        let dir = v1.join(GROUP);
        create(&dir)?;
        write(&dir.join("cpuset.cpus"), "1")?;
        // v1 needs the memory nodes set before a process may join.
        let mems = std::fs::read_to_string(v1.join("cpuset.mems")).unwrap_or_default();
        write(&dir.join("cpuset.mems"), mems.trim())?;
        dir
    } else {
        return Err("no cpuset cgroup hierarchy under /sys/fs/cgroup".into());
    };
    Ok(dir.join("cgroup.procs"))
}

fn create(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Sets up the cgroup once. Without it the run must not go on: the figures would compare
/// servers that do not keep to the same core.
pub fn init() -> Result<(), String> {
    if CPUSET.get().is_none() {
        let _ = CPUSET.set(make_cpuset()?);
    }
    Ok(())
}

/// A command that runs `program` on core 1 inside the cgroup: a shell joins the cgroup,
/// then `exec`s `taskset -c 1 program`, so the process started is the server itself.
pub fn on_core_one(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let procs = CPUSET.get().expect("confine::init ran");
    let mut command = Command::new("sh");
    command
        .args(["-c", "echo $$ > \"$0\" && exec taskset -c 1 \"$@\""])
        .arg(procs)
        .arg(program);
    command
}

/// Every thread of `pids` may run on core 1 only; the first one that may run elsewhere is
/// the error.
pub fn check(pids: &[u32]) -> Result<(), String> {
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(str::trim);
            if let Some(allowed) = allowed {
                if allowed != "1" {
                    return Err(format!(
                        "thread {} of process {pid} may run on CPUs {allowed}",
                        task.file_name().to_string_lossy()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `sh -c script` with `command` and waits until the shell has `exec`ed `sleep`.
    fn started(mut command: Command, script: &str) -> std::process::Child {
        let mut child = command.args(["-c", script]).spawn().expect("start sh");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id()));
            if comm.is_ok_and(|c| c.trim() == "sleep") {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the shell did not reach its sleep");
    }

    #[test]
    fn a_server_that_pins_its_own_threads_to_core_0_stays_on_core_1() {
        init().expect("a cpuset cgroup (run as root)");
        // What Knot does to a UDP worker: set its own affinity to core 0 once started.
        let repin = "taskset -p -c 0 $$ >/dev/null 2>&1; exec sleep 30";

        // `taskset -c 1` alone, as the bench started servers before: the thread moves.
        let mut loose = Command::new("taskset");
        loose.args(["-c", "1", "sh"]);
        let mut loose = started(loose, repin);
        let escaped = check(&[loose.id()]);
        let _ = loose.kill();
        let _ = loose.wait();
        assert!(escaped.is_err(), "check must see a thread that left core 1");

        // In the cgroup the same request is refused and the thread stays on core 1.
        let mut kept = started(on_core_one("sh"), repin);
        let confined = check(&[kept.id()]);
        let _ = kept.kill();
        let _ = kept.wait();
        assert_eq!(confined, Ok(()));
    }
}
