//! Builds the web interface in `web/` into `OUT_DIR` and writes the table of embedded
//! files (`assets.rs`) that `src/lib.rs` includes.
//!
//! Steps: `npm ci` when `web/node_modules` is missing or older than the lock file,
//! then `npm run build` (`tsc --noEmit`, then esbuild bundling `src/main.tsx` into one
//! script and one style sheet). Each bundle is served under a name carrying a hash of
//! its bytes, so that browsers may keep it for good; `index.html` names them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// What to tell a person whose machine cannot build the interface.
const SETUP_HINT: &str = "run `bash scripts/setup.sh run` (it installs nodejs and npm when they are missing)";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = manifest.join("web");
    for p in ["src", "index.html", "package.json", "package-lock.json", "tsconfig.json"] {
        println!("cargo:rerun-if-changed=web/{p}");
    }
    println!("cargo:rerun-if-env-changed=CORRAL_UI_NPM");
    let npm = std::env::var("CORRAL_UI_NPM").unwrap_or_else(|_| "npm".to_string());

    match Command::new(&npm).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(&format!(
            "`{npm} --version` failed ({}): {}; the web interface (ui/web) is built with node and npm: {SETUP_HINT}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => fail(&format!(
            "cannot run `{npm}` ({e}): the web interface (ui/web) is built with node and npm: {SETUP_HINT}"
        )),
    }

    if stale(&web) {
        run(
            Command::new(&npm).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&web),
            "npm ci (installs ui/web's build tools from package-lock.json; it needs the npm registry once)",
        );
    }

    let bundle = out.join("web");
    std::fs::create_dir_all(&bundle).unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", bundle.display())));
    run(
        Command::new(&npm).args(["run", "--silent", "build"]).env("UI_OUT_DIR", &bundle).current_dir(&web),
        "npm run build (type-checks ui/web/src with tsc, then bundles it with esbuild)",
    );

    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", p.display())));
    let js = bundle.join("main.js");
    let css = bundle.join("main.css");
    let js_name = format!("assets/app-{}.js", hash(&read(&js)));
    let css_name = format!("assets/app-{}.css", hash(&read(&css)));
    let template =
        String::from_utf8(read(&web.join("index.html"))).unwrap_or_else(|_| fail("ui/web/index.html is not UTF-8"));
    let index =
        template.replace("%APP_JS%", &format!("/ui/{js_name}")).replace("%APP_CSS%", &format!("/ui/{css_name}"));
    let index_path = bundle.join("index.html");
    std::fs::write(&index_path, &index)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", index_path.display())));

    let entry = |path: &str, content_type: &str, file: &Path, tag: String| {
        format!(
            "Asset {{ path: {path:?}, content_type: {content_type:?}, body: include_bytes!({file:?}), etag: {tag:?} }}",
            file = file.display().to_string(),
            tag = format!("\"{tag}\""),
        )
    };
    let code = format!(
        "/// The bundles, each under its hashed name (relative to `/ui/`).\n\
         pub(crate) static ASSETS: &[Asset] = &[\n    {},\n    {},\n];\n\n\
         /// The page every other path under `/ui/` answers with.\n\
         pub(crate) static INDEX: Asset = {};\n",
        entry(&js_name, "text/javascript; charset=utf-8", &js, hash(&read(&js))),
        entry(&css_name, "text/css; charset=utf-8", &css, hash(&read(&css))),
        entry("index.html", "text/html; charset=utf-8", &index_path, hash(index.as_bytes())),
    );
    let generated = out.join("assets.rs");
    std::fs::write(&generated, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", generated.display())));
}

/// Whether `npm ci` must run: no `node_modules`, or one older than the lock file or
/// the package list (npm writes `node_modules/.package-lock.json` when it installs).
fn stale(web: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(installed) = modified(&web.join("node_modules/.package-lock.json")) else {
        return true;
    };
    ["package-lock.json", "package.json"]
        .iter()
        .any(|f| modified(&web.join(f)).is_some_and(|t: SystemTime| t > installed))
}

/// Runs `cmd`; on failure stops the build with its output and what it was for.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| fail(&format!("{what}: cannot start: {e}; {SETUP_HINT}")));
    if !out.status.success() {
        fail(&format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

/// 64-bit FNV-1a of `bytes`, as 16 hex digits: names and ETags that change when the
/// bytes do (not a security measure).
fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn fail(msg: &str) -> ! {
    panic!("building the web interface: {msg}");
}
