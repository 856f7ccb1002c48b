//! The OCI bundle of a container task: an overlay rootfs over the shared, read-only
//! image rootfs, and the runc `config.json` built from a [`LaunchSpec`].

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount as OciMount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder, get_default_maskedpaths,
    get_default_mounts, get_default_readonly_paths,
};

use super::LaunchSpec;
use super::cgroups::{self, Limits};
use crate::error::{Error, Result};
use crate::layout::TaskDir;

/// Where the sandbox appears inside a container.
pub const SANDBOX_IN_CONTAINER: &str = "/mnt/sandbox";

/// Paths inside a task's bundle.
pub(crate) struct Bundle(pub PathBuf);

impl Bundle {
    pub fn of(dir: &TaskDir) -> Self {
        Bundle(dir.bundle())
    }
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("pid")
    }
    pub fn runc_log(&self) -> PathBuf {
        self.0.join("runc.log")
    }
}

/// Accepts an absolute container path without `..`, as a mount destination or cwd.
pub(crate) fn check_container_path(what: &str, p: &str) -> Result<()> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) || p.contains('\0') {
        return Err(Error::Invalid(format!("{what} {p:?} must be an absolute path without `..`")));
    }
    Ok(())
}

/// Accepts a path relative to the sandbox that stays inside it.
pub(crate) fn check_sandbox_path(what: &str, p: &str) -> Result<()> {
    let path = Path::new(p);
    if path.is_absolute() || !path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(Error::Invalid(format!("{what} {p:?} must be relative to the sandbox, without `..`")));
    }
    Ok(())
}

/// The directory a native task runs in, opened `O_PATH`: `cwd` (relative, see
/// [`check_sandbox_path`]) inside `sandbox`, or the sandbox itself. Artifacts are
/// unpacked into the sandbox, so a link such as `esc -> /` could otherwise make
/// `esc/etc` the host's `/etc`: the kernel resolves `cwd` beneath the sandbox (see
/// [`super::beneath`]) and follows only links that stay inside it. The caller enters the
/// directory by this descriptor, so nothing can swap a link in between. Resolved at the
/// last moment before the process starts, when the sandbox holds what the task will find.
///
/// # Errors
/// A message naming `cwd`: missing, not a directory, or leading out of the sandbox.
pub(crate) fn resolve_in_sandbox(
    sandbox: &Path,
    cwd: Option<&str>,
) -> std::result::Result<std::os::fd::OwnedFd, String> {
    use super::beneath;
    use std::os::fd::AsFd;

    let root = beneath::open_dir(sandbox).map_err(|e| format!("the sandbox {}: {e}", sandbox.display()))?;
    let rel = cwd.unwrap_or(".");
    beneath::open_beneath(root.as_fd(), Path::new(rel), libc::O_PATH | libc::O_DIRECTORY).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EXDEV) => format!("working directory {rel:?} leads out of the sandbox through a symbolic link"),
            Some(libc::ENOTDIR) => format!("working directory {rel:?} in the sandbox is not a directory"),
            Some(libc::ELOOP) => format!(
                "working directory {rel:?} in the sandbox goes through a symbolic link that cannot be followed \
                 (a loop, or any link on kernels without openat2, before Linux 5.6)"
            ),
            _ => format!("working directory {rel:?} in the sandbox: {e}"),
        }
    })
}

/// Checks everything in a spec that could otherwise fail late, inside the shim.
pub(crate) fn validate(spec: &LaunchSpec) -> Result<()> {
    if spec.argv.is_empty() || spec.argv.iter().any(|a| a.contains('\0')) {
        return Err(Error::Invalid("argv must be non-empty and free of NUL bytes".into()));
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(Error::Invalid(format!("environment variable name {k:?} is not valid")));
        }
    }
    if !(spec.cpus.is_finite() && spec.cpus >= 0.0) {
        return Err(Error::Invalid(format!("cpus {} must be a non-negative number", spec.cpus)));
    }
    let container = spec.rootfs.is_some();
    if let Some(cwd) = &spec.cwd {
        if container {
            check_container_path("cwd", cwd)?;
        } else {
            check_sandbox_path("cwd", cwd)?;
        }
    }
    for m in &spec.mounts {
        if container {
            check_container_path("mount destination", &m.destination)?;
        } else {
            check_sandbox_path("mount path", &m.destination)?;
        }
        if !m.source.is_absolute() {
            return Err(Error::Invalid(format!("mount source {} must be absolute", m.source.display())));
        }
    }
    if let Some(rootfs) = &spec.rootfs {
        let s = rootfs.to_string_lossy();
        // The overlay option string is split on these.
        if !rootfs.is_absolute() || s.contains([',', ':', '\0']) {
            return Err(Error::Invalid(format!("image rootfs {s:?} must be absolute, without `,` or `:`")));
        }
    }
    Ok(())
}

fn oci(e: oci_spec::OciSpecError) -> Error {
    Error::Runtime(format!("cannot build the container config: {e}"))
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Result<OciMount> {
    let mode = if read_only { "ro" } else { "rw" };
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), "nosuid".to_string(), "nodev".to_string(), mode.to_string()])
        .build()
        .map_err(oci)
}

/// The runc configuration of a container task.
pub(crate) fn config(spec: &LaunchSpec, dir: &TaskDir) -> Result<Spec> {
    let (uid, gid) = spec.user.unwrap_or((0, 0));
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // Root (only in a privileged namespace) gets runc's default set (what `runc spec`
    // writes); anyone else only what the restricted Pod Security Standard allows.
    let caps: std::collections::HashSet<Capability> = if uid == 0 {
        [Capability::AuditWrite, Capability::Kill, Capability::NetBindService].into_iter().collect()
    } else {
        [Capability::NetBindService].into_iter().collect()
    };
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(uid).gid(gid).build().map_err(oci)?)
        .args(spec.argv.clone())
        .env(env)
        .cwd(spec.cwd.clone().unwrap_or_else(|| "/".into()))
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .ambient(caps.clone())
                .inheritable(caps)
                .build()
                .map_err(oci)?,
        )
        .build()
        .map_err(oci)?;

    // Host /sys/fs/cgroup is left out: tasks need not see the node's hierarchy.
    let mut mounts: Vec<OciMount> =
        get_default_mounts().into_iter().filter(|m| m.destination() != Path::new("/sys/fs/cgroup")).collect();
    mounts.push(bind(&dir.sandbox(), SANDBOX_IN_CONTAINER, false)?);
    // The cluster DNS's resolv.conf, when the runtime wrote one for the task.
    let own_resolv = dir.0.join(super::resolv::FILE);
    let own_resolv = own_resolv.exists().then_some(own_resolv);
    for host_file in ["/etc/resolv.conf", "/etc/hosts"] {
        match &own_resolv {
            Some(own) if host_file == "/etc/resolv.conf" => mounts.push(bind(own, host_file, true)?),
            _ if Path::new(host_file).exists() => mounts.push(bind(Path::new(host_file), host_file, true)?),
            _ => {}
        }
    }
    for m in &spec.mounts {
        mounts.push(bind(&m.source, &m.destination, m.read_only)?);
    }

    let limits = Limits::new(spec.cpus, spec.mem_mib);
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(bytes) = limits.memory_bytes {
        // swap = limit: memory+swap may not exceed the limit, so a hog is OOM-killed.
        memory = memory.limit(bytes).swap(bytes);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let (Some(quota), Some(shares)) = (limits.cpu_quota, limits.cpu_shares) {
        cpu = cpu.quota(quota).period(cgroups::CPU_PERIOD).shares(shares);
    }
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().map_err(oci)?])
        .memory(memory.build().map_err(oci)?)
        .cpu(cpu.build().map_err(oci)?)
        .pids(LinuxPidsBuilder::default().limit(cgroups::PIDS_MAX).build().map_err(oci)?)
        .build()
        .map_err(oci)?;
    let namespaces =
        [LinuxNamespaceType::Pid, LinuxNamespaceType::Mount, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts]
            .into_iter()
            .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().map_err(oci))
            .collect::<Result<Vec<_>>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(cgroups::relative_path(&spec.uid)))
        .resources(resources)
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()
        .map_err(oci)?;
    SpecBuilder::default()
        .version("1.0.2-dev")
        .root(RootBuilder::default().path(Bundle::of(dir).rootfs()).readonly(false).build().map_err(oci)?)
        .hostname(spec.uid.chars().take(12).collect::<String>())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(oci)
}

/// Creates the bundle: overlay rootfs mounted over the image, and `config.json`.
pub(crate) fn create(spec: &LaunchSpec, image_rootfs: &Path, dir: &TaskDir) -> Result<()> {
    let b = Bundle::of(dir);
    for d in [b.rootfs(), b.upper(), b.work()] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, e))?;
    }
    // A fresh task dir (a launch never runs twice): nothing is mounted here yet, so no
    // scan of the mount table on the start path.
    let opts =
        format!("lowerdir={},upperdir={},workdir={}", image_rootfs.display(), b.upper().display(), b.work().display());
    mount_overlay(&b.rootfs(), &opts)?;
    let config = config(spec, dir)?;
    let bytes =
        serde_json::to_vec_pretty(&config).map_err(|source| Error::Json { what: "container config".into(), source })?;
    crate::layout::write_replace(&b.config(), &bytes)
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} contains a NUL byte")))
}

fn mount_overlay(target: &Path, opts: &str) -> Result<()> {
    let target_c = cstring(&target.to_string_lossy())?;
    let opts_c = cstring(opts)?;
    let overlay = c"overlay";
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(overlay.as_ptr(), target_c.as_ptr(), overlay.as_ptr(), libc::MS_NODEV, opts_c.as_ptr().cast())
    };
    if rc != 0 {
        return Err(Error::io("cannot mount the overlay rootfs at", target, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape_mountinfo(m) == want))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Unmounts the overlay and removes what the bundle holds except `config.json`.
pub(crate) fn destroy(dir: &TaskDir) -> Result<()> {
    let b = Bundle::of(dir);
    let rootfs = b.rootfs();
    while is_mount_point(&rootfs) {
        let c = cstring(&rootfs.to_string_lossy())?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(Error::io("cannot unmount", &rootfs, std::io::Error::last_os_error()));
        }
    }
    for d in [rootfs, b.upper(), b.work()] {
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("cannot remove", &d, e)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runtime::Mount;

    #[test]
    fn a_working_dir_cannot_leave_the_sandbox_through_a_link() {
        use std::os::fd::OwnedFd;
        use std::os::unix::fs::MetadataExt;

        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(sandbox.join("work/inner")).unwrap();
        std::fs::write(sandbox.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("/", sandbox.join("esc")).unwrap();
        std::os::unix::fs::symlink("work", sandbox.join("alias")).unwrap();
        let is = |fd: OwnedFd, path: &Path| {
            let got = std::fs::File::from(fd).metadata().unwrap();
            let want = std::fs::metadata(path).unwrap();
            assert_eq!((got.dev(), got.ino()), (want.dev(), want.ino()), "{}", path.display());
        };
        is(resolve_in_sandbox(&sandbox, None).unwrap(), &sandbox);
        is(resolve_in_sandbox(&sandbox, Some("work/inner")).unwrap(), &sandbox.join("work/inner"));
        // Links that stay inside are followed.
        is(resolve_in_sandbox(&sandbox, Some("alias/inner")).unwrap(), &sandbox.join("work/inner"));
        let escape = resolve_in_sandbox(&sandbox, Some("esc/etc")).unwrap_err();
        assert!(escape.contains("leads out of the sandbox") && escape.contains("\"esc/etc\""), "{escape}");
        let missing = resolve_in_sandbox(&sandbox, Some("missing")).unwrap_err();
        assert!(missing.contains("\"missing\""), "{missing}");
        let file = resolve_in_sandbox(&sandbox, Some("file")).unwrap_err();
        assert!(file.contains("\"file\" in the sandbox is not a directory"), "{file}");
    }

    fn spec() -> LaunchSpec {
        LaunchSpec {
            uid: "abc-123".into(),
            name: "ns/t".into(),
            rootfs: Some("/img".into()),
            argv: vec!["sh".into()],
            env: vec![("A".into(), "1".into())],
            cwd: Some("/srv".into()),
            user: Some((1000, 100)),
            cpus: 1.5,
            mem_mib: 64,
            mounts: vec![Mount { source: "/vol".into(), destination: "/data".into(), read_only: true }],
        }
    }

    #[test]
    fn config_carries_limits_user_and_mounts() {
        let c = config(&spec(), &TaskDir("/w/tasks/abc-123".into())).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["linux"]["cgroupsPath"], "/corral/abc-123");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 1536);
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["cwd"], "/srv");
        assert_eq!(v["process"]["env"][0], "A=1");
        let mounts = v["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["destination"] == "/data" && m["options"][3] == "ro"));
        assert!(mounts.iter().any(|m| m["destination"] == SANDBOX_IN_CONTAINER));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn escaping_paths_are_rejected() {
        let mut s = spec();
        s.mounts[0].destination = "/data/../etc".into();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.mounts[0].destination = "data".into();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.rootfs = None;
        s.cwd = Some("../x".into());
        s.mounts.clear();
        assert!(validate(&s).is_err());
        s.cwd = Some("work/dir".into());
        assert!(validate(&s).is_ok());
    }
}
