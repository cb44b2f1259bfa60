//! The container image, built by `scripts/image` with no container engine, checked with
//! the tools a cluster operator would use (Debian's skopeo, umoci, runc):
//! - `skopeo inspect` of the OCI archive (manifest, `--config`, `--raw`): one image for one
//!   architecture, user 65534:65534, entrypoint `/ferrolb`, the OCI annotations (version,
//!   revision = HEAD, source, licenses, created = SOURCE_DATE_EPOCH), and the index names
//!   it as `manifests/speaker.yaml` does;
//! - the root filesystem `umoci unpack` gives: the binary, `/etc/passwd` with nobody, no
//!   shell, and no shared library that nothing in the image asks for;
//! - `runc run` with the bundle's config tightened the way `speaker.yaml` runs the pods
//!   (UID/GID 65534, read-only root, no capabilities at all, no new privileges, the config
//!   bind-mounted read-only): `ferrolb --version` (version and this commit), `ferrolb
//!   validate` on the lab config (exit 0) and on a broken one (non-zero, the error named),
//!   and a long-running `ferrolb announce` whose `/proc/PID/status` shows the UID, zero
//!   capability sets and `NoNewPrivs` (it only tries 127.0.0.1 in runc's own network
//!   namespace);
//! - reproducibility: a second build (explicit SOURCE_DATE_EPOCH = the commit time, other
//!   output and temp dirs, same release binary) is byte-identical, and a third with another
//!   epoch is not.
//!
//! - `manifests/kustomization.yaml` renders (`kubectl kustomize`) with that image name,
//!   and with the registry's name once `newName` is edited (a second, quick test).
//!
//! The release build (fat LTO, minutes) happens in the first `scripts/image` run, once.
//! Skips with `SKIP image: <reason>` when not root, when a tool is missing or when runc
//! cannot start a container here; fails instead under CI (`CI=true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::{TestDir, in_ci, require_or_return};
use serde_json::{Value, json};

const TEST: &str = "image";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command, fails with its output unless it exits 0, returns stdout.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn git(args: &[&str]) -> Result<String> {
    Ok(run(Command::new("git").arg("-C").arg(repo()).args(args))?
        .trim()
        .to_string())
}

/// `scripts/image` with `env`; returns the archive path (its last line of output).
fn build_image(env: &[(&str, &str)], unset: &[&str]) -> Result<PathBuf> {
    let mut cmd = Command::new(repo().join("scripts/image"));
    cmd.current_dir(repo()).envs(env.iter().copied());
    for k in unset {
        cmd.env_remove(k);
    }
    let out = run(&mut cmd)?;
    let last = out
        .lines()
        .last()
        .context("scripts/image printed nothing")?;
    // Quiet: the path is all it prints.
    ensure!(
        out.lines().count() == 1,
        "scripts/image is not quiet:\n{out}"
    );
    let path = PathBuf::from(last);
    ensure!(path.is_file(), "{} is not a file", path.display());
    Ok(path)
}

fn skopeo(args: &[&str], archive: &Path, image: &str) -> Result<Value> {
    let out = run(Command::new("skopeo")
        .args(args)
        .arg(format!("oci-archive:{}:{image}", archive.display())))?;
    Ok(serde_json::from_str(&out)?)
}

fn sha256(path: &Path) -> Result<String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `repository` of `[workspace.package]` (the root package does not inherit it).
fn workspace_repository() -> Result<String> {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml"))?;
    let line = toml
        .lines()
        .find(|l| l.starts_with("repository = "))
        .context("no repository in Cargo.toml")?;
    Ok(line["repository = ".len()..].trim_matches('"').to_string())
}

/// The one image both workloads of `manifests/speaker.yaml` run.
fn manifest_image() -> Result<String> {
    let text = std::fs::read_to_string(repo().join("manifests/speaker.yaml"))?;
    let images: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(str::trim)
        .collect();
    ensure!(images.len() == 1, "speaker.yaml names {images:?}");
    Ok(images.into_iter().next().unwrap_or_default().to_string())
}

fn needed(elf: &Path) -> Result<Vec<String>> {
    let out = run(Command::new("readelf").arg("-dW").arg(elf))?;
    Ok(out
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .map(str::to_string)
        .collect())
}

/// Every path under `root`, relative, with a trailing `/` for directories.
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let rel = p.strip_prefix(root)?.display().to_string();
        if e.file_type()?.is_dir() {
            out.insert(format!("{rel}/"));
            walk(root, &p, out)?;
        } else {
            out.insert(rel);
        }
    }
    Ok(())
}

/// A runc container (own state dir), deleted on drop.
struct Runc {
    state: PathBuf,
    bundle: PathBuf,
    id: String,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.state);
        c
    }

    /// Writes the bundle's config.json with `args` and a read-only bind mount of
    /// `config` at /cfg/config.yaml.
    fn configure(&self, base: &Value, args: &[&str], config: &Path) -> Result<()> {
        let mut c = base.clone();
        let p = &mut c["process"];
        p["terminal"] = json!(false);
        p["args"] = json!(args);
        p["user"] = json!({"uid": 65534, "gid": 65534});
        p["capabilities"] = json!({
            "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
        });
        p["noNewPrivileges"] = json!(true);
        c["root"]["readonly"] = json!(true);
        c["hostname"] = json!("ferrolb");
        c["mounts"]
            .as_array_mut()
            .context("no mounts in config.json")?
            .push(json!({
                "destination": "/cfg/config.yaml",
                "type": "bind",
                "source": config,
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"]
            }));
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&c)?,
        )?;
        Ok(())
    }

    fn run(&self) -> Result<Output> {
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()?;
        let _ = self.cmd().args(["delete", "--force", &self.id]).output();
        Ok(out)
    }

    fn spawn(&self) -> Result<Child> {
        Ok(self
            .cmd()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }

    /// The host PID of the container's process once it is running.
    fn wait_running(&self, timeout: Duration) -> Result<u32> {
        let start = Instant::now();
        loop {
            if let Ok(out) = self.cmd().args(["state", &self.id]).output()
                && out.status.success()
            {
                let st: Value = serde_json::from_slice(&out.stdout)?;
                if st["status"] == "running"
                    && let Some(pid) = st["pid"].as_u64()
                {
                    return Ok(u32::try_from(pid)?);
                }
            }
            if start.elapsed() > timeout {
                bail!("container {} not running after {timeout:?}", self.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = self.cmd().args(["kill", &self.id, "KILL"]).output();
        let _ = self.cmd().args(["delete", "--force", &self.id]).output();
    }
}

/// `kubectl kustomize DIR`: the image of every container rendered.
fn kustomize_images(dir: &Path) -> Result<Vec<String>> {
    let out = run(Command::new("kubectl").arg("kustomize").arg(dir))?;
    let mut images = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&out) {
        let v: Value = serde::Deserialize::deserialize(d)?;
        if let Some(cs) = v["spec"]["template"]["spec"]["containers"].as_array() {
            images.extend(
                cs.iter()
                    .filter_map(|c| Some(c["image"].as_str()?.to_string())),
            );
        }
    }
    Ok(images)
}

/// `manifests/kustomization.yaml` as written renders the image `scripts/image` names
/// (and so `speaker.yaml`); with `newName` set as its comment says, both workloads get
/// the registry's name and the tag.
#[test]
fn kustomization_keeps_the_image_name_and_renames_it_when_edited() -> Result<()> {
    if ferrolb_testlab::which("kubectl").is_none() {
        let why = "kubectl not found (run scripts/install-test-deps as root)";
        if in_ci() {
            panic!("FAIL kustomization: {why}");
        }
        eprintln!("SKIP kustomization: {why}");
        return Ok(());
    }
    let image = manifest_image()?;
    let as_written = kustomize_images(&repo().join("manifests"))?;
    assert_eq!(as_written, vec![image.clone(), image.clone()]);

    let dir = TestDir::new("kustomization")?;
    let k = std::fs::read_to_string(repo().join("manifests/kustomization.yaml"))?;
    let edited: String = k
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("newName:") {
                "  newName: registry.example.com/ferrolb".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    ensure!(
        edited != k.trim_end(),
        "no newName line in kustomization.yaml"
    );
    std::fs::write(dir.path().join("kustomization.yaml"), edited)?;
    std::fs::copy(
        repo().join("manifests/speaker.yaml"),
        dir.path().join("speaker.yaml"),
    )?;
    let tag = image.rsplit(':').next().unwrap_or_default();
    let want = format!("registry.example.com/ferrolb:{tag}");
    assert_eq!(kustomize_images(dir.path())?, vec![want.clone(), want]);
    Ok(())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn image_archive_checks_out_runs_unprivileged_in_runc_and_is_reproducible() -> Result<()> {
    require_or_return!(
        TEST,
        "skopeo",
        "umoci",
        "runc",
        "tar",
        "gzip",
        "sha256sum",
        "readelf",
        "dpkg",
        "apt-get",
        "git"
    );
    let dir = TestDir::new(TEST)?;
    let head = git(&["rev-parse", "HEAD"])?;
    let epoch = git(&["log", "-1", "--format=%ct"])?;
    let image = manifest_image()?;

    // ------------------------------------------------------------ build A: the defaults
    // (SOURCE_DATE_EPOCH from the commit); builds the release binary when outdated.
    let out_a = dir.subdir("a")?;
    let a = build_image(
        &[("FERROLB_IMAGE_OUT", out_a.to_str().unwrap())],
        &["SOURCE_DATE_EPOCH", "FERROLB_BIN", "FERROLB_IMAGE"],
    )?;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        a.file_name().unwrap().to_str().unwrap(),
        format!("ferrolb-{version}.oci.tar")
    );

    // ------------------------------------------------------------ skopeo
    let inspect = skopeo(&["inspect"], &a, &image)?;
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    assert_eq!(inspect["Architecture"], arch.as_str());
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(1));
    let created =
        run(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"]))?
            .trim()
            .to_string();
    let want = json!({
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": head,
        "org.opencontainers.image.source": workspace_repository()?,
        "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
        "org.opencontainers.image.created": created,
    });
    let raw = skopeo(&["inspect", "--raw"], &a, &image)?;
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&raw["annotations"][k], v, "manifest annotation {k}");
        assert_eq!(&inspect["Labels"][k], v, "config label {k}");
    }
    let config = skopeo(&["inspect", "--config"], &a, &image)?;
    assert_eq!(config["config"]["User"], "65534:65534");
    assert_eq!(config["config"]["Entrypoint"], json!(["/ferrolb"]));
    assert!(config["config"]["Cmd"].is_null(), "no default Cmd");
    assert_eq!(config["architecture"], arch.as_str());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], created.as_str());
    // A name the archive does not carry is not found: the name above was really matched.
    assert!(
        skopeo(&["inspect"], &a, "ghcr.io/ferrolb/ferrolb:no-such-tag").is_err(),
        "skopeo found an image under a name the archive does not carry"
    );

    // ------------------------------------------------------------ the layout: one image
    let layout = dir.subdir("layout")?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&a)
        .arg("-C")
        .arg(&layout))?;
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifests = index["manifests"].as_array().context("index.manifests")?;
    assert_eq!(manifests.len(), 1, "one image, one architecture: {index}");
    let m = &manifests[0];
    assert_eq!(m["platform"]["architecture"], arch.as_str());
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        image.as_str()
    );
    assert_eq!(m["annotations"]["io.containerd.image.name"], image.as_str());
    assert_eq!(
        Some(m["digest"].as_str().unwrap_or_default()),
        inspect["Digest"].as_str()
    );

    // ------------------------------------------------------------ umoci unpack
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{image}", layout.display()))
        .arg(&bundle))?;
    let rootfs = bundle.join("rootfs");
    let mut files = BTreeSet::new();
    walk(&rootfs, &rootfs, &mut files)?;
    for f in ["ferrolb", "etc/passwd", "etc/group"] {
        assert!(files.contains(f), "{f} missing from the image: {files:?}");
    }
    for f in &files {
        assert!(
            !f.starts_with("bin/") && !f.starts_with("sbin/") && !f.starts_with("usr/bin/"),
            "{f}: the image has no programs but /ferrolb"
        );
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nobody:x:65534:65534:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group"))?;
    assert!(group.lines().any(|l| l.ends_with(":65534:")), "{group}");
    // Exactly the libraries needed: each .so is asked for by /ferrolb or another .so in
    // the image, or is the loader; and each library asked for is there.
    let mut asked: BTreeSet<String> = needed(&rootfs.join("ferrolb"))?.into_iter().collect();
    let libs: Vec<&String> = files
        .iter()
        .filter(|f| f.contains(".so"))
        .filter(|f| !f.ends_with('/'))
        .collect();
    for l in &libs {
        if std::fs::symlink_metadata(rootfs.join(l))?.is_file() {
            asked.extend(needed(&rootfs.join(l))?);
        }
    }
    let present: BTreeSet<String> = libs
        .iter()
        .filter_map(|l| Some(Path::new(l).file_name()?.to_str()?.to_string()))
        .collect();
    for n in &asked {
        assert!(present.contains(n), "{n} is needed but not in the image");
    }
    for n in &present {
        assert!(
            asked.contains(n) || n.starts_with("ld-linux"),
            "{n} is in the image but nothing needs it"
        );
    }

    // ------------------------------------------------------------ runc
    let base: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    // umoci took the user from the image config.
    assert_eq!(base["process"]["user"]["uid"], 65534, "{}", base["process"]);
    assert_eq!(base["process"]["user"]["gid"], 65534, "{}", base["process"]);
    assert_eq!(base["process"]["args"], json!(["/ferrolb"]));
    let state = dir.subdir("runc-state")?;
    let good = repo().join("manifests/examples/config-lab.yaml");
    let lab = std::fs::read_to_string(&good)?;
    ensure!(lab.contains("peer-asn: 64512"), "config-lab.yaml changed");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        lab.replace("peer-asn: 64512", "peer-asn: 99999999999"),
    )?;
    let container = |n: u32| Runc {
        state: state.clone(),
        bundle: bundle.clone(),
        id: format!("ferrolb-image-test-{}-{n}", std::process::id()),
    };

    let c = container(1);
    c.configure(&base, &["/ferrolb", "--version"], &good)?;
    let out = c.run()?;
    if !out.status.success() {
        let why = format!("runc cannot run a container here: {}", text(&out));
        if in_ci() {
            panic!("FAIL {TEST}: {why}");
        }
        eprintln!("SKIP {TEST}: {why}");
        return Ok(());
    }
    let short = &head[..12];
    let v = text(&out);
    assert!(
        v.contains(&format!("ferrolb {version}")) && v.contains(short),
        "--version in the container: {v:?} (want {version} and commit {short})"
    );

    let c = container(2);
    c.configure(&base, &["/ferrolb", "validate", "/cfg/config.yaml"], &good)?;
    let out = c.run()?;
    assert!(
        out.status.success(),
        "validate config-lab.yaml: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("valid: 1 peer, 2 pools (1 bgp, 1 layer2)"),
        "{}",
        text(&out)
    );

    let c = container(3);
    c.configure(&base, &["/ferrolb", "validate", "/cfg/config.yaml"], &bad)?;
    let out = c.run()?;
    assert!(
        !out.status.success(),
        "a broken config validated: {}",
        text(&out)
    );
    let t = text(&out);
    assert!(
        t.contains("peers[0].peer-asn") && t.contains("99999999999"),
        "the error should name the field and the value: {t}"
    );

    // A process that stays up, inspected from the host.
    let c = container(4);
    c.configure(
        &base,
        &[
            "/ferrolb",
            "announce",
            "--peer",
            "127.0.0.1",
            "--local-as",
            "64512",
            "--peer-as",
            "64512",
            "--router-id",
            "192.0.2.1",
            "--prefix",
            "192.0.2.10",
        ],
        &good,
    )?;
    let mut child = c.spawn()?;
    let pid = c.wait_running(Duration::from_secs(10))?;
    // "running" comes a moment before runc's init has exec'd /ferrolb.
    let start = Instant::now();
    let status = loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        if status.starts_with("Name:\tferrolb") {
            break status;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "container process never became ferrolb: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let _ = c.cmd().args(["kill", &c.id, "KILL"]).output();
    let _ = child.wait();
    drop(c);
    let field = |k: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(field("Name").starts_with("ferrolb"), "{status}");
    assert_eq!(field("Uid"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Gid"), "65534 65534 65534 65534", "{status}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}: {status}");
    }
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    let root_opts = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .map(|f| f[5].to_string())
        .context("no / in the container's mountinfo")?;
    assert!(
        root_opts.split(',').any(|o| o == "ro"),
        "root filesystem mounted {root_opts}"
    );

    // ------------------------------------------------------------ reproducible
    let bin = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo().join(d))
        .unwrap_or_else(|| repo().join("target"))
        .join("release/ferrolb");
    let out_b = dir.subdir("b")?;
    let tmp_b = dir.subdir("tmp-b")?;
    let b = build_image(
        &[
            ("FERROLB_IMAGE_OUT", out_b.to_str().unwrap()),
            ("SOURCE_DATE_EPOCH", &epoch),
            ("FERROLB_BIN", bin.to_str().unwrap()),
            ("TMPDIR", tmp_b.to_str().unwrap()),
            ("TZ", "America/Los_Angeles"),
        ],
        &["FERROLB_IMAGE"],
    )?;
    let digest_a = inspect["Digest"].as_str().unwrap_or_default().to_string();
    let digest_b = skopeo(&["inspect"], &b, &image)?["Digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(digest_a.starts_with("sha256:"), "{inspect}");
    assert_eq!(digest_a, digest_b, "two builds of one commit differ");
    assert_eq!(
        sha256(&a)?,
        sha256(&b)?,
        "the archives differ byte for byte"
    );
    // Another epoch, another digest: the check above can fail.
    let out_c = dir.subdir("c")?;
    let later = (epoch.parse::<u64>()? + 1).to_string();
    let c = build_image(
        &[
            ("FERROLB_IMAGE_OUT", out_c.to_str().unwrap()),
            ("SOURCE_DATE_EPOCH", &later),
            ("FERROLB_BIN", bin.to_str().unwrap()),
        ],
        &["FERROLB_IMAGE"],
    )?;
    let digest_c = skopeo(&["inspect"], &c, &image)?["Digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(digest_a, digest_c, "SOURCE_DATE_EPOCH is not used");
    eprintln!(
        "image: {digest_a}, archive {} bytes",
        std::fs::metadata(&a)?.len()
    );
    Ok(())
}
