//! `scripts/setup.sh run|test`: `make up` installs only what running needs, `make test`
//! the test tools as well; `apt-get update` runs once, and nothing when all is there.
//! Run against stand-ins for dpkg-query, apt-get and sudo that record what they are
//! asked, so that the test installs nothing and needs no network.

use std::path::Path;
use std::process::Command;

/// Writes the stand-ins into `bin`: dpkg-query says installed for the packages listed
/// in `installed`, apt-get appends its arguments to `calls`.
fn stand_ins(bin: &Path, installed: &Path, calls: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let scripts = [
        (
            "dpkg-query",
            format!(
                "#!/bin/sh\n# dpkg-query -W -f=FORMAT PKG\nfor p; do last=$p; done\n\
                 grep -qx \"$last\" {} 2>/dev/null && printf 'install ok installed' && exit 0\nexit 1\n",
                installed.display()
            ),
        ),
        ("apt-get", format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display())),
        ("sudo", "#!/bin/sh\nexec \"$@\"\n".to_string()),
    ];
    for (name, text) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
}

/// Runs `setup.sh mode` with the stand-ins first on PATH; returns its exit code and
/// the apt-get calls it made.
fn setup(dir: &Path, mode: &str) -> (i32, Vec<String>) {
    let calls = dir.join("calls");
    let _ = std::fs::remove_file(&calls);
    let bin = dir.join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup.sh"))
        .arg(mode)
        .env("PATH", path)
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(&calls).unwrap_or_default().lines().map(str::to_string).collect();
    (out.status.code().unwrap_or(-1), calls)
}

/// The packages of an `apt-get install` call.
fn installed_by(calls: &[String]) -> Vec<String> {
    let install = calls.iter().find(|c| c.starts_with("install")).expect("an install call");
    install.split_whitespace().filter(|w| !w.starts_with('-') && *w != "install").map(str::to_string).collect()
}

#[test]
fn setup_installs_what_running_needs_for_up_and_the_test_tools_for_test() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("installed");
    stand_ins(&dir.path().join("bin"), &installed, &dir.path().join("calls"));

    let (code, calls) = setup(dir.path(), "run");
    assert_eq!(code, 0, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("update")).count(), 1, "one update: {calls:?}");
    let run = installed_by(&calls);
    // e2fsprogs makes volume images; dig is the tour's DNS client; protoc builds the
    // etcd client the server links.
    for pkg in ["runc", "e2fsprogs", "dnsutils", "protobuf-compiler"] {
        assert!(run.contains(&pkg.to_string()), "`make up` needs {pkg}: {run:?}");
    }
    for test_only in
        ["etcd-server", "prometheus", "kubectl", "knot", "dnsperf", "skopeo", "chromium", "chromium-driver"]
    {
        assert!(!run.contains(&test_only.to_string()), "`make up` does not need {test_only}: {run:?}");
    }

    let (code, calls) = setup(dir.path(), "test");
    assert_eq!(code, 0, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("update")).count(), 1, "one update: {calls:?}");
    let test = installed_by(&calls);
    for pkg in [
        "runc",
        "etcd-server",
        "prometheus",
        "kubectl",
        "dnsutils",
        "knot",
        "dnsperf",
        "skopeo",
        "protobuf-compiler",
        "chromium",
        "chromium-driver",
    ] {
        assert!(test.contains(&pkg.to_string()), "`make test` needs {pkg}: {test:?}");
    }

    // Everything present: no apt-get at all.
    std::fs::write(&installed, test.join("\n") + "\n").unwrap();
    let (code, calls) = setup(dir.path(), "test");
    assert_eq!((code, calls.len()), (0, 0), "{calls:?}");

    let (code, _) = setup(dir.path(), "everything");
    assert_eq!(code, 2, "an unknown mode is a usage error");
}
